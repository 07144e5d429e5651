"""Optimisation mechanisms on books at the edges of scale: quantities at the 1e-9 kWh resolution
or far above any solver's infinity, prices beyond it, and orders far smaller than the largest."""

from __future__ import annotations

import numpy as np
import pytest

from testbed.market import get_mechanism
from testbed.market.matching import pair_fills
from testbed.market.optimisation.community import clean_fills
from tests.market.books import ask, bid, filled

# The issue's resolution book: only s1's 1e-9 kWh slice is worth trading (b1 values it at 1).
RESOLUTION_BOOK = [
    ask("s1", 1e-9, 0.0, time=0),
    ask("s2", 1e-9, 1000.0, time=1),
    bid("b1", 2e-9, 1.0, time=2),
]


@pytest.mark.parametrize("name", ["welfare", "nash", "admm"])
def test_the_welfare_methods_trade_the_slice_worth_trading_at_the_resolution(name):
    result = get_mechanism(name).clear(RESOLUTION_BOOK)
    assert "fallback" not in result.report, result.report.get("fallback")
    assert [(t.seller, t.buyer) for t in result.trades] == [("s1", "b1")]
    assert result.volume_kwh == pytest.approx(1e-9, rel=1e-9)
    assert result.report["welfare"] == pytest.approx(1e-9, rel=1e-9)  # as the auctions


@pytest.mark.parametrize("name", ["welfare", "nash"])
def test_quantities_beyond_the_solvers_infinity_still_clear(name):
    result = get_mechanism(name).clear([ask("s", 1e25, 1.0), bid("b", 2e25, 2.0)])
    assert "fallback" not in result.report, result.report.get("fallback")
    assert result.volume_kwh == pytest.approx(1e25)
    assert all(1.0 <= t.price <= 2.0 for t in result.trades)


@pytest.mark.parametrize("name", ["welfare", "nash"])
def test_prices_beyond_the_solvers_infinity_fall_back_with_the_reason(name):
    result = get_mechanism(name).clear([ask("s", 1.0, 1e300), bid("b", 1.0, 1.7e308)])
    assert result.trades == []
    assert "returned no solution" in result.report["fallback"]
    assert "1.7e+308" in result.report["fallback"]


def test_admm_does_not_sell_an_order_smaller_than_its_tolerance_above_every_bid():
    # tiny asks 9 per kWh, every bid is at most 5: selling it loses welfare and pays it less than
    # its limit; it is below ADMM's tolerance (relative to the 1000 kWh order).
    book = [ask("big", 1000.0, 1.0, peer="S"), bid("b", 10.0, 5.0, peer="B")]
    book.append(ask("tiny", 1e-6, 9.0, peer="T"))
    result = get_mechanism("admm").clear(book)
    assert "fallback" not in result.report
    assert {t.sell_order_id for t in result.trades} == {"big"}
    for trade, seller_price in zip(result.trades, result.seller_prices, strict=True):
        assert trade.price <= 5.0 and seller_price >= 1.0


def test_admm_fills_no_order_beyond_its_quantity_at_the_resolution():
    book = [
        ask("o0", 1e-9, 3.75, time=1, peer="P0"),
        bid("o1", 3e-9, 7.25, time=0, peer="P1"),
        bid("o2", 3e-9, 3.25, time=0, peer="P0"),
        ask("o3", 4e-9, 1.0, time=1, peer="P1"),
        bid("o4", 1e-9, 8.75, time=1, peer="P1"),
        bid("o5", 1e-9, 3.75, time=1, peer="P1"),
        ask("o6", 1e-9, 5.25, time=0, peer="P1"),
        ask("o7", 2e-9, 4.75, time=2, peer="P0"),
    ]
    quantity = {order.order_id: order.quantity_kwh for order in book}
    result = get_mechanism("admm").clear(book)
    for order_id, kwh in filled(result).items():
        assert kwh <= quantity[order_id] * (1 + 1e-12), order_id
    optimum = get_mechanism("welfare").clear(book).report["welfare"]
    assert result.report["welfare"] <= optimum * (1 + 1e-12)


def test_an_order_smaller_than_the_snapping_tolerance_goes_to_the_nearer_bound():
    qty = np.array([1e-9, 1e-9, 2.0])
    fill = np.array([0.0, 0.9e-9, 1.9999])
    assert clean_fills(fill, qty, tolerance=1e-3).tolist() == [0.0, 1e-9, 2.0]


def test_pairing_fills_never_gives_an_order_more_than_its_fill():
    bid_fill = np.array([1e-9, 3e-9, 5e-10])
    ask_fill = np.array([4e-9, 5e-10])
    segments = pair_fills(bid_fill, ask_fill)
    got_bid = np.bincount(segments.bid, weights=segments.quantity_kwh, minlength=3)
    got_ask = np.bincount(segments.ask, weights=segments.quantity_kwh, minlength=2)
    assert np.all(got_bid <= bid_fill * (1 + 1e-12))
    assert np.all(got_ask <= ask_fill * (1 + 1e-12))
    assert got_bid.sum() == pytest.approx(got_ask.sum(), abs=1e-21)


