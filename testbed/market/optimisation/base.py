"""The skeleton the optimisation and game-theoretic mechanisms share.

`clear(book)`: validate (as the auctions do), drop orders from peers the feeder does not know,
solve (the subclass's `solve`), build the trades and report, then the network step (charges per
trade, AC check). Anything that goes wrong inside (infeasible, solver failure, no convergence)
becomes a recorded reason and an interval without trades: the run goes on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np

from testbed.market.columns import OrderColumns
from testbed.market.matching import cross, side_books
from testbed.market.mechanism import Book, Rejected, prepare_book
from testbed.market.network_step import apply_network, fall_back, off_feeder
from testbed.market.result import ClearingResult, SupplyDemandCurves, TradeTable, build_report
from testbed.network.feeder import load_feeder
from testbed.network.settings import NetworkSettings


class NoTrade(Exception):
    """The interval falls back to the grid, for the reason given."""


@dataclass
class Outcome:
    """What a method's `solve` returns: trades as book rows with prices, and its report."""

    table: TradeTable
    clearing_price: float | None
    report: dict[str, Any] = field(default_factory=dict)


def network_settings(
    network: NetworkSettings | None,
    feeder: Any,
    voltage_band_pct: float,
    voltage_margin_pct: float,
    interval_s: float,
    charges: str,
) -> NetworkSettings | None:
    """The settings object, given whole (the orchestrator) or from scalar parameters (the CLI)."""
    if network is not None:
        return network
    loaded = load_feeder(feeder)
    if loaded is None:
        return None
    return NetworkSettings(
        feeder=loaded,
        voltage_band_pct=float(voltage_band_pct),
        voltage_margin_pct=float(voltage_margin_pct),
        interval_h=float(interval_s) / 3600.0,
        charges=charges,  # type: ignore[arg-type]  # a str from the CLI: NetworkSettings checks it
    )


def positive(name: str, value: Any, allow_zero: bool = False) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} = {value!r} must be a number") from None
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} = {value!r} must be a finite number {bound}")
    return number


class OptimisationMechanism:
    """Base of welfare, admm, nash and stackelberg (see the module docstring)."""

    name: ClassVar[str] = "optimisation"
    network: NetworkSettings | None = None
    # True when the method keeps the linearised feeder limits inside its problem (then a failed AC
    # check is retried with a wider margin); False when it only has the AC check (stackelberg)
    linear_network: ClassVar[bool] = True
    network_retries: ClassVar[int] = 3

    @property
    def params(self) -> dict[str, Any]:
        return {}

    def network_params(self) -> dict[str, Any]:
        s = self.network
        if s is None:
            return {"feeder": None}
        return {
            "feeder": "configured",
            "voltage_band_pct": s.voltage_band_pct,
            "voltage_margin_pct": s.voltage_margin_pct,
            "interval_s": s.interval_h * 3600.0,
            "charges": s.charges,
        }

    def solve(self, book: OrderColumns) -> Outcome:
        raise NotImplementedError

    def clear(self, orders: Book) -> ClearingResult:
        book, rejected = prepare_book(orders)
        on_feeder, off = off_feeder(book, self.network)
        if off:
            book = book.take(on_feeder)
            rejected = [*rejected, *off]
        settings = self.network
        result = self._clear_valid(book, rejected)
        # LinDistFlow leaves out losses and the larger current at a low voltage, so a solution on
        # a binding limit can fail the AC check by a little: re-solve with the margin doubled
        # (to at most half the band) before the interval falls back to the grid.
        tries = 0
        while (
            settings is not None
            and self.linear_network
            and str(result.report.get("fallback", "")).startswith("network check")
            and tries < self.network_retries
        ):
            tries += 1
            margin = min(
                max(settings.voltage_margin_pct, 0.25) * 2**tries, settings.voltage_band_pct / 2
            )
            # kept per margin: compiled problems are cached by the settings object's identity
            wider = self.__dict__.setdefault("_wider_margins", {})
            if (id(settings), margin) not in wider:
                wider[id(settings), margin] = replace(settings, voltage_margin_pct=margin)
            self.network = wider[id(settings), margin]
            try:
                retry = self._clear_valid(book, rejected)
            finally:
                self.network = settings
            retry.report["network_margin_pct"] = margin
            retry.report["network_first_check"] = result.report["fallback"]
            result = retry
        return result

    def _clear_valid(self, book: OrderColumns, rejected: Rejected) -> ClearingResult:
        bids, asks = side_books(book)
        crossing = cross(bids, asks)
        reason = None
        try:
            outcome = self.solve(book) if len(book) else Outcome(TradeTable.empty(), None)
        except NoTrade as why:
            outcome, reason = Outcome(TradeTable.empty(), None), str(why)
        if len(outcome.table) == 0 and reason is None:
            reason = "no welfare-improving trade"
        price = outcome.clearing_price if len(outcome.table) else None
        report = build_report(
            mechanism=self.name,
            params=self.params,
            book=book,
            rejected=rejected,
            table=outcome.table,
            crossing=crossing,
            extra={"clearing_price": price, **outcome.report},
        )
        charges = outcome.table.network_charge
        if charges is not None:
            report["network_charges"] = float(np.sum(charges * outcome.table.quantity_kwh))
        curves = SupplyDemandCurves.from_sides(crossing, price)
        report["curves"] = curves.to_dict()
        result = ClearingResult(
            mechanism=self.name,
            book=book,
            table=outcome.table,
            clearing_price=price,
            report=report,
            curves=curves,
        )
        if reason is not None:
            return fall_back(result, reason)
        report["cleared"] = True
        return apply_network(result, self.network)

    def __repr__(self) -> str:
        params = ", ".join(f"{key}={value!r}" for key, value in self.params.items())
        return f"{type(self).__name__}({params})"


def pool_table(
    community_pairs: tuple[np.ndarray, np.ndarray, np.ndarray],
    buyer_price_of_row: np.ndarray,
    seller_price_of_row: np.ndarray,
) -> TradeTable:
    buy_row, sell_row, quantity = community_pairs
    return TradeTable(
        buy_row=buy_row,
        sell_row=sell_row,
        quantity_kwh=quantity,
        buyer_price=buyer_price_of_row[buy_row].astype(np.float64),
        seller_price=seller_price_of_row[sell_row].astype(np.float64),
    )
