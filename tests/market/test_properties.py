"""Properties every mechanism promises, checked on random books (hypothesis)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testbed.market import OrderColumns, Side, get_mechanism
from tests.market.books import EPS, ask, best_welfare, bid, books, filled, utility

ALL = ["uniform", "pay_as_bid", "mcafee", "huang", "vcg", "cda"]
EFFICIENT = {"uniform", "pay_as_bid", "vcg"}
BALANCED = {"uniform", "pay_as_bid", "cda"}
MANY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEWER = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
GRID = [n / 4 for n in range(41)]  # every price the random books use


@pytest.mark.parametrize("name", ALL)
@MANY
@given(book=books())
def test_rational_within_quantities_budget_and_welfare(name, book):
    result = get_mechanism(name).clear(book)
    report = result.report
    by_id = {o.order_id: o for o in book}
    # individual rationality, sides and positive quantities
    for trade, seller_price in zip(result.trades, result.seller_prices, strict=True):
        buyer, seller = by_id[trade.buy_order_id], by_id[trade.sell_order_id]
        assert buyer.side is Side.BUY and seller.side is Side.SELL
        assert trade.quantity_kwh > 0
        assert trade.price <= buyer.price + EPS, "a buyer pays more than its limit"
        assert seller_price >= seller.price - EPS, "a seller receives less than its limit"
    # no order trades beyond its quantity
    for order_id, kwh in filled(result).items():
        assert kwh <= by_id[order_id].quantity_kwh + EPS, f"{order_id} over-filled"
    assert result.volume_kwh == pytest.approx(sum(t.quantity_kwh for t in result.trades))
    # budget: balanced, a surplus to the operator, or VCG's deficit
    if name in BALANCED:
        assert report["operator_surplus"] == pytest.approx(0.0, abs=EPS)
    elif name == "vcg":
        assert report["vcg_deficit"] >= -EPS
        assert report["operator_surplus"] == pytest.approx(-report["vcg_deficit"], abs=EPS)
    else:
        assert report["operator_surplus"] >= -EPS
    # welfare: the LP optimum for the efficient ones, never above it for the others
    optimum = best_welfare(book)
    assert report["max_welfare"] == pytest.approx(optimum, abs=1e-6)
    if name in EFFICIENT:
        assert report["welfare"] == pytest.approx(optimum, abs=1e-6)
    else:
        assert report["welfare"] <= optimum + 1e-6


@MANY
@given(book=books(), k=st.floats(0.0, 1.0))
def test_uniform_price_clears_the_market_and_rises_with_k(book, k):
    result = get_mechanism("uniform", k=k).clear(book)
    price = result.clearing_price
    if price is None:
        assert result.volume_kwh == 0
        return
    got = filled(result)
    for order in book:
        if order.quantity_kwh - got.get(order.order_id, 0.0) > 1e-6:
            if order.side is Side.BUY:
                assert order.price <= price + EPS, f"{order.order_id} left out below its bid"
            else:
                assert order.price >= price - EPS, f"{order.order_id} left out above its ask"
    low = get_mechanism("uniform", k=0.0).clear(book).clearing_price
    high = get_mechanism("uniform", k=1.0).clear(book).clearing_price
    assert low - EPS <= price <= high + EPS


@MANY
@given(book=books())
def test_mcafee_and_huang_lose_at_most_their_documented_volume(book):
    mcafee = get_mechanism("mcafee").clear(book)
    report = mcafee.report
    if report["case"] == "trade_reduction":
        assert report["efficient_volume_kwh"] - mcafee.volume_kwh == pytest.approx(
            report["reduced_kwh"]
        )
    elif report["case"] == "all_trade":
        assert mcafee.volume_kwh == pytest.approx(report["efficient_volume_kwh"])
    huang = get_mechanism("huang").clear(book)
    assert huang.volume_kwh <= huang.report["efficient_volume_kwh"] + EPS
    assert len({t.price for t in huang.trades}) <= 1
    assert len(set(huang.seller_prices)) <= 1


def _misreport(book, index, price):
    return [dataclasses.replace(o, price=price) if i == index else o for i, o in enumerate(book)]


@MANY
@given(book=books(max_orders=10, unit=True), data=st.data())
def test_mcafee_no_single_unit_trader_gains_by_misreporting(book, data):
    if not book:
        return
    index = data.draw(st.integers(0, len(book) - 1))
    honest = book[index]
    mechanism = get_mechanism("mcafee")
    truthful = utility(mechanism.clear(book), honest.order_id, honest.price, honest.side)
    for report in GRID:
        lied = mechanism.clear(_misreport(book, index, report))
        gain = utility(lied, honest.order_id, honest.price, honest.side) - truthful
        assert gain <= EPS, f"{honest.order_id} gains {gain} by reporting {report}"


@FEWER
@given(book=books(max_orders=8), data=st.data())
def test_vcg_no_order_gains_by_misreporting_its_price(book, data):
    if not book:
        return
    index = data.draw(st.integers(0, len(book) - 1))
    honest = book[index]
    mechanism = get_mechanism("vcg")
    truthful = utility(mechanism.clear(book), honest.order_id, honest.price, honest.side)
    for report in data.draw(st.lists(st.sampled_from(GRID), min_size=1, max_size=6)):
        lied = mechanism.clear(_misreport(book, index, report))
        gain = utility(lied, honest.order_id, honest.price, honest.side) - truthful
        assert gain <= 1e-6, f"{honest.order_id} gains {gain} by reporting {report}"


@FEWER
@given(book=books(max_orders=8))
def test_vcg_payments_are_the_clarke_pivot(book):
    """Utility of each order = optimum with it - optimum without it (brute force by LP)."""
    result = get_mechanism("vcg").clear(book)
    optimum = best_welfare(book)
    for index, order in enumerate(book):
        others = book[:index] + book[index + 1 :]
        contribution = optimum - best_welfare(others)
        assert utility(result, order.order_id, order.price, order.side) == pytest.approx(
            contribution, abs=1e-6
        )


@pytest.mark.parametrize("name", ALL)
@FEWER
@given(book=books())
def test_columns_and_orders_clear_alike(name, book):
    mechanism = get_mechanism(name)
    from_orders = mechanism.clear(book)
    from_columns = mechanism.clear(OrderColumns.from_orders(book))
    assert from_columns.trades == from_orders.trades
    assert from_columns.clearing_price == from_orders.clearing_price


@FEWER
@given(book=books(max_orders=10), data=st.data())
def test_huang_no_order_gains_by_misreporting_its_price(book, data):
    """Huang et al. is truthful in price for multi-unit orders (quantities reported as they are)."""
    if not book:
        return
    index = data.draw(st.integers(0, len(book) - 1))
    honest = book[index]
    mechanism = get_mechanism("huang")
    truthful = utility(mechanism.clear(book), honest.order_id, honest.price, honest.side)
    for report in GRID:
        lied = mechanism.clear(_misreport(book, index, report))
        gain = utility(lied, honest.order_id, honest.price, honest.side) - truthful
        assert gain <= EPS, f"{honest.order_id} gains {gain} by reporting {report}"


def test_mcafee_is_not_truthful_for_multi_unit_orders():
    """The documented limit: a bid that is the marginal pair and also trades other units sets its
    own price, so shading it pays."""
    book = [ask("a0", 0.1, 0.0), ask("a1", 0.1, 0.0), ask("a2", 0.1, 0.0), bid("b0", 0.2, 0.25)]
    mechanism = get_mechanism("mcafee")
    honest = utility(mechanism.clear(book), "b0", 0.25, Side.BUY)
    shaded = utility(mechanism.clear(_misreport(book, 3, 0.0)), "b0", 0.25, Side.BUY)
    assert honest == pytest.approx(0.0)  # 0.1 kWh at its own bid
    assert shaded == pytest.approx(0.1 * 0.25)  # the same 0.1 kWh at 0
