"""A run's summary rebuilt from its stored tables, for runs that ended without summary.json.

The totals are the engine's own (`testbed.summary.RunTotals`) fed with the stored settlements,
clearings and interlocks, so both summaries have the same keys and the same arithmetic. The
metering energy balance needs the live meter registers: here it is None.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from testbed.documents import Clearing, Settlement
from testbed.runstore.reader import RunReader
from testbed.runstore.schema import SETTLEMENT_FIELDS, RunDirError
from testbed.summary import RunTotals

DEFAULT_CURRENCY = "INR"


def summarize(reader: RunReader) -> dict[str, Any]:
    """Per-peer, market and interlock totals of the run's settled intervals so far."""
    settlements = reader.settlements()
    totals = RunTotals(sorted(str(p) for p in settlements["peer"].unique()))
    for row in settlements.to_dict("records"):
        # runs written before a field existed (e.g. the local balancing's) read it as 0
        values = {name: row.get(name, 0.0) for name in SETTLEMENT_FIELDS}
        values["interval_start"] = pd.Timestamp(values["interval_start"]).to_pydatetime()
        totals.add_settlement(Settlement(**values))
    for row in reader.clearings().to_dict("records"):
        price = row["clearing_price"]
        totals.count_clearing(
            Clearing(
                interval_start=pd.Timestamp(row["interval_start"]).to_pydatetime(),
                mechanism=str(row["mechanism"]),
                clearing_price=None if pd.isna(price) else float(price),
                volume_kwh=float(row["volume_kwh"]),
                trades=(),
            )
        )
    for row in reader.interlocks().to_dict("records"):
        totals.count_interlock(str(row["kind"]), str(row["action"]))
    return totals.summary(reader.meta.mechanism or "", _currency(reader))


def _currency(reader: RunReader) -> str:
    try:
        prices = reader.config().get("prices") or {}
    except RunDirError:
        return DEFAULT_CURRENCY
    return str(prices.get("currency", DEFAULT_CURRENCY))
