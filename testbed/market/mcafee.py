"""McAfee's (1992) trade-reduction double auction: truthful, any surplus goes to the operator."""

from __future__ import annotations

import math
from typing import Any

from testbed.market.columns import OrderColumns
from testbed.market.matching import Crossing
from testbed.market.mechanism import CallAuction, segment_table
from testbed.market.result import TradeTable


class McAfeeAuction(CallAuction):
    """Trade reduction on the efficient allocation.

    With bids b_1 >= b_2 >= ... and asks s_1 <= s_2 <= ..., k pairs cross (b_k >= s_k). The
    candidate price p0 = (b_{k+1} + s_{k+1}) / 2 uses the first bid and ask left out. If
    s_k <= p0 <= b_k, all k pairs trade at p0 (budget balanced). Otherwise the k-th pair is
    dropped: the other k - 1 pairs trade, buyers pay b_k, sellers receive s_k, and the operator
    keeps (b_k - s_k) per unit. If either side has nothing left out, p0 does not exist and the
    reduction applies.

    Divisible quantities: the k-th pair is the last traded segment of the merged cumulative
    quantities, i.e. the overlap of the marginal bid and the marginal ask; with unit quantities
    (every order 1 kWh, or every order one unit) this is exactly McAfee's mechanism, truthful in
    dominant strategies for single-unit traders. An order with several units can set the price for
    its own other units, so truthfulness is not promised for multi-unit orders (see `huang`).
    """

    name = "mcafee"

    @property
    def params(self) -> dict[str, Any]:
        return {}

    def no_trade_report(self) -> dict[str, Any]:
        return {
            "candidate_price": None,
            "case": "no_trade",
            "buyer_price": None,
            "seller_price": None,
        }

    def allocate(
        self, crossing: Crossing, book: OrderColumns
    ) -> tuple[TradeTable, float | None, dict[str, Any]]:
        marginal_bid = float(crossing.bids.price[crossing.marginal_bid])
        marginal_ask = float(crossing.asks.price[crossing.marginal_ask])
        next_bid, next_ask = crossing.next_bid_price, crossing.next_ask_price
        candidate = (
            0.5 * (next_bid + next_ask)
            if math.isfinite(next_bid) and math.isfinite(next_ask)
            else None
        )
        extra: dict[str, Any] = {"candidate_price": candidate}
        if candidate is not None and marginal_ask <= candidate <= marginal_bid:
            table = segment_table(crossing, crossing.segments, candidate, candidate)
            extra.update(case="all_trade", buyer_price=candidate, seller_price=candidate)
            return table, candidate, extra
        kept = crossing.segments.head(len(crossing.segments) - 1)
        table = segment_table(crossing, kept, marginal_bid, marginal_ask)
        extra.update(
            case="trade_reduction",
            buyer_price=marginal_bid,
            seller_price=marginal_ask,
            reduced_kwh=float(crossing.segments.quantity_kwh[-1]),
        )
        return table, marginal_bid, extra
