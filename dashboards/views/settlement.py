"""Settlement: bills against the grid-only baseline, deviations, penalties, money flows."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboards import aggregate, charts, data, peer_focus
from dashboards.flows import (
    money_flows,
    payment_matrix,
    per_peer_totals,
    plan_against_delivery,
)

TABLE_COLUMNS = [
    "peer",
    "p2p_bought_kwh",
    "p2p_sold_kwh",
    "p2p_paid",
    "p2p_received",
    "grid_import_kwh",
    "grid_export_kwh",
    "grid_cost",
    "grid_revenue",
    "deviation_kwh",
    "penalty",
    "network_charge",
    "bill",
    "bill_grid_only",
    "saving",
]


def _draw(run: data.Run) -> None:
    data.status_banner(run)
    settlements = data.table(run, "settlements")
    if settlements.empty:
        st.info("No interval has been settled yet.")
        return
    currency = run.currency
    trades = data.table(run, "trades")
    totals = per_peer_totals(settlements)
    st.caption(
        f"{settlements['interval_start'].nunique()} settled intervals; money in {currency}, "
        "a negative bill means the peer earned money."
    )

    all_peers = sorted(totals["peer"])
    chosen = None
    if peer_focus.is_many(all_peers):
        chosen = peer_focus.pick_peer(all_peers, "settlement_peer")
    cards = totals
    if chosen is not None:
        community = totals[["bill", "bill_grid_only", "saving"]].sum().to_frame().T
        community.insert(0, "peer", f"the community ({len(all_peers)} peers)")
        cards = pd.concat([community, totals[totals["peer"] == chosen]], ignore_index=True)
    for column, row in zip(st.columns(len(cards)), cards.itertuples(), strict=True):
        column.metric(
            f"Bill of {row.peer}",
            f"{row.bill:.2f} {currency}",
            f"{row.saving:+.2f} {currency} vs grid only ({row.bill_grid_only:.2f})",
            help="bill with the P2P market; the delta is the saving against the grid-only bill",
        )

    st.subheader("Bill against the grid-only baseline")
    bills = totals
    if aggregate.is_large(all_peers):
        named = aggregate.top_peers(totals.set_index("peer")["bill"])
        bills = aggregate.grouped_rows(
            totals, aggregate.grouping(all_peers, named), ["bill", "bill_grid_only"]
        )
        st.caption(
            f"The {len(named)} largest bills by peer, the other peers summed; the table below "
            "has every peer."
        )
    st.plotly_chart(charts.bills_figure(bills, currency), key="bills")
    st.dataframe(totals[TABLE_COLUMNS], hide_index=True, key="peer_totals")

    _wallets(run, totals, chosen)

    st.subheader("Deviations, penalties and network charges per interval")
    st.plotly_chart(charts.settlement_timeline_figure(settlements, currency), key="timeline")

    st.subheader("Plan against delivery")
    plans = data.table(run, "agent_plans", first_step_only=True)
    compared = plan_against_delivery(plans, settlements, run.interval_s)
    if compared.empty:
        st.info("This run recorded no agent plans (runs written before plans were recorded).")
    else:
        st.caption(
            "Per interval, what each agent forecast (PV minus load) and planned at its PCC for the "
            "interval it traded, the P2P position it contracted, and the energy metered."
        )
        if chosen is not None:
            compared = peer_focus.with_community_total(
                compared,
                chosen,
                ["interval_start"],
                ["forecast_kwh", "planned_kwh", "contracted_kwh", "metered_kwh"],
            )
            st.caption(f"The community (every peer summed) and peer {chosen}.")
        st.plotly_chart(charts.plan_delivery_figure(compared), key="plan_delivery")

    st.subheader("Against the perfect-foresight optimum")
    _draw_value(run, currency)

    st.subheader("Money flows")
    flows = money_flows(trades, settlements)
    money, energy = payment_matrix(trades, all_peers)
    shown_flows = flows
    if aggregate.is_large(all_peers):
        outgoing = flows.groupby("payer")["amount"].sum()
        incoming = flows.groupby("payee")["amount"].sum()
        moved = outgoing.add(incoming, fill_value=0.0).reindex(all_peers, fill_value=0.0)
        groups = aggregate.grouping(all_peers, aggregate.top_peers(moved))
        shown_flows = aggregate.grouped_flows(flows, groups)
        money = aggregate.grouped_matrix(money, groups)
        energy = aggregate.grouped_matrix(energy, groups)
        st.caption(
            f"{len(all_peers)} peers: the {aggregate.named_count()} that moved the most money are "
            "named, the others are summed into one group (totals unchanged; the table of flows "
            "below has every peer)."
        )
    left, right = st.columns([3, 2])
    with left:
        st.plotly_chart(charts.money_sankey(shown_flows, currency), key="sankey")
    with right:
        st.plotly_chart(charts.payment_matrix_figure(money, energy, currency), key="payment_matrix")
    with st.expander("Flows as a table"):
        st.dataframe(flows, hide_index=True, key="flows")


def _wallets(run: data.Run, totals: pd.DataFrame, chosen: str | None = None) -> None:
    """The wallets replayed from the ledger, and whether the ledger verifies (with a `chosen`
    peer: cards for it and for the wallets that are not peers; the table has every wallet)."""
    st.subheader("Wallets and ledger")
    ledger = data.ledger(run)
    if ledger is None:
        st.info(
            "This run has no ledger (written before ledgers, or with `[ledger] enabled = false`)."
        )
        return
    if ledger["ok"]:
        st.success(ledger["text"], icon="✅")
    else:
        st.error(ledger["text"], icon="🚨")
    if ledger["chain"]:
        st.caption(ledger["chain"])
    wallets = ledger["wallets"]
    if wallets.empty:
        return
    bills = totals.set_index("peer")["bill"]
    wallets = wallets.assign(
        settlement_total=[-bills[w] if w in bills.index else None for w in wallets["wallet"]]
    )
    carded = wallets
    if chosen is not None:
        carded = wallets[(wallets["wallet"] == chosen) | ~wallets["wallet"].isin(bills.index)]
    for column, row in zip(st.columns(max(1, len(carded))), carded.itertuples(), strict=False):
        column.metric(
            f"Wallet of {row.wallet}",
            f"{row.balance:,.2f} {run.currency}",
            f"{row.settled:+,.2f} settled" + (f", owes {row.debt:,.2f}" if row.debt else ""),
            help="balance replayed from the ledger; the delta is what settlement moved",
        )
    st.caption(
        "`settled` = balance - debt - minted + redeemed: for a peer it equals minus its bills "
        "(`settlement_total`) to the paisa."
    )
    st.dataframe(wallets, hide_index=True, key="wallets")


def _draw_value(run: data.Run, currency: str) -> None:
    """The yardstick (`testbed value`): baseline, optimum and run bills, and both schedules."""
    if run.status != "finished":
        st.info(f"The optimum needs a finished run; this run is {run.status}.")
        return
    result = data.value(run)
    if isinstance(result, str):
        st.warning(f"No value figure: {result}")
        return
    report, schedules = result
    captured = report["captured_pct"]
    cols = st.columns(4)
    cols[0].metric("Baseline (no market)", f"{report['baseline_bill']:.2f} {currency}")
    cols[1].metric("Perfect-foresight optimum", f"{report['optimum_bill']:.2f} {currency}")
    cols[2].metric("This run", f"{report['actual_bill']:.2f} {currency}")
    cols[3].metric("Value captured", "n/a" if captured is None else f"{captured:.1f} %")
    st.caption(
        "Community bills net of the value of the energy left in storage; value captured = "
        "(baseline - run) / (baseline - optimum). The optimum's schedule beside the run's, per "
        "interval: PCC energy, storage energy (+ = discharge) and the optimum's P2P position."
    )
    st.plotly_chart(charts.optimum_figure(schedules), key="optimum")


def render() -> None:
    st.title("Settlement")
    with data.page_guard():
        run = data.current_run(data.settings())
        if run is not None:
            _draw(run)


render()
