"""Stackelberg pricing (seed 4.1.1, equations 3-4): a leader prices, the peers follow.

`leader = "sellers"`: the sellers' aggregator sets one price p for the buyers, who best-respond;
it serves them from its cheapest asks, none below its own limit, and every seller is paid p; it
maximises the sellers' profit p Q - (cost of the cheapest Q). See `sellers_optimum`.

`leader = "operator"` (default), below:

The leader (the market operator) announces an internal buy price p_b (what buyers pay) and sell
price p_s (what sellers receive), p_s <= p_b, optionally with p_b - p_s <= max_spread. Each peer
then plays its best response: a bid (its marginal value of a kWh) is bought in full when its
limit is above p_b and not at all below it; an ask in full when its limit is below p_s; an order
whose limit equals the price is indifferent and may trade any part of its quantity. The internal
market balances (bought = sold). The leader maximises its margin (p_b - p_s) * volume.

Solution method (exact for step offers, documented in docs/market.md): between two consecutive
limits, demand and supply do not change, so raising p_b to the next bid limit above, or lowering
p_s to the next ask limit below, only increases the margin. The leader's optimum is therefore at
a pair (bid limit, ask limit), or, when the spread cap binds, a limit and the price one cap
away: every such pair is evaluated (vectorised, O(bid limits x ask limits)) and the feasible one
with the largest margin is chosen; at that pair the volume is the largest the
followers' best responses allow (ties broken in the leader's favour: a strong Stackelberg
equilibrium). Indifferent orders trade in the book's priority order.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from testbed.market.columns import OrderColumns
from testbed.market.matching import merge_cumulative, pair_fills, side_books
from testbed.market.optimisation.base import (
    NoTrade,
    OptimisationMechanism,
    Outcome,
    network_settings,
    positive,
)
from testbed.market.result import TradeTable
from testbed.network.settings import NetworkSettings

MAX_PRICE_PAIRS = 25_000_000  # bid limits x ask limits evaluated in one interval


class _Side:
    """One side's kWh at any price: strictly better than it, and at least as good."""

    def __init__(self, price: np.ndarray, quantity: np.ndarray, buyers: bool) -> None:
        self.sign = -1.0 if buyers else 1.0  # key ascending = better first
        key = self.sign * price
        order = np.argsort(key, kind="stable")
        self.key = key[order]
        self.cum = np.concatenate(([0.0], np.cumsum(quantity[order])))
        self.levels = self.sign * np.unique(key)  # distinct limits, best first

    def strict(self, price: np.ndarray) -> np.ndarray:
        return self.cum[np.searchsorted(self.key, self.sign * price, side="left")]

    def at_least(self, price: np.ndarray) -> np.ndarray:
        return self.cum[np.searchsorted(self.key, self.sign * price, side="right")]


def leader_optimum(
    bid_price: np.ndarray,
    bid_kwh: np.ndarray,
    ask_price: np.ndarray,
    ask_kwh: np.ndarray,
    max_spread: float | None = None,
) -> tuple[float, float, float, float] | None:
    """(p_b, p_s, volume kWh, margin) of the leader's best prices, or None if no trade pays.

    Candidates: every (bid limit, ask limit) pair and, with a spread cap, every limit paired
    with the price one cap away (where the cap binds, the margin changes only at those).
    """
    if len(bid_price) == 0 or len(ask_price) == 0:
        return None
    demand = _Side(bid_price, bid_kwh, buyers=True)
    supply = _Side(ask_price, ask_kwh, buyers=False)
    pb_levels, ps_levels = demand.levels, supply.levels
    if len(pb_levels) * len(ps_levels) > MAX_PRICE_PAIRS and max_spread is None:
        return curve_optimum(bid_price, bid_kwh, ask_price, ask_kwh)
    if len(pb_levels) * len(ps_levels) > MAX_PRICE_PAIRS:
        raise NoTrade(
            f"stackelberg: {len(pb_levels)} bid limits x {len(ps_levels)} ask limits is more "
            f"than {MAX_PRICE_PAIRS} price pairs"
        )
    pb = np.repeat(pb_levels, len(ps_levels))
    ps = np.tile(ps_levels, len(pb_levels))
    if max_spread is not None:
        pb = np.concatenate((pb, pb_levels, ps_levels + max_spread))
        ps = np.concatenate((ps, pb_levels - max_spread, ps_levels))
    spread = pb - ps
    low = np.maximum(demand.strict(pb), supply.strict(ps))
    volume = np.minimum(demand.at_least(pb), supply.at_least(ps))
    feasible = (spread >= 0) & (volume >= low) & (volume > 0)
    if max_spread is not None:
        feasible &= spread <= max_spread * (1 + 1e-12)
    if not np.any(feasible):
        return None
    margin = np.where(feasible, spread * volume, -np.inf)
    best = margin.max()
    # among the best margins, the largest volume, then the smallest spread
    ties = np.flatnonzero(margin >= best - 1e-12 * max(1.0, abs(best)))
    k = max(ties.tolist(), key=lambda t: (volume[t], -spread[t]))
    return float(pb[k]), float(ps[k]), float(volume[k]), float(margin[k])


