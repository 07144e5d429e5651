"""Social-welfare clearing, distributed by ADMM (seed 4.3.3, equations 8-15).

The welfare problem split between the peers and a coordinator (the market operator):

    minimise  sum_n f_n(x_n) + I_C(z)   subject to  x - z = 0                       (8), (9)

x_n is peer n's net position (kWh, + = sold); f_n(x_n) is the least cost (minus utility) of its
own orders that gives that position: only peer n knows it. z is the coordinator's copy, kept in
C = {sum_n z_n = 0, and the linearised feeder limits when a feeder is given}. With the scaled dual
u (price = -rho u), the iteration is

    x_n <- argmin f_n(x_n) + rho/2 (x_n - z_n + u_n)^2     each peer, on its own data   (11)
    z   <- projection of x + u onto C                      the coordinator              (12)
    u   <- u + x - z                                                                    (13)

and stops when the primal residual |x - z| (14) and the dual residual rho |z - z_prev| (15) are
below eps_abs * sqrt(N) + eps_rel * (the scale of x, z, resp. rho u) (Boyd et al. 2011, 3.3).
Quantities are counted in units of the book's largest order (or of the pool's gainful volume
when smaller), so rho (currency per unit^2) and the tolerances mean the same for a book of Wh as
of MWh; the reported primal residual is in kWh.
rho is updated by residual balancing (Boyd et al. 3.4.1) every 10 iterations: when the primal
residual is more than 10 times the dual, rho doubles (u halves); when the dual is more than 10
times the primal, rho halves (u doubles). After iteration 500 rho stays fixed, so the iteration
keeps ADMM's convergence guarantee (adapting at every iteration made step offers oscillate).

A peer's step (11) is `peer_update(offers, message)`: a plain function of the peer's own offers
and the coordinator's message (its target z_n - u_n and rho), returning its position, its
marginal price and its order fills; it is exact (the proximal step of a piecewise-linear or
piecewise-quadratic cost, solved on its breakpoints), so it can run in the peer's own agent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from testbed.market.columns import OrderColumns
from testbed.market.optimisation.base import (
    NoTrade,
    OptimisationMechanism,
    Outcome,
    network_settings,
    pool_table,
    positive,
)
from testbed.market.optimisation.community import Community, clean_fills, gainful_volume_kwh
from testbed.network.settings import LinearNetwork, NetworkSettings


@dataclass(frozen=True)
class PeerOffers:
    """One peer's own data: its bids and asks (limit price per kWh, kWh), in priority order."""

    bid_price: np.ndarray
    bid_qty: np.ndarray
    ask_price: np.ndarray
    ask_qty: np.ndarray
    curvature: float = 0.0  # utility p x - curvature x^2 / 2 per order (0: steps)

    @classmethod
    def of(
        cls, community: Community, peer: int, curvature: float = 0.0, unit_kwh: float = 1.0
    ) -> PeerOffers:
        """Peer `peer`'s offers with quantities in units of `unit_kwh` (curvature per unit^2)."""
        bids = community.bid_qty[peer] > 0
        asks = community.ask_qty[peer] > 0
        return cls(
            community.bid_price[peer][bids],
            community.bid_qty[peer][bids] / unit_kwh,
            community.ask_price[peer][asks],
            community.ask_qty[peer][asks] / unit_kwh,
            curvature * unit_kwh,
        )

    @cached_property
    def curve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The supply curve's breakpoints and its left and right limits there (None: no offers);
        fixed for the whole iteration, so computed once."""
        c = self.curvature
        prices = np.concatenate((self.bid_price, self.ask_price))
        if len(prices) == 0:
            return None
        if c > 0:
            kinks = (self.bid_price - c * self.bid_qty, self.ask_price + c * self.ask_qty)
            prices = np.concatenate((prices, *kinks))
        points = np.unique(prices)
        return points, _supply(self, points, "left"), _supply(self, points, "right")

    def value(self, bid_fill: np.ndarray, ask_fill: np.ndarray) -> float:
        """The peer's welfare from these fills: -f_n."""
        c = self.curvature
        return float(
            self.bid_price @ bid_fill
            - self.ask_price @ ask_fill
            - c / 2 * (bid_fill @ bid_fill + ask_fill @ ask_fill)
        )


