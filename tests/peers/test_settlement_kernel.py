"""One settlement kernel: the agents' bill model and the orchestrator's settlement agree."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peers import PlanStep, default_assets, plan_bill
from testbed.config import PricesConfig
from testbed.market.book import Trade
from testbed.settlement import settle_interval

T0 = datetime(2026, 3, 21, 6, 0, tzinfo=UTC)
PEERS = ("A", "B", "C")
PRICES = PricesConfig(
    retail_tariff=8.0, feed_in_tariff=3.0, deviation_penalty=2.0, network_charge=0.5
)

kwh = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
price = st.floats(min_value=3.0, max_value=8.0, allow_nan=False)
trade = st.tuples(
    st.sampled_from(PEERS), st.sampled_from(PEERS), kwh, price, st.none() | price
).filter(lambda t: t[0] != t[1])


def one_step(metered_kwh: float) -> list[PlanStep]:
    return [PlanStep(T0, 0.0, 0.0, 0.0, 0.0, metered_kwh * 4.0)]  # 15 min: kW = 4 x kWh


@settings(max_examples=200, deadline=None)
@given(
    trades=st.lists(trade, max_size=6),
    metered=st.tuples(*(st.floats(-1.0, 1.0, allow_nan=False) for _ in PEERS)),
)
def test_plan_bill_is_the_settlement_of_the_same_trades_and_metering(trades, metered):
    cleared = [
        Trade(f"b{i}", f"s{i}", buyer, seller, q, p, seller_p)
        for i, (buyer, seller, q, p, seller_p) in enumerate(trades)
    ]
    settled = {
        s.peer: s
        for s in settle_interval(T0, cleared, dict(zip(PEERS, metered, strict=True)), PRICES)
    }
    for peer, metered_kwh in zip(PEERS, metered, strict=True):
        bought = sum(t.quantity_kwh for t in cleared if t.buyer == peer)
        sold = sum(t.quantity_kwh for t in cleared if t.seller == peer)
        paid = sum(t.quantity_kwh * t.price for t in cleared if t.buyer == peer)
        received = sum(t.quantity_kwh * t.received_price for t in cleared if t.seller == peer)
        bill = plan_bill(
            one_step(metered_kwh),
            default_assets("C"),
            900.0,
            PRICES.retail_tariff,
            PRICES.feed_in_tariff,
            p2p_bought_kwh=bought,
            p2p_sold_kwh=sold,
            p2p_price=paid / bought if bought else 0.0,
            p2p_seller_price=received / sold if sold else 0.0,
            network_charge=PRICES.network_charge,
            deviation_penalty=PRICES.deviation_penalty,
        )
        s = settled[peer]
        assert bill.total == pytest.approx(s.bill, abs=1e-9)
        assert bill.grid_only_total == pytest.approx(s.bill_grid_only, abs=1e-9)
        assert bill.penalty == pytest.approx(s.penalty, abs=1e-9)
        assert bill.grid_import_kwh == pytest.approx(s.grid_import_kwh, abs=1e-12)
        assert bill.grid_export_kwh == pytest.approx(s.grid_export_kwh, abs=1e-12)
    # money balances: what the peers pay = grid + network + penalties + the operator's surplus
    operator_surplus = sum(t.quantity_kwh * (t.price - t.received_price) for t in cleared)
    outside = sum(
        s.grid_cost - s.grid_revenue + s.network_charge + s.penalty for s in settled.values()
    )
    assert sum(s.bill for s in settled.values()) == pytest.approx(
        outside + operator_surplus, abs=1e-9
    )


def test_the_seller_is_paid_its_own_price_in_the_bill_model_too():
    """A mechanism that is not budget balanced: the buyer pays 6, the seller receives 5."""
    bill = plan_bill(
        one_step(0.25) * 2,
        default_assets("A"),
        900.0,
        8.0,
        3.0,
        p2p_sold_kwh=[0.25, 0.0],
        p2p_price=6.0,
        p2p_seller_price=5.0,
    )
    settled = settle_interval(
        T0, [Trade("b", "s", "C", "A", 0.25, 6.0, 5.0)], {"A": 0.25, "C": -0.25}, PRICES
    )
    assert bill.p2p_revenue == pytest.approx(1.25)
    # second step: 0.25 kWh exported to the grid at feed-in
    assert bill.total == pytest.approx(settled[0].bill - 0.25 * 3.0)


def test_steps_are_settled_one_by_one():
    """A surplus in one step does not cover a shortfall in another (each step is an interval)."""
    steps = [
        PlanStep(T0 + timedelta(minutes=15 * k), 0.0, 0.0, 0.0, 0.0, n)
        for k, n in enumerate([4.0, -4.0])
    ]
    bill = plan_bill(steps, default_assets("C"), 900.0, 8.0, 3.0)
    assert bill.total == pytest.approx(8.0 - 3.0)
