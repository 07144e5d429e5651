"""Books small enough to clear by hand, with the answers worked out in the comments."""

from __future__ import annotations

import pytest

from testbed.market import get_mechanism
from tests.market.books import ask, bid, unit_book

CALL_AUCTIONS = ["uniform", "pay_as_bid", "mcafee", "huang", "vcg"]
ALL = [*CALL_AUCTIONS, "cda"]

# Textbook book, one kWh each. Bids 10 9 8 7 6, asks 3 4 5 8.5 11: three pairs cross (8 >= 5,
# 7 < 8.5). Competitive interval at 3 kWh: [max(ask 5, next bid 7), min(bid 8, next ask 8.5)].
TEXTBOOK = unit_book([10, 9, 8, 7, 6], [3, 4, 5, 8.5, 11])


@pytest.mark.parametrize("name", ALL)
def test_empty_book_clears_to_nothing(name):
    result = get_mechanism(name).clear([])
    assert result.trades == []
    assert result.volume_kwh == 0
    assert result.clearing_price is None
    assert result.report["rejected"] == []


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize(
    "book",
    [
        [bid("b0", 2.0, 9.0), bid("b1", 1.0, 7.0)],  # buyers only
        [ask("a0", 2.0, 3.0)],  # a single ask
        [bid("b0", 1.0, 4.0)],  # a single bid
        [bid("b0", 1.0, 4.0), ask("a0", 1.0, 4.5)],  # bid below ask
    ],
    ids=["bids_only", "single_ask", "single_bid", "no_crossing"],
)
def test_books_that_cannot_trade(name, book):
    result = get_mechanism(name).clear(book)
    assert result.trades == []
    assert result.clearing_price is None
    assert result.report["unmatched_demand_kwh"] == pytest.approx(
        sum(o.quantity_kwh for o in book if o.side == "buy")
    )


@pytest.mark.parametrize(("k", "price"), [(0.0, 7.0), (0.5, 7.5), (1.0, 8.0)])
def test_uniform_textbook_price_moves_with_k_across_the_competitive_interval(k, price):
    result = get_mechanism("uniform", k=k).clear(TEXTBOOK)
    assert result.volume_kwh == pytest.approx(3.0)
    assert result.clearing_price == pytest.approx(price)
    assert {t.buy_order_id for t in result.trades} == {"b0", "b1", "b2"}
    assert {t.sell_order_id for t in result.trades} == {"a0", "a1", "a2"}
    assert all(t.price == pytest.approx(price) for t in result.trades)
    assert result.report["operator_surplus"] == pytest.approx(0.0)
    assert result.report["competitive_price_range"] == pytest.approx([7.0, 8.0])


def test_pay_as_bid_pairs_best_with_best_at_the_pair_midpoint():
    result = get_mechanism("pay_as_bid").clear(TEXTBOOK)
    pairs = {(t.buy_order_id, t.sell_order_id): t.price for t in result.trades}
    # (10 + 3) / 2, (9 + 4) / 2, (8 + 5) / 2
    assert pairs == {("b0", "a0"): 6.5, ("b1", "a1"): 6.5, ("b2", "a2"): 6.5}
    at_bid = get_mechanism("pay_as_bid", k=1.0).clear(TEXTBOOK)
    assert sorted(t.price for t in at_bid.trades) == [8.0, 9.0, 10.0]


def test_mcafee_textbook_all_three_pairs_trade_at_the_candidate_price():
    result = get_mechanism("mcafee").clear(TEXTBOOK)
    # p0 = (b4 + s4) / 2 = (7 + 8.5) / 2 = 7.75 lies in [s3, b3] = [5, 8]
    assert result.report["case"] == "all_trade"
    assert result.volume_kwh == pytest.approx(3.0)
    assert result.clearing_price == pytest.approx(7.75)
    assert result.report["operator_surplus"] == pytest.approx(0.0)