@dataclass(frozen=True)
class PeerMessage:
    """What the coordinator sends peer n: the target z_n - u_n and the penalty rho."""

    target_kwh: float
    rho: float  # math.inf: realise the target exactly (the final dispatch)


@dataclass(frozen=True)
class PeerReply:
    """What peer n answers: its position, its marginal price and its order fills."""

    position_kwh: float
    price: float
    bid_fill: np.ndarray
    ask_fill: np.ndarray


def _supply(offers: PeerOffers, price: np.ndarray, side: str) -> np.ndarray:
    """Net position (sold - bought) at each price; side "left"/"right" at the steps' jumps."""
    p = price[:, None]
    c = offers.curvature
    sold: np.ndarray
    bought: np.ndarray
    if c > 0:
        sold = np.clip((p - offers.ask_price) / c, 0.0, offers.ask_qty).sum(axis=1)
        bought = np.clip((offers.bid_price - p) / c, 0.0, offers.bid_qty).sum(axis=1)
        net: np.ndarray = sold - bought
        return net
    if side == "left":
        sold = ((offers.ask_price < p) * offers.ask_qty).sum(axis=1)
        bought = ((offers.bid_price >= p) * offers.bid_qty).sum(axis=1)
    else:
        sold = ((offers.ask_price <= p) * offers.ask_qty).sum(axis=1)
        bought = ((offers.bid_price > p) * offers.bid_qty).sum(axis=1)
    net = sold - bought
    return net


def peer_update(offers: PeerOffers, message: PeerMessage) -> PeerReply:
    """Step (11) for one peer: argmin f(x) + rho/2 (x - target)^2, exactly, with its fills."""
    position, price = peer_position(offers, message)
    bid_fill, ask_fill = _fills(offers, price, position)
    return PeerReply(position, price, bid_fill, ask_fill)


def peer_position(offers: PeerOffers, message: PeerMessage) -> tuple[float, float]:
    """(position, marginal price) of step (11), exactly.

    The optimum has price pi = rho (target - x) and x in the peer's supply at pi; the supply is
    monotone, so pi is found on the breakpoints of the supply curve and, between two of them,
    by the straight line the curve is there.
    """
    curve = offers.curve
    if curve is None:
        return 0.0, -message.rho * message.target_kwh
    points, supply_left, supply_right = curve
    inverse_rho = 0.0 if math.isinf(message.rho) else 1.0 / message.rho
    target = message.target_kwh
    left = supply_left + points * inverse_rho - target
    right = supply_right + points * inverse_rho - target
    above = np.flatnonzero(right >= 0)
    if len(above) == 0:  # beyond the last breakpoint the supply is flat
        flat = float(supply_right[-1])
        price = (target - flat) * message.rho if inverse_rho else float(points[-1])
    else:
        i = int(above[0])
        if left[i] <= 0:
            price = float(points[i])
        elif i == 0:
            flat = float(supply_left[0])
            price = (target - flat) * message.rho if inverse_rho else float(points[0])
        else:
            a, b = float(points[i - 1]), float(points[i])
            price = a - float(right[i - 1]) * (b - a) / float(left[i] - right[i - 1])
    low, high = _supply_range(offers, price)
    position = min(max(target - price * inverse_rho, low), high)
    return position, price


def _supply_range(offers: PeerOffers, price: float) -> tuple[float, float]:
    """(lowest, highest) position the peer's supply allows at `price`."""
    if offers.curvature > 0:
        at = np.array([price])
        return float(_supply(offers, at, "left")[0]), float(_supply(offers, at, "right")[0])
    curve = offers.curve
    if curve is None:  # no offers: no position at any price
        return 0.0, 0.0
    points, supply_left, supply_right = curve
    k = int(np.searchsorted(points, price))
    if k < len(points) and points[k] == price:
        return float(supply_left[k]), float(supply_right[k])
    flat = float(supply_left[0]) if k == 0 else float(supply_right[k - 1])
    return flat, flat