def test_admm_keeps_a_tie_split_below_the_resolution():
    # bids o0 and o2 tie at 8: ADMM shares s's last 1e-9 kWh between them, 5e-10 kWh each
    book = [
        bid("o0", 3e-9, 8.0, time=0, peer="P3"),
        bid("o1", 3e-9, 4.25, time=0, peer="P1"),
        bid("o2", 3e-9, 8.0, time=1, peer="P0"),
        ask("s", 2e-9, 2.75, time=2, peer="P0"),
        bid("o4", 1e-9, 8.5, time=2, peer="P3"),
    ]
    result = get_mechanism("admm").clear(book)
    assert result.volume_kwh == pytest.approx(2e-9, rel=1e-6)
    assert result.report["welfare"] == pytest.approx(1.1e-8, rel=1e-6)


def test_a_solver_that_is_not_installed_is_named_when_the_market_is_made():
    with pytest.raises(ValueError, match=r"solver = 'NOPE' is not installed \(installed: .*HIGHS"):
        get_mechanism("welfare", solver="NOPE")
    assert get_mechanism("welfare", solver="highs").solver == "HIGHS"


@pytest.mark.parametrize("big_kwh", [1e4, 1e9])
@pytest.mark.parametrize("name", ["welfare", "admm", "nash"])
def test_a_huge_order_that_cannot_trade_does_not_hide_the_small_trades(name, big_kwh):
    # the optimum trades 4 Wh worth 0.021; the big ask (above every bid) only sets the scale
    book = [
        ask("big", big_kwh, 9.0, peer="S"),
        bid("b1", 0.003, 8.0, peer="B1"),
        bid("b2", 0.001, 5.0, peer="B2"),
        ask("a1", 0.002, 1.0, peer="A1"),
        ask("a2", 0.002, 3.0, peer="A2"),
    ]
    result = get_mechanism(name).clear(book)
    assert "fallback" not in result.report, result.report.get("fallback")
    assert result.report["welfare"] == pytest.approx(0.021, rel=1e-4)
    assert "big" not in {t.sell_order_id for t in result.trades}


def _community_book(peers: int, orders_per_peer: int) -> list:
    rng = np.random.default_rng(4)
    book = []
    for peer in range(peers):
        for k in range(orders_per_peer):
            make = bid if (peer + k) % 2 else ask
            price = float(rng.integers(2, 12))
            book.append(
                make(f"o{peer}-{k}", float(rng.integers(1, 20)) / 10, price, peer=f"P{peer}")
            )
    return book


def test_the_welfare_problem_of_many_peers_compiles_in_modest_memory():
    import tracemalloc

    book = _community_book(400, 32)  # 400 peers x 16 bids and 16 asks: 12,800 steps
    tracemalloc.start()
    try:
        result = get_mechanism("welfare").clear(book)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.report["welfare"] == pytest.approx(result.report["max_welfare"], rel=1e-9)
    # about 40 MB with cvxpy's first import; the (N*K)^2 tensor took 400 MB
    assert peak < 100e6, f"{peak / 1e6:.0f} MB"


def test_a_large_welfare_problem_compiled_without_parameters_clears_the_same(monkeypatch):
    from testbed.market.optimisation import welfare

    book = _community_book(12, 6)
    parametrised = get_mechanism("welfare").clear(book)
    monkeypatch.setattr(welfare, "_PARAMETRISED_UP_TO", 0)
    welfare._PROBLEMS.clear()
    fresh = get_mechanism("welfare").clear(book)
    assert fresh.report["welfare"] == pytest.approx(parametrised.report["welfare"], rel=1e-12)
    assert fresh.report["welfare"] == pytest.approx(fresh.report["max_welfare"], rel=1e-9)
    assert fresh.volume_kwh == pytest.approx(parametrised.volume_kwh)


def test_admm_reaches_welfare_when_large_tied_trades_sit_beside_tiny_gainful_ones():
    # P2 sells 48.7 kWh at 8.25 to its own bids at 8.25 (no gain); the gains are in trades of
    # about 1 Wh, which ADMM must resolve as well as the centralised optimum does
    book = [
        bid("o0", 0.00019553181541074615, 9.5, time=0, peer="P2"),
        ask("o1", 0.000864812275743201, 1.75, time=0, peer="P2"),
        bid("o2", 1.7441134765845464e-05, 4.0, time=1, peer="P2"),
        bid("o3", 248.25512738263944, 3.5, time=0, peer="P2"),
        bid("o4", 0.019976339478567216, 3.0, time=2, peer="P0"),
        bid("o5", 78.25059659127913, 8.25, time=1, peer="P2"),
        ask("o6", 48.671906953621054, 8.25, time=2, peer="P2"),
        bid("o7", 0.0198481925457133, 7.25, time=1, peer="P0"),
        ask("o8", 0.009673001950120422, 9.75, time=2, peer="P2"),
        bid("o9", 0.11025194510540261, 1.0, time=2, peer="P1"),
        bid("o10", 295.56294300279416, 8.25, time=0, peer="P2"),
    ]
    optimum = get_mechanism("welfare").clear(book).report["welfare"]
    assert optimum == pytest.approx(0.005865694561594238, rel=1e-9)
    assert get_mechanism("admm").clear(book).report["welfare"] == pytest.approx(optimum, rel=1e-4)