def test_mcafee_reduces_the_last_pair_when_the_candidate_price_falls_outside():
    # Bids 10 9 6 2, asks 1 2 5 12: three pairs cross; p0 = (2 + 12) / 2 = 7 > b3 = 6.
    result = get_mechanism("mcafee").clear(unit_book([10, 9, 6, 2], [1, 2, 5, 12]))
    assert result.report["case"] == "trade_reduction"
    assert result.volume_kwh == pytest.approx(2.0)
    assert {t.price for t in result.trades} == {6.0}  # buyers pay b3
    assert set(result.seller_prices) == {5.0}  # sellers receive s3
    assert result.report["operator_surplus"] == pytest.approx(2 * (6 - 5))
    assert "b2" not in {t.buy_order_id for t in result.trades}


def test_huang_excludes_the_marginal_pair_and_keeps_the_spread():
    result = get_mechanism("huang").clear(TEXTBOOK)
    # Marginal pair b2 (8) and a2 (5): b0, b1 buy at 8, a0, a1 sell at 5.
    assert result.volume_kwh == pytest.approx(2.0)
    assert result.order_prices() == {"b0": 8.0, "b1": 8.0, "a0": 5.0, "a1": 5.0}
    assert result.report["operator_surplus"] == pytest.approx(2 * (8 - 5))


def test_huang_rations_the_long_side_by_equal_cuts():
    # Marginal pair: bid b3 (price 4) and ask a1 (price 3). Bids before it: 1 + 2 + 3 = 6 kWh;
    # asks before it: 4 kWh. The buyers give up 2 kWh: r with min(1,r)+min(2,r)+min(3,r) = 2,
    # r = 2/3, so b0 gets 1/3, b1 4/3 and b2 7/3 kWh.
    book = [
        bid("b0", 1.0, 10.0),
        bid("b1", 2.0, 9.0),
        bid("b2", 3.0, 8.0),
        bid("b3", 2.0, 4.0),
        ask("a0", 4.0, 1.0),
        ask("a1", 5.0, 3.0),
    ]
    result = get_mechanism("huang").clear(book)
    got = {}
    for trade in result.trades:
        got[trade.buy_order_id] = got.get(trade.buy_order_id, 0.0) + trade.quantity_kwh
    assert got == pytest.approx({"b0": 1 / 3, "b1": 4 / 3, "b2": 7 / 3})
    assert result.report["rationed_side"] == "buyers"
    assert set(result.seller_prices) == {3.0}
    assert {t.price for t in result.trades} == {4.0}


def test_vcg_textbook_buyers_pay_less_than_sellers_receive():
    result = get_mechanism("vcg").clear(TEXTBOOK)
    # buyers pay max(b4, s3) = max(7, 5) = 7, sellers get min(b3, s4) = min(8, 8.5) = 8
    assert result.volume_kwh == pytest.approx(3.0)
    prices = result.order_prices()
    assert all(prices[b] == pytest.approx(7.0) for b in ("b0", "b1", "b2"))
    assert all(prices[a] == pytest.approx(8.0) for a in ("a0", "a1", "a2"))
    assert result.report["vcg_deficit"] == pytest.approx(3.0)
    assert result.report["operator_surplus"] == pytest.approx(-3.0)


def test_partial_fill_goes_to_the_earlier_of_two_equal_bids():
    # Demand: b0 3 kWh at 10, then the two 8s by time: b2 (t=0) before b1 (t=1).
    # Supply: a0 4 kWh at 5, a1 3 kWh at 9. 3 kWh b0-a0, then 1 kWh b2-a0; 8 < 9 stops.
    # Interval: [max(5, 8 (rest of b2)), min(8, 9)] = [8, 8].
    book = [
        bid("b0", 3.0, 10.0),
        bid("b1", 2.0, 8.0, time=1.0),
        bid("b2", 2.0, 8.0, time=0.0),
        ask("a0", 4.0, 5.0),
        ask("a1", 3.0, 9.0),
    ]
    result = get_mechanism("uniform").clear(book)
    assert result.clearing_price == pytest.approx(8.0)
    assert [(t.buy_order_id, t.sell_order_id, t.quantity_kwh) for t in result.trades] == [
        ("b0", "a0", pytest.approx(3.0)),
        ("b2", "a0", pytest.approx(1.0)),
    ]
    assert result.report["unmatched_demand_kwh"] == pytest.approx(3.0)


