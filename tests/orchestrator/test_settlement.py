"""Settlement: money balances and deviations are charged as documented."""

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from testbed.config import PricesConfig
from testbed.market.book import Trade
from testbed.settlement import settle_interval

T0 = datetime(2026, 3, 21, 6, 0, tzinfo=UTC)
PRICES = PricesConfig(
    retail_tariff=8.0, feed_in_tariff=3.0, deviation_penalty=2.0, network_charge=0.5
)


def by_peer(settlements):
    return {s.peer: s for s in settlements}


def test_delivered_trade_is_paid_at_the_trade_price_and_buyer_pays_network_charge():
    trades = [Trade("b1", "s1", "C", "A", 0.25, 5.0)]
    result = by_peer(settle_interval(T0, trades, {"A": 0.25, "C": -0.25}, PRICES))
    assert result["A"].bill == pytest.approx(-1.25)
    assert result["C"].bill == pytest.approx(1.25 + 0.125)
    assert result["A"].deviation_kwh == pytest.approx(0.0)
    assert result["A"].bill_grid_only == pytest.approx(-0.75)
    assert result["C"].bill_grid_only == pytest.approx(2.0)


def test_a_trade_with_its_own_network_charge_pays_that_charge_instead_of_the_flat_one():
    near = Trade("b1", "s1", "C", "B", 0.25, 5.0, network_charge=0.2)
    far = Trade("b2", "s2", "C", "A", 0.5, 5.0, network_charge=0.9)
    flat = Trade("b3", "s3", "B", "A", 0.1, 5.0)  # no charge of its own: the flat 0.5
    result = by_peer(
        settle_interval(T0, [near, far, flat], {"A": 0.6, "B": 0.15, "C": -0.75}, PRICES)
    )
    assert result["C"].network_charge == pytest.approx(0.25 * 0.2 + 0.5 * 0.9)
    assert result["B"].network_charge == pytest.approx(0.1 * 0.5)
    assert result["A"].network_charge == 0.0
    assert result["C"].bill == pytest.approx(0.75 * 5.0 + 0.05 + 0.45)


def test_seller_shortfall_is_bought_at_retail_plus_penalty():
    trades = [Trade("b1", "s1", "C", "A", 0.25, 5.0)]
    result = by_peer(settle_interval(T0, trades, {"A": 0.05, "C": -0.25}, PRICES))
    seller = result["A"]
    assert seller.grid_import_kwh == pytest.approx(0.20)
    assert seller.penalty == pytest.approx(0.20 * 2.0)
    assert seller.bill == pytest.approx(-1.25 + 0.20 * 8.0 + 0.40)


def test_buyer_over_consumption_is_retail_without_penalty_and_surplus_is_feed_in():
    trades = [Trade("b1", "s1", "C", "A", 0.25, 5.0)]
    result = by_peer(settle_interval(T0, trades, {"A": 0.35, "C": -0.40}, PRICES))
    assert result["C"].penalty == 0
    assert result["C"].grid_cost == pytest.approx(0.15 * 8.0)
    assert result["A"].grid_revenue == pytest.approx(0.10 * 3.0)


def test_no_trade_bill_equals_grid_only():
    result = by_peer(settle_interval(T0, [], {"A": 0.3, "B": -0.2}, PRICES))
    for s in result.values():
        assert s.bill == pytest.approx(s.bill_grid_only)


@given(
    st.lists(
        st.tuples(
            st.sampled_from("ABC"),
            st.sampled_from("ABC"),
            st.floats(0.001, 2.0),
            st.floats(3.0, 8.0),
        ),
        max_size=8,
    ),
    st.lists(st.floats(-2.0, 2.0), min_size=3, max_size=3),
)
def test_buyers_pay_what_sellers_receive_plus_network_charges(raw_trades, metered):
    trades = [Trade(f"b{i}", f"s{i}", b, s, q, p) for i, (b, s, q, p) in enumerate(raw_trades)]
    result = settle_interval(T0, trades, dict(zip("ABC", metered, strict=True)), PRICES)
    paid = sum(s.p2p_paid for s in result)
    received = sum(s.p2p_received for s in result)
    charges = sum(s.network_charge for s in result)
    assert paid == pytest.approx(received, abs=1e-9)
    assert charges == pytest.approx(0.5 * sum(t.quantity_kwh for t in trades), abs=1e-9)
