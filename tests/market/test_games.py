"""Nash bargaining and Stackelberg pricing: the game-theoretic properties, on random communities."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from testbed.market import Order, Side, get_mechanism
from testbed.market.optimisation.nash import bargain
from tests.market.books import INTERVAL, ask, best_welfare, bid
from tests.market.test_optimisation import communities

FAST = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def gains_by_peer(orders: list[Order], result) -> dict[str, float]:
    """Each trading peer's gain: its filled orders' worth to it, plus money in, minus out."""
    limit = {o.order_id: o.price for o in orders}
    gains: dict[str, float] = {}
    for trade, seller_price in zip(result.trades, result.seller_prices, strict=True):
        q = trade.quantity_kwh
        gains[trade.buyer] = gains.get(trade.buyer, 0.0) + q * (
            limit[trade.buy_order_id] - trade.price
        )
        gains[trade.seller] = gains.get(trade.seller, 0.0) + q * (
            seller_price - limit[trade.sell_order_id]
        )
    return gains


def money(result) -> tuple[float, float]:
    paid = sum(t.quantity_kwh * t.price for t in result.trades)
    received = sum(
        t.quantity_kwh * p for t, p in zip(result.trades, result.seller_prices, strict=True)
    )
    return paid, received


@FAST
@given(communities())
def test_nash_is_individually_rational_pareto_efficient_and_balanced(orders):
    result = get_mechanism("nash").clear(orders)
    gains = gains_by_peer(orders, result)
    assert all(gain >= -1e-9 for gain in gains.values())
    assert sum(gains.values()) == pytest.approx(best_welfare(orders), abs=1e-6)
    paid, received = money(result)
    assert abs(paid - received) <= 1e-9
    if gains:  # equal powers: equal shares of the gains
        assert max(gains.values()) - min(gains.values()) <= 1e-6


@FAST
@given(communities(max_peers=3, max_orders=6))
def test_nash_treats_symmetric_peers_alike(orders):
    twins = orders + [
        Order(o.order_id + "t", o.peer + "t", o.side, o.quantity_kwh, o.price, INTERVAL, o.time)
        for o in orders
    ]
    gains = gains_by_peer(twins, get_mechanism("nash").clear(twins))
    for peer, gain in gains.items():
        if not peer.endswith("t"):
            assert gains.get(peer + "t", 0.0) == pytest.approx(gain, abs=1e-6)


def test_bargaining_powers_split_the_gains():
    orders = [bid("b1", 2.0, 10.0, peer="A"), ask("a1", 2.0, 4.0, peer="B")]
    result = get_mechanism("nash", powers="A:3,B:1").clear(orders)
    gains = gains_by_peer(orders, result)
    assert gains["A"] == pytest.approx(9.0)  # 3/4 of the 12 of gains
    assert gains["B"] == pytest.approx(3.0)
    assert result.report["peer_gains"] == pytest.approx({"A": 9.0, "B": 3.0})


def test_the_closed_form_bargain_is_the_convex_programs_optimum():
    values = np.array([7.0, -2.0, 4.5, -3.0])
    powers = np.array([1.0, 2.0, 0.5, 1.5])
    transfer = cp.Variable(4)
    problem = cp.Problem(cp.Maximize(powers @ cp.log(values + transfer)), [cp.sum(transfer) == 0])
    problem.solve(solver="CLARABEL")
    assert bargain(values, powers, np.zeros(4)) == pytest.approx(transfer.value, abs=1e-4)


def test_bad_powers_are_named():
    with pytest.raises(ValueError, match=r"powers\['A'\] = '-1' must be a finite number > 0"):
        get_mechanism("nash", powers="A:-1")


def margins_on_grid(orders: list[Order], grid: np.ndarray) -> np.ndarray:
    """The operator's margin at every (buy, sell) price of the grid when every peer plays a best
    response (-inf where no balanced best responses exist), by brute force."""
    bid_p = np.array([o.price for o in orders if o.side is Side.BUY])
    bid_q = np.array([o.quantity_kwh for o in orders if o.side is Side.BUY])
    ask_p = np.array([o.price for o in orders if o.side is Side.SELL])
    ask_q = np.array([o.quantity_kwh for o in orders if o.side is Side.SELL])
    must_buy = ((bid_p[None, :] > grid[:, None]) * bid_q).sum(axis=1)[:, None]
    may_buy = ((bid_p[None, :] >= grid[:, None]) * bid_q).sum(axis=1)[:, None]
    must_sell = ((ask_p[None, :] < grid[:, None]) * ask_q).sum(axis=1)[None, :]
    may_sell = ((ask_p[None, :] <= grid[:, None]) * ask_q).sum(axis=1)[None, :]
    volume = np.minimum(may_buy, may_sell)
    spread = grid[:, None] - grid[None, :]
    ok = (spread >= 0) & (volume >= np.maximum(must_buy, must_sell) - 1e-12)
    return np.where(ok, spread * volume, -np.inf)


@FAST
@given(communities(max_orders=10))
def test_stackelberg_followers_best_respond_and_the_leader_cannot_gain(orders):
    result = get_mechanism("stackelberg").clear(orders)
    filled: dict[str, float] = {}
    for trade in result.trades:
        filled[trade.buy_order_id] = filled.get(trade.buy_order_id, 0.0) + trade.quantity_kwh
        filled[trade.sell_order_id] = filled.get(trade.sell_order_id, 0.0) + trade.quantity_kwh
    margin = 0.0
    if result.trades:
        p_buy, p_sell = result.report["buy_price"], result.report["sell_price"]
        for o in orders:  # followers: strictly better orders in full, worse ones not at all
            better = o.price > p_buy if o.side is Side.BUY else o.price < p_sell
            worse = o.price < p_buy if o.side is Side.BUY else o.price > p_sell
            if better:
                assert filled.get(o.order_id, 0.0) == pytest.approx(o.quantity_kwh)
            if worse:
                assert filled.get(o.order_id, 0.0) == 0.0
        margin = result.report["leader_margin"]
        paid, received = money(result)
        assert abs(paid - received - margin) <= 1e-9
        assert result.report["operator_surplus"] == pytest.approx(margin)
    grid = np.arange(-0.5, 11.0, 0.0625)  # limits are multiples of 1/4 plus i/1000
    grid = np.union1d(grid, [o.price for o in orders])  # and the limits themselves
    assert margins_on_grid(orders, grid).max() <= margin + 1e-9


def test_stackelberg_max_spread_caps_the_operators_margin():
    orders = [bid("b1", 2.0, 10.0, peer="A"), ask("a1", 2.0, 4.0, peer="B")]
    free = get_mechanism("stackelberg").clear(orders)
    assert (free.report["buy_price"], free.report["sell_price"]) == (10.0, 4.0)
    capped = get_mechanism("stackelberg", max_spread=1.0).clear(orders)
    assert capped.report["buy_price"] - capped.report["sell_price"] == pytest.approx(1.0)
    assert capped.volume_kwh == pytest.approx(2.0)


def sellers_profit_on_grid(orders: list[Order], grid: np.ndarray) -> np.ndarray:
    """The sellers' profit at each price p when buyers best-respond and the cheapest asks (none
    below its limit) serve them; -inf where the bids above p cannot all be served."""
    bids = [o for o in orders if o.side is Side.BUY]
    asks = sorted((o for o in orders if o.side is Side.SELL), key=lambda o: o.price)
    out = []
    for p in grid:
        must = sum(o.quantity_kwh for o in bids if o.price > p)
        may = sum(o.quantity_kwh for o in bids if o.price >= p)
        supply = sum(o.quantity_kwh for o in asks if o.price <= p)
        volume = min(may, supply)
        if volume < must - 1e-12 or volume <= 0:
            out.append(-np.inf)
            continue
        left, cost = volume, 0.0
        for o in asks:
            take = min(left, o.quantity_kwh)
            cost, left = cost + take * o.price, left - take
        out.append(p * volume - cost)
    return np.array(out)


@FAST
@given(communities(max_orders=10))
def test_stackelberg_sellers_leader_prices_as_a_monopoly_the_buyers_best_respond(orders):
    result = get_mechanism("stackelberg", leader="sellers").clear(orders)
    grid = np.union1d(np.arange(-0.5, 11.0, 0.0625), [o.price for o in orders])
    profit = 0.0
    if result.trades:
        price = result.report["buy_price"]
        assert result.report["sell_price"] == price  # every seller is paid the leader's price
        bought: dict[str, float] = {}
        for trade in result.trades:
            bought[trade.buy_order_id] = bought.get(trade.buy_order_id, 0.0) + trade.quantity_kwh
        for o in orders:
            if o.side is Side.BUY and o.price > price:
                assert bought.get(o.order_id, 0.0) == pytest.approx(o.quantity_kwh)
            if o.side is Side.BUY and o.price < price:
                assert o.order_id not in bought
        sold = {t.sell_order_id for t in result.trades}
        assert all(o.price <= price for o in orders if o.order_id in sold)  # none at a loss
        profit = result.report["leader_margin"]
        paid, received = money(result)
        assert abs(paid - received) <= 1e-9
    assert sellers_profit_on_grid(orders, grid).max(initial=-np.inf) <= profit + 1e-9


def test_stackelberg_leaders_are_named():
    with pytest.raises(ValueError, match="leader = 'buyers' must be 'operator' or 'sellers'"):
        get_mechanism("stackelberg", leader="buyers")


def test_nash_prices_every_order_within_its_limit_when_a_peer_buys_and_sells():
    orders = [
        bid("o0", 1.5, 2.5, peer="P0"),
        bid("o1", 3.9, 4.0, peer="P2"),
        ask("o2", 3.1, 2.75, peer="P0"),
        bid("o3", 4.5, 9.0, peer="P0"),
        ask("o4", 2.0, 3.5, peer="P0"),
        ask("o5", 0.4, 4.5, peer="P0"),
        ask("o6", 1.2, 2.0, peer="P2"),
    ]
    limit = {o.order_id: o.price for o in orders}
    result = get_mechanism("nash").clear(orders)
    assert result.trades
    for trade, seller_price in zip(result.trades, result.seller_prices, strict=True):
        assert trade.price <= limit[trade.buy_order_id] + 1e-9
        assert seller_price >= limit[trade.sell_order_id] - 1e-9
    gains = gains_by_peer(orders, result)
    assert gains == pytest.approx(result.report["peer_gains"])
    assert gains["P0"] == pytest.approx(gains["P2"])  # equal powers, equal shares
    paid, received = money(result)
    assert paid == pytest.approx(received, abs=1e-9)


def test_the_curve_search_finds_the_leaders_optimum_of_every_price_pair():
    from testbed.market.optimisation.stackelberg import curve_optimum, leader_optimum

    rng = np.random.default_rng(11)
    for _ in range(300):  # ties, negative prices and distinct prices
        nb, na = rng.integers(1, 10, 2)
        bid_price = rng.integers(-8, 40, nb) / 4
        ask_price = rng.integers(-8, 40, na) / 4
        bid_kwh, ask_kwh = rng.integers(1, 50, nb) / 10, rng.integers(1, 50, na) / 10
        pairs = leader_optimum(bid_price, bid_kwh, ask_price, ask_kwh)
        curve = curve_optimum(bid_price, bid_kwh, ask_price, ask_kwh)
        assert (pairs is None) == (curve is None)
        if pairs is not None and curve is not None:
            assert curve == pytest.approx(pairs, rel=1e-9, abs=1e-12)


def test_stackelberg_clears_a_book_of_more_price_pairs_than_it_enumerates(monkeypatch):
    from testbed.market.optimisation import stackelberg

    rng = np.random.default_rng(5)
    kwh = rng.integers(1, 30, 80) / 10
    bid_limit, ask_limit = rng.uniform(3, 9, 40), rng.uniform(2, 8, 40)
    orders = [bid(f"b{i}", kwh[i], bid_limit[i], peer=f"B{i}") for i in range(40)]
    orders += [ask(f"a{i}", kwh[40 + i], ask_limit[i], peer=f"S{i}") for i in range(40)]
    enumerated = get_mechanism("stackelberg").clear(orders)
    monkeypatch.setattr(stackelberg, "MAX_PRICE_PAIRS", 100)  # 40 x 40 limits: the curve search
    searched = get_mechanism("stackelberg").clear(orders)
    assert "fallback" not in searched.report
    assert searched.report["leader_margin"] == pytest.approx(enumerated.report["leader_margin"])
    assert searched.volume_kwh == pytest.approx(enumerated.volume_kwh)
    assert [t.price for t in searched.trades] == pytest.approx([t.price for t in enumerated.trades])


def test_stackelberg_gives_no_sliver_to_a_bid_below_the_buy_price():
    # 1e-6 kWh above the large bid: cumsum - quantity rounded and handed the large bid 1e-16 kWh
    orders = [
        bid("small", 7.580733568298896e-07, 0.6065562390194774, peer="A"),
        bid("large", 1.0, -1.0, peer="B"),
        ask("a1", 2e-09, -5.16, peer="C"),
        ask("a2", 12418.022517084875, 0.0, peer="D"),
    ]
    result = get_mechanism("stackelberg").clear(orders)
    assert result.report["buy_price"] == pytest.approx(0.6065562390194774)
    assert {t.buy_order_id for t in result.trades} == {"small"}
    assert result.volume_kwh == 7.580733568298896e-07
