"""Social-welfare clearing, centralised (seed 4.3): one convex problem per interval, cvxpy.

    maximise  sum_bids p x - sum_asks p x - curvature/2 |x|^2 - sum_pairs (c t + L t^2)
    s.t.      0 <= x <= Q for every order (step)
              pool:      sum of buying = sum of selling
              bilateral: sell_n = sum_m t_nm, buy_m = sum_n t_nm, t >= 0   (Sorin/Pinson)
              network:   V_min <= V_slack + Av (sell - buy) <= V_max,  |Af (sell - buy)| <= rating

Steps are a peer's orders (padded per peer), so books of similar shape share one compiled problem:
the prices, quantities and pair charges are cvxpy Parameters and each interval only re-solves.
Prices are the duals of each peer's buy and sell totals: beta_m what buyer m pays per kWh (all
charges included), sigma_n what seller n receives. Every filled bid is priced at most its limit,
every filled ask at least its own (the optimality conditions), so trades are individually rational.
"""

from __future__ import annotations

from dataclasses import dataclass
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
from testbed.market.optimisation.community import (
    Community,
    bilateral_pairs,
    clean_fills,
    gainful_volume_kwh,
)
from testbed.market.result import TradeTable
from testbed.network.settings import LinearNetwork, NetworkSettings

_PROBLEMS: dict[tuple[Any, ...], _Compiled] = {}


@dataclass
class WelfareSolution:
    """The optimum of one interval's welfare problem."""

    community: Community
    row_fill: np.ndarray  # fill of every book row
    buy_price: np.ndarray  # beta per peer
    sell_price: np.ndarray  # sigma per peer
    pair_kwh: np.ndarray | None  # t[seller, buyer] (bilateral)
    pair_charge: np.ndarray | None  # usage + pair charge per kWh (bilateral)
    pair_loss: np.ndarray | None  # loss coefficient (bilateral)
    objective: float
    status: str
    solver: str
    iterations: int | None
    solve_time_s: float | None

    @property
    def positions_kwh(self) -> np.ndarray:
        c = self.community
        sell = np.zeros(c.size)
        buy = np.zeros(c.size)
        np.add.at(sell, c.peer_of(np.flatnonzero(~c.book.is_buy)), self.row_fill[~c.book.is_buy])
        np.add.at(buy, c.peer_of(np.flatnonzero(c.book.is_buy)), self.row_fill[c.book.is_buy])
        return sell - buy


