"""Pages for many peers: above `MANY_PEERS` a page shows the community's total and one chosen peer
instead of one card, line or chart per peer."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import streamlit as st

from dashboards.fields import CONTRACT_FIELD
from dashboards.palette import COMMUNITY

MANY_PEERS = 6  # more peers than this: the community total plus a chosen peer


def is_many(peers: Sequence[str]) -> bool:
    return len(peers) > MANY_PEERS


def pick_peer(peers: Sequence[str], key: str) -> str:
    """A picker of one peer (the first by default), remembered per page under `key`."""
    return str(
        st.selectbox(
            f"Peer ({len(peers)} in the community; more than {MANY_PEERS} are shown one at a time)",
            list(peers),
            key=key,
        )
    )


def community_meter(meter: pd.DataFrame, step_s: float) -> pd.DataFrame:
    """The PCC power (and tracked contract) summed over every peer, per control step: meter rows
    with `peer` = COMMUNITY. A step where a peer has no sample counts it as 0 kW."""
    if meter.empty:
        return meter.iloc[0:0]
    columns = [c for c in ("power_kw", CONTRACT_FIELD) if c in meter]
    rows = meter.assign(time=meter["time"].dt.floor(pd.Timedelta(seconds=max(step_s, 1e-3))))
    total = rows.groupby("time", sort=True)[columns].sum(min_count=1).reset_index()
    total["peer"] = COMMUNITY
    total["device"] = "meter"
    return total


def community_contracts(contracted: pd.DataFrame) -> pd.DataFrame:
    """The contracted power summed over every peer, per interval (+ = the community sells)."""
    if contracted.empty:
        return contracted
    keys = ["interval_start", "interval_end"]
    total = contracted.groupby(keys, sort=True)["contracted_kw"].sum().reset_index()
    total["peer"] = COMMUNITY
    return total


def with_community_total(
    table: pd.DataFrame, chosen: str, keys: Sequence[str], values: Sequence[str]
) -> pd.DataFrame:
    """`table`'s rows of `chosen` after rows of every peer's `values` summed per `keys`
    (`peer` = COMMUNITY)."""
    if table.empty:
        return table
    total = table.groupby(list(keys), sort=True)[list(values)].sum(min_count=1).reset_index()
    total["peer"] = COMMUNITY
    return pd.concat([total, table[table["peer"] == chosen]], ignore_index=True)
