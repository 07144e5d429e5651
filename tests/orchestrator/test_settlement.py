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


def test_local_balancing_settles_deviations_among_peers_before_the_grid():
    """A delivers 0.2 kWh beyond its trade, C draws 0.3 kWh beyond it: 0.2 kWh stay local."""
    trades = [Trade("b1", "s1", "C", "A", 0.25, 5.0)]
    metered = {"A": 0.45, "B": 0.0, "C": -0.55}
    plain = by_peer(settle_interval(T0, trades, metered, PRICES))
    local = by_peer(
        settle_interval(T0, trades, metered, PRICES, balancing="local", clearing_price=5.0)
    )
    seller, buyer = local["A"], local["C"]
    assert seller.balancing_sold_kwh == pytest.approx(0.2)
    assert buyer.balancing_bought_kwh == pytest.approx(0.2)
    assert seller.grid_export_kwh == pytest.approx(0.0)
    assert buyer.grid_import_kwh == pytest.approx(0.1)
    # the long side gets halfway between the clearing price and feed-in, the short side pays
    # halfway between it and retail plus the network charge: both better than the grid, both
    # worse than having traded ahead at the clearing price
    assert seller.balancing_received == pytest.approx(0.2 * 4.0)
    assert buyer.balancing_paid == pytest.approx(0.2 * 6.5)
    assert seller.bill == pytest.approx(plain["A"].bill - 0.2 * (4.0 - 3.0))
    assert buyer.bill == pytest.approx(plain["C"].bill - 0.2 * (8.0 - 6.5 - 0.5))
    assert 3.0 < 4.0 < 5.0 and 5.0 + 0.5 < 6.5 + 0.5 < 8.0
    assert local["B"].bill == pytest.approx(0.0)
    # money balances to the paisa: the spread is the market operator's
    spread = buyer.balancing_paid - seller.balancing_received
    outside = sum(
        s.grid_cost - s.grid_revenue + s.network_charge + s.penalty for s in local.values()
    )
    paid = sum(s.p2p_paid - s.p2p_received for s in local.values())
    assert sum(s.bill for s in local.values()) == pytest.approx(outside + paid + spread)


@given(
    metered=st.lists(st.floats(-1.0, 1.0, allow_nan=False), min_size=3, max_size=3),
    price=st.none() | st.floats(3.0, 8.0, allow_nan=False),
)
def test_local_balancing_never_leaves_a_peer_worse_off_than_without_it(metered, price):
    trades = [Trade("b1", "s1", "C", "A", 0.1, 5.0)]
    readings = dict(zip(("A", "B", "C"), metered, strict=True))
    plain = by_peer(settle_interval(T0, trades, readings, PRICES))
    local = by_peer(
        settle_interval(T0, trades, readings, PRICES, balancing="local", clearing_price=price)
    )
    for peer in readings:
        assert local[peer].bill <= plain[peer].bill + 1e-9
    long_total = sum(s.balancing_sold_kwh for s in local.values())
    short_total = sum(s.balancing_bought_kwh for s in local.values())
    assert long_total == pytest.approx(short_total)
