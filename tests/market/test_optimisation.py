"""Social-welfare clearing (cvxpy) and its distributed twin (ADMM) on the same books."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testbed.market import Order, Side, get_mechanism
from testbed.market.mechanism import prepare_book
from testbed.market.optimisation.admm import run_admm
from testbed.market.optimisation.community import Community
from testbed.market.optimisation.welfare import solve_welfare
from tests.market.books import INTERVAL, ask, best_welfare, bid

_price = st.integers(0, 40).map(lambda n: n / 4)
_quantity = st.integers(1, 50).map(lambda n: n / 10)


@st.composite
def communities(draw, max_peers: int = 6, max_orders: int = 14) -> list[Order]:
    """Random books whose orders belong to a few peers (a peer may both buy and sell)."""
    peers = draw(st.integers(2, max_peers))
    rows = draw(
        st.lists(
            st.tuples(st.booleans(), _quantity, _price, st.integers(0, peers - 1)),
            min_size=2,
            max_size=max_orders,
        )
    )
    # prices p + i/1000: no two orders share a price, so the optimum is unique
    return [
        Order(f"o{i}", f"P{peer}", Side.BUY if is_buy else Side.SELL, q, p + i / 1000, INTERVAL, i)
        for i, (is_buy, q, p, peer) in enumerate(rows)
    ]


def test_welfare_clears_the_most_valuable_matching_of_a_hand_book():
    orders = [
        bid("b1", 2.0, 10.0, peer="A"),
        bid("b2", 1.0, 4.0, peer="B"),
        ask("a1", 1.5, 3.0, peer="C"),
        ask("a2", 1.0, 6.0, peer="A"),
    ]
    result = get_mechanism("welfare").clear(orders)
    # b1 takes all of a1 (1.5 kWh, gain 7 each) and 0.5 of a2 (gain 4): 10.5 + 2 = 12.5
    assert result.report["welfare"] == pytest.approx(12.5)
    assert result.volume_kwh == pytest.approx(2.0)
    assert result.report["cleared"] is True
    for trade in result.trades:  # individually rational at the published prices
        assert trade.price <= {"b1": 10.0, "b2": 4.0}[trade.buy_order_id] + 1e-9


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(communities(), st.sampled_from(["welfare", "admm"]))
def test_both_reach_the_linear_programming_optimum_and_balance_payments(orders, name):
    result = get_mechanism(name).clear(orders)
    best = best_welfare(orders)
    assert result.report["welfare"] == pytest.approx(best, rel=1e-4, abs=1e-6)
    # payments balance: what buyers pay is what sellers receive (a pool, no network)
    paid = sum(t.quantity_kwh * t.price for t in result.trades)
    sellers = zip(result.trades, result.seller_prices, strict=True)
    received = sum(t.quantity_kwh * p for t, p in sellers)
    assert abs(paid - received) <= 1e-9
    for trade in result.trades:  # individually rational
        limit = next(o.price for o in orders if o.order_id == trade.buy_order_id)
        assert trade.price <= limit + 1e-9


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(communities(), st.sampled_from([0.0, 0.5]))
def test_admm_reaches_the_centralised_optimum(orders, curvature):
    book, _ = prepare_book(orders)
    community = Community.from_book(book, pad=False)
    central = solve_welfare(community, curvature=curvature)
    distributed = run_admm(community, curvature=curvature)
    scale = max(abs(central.objective), 1.0)
    assert abs(distributed.welfare - central.objective) <= 1e-4 * scale
    # every peer's net position within 1e-3 kWh of the centralised one
    assert np.max(np.abs(distributed.positions_kwh - central.positions_kwh), initial=0.0) <= 1e-3
    assert distributed.primal_residual <= 1e-4
    assert abs(distributed.positions_kwh.sum()) <= 1e-9


def test_admm_report_gives_iterations_and_residuals():
    orders = [bid("b1", 2.0, 10.0, peer="A"), ask("a1", 1.5, 3.0, peer="B")]
    result = get_mechanism("admm").clear(orders)
    assert result.volume_kwh == pytest.approx(1.5, abs=1e-6)
    assert result.report["iterations"] >= 1
    assert result.report["primal_residual"] < 1e-5
    assert "dual_residual" in result.report


def test_admm_that_does_not_converge_falls_back_to_the_grid_with_the_reason():
    orders = [bid("b1", 2.0, 10.0, peer="A"), ask("a1", 1.5, 3.0, peer="B")]
    result = get_mechanism("admm", max_iterations=1).clear(orders)
    assert result.volume_kwh == 0
    assert result.trades == []
    assert "ADMM did not converge in 1 iterations" in result.report["fallback"]


def test_no_welfare_improving_trade_is_recorded():
    orders = [bid("b1", 2.0, 3.0, peer="A"), ask("a1", 1.5, 5.0, peer="B")]
    result = get_mechanism("welfare").clear(orders)
    assert result.volume_kwh == 0
    assert result.report["fallback"] == "no welfare-improving trade"


@pytest.mark.parametrize("name", ["welfare", "admm"])
def test_bad_quantities_are_rejected_one_by_one(name):
    orders = [
        bid("b1", 2.0, 10.0, peer="A"),
        bid("nan", float("nan"), 10.0, peer="A"),
        ask("neg", -1.0, 1.0, peer="B"),
        ask("a1", 1.0, 3.0, peer="B"),
    ]
    result = get_mechanism(name).clear(orders)
    rejected = {item["order_id"] for item in result.report["rejected"]}
    assert rejected == {"nan", "neg"}
    assert result.volume_kwh == pytest.approx(1.0, abs=1e-6)


def test_bilateral_pair_charges_steer_trades_to_the_cheaper_pair():
    orders = [bid("b1", 1.0, 10.0, peer="A"), ask("a1", 1.0, 3.0, peer="B")]
    orders += [ask("a2", 1.0, 3.2, peer="C")]
    plain = get_mechanism("welfare", bilateral=True).clear(orders)
    assert {t.seller for t in plain.trades} == {"B"}
    charged = get_mechanism("welfare", bilateral=True, pair_charges="B>A:0.5").clear(orders)
    assert {t.seller for t in charged.trades} == {"C"}
    assert charged.volume_kwh == pytest.approx(1.0, abs=1e-6)


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="rho = -1 must be a finite number > 0"):
        get_mechanism("admm", rho=-1)
    with pytest.raises(ValueError, match="pair_charges item 'A-B' is not SELLER>BUYER:CHARGE"):
        get_mechanism("welfare", pair_charges="A-B")


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(_price, _quantity), max_size=3),
    st.lists(st.tuples(_price, _quantity), max_size=3),
    st.integers(-40, 40).map(lambda n: n / 10),
    st.sampled_from([0.3, 1.0, 8.0]),
    st.sampled_from([0.0, 0.5]),
)
def test_a_peers_admm_step_is_its_exact_proximal_step(bids, asks, target, rho, curvature):
    """What a peer computes alone (step 11) against cvxpy on the same small problem."""
    import cvxpy as cp

    from testbed.market.optimisation.admm import PeerMessage, PeerOffers, peer_update

    offers = PeerOffers(
        np.array([p for p, _ in bids]),
        np.array([q for _, q in bids]),
        np.array([p for p, _ in asks]),
        np.array([q for _, q in asks]),
        curvature,
    )
    reply = peer_update(offers, PeerMessage(target, rho))
    b, a = cp.Variable(len(bids), nonneg=True), cp.Variable(len(asks), nonneg=True)
    position = cp.sum(a) - cp.sum(b) if bids and asks else (cp.sum(a) if asks else -cp.sum(b))
    cost = rho / 2 * cp.square(position - target)
    constraints = []
    if bids:
        cost += -offers.bid_price @ b + curvature / 2 * cp.sum_squares(b)
        constraints.append(b <= offers.bid_qty)
    if asks:
        cost += offers.ask_price @ a + curvature / 2 * cp.sum_squares(a)
        constraints.append(a <= offers.ask_qty)
    if not bids and not asks:
        assert reply.position_kwh == 0.0
        return
    problem = cp.Problem(cp.Minimize(cost), constraints)
    problem.solve(solver="CLARABEL")
    ours = rho / 2 * (reply.position_kwh - target) ** 2 - offers.value(
        reply.bid_fill, reply.ask_fill
    )
    assert ours <= problem.value + 1e-7  # at least as good as the solver's optimum
    assert reply.position_kwh == pytest.approx(float(position.value), abs=1e-3)
    # the fills the peer reports give its position
    assert reply.ask_fill.sum() - reply.bid_fill.sum() == pytest.approx(reply.position_kwh)