def _fills(offers: PeerOffers, price: float, position: float) -> tuple[np.ndarray, np.ndarray]:
    c = offers.curvature
    if c > 0:
        ask = np.clip((price - offers.ask_price) / c, 0.0, offers.ask_qty)
        bid = np.clip((offers.bid_price - price) / c, 0.0, offers.bid_qty)
        return bid, ask
    ask = np.where(offers.ask_price < price, offers.ask_qty, 0.0)
    bid = np.where(offers.bid_price > price, offers.bid_qty, 0.0)
    rest = position - (ask.sum() - bid.sum())
    at_ask = np.flatnonzero(offers.ask_price == price)
    at_bid = np.flatnonzero(offers.bid_price == price)
    for rows, fill, amount in ((at_ask, ask, rest), (at_bid, bid, -rest)):
        for row in rows.tolist():  # priority order: earlier orders first
            if amount <= 0:
                break
            take = min(amount, float(offers.ask_qty[row] if fill is ask else offers.bid_qty[row]))
            fill[row] = take
            amount -= take
    return bid, ask


class Coordinator:
    """Step (12): the projection onto C (balance, and the feeder's linearised limits)."""

    def __init__(self, size: int, linear: LinearNetwork | None, unit_kwh: float = 1.0) -> None:
        self.size = size
        self.linear = linear
        self._problem = None
        if linear is not None:
            import cvxpy as cp

            self._point = cp.Parameter(size)
            self._z = cp.Variable(size)
            low, high = linear.voltage_limits_v
            voltage = linear.slack_voltage_v + (linear.voltage_matrix * unit_kwh) @ self._z
            flow = (linear.flow_matrix * unit_kwh) @ self._z
            self._problem = cp.Problem(
                cp.Minimize(cp.sum_squares(self._z - self._point)),
                [
                    cp.sum(self._z) == 0,
                    voltage <= high,
                    voltage >= low,
                    flow <= linear.ratings_kw,
                    flow >= -linear.ratings_kw,
                ],
            )

    def project(self, point: np.ndarray) -> np.ndarray:
        if self._problem is None:
            centred: np.ndarray = point - point.mean()
            return centred
        self._point.value = point
        self._problem.solve(solver="CLARABEL")
        if self._problem.status not in ("optimal", "optimal_inaccurate"):
            raise NoTrade(f"the feeder's limits cannot be met ({self._problem.status})")
        value = np.asarray(self._z.value, dtype=float)
        balanced: np.ndarray = value - value.mean()  # exact balance
        return balanced


@dataclass
class AdmmSolution:
    community: Community
    row_fill: np.ndarray
    price: np.ndarray  # per peer, currency per kWh
    positions_kwh: np.ndarray
    welfare: float  # sum of the peers' values (the objective)
    iterations: int
    primal_residual: float
    dual_residual: float
    rho: float  # per (largest order)^2: the penalty of the scaled problem
    history: list[tuple[float, float, float]]  # (primal, dual, rho) per iteration, scaled


