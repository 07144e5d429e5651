"""Money and energy flows of a run, from its stored trades and settlements.

Each peer's outgoing minus incoming money equals its bill (see `testbed.settlement`): P2P payments
to sellers, network charges to the network operator, grid purchases and penalties out; P2P receipts
and grid feed-in revenue in.
"""

from __future__ import annotations

import pandas as pd

GRID = "Grid retailer"
OPERATOR = "Market operator"
NETWORK = "Network operator"
PENALTIES = "Penalties"

FLOW_COLUMNS = ["payer", "payee", "amount", "kind"]


def money_flows(trades: pd.DataFrame, settlements: pd.DataFrame) -> pd.DataFrame:
    """Rows of (payer, payee, amount, kind), summed over the run."""
    rows: list[dict[str, object]] = []
    if not trades.empty:
        received_price = trades["price"]
        if "seller_price" in trades:
            received_price = trades["seller_price"].fillna(trades["price"])
        quantity = trades["quantity_kwh"]
        direct = (quantity * received_price.clip(upper=trades["price"])).groupby(
            [trades["buyer"], trades["seller"]]
        )
        for (buyer, seller), amount in direct.sum().items():
            rows.append({"payer": buyer, "payee": seller, "amount": amount, "kind": "P2P energy"})
        # Mechanisms that are not budget balanced: the operator keeps what buyers pay above the
        # sellers' price, and pays sellers what they get above the buyers' price.
        margin = quantity * (trades["price"] - received_price)
        for buyer, amount in margin.clip(lower=0).groupby(trades["buyer"]).sum().items():
            rows.append({"payer": buyer, "payee": OPERATOR, "amount": amount, "kind": "margin"})
        for seller, amount in (-margin).clip(lower=0).groupby(trades["seller"]).sum().items():
            rows.append({"payer": OPERATOR, "payee": seller, "amount": amount, "kind": "deficit"})
    if not settlements.empty:
        totals = settlements.groupby("peer")[
            ["network_charge", "grid_cost", "grid_revenue", "penalty"]
        ].sum()
        for peer, row in totals.iterrows():
            rows += [
                {
                    "payer": peer,
                    "payee": NETWORK,
                    "amount": row.network_charge,
                    "kind": "network charge",
                },
                {"payer": peer, "payee": GRID, "amount": row.grid_cost, "kind": "grid import"},
                {"payer": GRID, "payee": peer, "amount": row.grid_revenue, "kind": "grid feed-in"},
                {
                    "payer": peer,
                    "payee": PENALTIES,
                    "amount": row.penalty,
                    "kind": "deviation penalty",
                },
            ]
    frame = pd.DataFrame(rows, columns=FLOW_COLUMNS)
    frame["amount"] = frame["amount"].astype(float)
    return frame[frame["amount"] > 0].reset_index(drop=True)


def payment_matrix(trades: pd.DataFrame, peers: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Money paid and kWh bought, buyer (rows) by seller (columns), for every pair of peers."""
    money = pd.DataFrame(0.0, index=peers, columns=peers)
    energy = pd.DataFrame(0.0, index=peers, columns=peers)
    for trade in trades.itertuples():
        if trade.buyer in money.index and trade.seller in money.columns:
            money.loc[trade.buyer, trade.seller] += trade.quantity_kwh * trade.price
            energy.loc[trade.buyer, trade.seller] += trade.quantity_kwh
    money.index.name = energy.index.name = "buyer"
    money.columns.name = energy.columns.name = "seller"
    return money, energy


def per_peer_totals(settlements: pd.DataFrame) -> pd.DataFrame:
    """One row per peer: the settlement columns summed over the run, plus `saving`."""
    numeric = settlements.drop(columns=["interval_start"]).groupby("peer", sort=True).sum()
    numeric["saving"] = numeric["bill_grid_only"] - numeric["bill"]
    return numeric.reset_index()


def contracted_by_interval(
    trades: pd.DataFrame, clearings: pd.DataFrame, peers: list[str], interval_s: float
) -> pd.DataFrame:
    """Each peer's contracted position per cleared interval (+ = sold), in kWh and mean kW."""
    columns = ["interval_start", "interval_end", "peer", "contracted_kwh", "contracted_kw"]
    if clearings.empty:
        return pd.DataFrame(columns=columns)
    starts = clearings["interval_start"].drop_duplicates().sort_values()
    sold = trades.groupby(["interval_start", "seller"])["quantity_kwh"].sum()
    bought = trades.groupby(["interval_start", "buyer"])["quantity_kwh"].sum()
    rows = []
    for start in starts:
        for peer in peers:
            kwh = float(sold.get((start, peer), 0.0)) - float(bought.get((start, peer), 0.0))
            rows.append(
                {
                    "interval_start": start,
                    "interval_end": start + pd.Timedelta(seconds=interval_s),
                    "peer": peer,
                    "contracted_kwh": kwh,
                    "contracted_kw": kwh * 3600.0 / interval_s,
                }
            )
    return pd.DataFrame(rows, columns=columns)


def plan_against_delivery(
    plans: pd.DataFrame, settlements: pd.DataFrame, interval_s: float
) -> pd.DataFrame:
    """Per interval and peer, in kWh (+ = toward the grid): what the agent forecast (PV - load)
    and planned at the PCC for the interval it traded, what it contracted, what was metered."""
    columns = ["interval_start", "peer", "forecast_kwh", "planned_kwh", "contracted_kwh"]
    if plans.empty or settlements.empty:
        return pd.DataFrame(columns=[*columns, "metered_kwh"])
    hours = interval_s / 3600.0
    first = plans[plans["step"] == 0]
    frame = pd.DataFrame(
        {
            "interval_start": first["interval_start"],
            "peer": first["peer"],
            "forecast_kwh": (first["forecast_pv_kw"] - first["forecast_load_kw"]) * hours,
            "planned_kwh": first["net_kw"] * hours,
        }
    )
    delivered = settlements[["interval_start", "peer", "contracted_kwh", "metered_kwh"]]
    return frame.merge(delivered, on=["interval_start", "peer"], how="inner").reset_index(drop=True)
