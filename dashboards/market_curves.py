"""Supply and demand curves of one interval's order book (the seed's Fig. 8), from stored orders.

Bids are sorted by price, highest first (demand); asks by price, lowest first (supply); ties go to
the earlier order. Each order is one step: from the cumulative energy before it to the one after.
"""

from __future__ import annotations

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


def crossing_kwh(book: Curves) -> float:
    """The energy where demand still pays at least the supply's price (the curves' crossing)."""
    volume = 0.0
    demand = list(book.demand.itertuples())
    supply = list(book.supply.itertuples())
    i = j = 0
    bid_left = demand[0].quantity_kwh if demand else 0.0
    ask_left = supply[0].quantity_kwh if supply else 0.0
    while i < len(demand) and j < len(supply) and demand[i].price >= supply[j].price:
        step = min(bid_left, ask_left)
        volume += step
        bid_left -= step
        ask_left -= step
        if bid_left <= 1e-12:
            i += 1
            bid_left = demand[i].quantity_kwh if i < len(demand) else 0.0
        if ask_left <= 1e-12:
            j += 1
            ask_left = supply[j].quantity_kwh if j < len(supply) else 0.0
    return volume