def test_equal_times_fall_back_to_order_id():
    book = [bid("z", 1.0, 6.0), bid("y", 1.0, 6.0), ask("a", 1.0, 5.0)]
    result = get_mechanism("uniform").clear(book)
    assert [t.buy_order_id for t in result.trades] == ["y"]


@pytest.mark.parametrize(
    ("name", "volume", "surplus"),
    [
        ("uniform", 2.0, 0.0),
        ("pay_as_bid", 2.0, 0.0),
        ("mcafee", 1.0, 0.0),  # nothing left out on the bid side: reduction at 5 / 5
        ("huang", 1.0, 0.0),
        ("vcg", 2.0, 0.0),
        ("cda", 2.0, 0.0),
    ],
)
def test_all_equal_prices(name, volume, surplus):
    book = unit_book([5.0, 5.0], [5.0, 5.0, 5.0])
    result = get_mechanism(name).clear(book)
    assert result.volume_kwh == pytest.approx(volume)
    assert all(t.price == pytest.approx(5.0) for t in result.trades)
    assert result.clearing_price == pytest.approx(5.0)
    assert result.report["operator_surplus"] == pytest.approx(surplus)


def test_cda_trades_at_the_resting_price_in_arrival_order():
    book = [
        ask("a0", 1.0, 4.0, time=0),
        ask("a1", 1.0, 3.0, time=1),
        bid("b0", 1.5, 6.0, time=2),  # lifts a1 at 3 (best), then half of a0 at 4
        bid("b1", 1.0, 3.5, time=3),  # 3.5 < 4: rests
    ]
    result = get_mechanism("cda").clear(book)
    assert [(t.buy_order_id, t.sell_order_id, t.quantity_kwh, t.price) for t in result.trades] == [
        ("b0", "a1", 1.0, 3.0),
        ("b0", "a0", 0.5, 4.0),
    ]
    assert result.report["resting_orders"] == 2  # rest of a0, and b1


def test_curves_describe_fig_8():
    result = get_mechanism("uniform").clear(TEXTBOOK)
    curves = result.curves.to_dict()
    assert curves["demand"] == {"kwh": [0, 1, 2, 3, 4, 5], "price": [10, 9, 8, 7, 6, 6]}
    assert curves["supply"] == {"kwh": [0, 1, 2, 3, 4, 5], "price": [3, 4, 5, 8.5, 11, 11]}
    assert curves["clearing_point"] == {"kwh": 3.0, "price": 7.5}


def test_cashflows_give_each_side_its_own_price():
    result = get_mechanism("vcg").clear(TEXTBOOK)
    flows = result.cashflows()
    assert flows["b0"].paid == pytest.approx(7.0) and flows["b0"].bought_kwh == pytest.approx(1.0)
    assert flows["a0"].received == pytest.approx(8.0)
    paid = sum(f.paid for f in flows.values())
    received = sum(f.received for f in flows.values())
    assert paid - received == pytest.approx(result.report["operator_surplus"])


def test_vcg_pays_a_tiny_ask_beside_a_large_one_no_less_than_its_limit():
    # 2e-9 kWh trade at a tie (2.0 = 2.0) next to a 3 kWh ask: the Clarke-pivot areas are float
    # differences of sums over 3 kWh, which put the seller 2.2e-7 per kWh below its limit
    orders = [
        ask("o0", 2e-09, -2.0, time=2.0, peer="P2"),
        bid("o1", 1e-09, 1.0882014505109154, time=0.0, peer="P1"),
        bid("o2", 2e-09, 5.7238644285855855, time=2.0, peer="P0"),
        bid("o3", 5.280824565089874e-06, -8.902638079200273, time=1.0, peer="P2"),
        bid("o4", 2e-09, 2.0, time=1.0, peer="P4"),
        ask("o5", 3.0, 2.0, time=1.0, peer="P2"),
    ]
    limit = {o.order_id: o.price for o in orders}
    result = get_mechanism("vcg").clear(orders)
    assert result.trades
    for trade, seller_price in zip(result.trades, result.seller_prices, strict=True):
        assert trade.price <= limit[trade.buy_order_id]
        assert seller_price >= limit[trade.sell_order_id]