class _Compiled:
    """One cvxpy problem with its parameters, built once per shape."""

    def __init__(
        self,
        n: int,
        kb: int,
        ka: int,
        bilateral: bool,
        curvature: float,
        linear: LinearNetwork | None,
        unit_kwh: float = 1.0,
    ) -> None:
        """Quantities are counted in units of `unit_kwh` (a power of two: exact), so `curvature`
        is per unit² and the network matrices are multiplied by it."""
        import cvxpy as cp

        self.bid_price = cp.Parameter((n, kb))
        self.bid_qty = cp.Parameter((n, kb), nonneg=True)
        self.ask_price = cp.Parameter((n, ka))
        self.ask_qty = cp.Parameter((n, ka), nonneg=True)
        self.xb = cp.Variable((n, kb), nonneg=True)
        self.xa = cp.Variable((n, ka), nonneg=True)
        self.buy = cp.Variable(n)
        self.sell = cp.Variable(n)
        self.buy_total = self.buy == cp.sum(self.xb, axis=1)
        self.sell_total = self.sell == cp.sum(self.xa, axis=1)
        constraints = [self.xb <= self.bid_qty, self.xa <= self.ask_qty]
        constraints += [self.buy_total, self.sell_total]
        # parameter-times-variable terms as dot products of flattened arrays: cvxpy compiles those
        # in linear memory, whereas sum(multiply(P, X)) of two (N, K) arrays made a dense
        # (N*K)^2 tensor (8 GB and 25 s for a book of 30,000 orders of 1,000 peers)
        welfare = _dot(self.bid_price, self.xb) - _dot(self.ask_price, self.xa)
        if curvature > 0:
            welfare -= curvature / 2 * (cp.sum_squares(self.xb) + cp.sum_squares(self.xa))
        self.quadratic = curvature > 0
        self.network: NetworkSettings | None = None  # what the problem was built for
        self.t = None
        if bilateral:
            self.t = cp.Variable((n, n), nonneg=True)
            self.pair_charge = cp.Parameter((n, n), nonneg=True)
            self.pair_loss = cp.Parameter((n, n), nonneg=True)
            constraints += [cp.sum(self.t, axis=1) == self.sell, cp.sum(self.t, axis=0) == self.buy]
            welfare -= _dot(self.pair_charge, self.t)
            welfare -= _dot(self.pair_loss, cp.square(self.t))
            self.quadratic = True
        else:
            constraints.append(cp.sum(self.buy) == cp.sum(self.sell))
        if linear is not None:
            low, high = linear.voltage_limits_v
            position = (self.sell - self.buy) * unit_kwh
            voltage = linear.slack_voltage_v + linear.voltage_matrix @ position
            flow = linear.flow_matrix @ position
            constraints += [voltage <= high, voltage >= low]
            constraints += [flow <= linear.ratings_kw, flow >= -linear.ratings_kw]
        self.problem = cp.Problem(cp.Maximize(welfare), constraints)

    def solve(self, solver: str | None) -> tuple[str, str]:
        import cvxpy as cp

        name = solver or ("CLARABEL" if self.quadratic else "HIGHS")
        if name == "HIGHS":
            silence_highs_banner()
        # A large problem is compiled afresh, with the parameters as constants: cvxpy's
        # parametrised compilation of two million steps overflows its own index arithmetic
        large = self.xb.size + self.xa.size > _PARAMETRISED_UP_TO
        try:
            self.problem.solve(solver=name, warm_start=False, ignore_dpp=large)
        except cp.SolverError as error:
            raise NoTrade(f"solver {name} failed: {error}") from None
        except ValueError:  # cvxpy cannot unpack what the solver gave back
            largest = max(
                float(np.abs(self.bid_price.value).max(initial=0.0)),
                float(np.abs(self.ask_price.value).max(initial=0.0)),
            )
            raise NoTrade(
                f"solver {name} returned no solution (largest |price| {largest:.3g} per kWh; "
                "HiGHS takes 1e20 as infinite)"
            ) from None
        return str(self.problem.status), name


def _dot(parameter: Any, expression: Any) -> Any:
    """sum(parameter * expression) of two arrays of one shape, as a dot product of vectors."""
    import cvxpy as cp

    return cp.vec(parameter, order="C") @ cp.vec(expression, order="C")


_PARAMETRISED_UP_TO = 1 << 18  # order steps (padded) kept as a compiled, parametrised problem
_BANNER_SHOWN = False


def silence_highs_banner() -> None:
    """HiGHS prints a banner on stdout the first time a solver is made in a process; make that
    first one with stdout pointed at /dev/null, so a trades CSV on stdout stays clean."""
    global _BANNER_SHOWN
    if _BANNER_SHOWN:
        return
    import os
    import sys

    import highspy

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    _BANNER_SHOWN = True


