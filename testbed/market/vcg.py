"""Vickrey-Clarke-Groves double auction: efficient and truthful, and it runs a deficit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from testbed.market.columns import OrderColumns
from testbed.market.matching import Crossing, SideBook
from testbed.market.mechanism import CallAuction, average_buyer_price, segment_table
from testbed.market.result import TradeTable

_BISECTION_STEPS = 64


class VCGAuction(CallAuction):
    """The efficient allocation with Clarke-pivot payments, one agent per order.

    Each order is an agent with a constant value (bid) or cost (ask) per kWh up to its quantity.
    Its payment makes its utility equal to its marginal contribution W* - W*_without_it, where W*
    is the maximal traded surplus. On the step curves D (demand) and S (supply) with efficient
    volume Q*, a bid filled x with r left over pays
        integral over t in [0, x] of max(D(Q* + r + t), S(Q* - x + t)) dt
    (the bids left out and the costliest traded supply it displaced), and an ask filled x with r
    left over receives
        integral over t in [0, x] of min(S(Q* + r + t), D(Q* - x + t)) dt.
    For unit orders these are the textbook max(b_(k+1), s_k) and min(b_k, s_(k+1)). Buyers pay
    less than sellers receive: the difference is the deficit the operator must fund (reported as
    `vcg_deficit` and as a negative `operator_surplus`). A peer with several orders is treated as
    several agents; truthfulness is per order.
    """

    name = "vcg"

    @property
    def params(self) -> dict[str, Any]:
        return {}

    def no_trade_report(self) -> dict[str, Any]:
        return {"vcg_deficit": 0.0, "buyers_paid_vcg": 0.0}

    def allocate(
        self, crossing: Crossing, book: OrderColumns
    ) -> tuple[TradeTable, float | None, dict[str, Any]]:
        volume = crossing.volume_kwh
        bid_fill, ask_fill = crossing.bid_fill_kwh, crossing.ask_fill_kwh
        demand, supply = _StepCurve(crossing.bids, -np.inf), _StepCurve(crossing.asks, np.inf)
        payment = _displaced_value(
            fill=bid_fill,
            left=np.maximum(crossing.bids.quantity_kwh - bid_fill, 0.0),
            volume=volume,
            outside=demand,
            inside=supply,
            outside_wins=lambda out, ins: out >= ins,
        )
        receipt = _displaced_value(
            fill=ask_fill,
            left=np.maximum(crossing.asks.quantity_kwh - ask_fill, 0.0),
            volume=volume,
            outside=supply,
            inside=demand,
            outside_wins=lambda out, ins: out <= ins,
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            bid_unit = np.where(bid_fill > 0, payment / bid_fill, np.nan)
            ask_unit = np.where(ask_fill > 0, receipt / ask_fill, np.nan)
        # Clarke pivot payments are individually rational; the areas are float differences of
        # sums over large orders, which for a tiny fill can cross its limit by rounding
        above = bid_unit > crossing.bids.price
        below = ask_unit < crossing.asks.price
        if above.any() or below.any():
            bid_unit = np.where(above, crossing.bids.price, bid_unit)
            ask_unit = np.where(below, crossing.asks.price, ask_unit)
            payment = np.where(above, bid_unit * bid_fill, payment)
            receipt = np.where(below, ask_unit * ask_fill, receipt)
        seg = crossing.segments
        table = segment_table(crossing, seg, bid_unit[seg.bid], ask_unit[seg.ask])
        paid, received = float(payment.sum()), float(receipt.sum())
        extra = {"vcg_deficit": received - paid, "buyers_paid_vcg": paid}
        return table, average_buyer_price(table), extra


class _StepCurve:
    """A demand or supply step curve: price at a quantity and the area under it."""

    def __init__(self, side: SideBook, beyond: float) -> None:
        self.side = side
        self.beyond = beyond
        self.area_at_end = np.cumsum(side.price * side.quantity_kwh)

    def price_at(self, kwh: np.ndarray) -> np.ndarray:
        """Price of the step holding each quantity (steps are (start, end]), `beyond` past it."""
        position = np.searchsorted(self.side.cum_kwh, kwh, side="left")
        inside = position < len(self.side)
        return np.where(
            inside, self.side.price[np.minimum(position, len(self.side) - 1)], self.beyond
        )

    def area(self, kwh: np.ndarray) -> np.ndarray:
        """Integral of the curve from 0 to each quantity (which must not pass the curve's end)."""
        cum = self.side.cum_kwh
        kwh = np.minimum(kwh, cum[-1])
        position = np.minimum(np.searchsorted(cum, kwh, side="left"), len(cum) - 1)
        start = np.where(position > 0, cum[np.maximum(position - 1, 0)], 0.0)
        before = np.where(position > 0, self.area_at_end[np.maximum(position - 1, 0)], 0.0)
        area: np.ndarray = before + self.side.price[position] * (kwh - start)
        return area


def _displaced_value(
    *,
    fill: np.ndarray,
    left: np.ndarray,
    volume: float,
    outside: _StepCurve,
    inside: _StepCurve,
    outside_wins: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> np.ndarray:
    """Integral over [0, fill] of the better of the outside curve (orders left out, read past the
    agent's own remainder) and the inside curve (the other side's traded units it displaced)."""
    result = np.zeros(len(fill))
    agents = np.flatnonzero(fill > 0)
    if len(agents) == 0:
        return result
    x = fill[agents]
    outside_from = volume + left[agents]
    inside_from = volume - x
    low, high = np.zeros(len(x)), x.copy()
    for _ in range(_BISECTION_STEPS):
        middle = 0.5 * (low + high)
        wins = outside_wins(
            outside.price_at(outside_from + middle), inside.price_at(inside_from + middle)
        )
        low = np.where(wins, middle, low)
        high = np.where(wins, high, middle)
    switch = low  # the outside curve wins on [0, switch]
    outside_part = np.where(
        switch > 0, outside.area(outside_from + switch) - outside.area(outside_from), 0.0
    )
    inside_part = inside.area(np.full(len(x), volume)) - inside.area(inside_from + switch)
    result[agents] = outside_part + inside_part
    return result
