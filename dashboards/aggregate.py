"""Charts for many peers: the peers that matter most by name, every other peer summed into one
"others" group, so that a Sankey, a matrix or a bar chart stays readable at 100 peers.

Grouping only relabels and sums: an aggregated view's totals equal the sum over all peers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import pandas as pd

from dashboards import peer_focus
from dashboards.palette import OTHERS


def is_large(peers: Iterable[str]) -> bool:
    """More peers than the pages show one by one (`peer_focus.MANY_PEERS`)."""
    return peer_focus.is_many(sorted(set(peers)))


def named_count() -> int:
    """How many peers keep their own name in an aggregated chart (the rest are "others")."""
    return max(1, peer_focus.MANY_PEERS - 1)


def others_label(count: int) -> str:
    return f"{OTHERS} ({count} peers)"


def top_peers(weight: pd.Series, count: int | None = None) -> list[str]:
    """The `count` peers of `weight` (indexed by peer) with the largest |weight|; ties by name."""
    count = named_count() if count is None else count
    ranked = sorted(weight.abs().items(), key=lambda item: (-float(item[1]), str(item[0])))
    return [str(peer) for peer, _ in ranked[:count]]


def grouping(peers: Iterable[str], named: Sequence[str]) -> dict[str, str]:
    """`{peer: its group}`: a named peer is its own group, every other peer is in "others"
    (named peers first, in the order of `named`)."""
    everyone = sorted(set(peers))
    rest = [p for p in everyone if p not in named]
    groups = {p: p for p in named if p in everyone}  # named peers first, in their rank order
    return groups | {p: others_label(len(rest)) for p in rest}


def _order(groups: Mapping[str, str], named: Sequence[str]) -> list[str]:
    labels = [p for p in named if p in groups.values()]
    return labels + sorted(set(groups.values()) - set(labels))


def grouped_matrix(matrix: pd.DataFrame, groups: Mapping[str, str]) -> pd.DataFrame:
    """A peer x peer matrix with rows and columns summed per group (named peers first)."""
    named = [p for p, g in groups.items() if p == g]
    order = _order(groups, named)
    rows = matrix.groupby(lambda peer: groups.get(peer, peer), sort=False).sum()
    both = rows.T.groupby(lambda peer: groups.get(peer, peer), sort=False).sum().T
    both = both.reindex(index=order, columns=order, fill_value=0.0)
    both.index.name, both.columns.name = matrix.index.name, matrix.columns.name
    return both


def grouped_flows(flows: pd.DataFrame, groups: Mapping[str, str]) -> pd.DataFrame:
    """Money flows (payer, payee, amount, kind) with peers replaced by their group and summed;
    actors that are not peers (grid, network operator, ...) stay as they are."""
    if flows.empty:
        return flows
    relabelled = flows.assign(
        payer=flows["payer"].map(lambda a: groups.get(a, a)),
        payee=flows["payee"].map(lambda a: groups.get(a, a)),
    )
    summed = relabelled.groupby(["payer", "payee", "kind"], sort=True)["amount"].sum()
    return summed.reset_index()[list(flows.columns)]


def grouped_rows(
    table: pd.DataFrame, groups: Mapping[str, str], values: Sequence[str]
) -> pd.DataFrame:
    """A table with one row per peer (`peer` column) summed per group, named peers first."""
    named = [p for p, g in groups.items() if p == g]
    summed = (
        table.assign(peer=table["peer"].map(lambda p: groups.get(p, p)))
        .groupby("peer", sort=False)[list(values)]
        .sum()
    )
    return summed.reindex(_order(groups, named)).dropna(how="all").reset_index()