def solve_welfare(
    community: Community,
    *,
    bilateral: bool = False,
    curvature: float = 0.0,
    pair_charges: np.ndarray | None = None,
    network: NetworkSettings | None = None,
    solver: str | None = None,
) -> WelfareSolution:
    """The welfare optimum of `community` (raises NoTrade when there is none to publish)."""
    c = community
    linear: LinearNetwork | None = network.linear(c.peers) if network is not None else None
    # Quantities in units of the book's largest order (rounded to a power of two, so the scaling
    # is exact): a book of 1e-9 kWh orders or of 1e300 kWh orders is the same problem to the
    # solver, whose tolerances are absolute. Prices and duals keep their units.
    largest = max(float(c.bid_qty.max(initial=0.0)), float(c.ask_qty.max(initial=0.0)))
    # (or of the pool's gainful volume when that is smaller, so that an order far larger than
    # what can trade does not make the solver's tolerance coarse for the trades that matter)
    volume = gainful_volume_kwh(c.book)
    unit = _power_of_two(volume if 0 < volume < largest else largest)
    key = (
        c.size,
        c.bid_price.shape[1],
        c.ask_price.shape[1],
        bilateral,
        float(curvature),
        None if network is None else (id(network), c.peers),
        unit,
    )
    compiled = _PROBLEMS.get(key)
    if compiled is None:
        compiled = _Compiled(
            c.size, *key[1:3], bilateral, float(curvature) * unit, linear, unit_kwh=unit
        )
        # the key holds the settings' id: the cache keeps the settings alive, so that no other
        # settings object can later reuse that id and be given this problem
        compiled.network = network
        if len(_PROBLEMS) > 64:
            _PROBLEMS.clear()
        _PROBLEMS[key] = compiled
    compiled.bid_price.value = c.bid_price
    compiled.bid_qty.value = c.bid_qty / unit
    compiled.ask_price.value = c.ask_price
    compiled.ask_qty.value = c.ask_qty / unit
    charge = loss = None
    if bilateral:
        charge = np.zeros((c.size, c.size))
        loss = np.zeros((c.size, c.size))
        if linear is not None:
            charge += linear.usage_charge
            loss += linear.loss_coefficient
        if pair_charges is not None:
            charge += pair_charges
        np.fill_diagonal(charge, 0.0)  # a peer netting its own orders uses no network
        np.fill_diagonal(loss, 0.0)
        compiled.pair_charge.value = charge
        compiled.pair_loss.value = loss * unit
    status, solver_name = compiled.solve(solver)
    if status not in ("optimal", "optimal_inaccurate"):
        raise NoTrade(f"welfare problem is {status} (solver {solver_name})")
    # tolerances in the solver's units (the largest order is 0.5 to 1 of them)
    tolerance = 1e-7 if compiled.quadratic else 1e-12
    xb = clean_fills(compiled.xb.value, c.bid_qty / unit, tolerance) * unit
    xa = clean_fills(compiled.xa.value, c.ask_qty / unit, tolerance) * unit
    stats = compiled.problem.solver_stats
    return WelfareSolution(
        community=c,
        row_fill=c.row_fills(xb, xa),
        buy_price=-np.asarray(compiled.buy_total.dual_value, dtype=float).reshape(c.size),
        sell_price=np.asarray(compiled.sell_total.dual_value, dtype=float).reshape(c.size),
        pair_kwh=None if compiled.t is None else np.maximum(compiled.t.value, 0.0) * unit,
        pair_charge=charge,
        pair_loss=loss,
        objective=float(compiled.problem.value) * unit,
        status=status,
        solver=solver_name,
        iterations=getattr(stats, "num_iters", None),
        solve_time_s=getattr(stats, "solve_time", None),
    )


def _power_of_two(value: float) -> float:
    """The power of two at or just below `value` (1 for zero or a non-finite value)."""
    if not (np.isfinite(value) and value > 0):
        return 1.0
    _, exponent = np.frexp(value)
    return float(np.ldexp(1.0, int(exponent) - 1))


def welfare_table(solution: WelfareSolution) -> TradeTable:
    """Order-level trades of a welfare solution, priced as the module docstring says."""
    c = solution.community
    peer_of_row = np.zeros(len(c.book), dtype=np.int64)
    if len(c.book):
        peer_of_row = c.peer_of(np.arange(len(c.book)))
    pair_kwh, pair_charge, pair_loss = solution.pair_kwh, solution.pair_charge, solution.pair_loss
    if pair_kwh is None or pair_charge is None or pair_loss is None:  # all three or none
        return pool_table(
            c.pool_pairs(solution.row_fill),
            solution.buy_price[peer_of_row],
            solution.sell_price[peer_of_row],
        )
    buy_row, sell_row, kwh, seller, buyer = bilateral_pairs(c, solution.row_fill, pair_kwh)
    charge = pair_charge[seller, buyer] + pair_loss[seller, buyer] * (pair_kwh[seller, buyer])
    return TradeTable(
        buy_row=buy_row,
        sell_row=sell_row,
        quantity_kwh=kwh,
        buyer_price=solution.buy_price[buyer] - charge,
        seller_price=solution.sell_price[seller],
        network_charge=charge,
    )


