"""Quantities at the documented resolution (1e-9 kWh) are resolved, in every mechanism.

The book: s1 sells 1e-9 kWh at 0, s2 sells 1e-9 kWh at 1000, b1 buys 2e-9 kWh at 1. Only s1's
slice is worth trading (b1 values energy at 1, s2 asks 1000): no mechanism may sell s2's slice,
and no price may leave [0, 1] for the trade that happens.
"""

from __future__ import annotations

import pytest

from testbed.market import get_mechanism, mechanism_names
from testbed.market.matching import merge_cumulative
from tests.market.books import ask, bid

BOOK = [ask("s1", 1e-9, 0.0, time=0), ask("s2", 1e-9, 1000.0, time=1), bid("b1", 2e-9, 1.0, time=2)]


def test_a_breakpoint_exactly_one_resolution_step_away_is_its_own_segment():
    segments = merge_cumulative([2e-9], [1e-9, 2e-9])
    assert segments.ask.tolist() == [0, 1]
    assert segments.quantity_kwh.tolist() == pytest.approx([1e-9, 1e-9], abs=1e-18)


@pytest.mark.parametrize("name", mechanism_names())
def test_no_mechanism_sells_the_slice_priced_above_the_buyer(name):
    result = get_mechanism(name).clear(BOOK)
    assert all(trade.seller == "s1" for trade in result.trades), result.trades
    assert result.volume_kwh <= 1e-9 * (1 + 1e-9)
    for trade, seller_price in zip(result.trades, result.seller_prices, strict=True):
        assert 0.0 <= trade.price <= 1.0  # the buyer never pays above its limit
        assert 0.0 <= seller_price <= 1.0  # the seller never receives below its limit


@pytest.mark.parametrize(
    ("name", "volume_kwh", "buyer_price", "seller_price"),
    [
        ("uniform", 1e-9, 1.0, 1.0),  # competitive range [max(0, next bid 1), min(1, 1000)]
        ("pay_as_bid", 1e-9, 0.5, 0.5),  # midpoint of bid 1 and ask 0
        ("cda", 1e-9, 0.0, 0.0),  # b1 arrives last and trades at the resting ask's price
        ("vcg", 1e-9, 0.0, 1.0),  # Clarke pivot: b1 pays s1's cost, s1 gets b1's value
        ("mcafee", 0.0, None, None),  # p0 = (1 + 1000) / 2 is outside [0, 1]: the pair is dropped
        ("huang", 0.0, None, None),  # the marginal bid and ask are excluded
    ],
)
def test_auctions_clear_the_resolution_book_as_worked_by_hand(
    name, volume_kwh, buyer_price, seller_price
):
    result = get_mechanism(name).clear(BOOK)
    assert result.volume_kwh == pytest.approx(volume_kwh, abs=1e-18)
    if buyer_price is not None:
        assert [t.price for t in result.trades] == pytest.approx([buyer_price])
        assert result.seller_prices == pytest.approx([seller_price])


@pytest.mark.parametrize("name", mechanism_names())
def test_orders_below_the_resolution_are_rejected_not_merged_into_a_neighbour(name):
    # ten asks of 3e-10 kWh: their breakpoints are closer than the tolerance, so the crossing
    # would merge them into one 3e-9 kWh piece and sell it all as the last ask's
    book = [ask(f"a{i}", 3e-10, 0.0, time=i) for i in range(10)] + [bid("b0", 1.0, 1.0)]
    result = get_mechanism(name).clear(book)
    assert result.trades == []
    reasons = {item["order_id"]: item["reason"] for item in result.report["rejected"]}
    assert reasons["a9"] == "quantity_kwh 3e-10 is below the market's resolution of 1e-09 kWh"
    assert len(reasons) == 10