def run_admm(
    community: Community,
    *,
    curvature: float = 0.0,
    network: NetworkSettings | None = None,
    rho: float = 1.0,
    eps_abs: float = 1e-7,
    eps_rel: float = 1e-6,
    max_iterations: int = 5000,
    balance_every: int = 10,
    balance_until: int = 500,
) -> AdmmSolution:
    """Iterate (11)-(13) until (14) and (15) hold; raises NoTrade if it does not converge."""
    n = community.size
    # Quantities in units of the book's largest order, so that rho and the tolerances mean the
    # same for a book of Wh and a book of MWh; prices stay per kWh.
    unit_kwh = max(
        float(community.bid_qty.max(initial=0.0)), float(community.ask_qty.max(initial=0.0))
    )
    # ... or of the pool's gainful volume when that is smaller: an order far larger than what
    # can trade (or trades at a tie) would otherwise make the tolerances too coarse
    volume = gainful_volume_kwh(community.book)
    if 0 < volume < unit_kwh:
        unit_kwh = volume
    unit_kwh = unit_kwh if unit_kwh > 0 else 1.0
    offers = [PeerOffers.of(community, peer, curvature, unit_kwh) for peer in range(n)]
    linear = network.linear(community.peers) if network is not None else None
    coordinator = Coordinator(n, linear, unit_kwh)
    x = np.zeros(n)
    z = np.zeros(n)
    u = np.zeros(n)
    history: list[tuple[float, float, float]] = []
    primal = dual = math.inf
    iteration = 0
    for iteration in range(1, max_iterations + 1):
        targets = (z - u).tolist()
        x = np.array([peer_position(offers[i], PeerMessage(targets[i], rho))[0] for i in range(n)])
        z_previous = z
        z = coordinator.project(x + u)
        u = u + x - z
        primal = float(np.linalg.norm(x - z))
        dual = float(rho * np.linalg.norm(z - z_previous))
        history.append((primal, dual, rho))
        root = math.sqrt(n)
        eps_primal = root * eps_abs + eps_rel * max(np.linalg.norm(x), np.linalg.norm(z))
        eps_dual = root * eps_abs + eps_rel * float(np.linalg.norm(rho * u))
        if primal <= eps_primal and dual <= eps_dual:
            break
        if iteration % balance_every == 0 and iteration <= balance_until:
            if primal > 10 * dual:
                rho, u = rho * 2, u / 2
            elif dual > 10 * primal:
                rho, u = rho / 2, u * 2
    else:
        raise NoTrade(
            f"ADMM did not converge in {max_iterations} iterations "
            f"(primal residual {primal * unit_kwh:.3g} kWh, dual residual {dual:.3g})"
        )
    finals = [peer_update(offers[i], PeerMessage(float(z[i]), math.inf)) for i in range(n)]
    bid_fill = np.zeros_like(community.bid_qty)
    ask_fill = np.zeros_like(community.ask_qty)
    for i, reply in enumerate(finals):
        # fills within the stopping tolerance of empty or full are snapped to it
        snap = 10 * eps_abs
        bids = clean_fills(reply.bid_fill, offers[i].bid_qty, snap)
        asks = clean_fills(reply.ask_fill, offers[i].ask_qty, snap)
        bid_fill[i][community.bid_qty[i] > 0] = bids * unit_kwh
        ask_fill[i][community.ask_qty[i] > 0] = asks * unit_kwh
    # The peers realise z only up to the solver's tolerance: the published fills are the bids and
    # asks paired in priority order, so that what is bought is exactly what is sold.
    fills = community.balanced(community.row_fills(bid_fill, ask_fill))
    buy_row, sell_row, kwh = community.pool_pairs(fills)
    if network is None:
        # In a pool the optimum never pairs a bid below an ask; such a pair is the residue of
        # orders smaller than the tolerance (relative to the largest order): it does not trade.
        gain = community.book.price[buy_row] - community.book.price[sell_row]
        keep = gain >= 0
        buy_row, sell_row, kwh = buy_row[keep], sell_row[keep], kwh[keep]
    row_fill = np.zeros(len(community.book))
    np.add.at(row_fill, buy_row, kwh)
    np.add.at(row_fill, sell_row, kwh)
    book = community.book
    signed = np.where(book.is_buy, -row_fill, row_fill)
    positions = np.zeros(n)
    if len(book):
        np.add.at(positions, community.peer_of(np.arange(len(book))), signed)
    welfare = float(kwh @ (book.price[buy_row] - book.price[sell_row])) if len(kwh) else 0.0
    if curvature > 0:
        welfare -= curvature / 2 * float(row_fill @ row_fill)
    return AdmmSolution(
        community=community,
        row_fill=row_fill,
        price=-rho * u,
        positions_kwh=positions,
        welfare=welfare,
        iterations=iteration,
        primal_residual=primal * unit_kwh,
        dual_residual=dual,
        rho=rho,
        history=history,
    )


