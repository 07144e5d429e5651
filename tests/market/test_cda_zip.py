"""The continuous double auction's book and the ZIP traders that drive it."""

from __future__ import annotations

import pytest

from testbed.market import ContinuousDoubleAuction, simulate_zip_market
from tests.market.books import ask, bid

LIMITS = [0.75 + 0.25 * i for i in range(11)]  # Cliff's symmetric market: equilibrium 2.0, 6 units


def test_arriving_bid_lifts_the_cheapest_asks_at_their_prices():
    book = ContinuousDoubleAuction()
    assert book.submit(ask("a0", 1.0, 5.0)) == []
    assert book.submit(ask("a1", 1.0, 4.0)) == []
    trades = book.submit(bid("b0", 1.5, 6.0))
    assert [(t.sell_order_id, t.quantity_kwh, t.price) for t in trades] == [
        ("a1", 1.0, 4.0),
        ("a0", 0.5, 5.0),
    ]
    assert book.remaining_kwh("a0") == pytest.approx(0.5)
    assert book.best_ask == 5.0 and book.best_bid is None


def test_equal_prices_fill_in_arrival_order():
    book = ContinuousDoubleAuction()
    book.submit(bid("early", 1.0, 5.0))
    book.submit(bid("late", 1.0, 5.0))
    trades = book.submit(ask("a0", 1.5, 4.0))
    assert [(t.buy_order_id, t.quantity_kwh, t.price) for t in trades] == [
        ("early", 1.0, 5.0),
        ("late", 0.5, 5.0),
    ]


def test_an_order_that_does_not_cross_rests_and_can_be_cancelled():
    book = ContinuousDoubleAuction()
    book.submit(ask("a0", 1.0, 5.0))
    assert book.submit(bid("b0", 1.0, 4.9)) == []
    assert book.best_bid == 4.9
    assert book.cancel("b0") is True
    assert book.best_bid is None
    assert book.cancel("b0") is False
    assert [order.order_id for order, _ in book.resting()] == ["a0"]


def test_a_resting_order_id_cannot_be_submitted_twice():
    book = ContinuousDoubleAuction()
    book.submit(ask("a0", 1.0, 5.0))
    with pytest.raises(ValueError, match="a0"):
        book.submit(ask("a0", 1.0, 6.0))


def test_zip_traders_learn_the_equilibrium_price():
    """Smith's alpha (RMS distance of trade prices from equilibrium) falls as the traders learn."""
    first, last = [], []
    for seed in range(4):
        sim = simulate_zip_market(LIMITS, LIMITS, rounds=8, seed=seed)
        assert sim.equilibrium_price == pytest.approx(2.0)
        assert sim.equilibrium_volume_kwh == pytest.approx(6.0)
        first.append(sim.rounds[0].smith_alpha_pct)
        last.append(sum(r.smith_alpha_pct for r in sim.rounds[-3:]) / 3)
        assert sim.rounds[-1].efficiency >= 0.9
        for trade in (t for r in sim.rounds for t in r.trades):
            buyer, seller = int(trade.buyer[1:]), int(trade.seller[1:]) - len(LIMITS)
            assert LIMITS[seller] <= trade.price <= LIMITS[buyer]  # never beyond a limit
    assert sum(last) / len(last) < 0.5 * sum(first) / len(first)
    assert max(last) < 5.0


def test_zip_simulation_is_reproducible_with_its_seed():
    one = simulate_zip_market(LIMITS, LIMITS, rounds=3, seed=7)
    two = simulate_zip_market(LIMITS, LIMITS, rounds=3, seed=7)
    other = simulate_zip_market(LIMITS, LIMITS, rounds=3, seed=8)
    assert [r.trades for r in one.rounds] == [r.trades for r in two.rounds]
    assert [r.trades for r in one.rounds] != [r.trades for r in other.rounds]


def test_zip_rejects_limits_it_cannot_use():
    with pytest.raises(ValueError, match="limit prices"):
        simulate_zip_market([1.0, -2.0], [1.0])
    with pytest.raises(ValueError, match="quantity_kwh has 1 entries for 2 traders"):
        simulate_zip_market([1.0], [1.0], quantity_kwh=[1.0])
