"""Supply and demand curves of one interval's order book (the seed's Fig. 8).

The mechanisms of `testbed.market` put their own curves in the clearing report; the dashboard draws
those when a run has them and builds the same steps from the stored orders otherwise (and for the
per-order markers).

Bids are sorted by price, highest first (demand); asks by price, lowest first (supply); ties go to
the earlier order. Each order is one step: from the cumulative energy before it to the one after.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd

STEP_COLUMNS = ["from_kwh", "to_kwh", "price", "peer", "order_id", "quantity_kwh"]


@dataclass(frozen=True)
class Curves:
    demand: pd.DataFrame  # STEP_COLUMNS, bids from the highest price down
    supply: pd.DataFrame  # STEP_COLUMNS, asks from the lowest price up


def _steps(orders: pd.DataFrame, highest_first: bool) -> pd.DataFrame:
    if orders.empty:
        return pd.DataFrame(columns=STEP_COLUMNS)
    ordered = orders.sort_values(
        ["price", "time", "order_id"], ascending=[not highest_first, True, True]
    ).reset_index(drop=True)
    to_kwh = ordered["quantity_kwh"].cumsum()
    return pd.DataFrame(
        {
            "from_kwh": to_kwh - ordered["quantity_kwh"],
            "to_kwh": to_kwh,
            "price": ordered["price"],
            "peer": ordered["peer"],
            "order_id": ordered["order_id"],
            "quantity_kwh": ordered["quantity_kwh"],
        }
    )


def curves(orders: pd.DataFrame) -> Curves:
    """Demand and supply steps from the accepted orders of one interval."""
    accepted = orders[orders["accepted"]] if "accepted" in orders else orders
    return Curves(
        demand=_steps(accepted[accepted["side"] == "buy"], highest_first=True),
        supply=_steps(accepted[accepted["side"] == "sell"], highest_first=False),
    )


@dataclass(frozen=True)
class ReportCurves:
    """The curves a `testbed.market` mechanism put in its clearing report (step points)."""

    demand_kwh: list[float]
    demand_price: list[float]
    supply_kwh: list[float]
    supply_price: list[float]
    price_range: tuple[float, float] | None
    thinned: bool


def from_report(report_json: str | None) -> ReportCurves | None:
    """The mechanism's own curves from `clearings.report_json`, or None if it has none."""
    if not report_json:
        return None
    try:
        curves = json.loads(report_json).get("curves")
        if not curves:
            return None
        price_range = curves.get("competitive_price_range")
        return ReportCurves(
            demand_kwh=[float(x) for x in curves["demand"]["kwh"]],
            demand_price=[float(x) for x in curves["demand"]["price"]],
            supply_kwh=[float(x) for x in curves["supply"]["kwh"]],
            supply_price=[float(x) for x in curves["supply"]["price"]],
            price_range=tuple(price_range) if price_range else None,
            thinned=bool(curves.get("thinned")),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None  # a report of another shape: draw from the stored orders