def solution_report(solution: WelfareSolution) -> dict[str, Any]:
    c = solution.community
    return {
        "objective": solution.objective,
        "solver": solution.solver,
        "status": solution.status,
        "iterations": solution.iterations,
        "solve_time_s": solution.solve_time_s,
        "peer_prices": {
            peer: {
                "buy": float(solution.buy_price[i]) if c.bid_qty[i].sum() > 0 else None,
                "sell": float(solution.sell_price[i]) if c.ask_qty[i].sum() > 0 else None,
            }
            for i, peer in enumerate(c.peers)
        },
        "positions_kwh": dict(zip(c.peers, solution.positions_kwh.tolist(), strict=True)),
        "bilateral_kwh": None
        if solution.pair_kwh is None
        else {
            f"{c.peers[s]}>{c.peers[b]}": float(solution.pair_kwh[s, b])
            for s, b in zip(*np.nonzero(solution.pair_kwh > 1e-9), strict=True)
        },
    }


def parse_pair_charges(value: Any, peers: tuple[str, ...]) -> np.ndarray | None:
    """{"A>B": 0.3} or "A>B:0.3,B>C:0.1" -> an (N, N) array [seller, buyer] (currency/kWh)."""
    if value in (None, "", {}):
        return None
    if isinstance(value, str):
        items = {}
        for part in value.split(","):
            pair, sep, amount = part.partition(":")
            if not sep:
                raise ValueError(f"pair_charges item {part!r} is not SELLER>BUYER:CHARGE")
            items[pair.strip()] = amount
        value = items
    index = {peer: i for i, peer in enumerate(peers)}
    out = np.zeros((len(peers), len(peers)))
    for pair, amount in dict(value).items():
        seller, sep, buyer = str(pair).partition(">")
        if not sep:
            raise ValueError(f"pair_charges key {pair!r} is not SELLER>BUYER")
        charge = positive(f"pair_charges[{pair!r}]", amount, allow_zero=True)
        if seller.strip() in index and buyer.strip() in index:
            out[index[seller.strip()], index[buyer.strip()]] = charge
    return out


class WelfareMarket(OptimisationMechanism):
    """Centralised social-welfare clearing (see the module docstring)."""

    name = "welfare"

    def __init__(
        self,
        bilateral: bool = False,
        curvature: float = 0.0,
        pair_charges: Any = None,
        solver: str | None = None,
        network: NetworkSettings | None = None,
        feeder: Any = None,
        voltage_band_pct: float = 6.0,
        voltage_margin_pct: float = 0.5,
        interval_s: float = 900.0,
        charges: str = "flat",
    ) -> None:
        self.bilateral = _flag("bilateral", bilateral)
        self.curvature = positive("curvature", curvature, allow_zero=True)
        self.pair_charges = pair_charges
        parse_pair_charges(pair_charges, ())  # the format is checked now
        self.solver = _installed_solver(solver)
        self.network = network_settings(
            network, feeder, voltage_band_pct, voltage_margin_pct, interval_s, charges
        )

    @property
    def params(self) -> dict[str, Any]:
        return {
            "bilateral": self.bilateral,
            "curvature": self.curvature,
            "pair_charges": self.pair_charges,
            "solver": self.solver,
            **self.network_params(),
        }

    def solve(self, book: OrderColumns) -> Outcome:
        community = Community.from_book(book)
        solution = solve_welfare(
            community,
            bilateral=self.bilateral,
            curvature=self.curvature,
            pair_charges=parse_pair_charges(self.pair_charges, community.peers),
            network=self.network,
            solver=self.solver,
        )
        table = welfare_table(solution)
        return Outcome(table, _average_price(table), solution_report(solution))


def _installed_solver(solver: Any) -> str | None:
    """The solver's cvxpy name, or a ValueError naming the installed ones."""
    if solver in (None, ""):
        return None
    import cvxpy as cp

    name = str(solver).strip().upper()
    installed = cp.installed_solvers()
    if name not in installed:
        choices = ", ".join(installed)
        raise ValueError(f"solver = {solver!r} is not installed (installed: {choices})")
    return name


def _average_price(table: TradeTable) -> float | None:
    volume = float(np.sum(table.quantity_kwh))
    if volume <= 0:
        return None
    return float(np.sum(table.quantity_kwh * table.buyer_price) / volume)


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.strip().lower() in ("true", "yes", "1")
    raise ValueError(f"{name} = {value!r} must be true or false")