def published_prices(
    community: Community, row_fill: np.ndarray, price: np.ndarray, pool: bool
) -> np.ndarray:
    """The prices the trades are settled at, from the converged duals -rho u.

    The duals are exact only at the limit: each peer's price is clipped into the range its own
    fills allow (no filled bid above its limit, no filled ask below its own), so every trade is
    individually rational. In a pool (no feeder) all peers share one price, so payments balance.
    """
    book = community.book
    filled = row_fill > 0
    peer = community.peer_of(np.arange(len(book))) if len(book) else np.zeros(0, dtype=np.int64)
    low = np.full(community.size, -np.inf)
    high = np.full(community.size, np.inf)
    asks, bids = filled & ~book.is_buy, filled & book.is_buy
    np.maximum.at(low, peer[asks], book.price[asks])
    np.minimum.at(high, peer[bids], book.price[bids])
    if pool:
        common = float(np.clip(np.mean(price), low.max(initial=-np.inf), high.min(initial=np.inf)))
        return np.full(community.size, common)
    clipped: np.ndarray = np.clip(price, low, high)
    return clipped


class AdmmMarket(OptimisationMechanism):
    """Distributed social-welfare clearing by ADMM (see the module docstring)."""

    name = "admm"

    def __init__(
        self,
        rho: float = 1.0,
        eps_abs: float = 1e-7,
        eps_rel: float = 1e-6,
        max_iterations: int = 5000,
        curvature: float = 0.0,
        network: NetworkSettings | None = None,
        feeder: Any = None,
        voltage_band_pct: float = 6.0,
        voltage_margin_pct: float = 0.5,
        interval_s: float = 900.0,
        charges: str = "flat",
    ) -> None:
        self.rho = positive("rho", rho)
        self.eps_abs = positive("eps_abs", eps_abs)
        self.eps_rel = positive("eps_rel", eps_rel, allow_zero=True)
        self.max_iterations = int(positive("max_iterations", max_iterations))
        self.curvature = positive("curvature", curvature, allow_zero=True)
        self.network = network_settings(
            network, feeder, voltage_band_pct, voltage_margin_pct, interval_s, charges
        )

    @property
    def params(self) -> dict[str, Any]:
        return {
            "rho": self.rho,
            "eps_abs": self.eps_abs,
            "eps_rel": self.eps_rel,
            "max_iterations": self.max_iterations,
            "curvature": self.curvature,
            **self.network_params(),
        }

    def solve(self, book: OrderColumns) -> Outcome:
        community = Community.from_book(book, pad=False)
        solution = run_admm(
            community,
            curvature=self.curvature,
            network=self.network,
            rho=self.rho,
            eps_abs=self.eps_abs,
            eps_rel=self.eps_rel,
            max_iterations=self.max_iterations,
        )
        peer_of_row = community.peer_of(np.arange(len(book)))
        prices = published_prices(
            community, solution.row_fill, solution.price, self.network is None
        )
        price_of_row = prices[peer_of_row]
        table = pool_table(community.pool_pairs(solution.row_fill), price_of_row, price_of_row)
        volume = float(table.quantity_kwh.sum())
        average = float(table.quantity_kwh @ table.buyer_price / volume) if volume > 0 else None
        report = {
            "objective": solution.welfare,
            "iterations": solution.iterations,
            "primal_residual": solution.primal_residual,
            "dual_residual": solution.dual_residual,
            "rho_final": solution.rho,
            "peer_prices": dict(zip(community.peers, prices.tolist(), strict=True)),
            "positions_kwh": dict(
                zip(community.peers, solution.positions_kwh.tolist(), strict=True)
            ),
        }
        return Outcome(table, average, report)
