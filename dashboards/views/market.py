"""Market: each interval's order book as supply and demand curves, prices and volumes, trades."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import streamlit as st

from dashboards import aggregate, charts, data
from dashboards.market_curves import curves, from_report
from dashboards.trade_network import feeder_figure, trade_matrix, trade_matrix_figure


def _label(moment: pd.Timestamp) -> str:
    return moment.strftime("%Y-%m-%d %H:%M %Z")


def _report(report_json: str | None) -> dict[str, Any]:
    try:
        report = json.loads(report_json) if report_json else {}
    except ValueError:
        return {}
    return report if isinstance(report, dict) else {}


def _who_with_whom(
    report: dict[str, Any], trades: pd.DataFrame, currency: str, peers: list[str]
) -> None:
    """The interval's trades as a buyer x seller matrix and, with a feeder, on the feeder."""
    st.subheader("Who traded with whom")
    solver = [
        f"{label} {report[key]:.6g}"
        for key, label in (
            ("welfare", "welfare"),
            ("iterations", "iterations"),
            ("primal_residual", "primal residual (kWh)"),
            ("dual_residual", "dual residual"),
        )
        if isinstance(report.get(key), int | float)
    ]
    if solver:
        st.caption("Solver: " + ", ".join(solver) + ".")
    if report.get("fallback"):
        st.warning(f"This interval fell back to the grid: {report['fallback']}")
    if trades.empty:
        st.caption("No trades in this interval.")
        return
    kwh, money = trade_matrix(trades)
    if aggregate.is_large(peers):
        traded = kwh.sum(axis=0).add(kwh.sum(axis=1), fill_value=0.0)
        groups = aggregate.grouping(kwh.index, aggregate.top_peers(traded))
        kwh = aggregate.grouped_matrix(kwh, groups)
        money = aggregate.grouped_matrix(money, groups)
        st.caption(
            f"The {aggregate.named_count()} peers that traded the most energy in this interval "
            "are named, the other traders are summed into one group (totals unchanged; the "
            "table of trades below has every trade)."
        )
    network = report.get("network")
    left, right = st.columns(2) if network else (st.container(), None)
    with left:
        st.plotly_chart(trade_matrix_figure(kwh, money, currency), key="trade_matrix")
    if network and right is not None:
        with right:
            st.plotly_chart(feeder_figure(network, trades), key="feeder_picture")
            check = network.get("check", {})
            st.caption(
                f"Feeder after this interval's trades (AC power flow): voltages "
                f"{check.get('min_voltage_pu', float('nan')):.4f}-"
                f"{check.get('max_voltage_pu', float('nan')):.4f} pu of nominal, band "
                f"+-{network.get('voltage_band_pct')} %; highest line loading "
                f"{check.get('max_loading_pct', float('nan')):.1f} %."
            )


def _draw(run: data.Run) -> None:
    data.status_banner(run)
    clearings = data.table(run, "clearings")
    if clearings.empty:
        st.info("No interval has been cleared yet.")
        return
    currency = run.currency
    orders = data.table(run, "orders")
    trades = data.table(run, "trades")

    priced = clearings.dropna(subset=["clearing_price"])
    priced = priced[priced["volume_kwh"] > 0]
    mean_price = priced["clearing_price"].mean() if len(priced) else None
    cols = st.columns(4)
    cols[0].metric("Intervals cleared", f"{len(clearings)}")
    cols[1].metric("Traded energy", f"{clearings['volume_kwh'].sum():.3f} kWh")
    cols[2].metric(
        "Mean clearing price",
        "—" if mean_price is None else f"{mean_price:.2f} {currency}/kWh",
    )
    cols[3].metric("Trades", f"{len(trades)}")

    starts = list(clearings["interval_start"])
    labels = [_label(s) for s in starts]
    traded = clearings.loc[clearings["volume_kwh"] > 0, "interval_start"]
    default = _label(traded.iloc[-1] if len(traded) else starts[-1])
    chosen = st.select_slider("Interval", options=labels, value=default, key="market_interval")
    start = starts[labels.index(chosen)]
    clearing = clearings[clearings["interval_start"] == start].iloc[0]
    price = None if pd.isna(clearing["clearing_price"]) else float(clearing["clearing_price"])
    interval_orders = orders[orders["interval_start"] == start]
    interval_trades = trades[trades["interval_start"] == start]

    st.subheader(f"Order book of the interval from {chosen}")
    cols = st.columns(4)
    cols[0].metric("Clearing price", "—" if price is None else f"{price:.2f} {currency}/kWh")
    cols[1].metric("Cleared volume", f"{clearing['volume_kwh']:.3f} kWh")
    accepted = interval_orders[interval_orders["accepted"]]
    cols[2].metric(
        "Bids / asks",
        f"{(accepted['side'] == 'buy').sum()} / {(accepted['side'] == 'sell').sum()}",
    )
    cols[3].metric("Rejected orders", f"{(~interval_orders['accepted']).sum()}")
    book = curves(interval_orders)
    peers = sorted(orders["peer"].dropna().unique())
    groups = None
    if aggregate.is_large(peers):
        offered = interval_orders.groupby("peer")["quantity_kwh"].sum()
        groups = aggregate.grouping(offered.index, aggregate.top_peers(offered))
    st.plotly_chart(
        charts.supply_demand_figure(
            book,
            price,
            float(clearing["volume_kwh"]),
            currency,
            from_report(clearing["report_json"]),
            groups,
        ),
        key="supply_demand",
    )
    source = "the mechanism's report" if from_report(clearing["report_json"]) else "stored orders"
    st.caption(
        f"Mechanism: {clearing['mechanism']}; curves from {source}. Bids sorted from the highest "
        "price down (demand), "
        "asks from the lowest price up (supply); each marker is one order, in its peer's colour"
        + (
            f" (the {aggregate.named_count()} peers offering the most energy in this interval; "
            "the other peers' orders in grey)."
            if groups
            else "."
        )
    )

    _who_with_whom(_report(clearing["report_json"]), interval_trades, currency, peers)

    st.subheader("Clearing price and volume over the run")
    st.plotly_chart(
        charts.clearing_history_figure(clearings, currency, start), key="clearing_history"
    )

    left, right = st.columns(2)
    with left:
        st.subheader("Trades in this interval")
        if interval_trades.empty:
            st.caption("No trades in this interval.")
        else:
            shown = interval_trades.drop(columns=["interval_start"]).assign(
                amount=interval_trades["quantity_kwh"] * interval_trades["price"]
            )
            st.dataframe(shown, hide_index=True, key="interval_trades")
    with right:
        st.subheader("Orders in this interval")
        st.dataframe(
            interval_orders.drop(columns=["interval_start"]), hide_index=True, key="interval_orders"
        )
    with st.expander(f"All {len(trades)} trades of the run"):
        st.dataframe(trades, hide_index=True, key="all_trades")


def render() -> None:
    st.title("Market")
    with data.page_guard():
        run = data.current_run(data.settings())
        if run is not None:
            _draw(run)


render()