def curve_optimum(
    bid_price: np.ndarray, bid_kwh: np.ndarray, ask_price: np.ndarray, ask_kwh: np.ndarray
) -> tuple[float, float, float, float] | None:
    """`leader_optimum` without a spread cap, in O(n log n) for books of many distinct limits.

    A feasible pair (p_b, p_s) trading V has p_b at most the demand curve's price at V and p_s
    at least the supply curve's, and those two prices are themselves a feasible pair trading V;
    between two breakpoints of the curves both prices are fixed and V grows. So the best margin
    is (D(V) - S(V)) * V at a breakpoint V of the merged curves (ties: the largest volume).
    """
    bids_first = np.argsort(-bid_price, kind="stable")
    asks_first = np.argsort(ask_price, kind="stable")
    segments = merge_cumulative(np.cumsum(bid_kwh[bids_first]), np.cumsum(ask_kwh[asks_first]))
    if len(segments) == 0:
        return None
    pb = bid_price[bids_first][segments.bid]
    ps = ask_price[asks_first][segments.ask]
    volume = np.cumsum(segments.quantity_kwh)
    margin = np.where(pb >= ps, (pb - ps) * volume, -np.inf)
    best = margin.max()
    if not np.isfinite(best):
        return None
    ties = np.flatnonzero(margin >= best - 1e-12 * max(1.0, abs(best)))
    k = int(ties[-1])  # the largest volume among the best margins
    return float(pb[k]), float(ps[k]), float(volume[k]), float(margin[k])


def sellers_optimum(
    bid_price: np.ndarray, bid_kwh: np.ndarray, ask_price: np.ndarray, ask_kwh: np.ndarray
) -> tuple[float, float, float] | None:
    """(p, volume kWh, sellers' profit) when the sellers' aggregator sets one price p, or None.

    Buyers best-respond to p; the aggregator serves them from its cheapest asks, never below an
    ask's own limit (volume = min(demand at p, supply at p), feasible when the bids above p can
    all be served). Between two bid limits demand is fixed and supply grows with p, so the
    optimum is at a bid limit; the profit of each is the area between p and the cheapest asks.
    """
    if len(bid_price) == 0 or len(ask_price) == 0:
        return None
    demand = _Side(bid_price, bid_kwh, buyers=True)
    supply = _Side(ask_price, ask_kwh, buyers=False)
    price = demand.levels
    volume = np.minimum(demand.at_least(price), supply.at_least(price))
    feasible = (volume >= demand.strict(price)) & (volume > 0)
    if not np.any(feasible):
        return None
    order = np.argsort(ask_price, kind="stable")  # cheapest first
    cum_kwh = np.concatenate(([0.0], np.cumsum(ask_kwh[order])))
    cum_cost = np.concatenate(([0.0], np.cumsum(ask_kwh[order] * ask_price[order])))
    cost = np.interp(volume, cum_kwh, cum_cost)  # the cheapest asks' cost of each volume
    profit = np.where(feasible, price * volume - cost, -np.inf)
    best = profit.max()
    ties = np.flatnonzero(profit >= best - 1e-12 * max(1.0, abs(best)))
    k = max(ties.tolist(), key=lambda t: volume[t])
    return float(price[k]), float(volume[k]), float(profit[k])


def _fill(quantity_in_priority: np.ndarray, volume: float) -> np.ndarray:
    # what the orders before each one hold, summed directly: cumsum - quantity would lose a small
    # order's kWh to rounding next to a large one and hand the next order a sliver of noise
    start = np.concatenate(([0.0], np.cumsum(quantity_in_priority)[:-1]))
    fill: np.ndarray = np.clip(volume - start, 0.0, quantity_in_priority)
    return fill


class StackelbergMarket(OptimisationMechanism):
    """The operator sets internal buy and sell prices; peers respond (module docstring)."""

    linear_network = False  # its prices ignore the feeder: only the AC check applies

    name = "stackelberg"

    def __init__(
        self,
        leader: str = "operator",
        max_spread: float | str | None = None,  # "" (from a form or CSV) = None
        network: NetworkSettings | None = None,
        feeder: Any = None,
        voltage_band_pct: float = 6.0,
        voltage_margin_pct: float = 0.5,
        interval_s: float = 900.0,
        charges: str = "flat",
    ) -> None:
        if leader not in ("operator", "sellers"):
            raise ValueError(f"leader = {leader!r} must be 'operator' or 'sellers'")
        self.leader = leader
        self.max_spread = (
            None if max_spread in (None, "") else positive("max_spread", max_spread, True)
        )
        if self.max_spread is not None and leader == "sellers":
            raise ValueError("max_spread applies to leader = 'operator' only")
        self.network = network_settings(
            network, feeder, voltage_band_pct, voltage_margin_pct, interval_s, charges
        )

    @property
    def params(self) -> dict[str, Any]:
        return {"leader": self.leader, "max_spread": self.max_spread, **self.network_params()}

    def solve(self, book: OrderColumns) -> Outcome:
        bids, asks = side_books(book)
        if self.leader == "sellers":
            chosen = sellers_optimum(bids.price, bids.quantity_kwh, asks.price, asks.quantity_kwh)
            optimum = None if chosen is None else (chosen[0], chosen[0], chosen[1], chosen[2])
        else:
            optimum = leader_optimum(
                bids.price, bids.quantity_kwh, asks.price, asks.quantity_kwh, self.max_spread
            )
        if optimum is None:  # no bid at or above an ask: nothing to gain
            return Outcome(TradeTable.empty(), None)
        buy_price, sell_price, volume, margin = optimum
        segments = pair_fills(_fill(bids.quantity_kwh, volume), _fill(asks.quantity_kwh, volume))
        n = len(segments.quantity_kwh)
        table = TradeTable(
            buy_row=bids.rows[segments.bid],
            sell_row=asks.rows[segments.ask],
            quantity_kwh=segments.quantity_kwh,
            buyer_price=np.full(n, buy_price),
            seller_price=np.full(n, sell_price),
        )
        report = {
            "objective": margin,
            "leader": self.leader,
            "leader_margin": margin,
            "buy_price": buy_price,
            "sell_price": sell_price,
            "iterations": None,
        }
        return Outcome(table, buy_price, report)
