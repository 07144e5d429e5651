"""Pay-as-bid (discriminatory) matching: each matched pair trades at its own price."""

from __future__ import annotations

from typing import Any

from testbed.market.columns import OrderColumns
from testbed.market.matching import Crossing
from testbed.market.mechanism import CallAuction, average_buyer_price, check_fraction, segment_table
from testbed.market.result import TradeTable

_PRICE_RULE = "each pair at k * bid + (1 - k) * ask"


class PayAsBid(CallAuction):
    """The uniform auction's efficient volume, paired in priority order, each pair at its price.

    Pairs come from merging the cumulative quantities: the highest bid meets the lowest ask, and so
    on down the curves. Each pair trades at k * bid + (1 - k) * ask; the default k = 0.5 is the
    midpoint of the pair, because it is individually rational for both, budget balanced (the buyer
    pays what the seller receives, nothing is left to the operator) and splits each pair's gain
    evenly, whereas trading at the bid price (k = 1) hands the whole gain to the sellers and
    pushes buyers to shade their bids. `clearing_price` is the volume-weighted average.
    """

    name = "pay_as_bid"

    def __init__(self, k: float = 0.5) -> None:
        self.k = check_fraction("k", k)

    @property
    def params(self) -> dict[str, Any]:
        return {"k": self.k}

    def no_trade_report(self) -> dict[str, Any]:
        return {"price_rule": _PRICE_RULE, "min_trade_price": None, "max_trade_price": None}

    def allocate(
        self, crossing: Crossing, book: OrderColumns
    ) -> tuple[TradeTable, float | None, dict[str, Any]]:
        seg = crossing.segments
        price = (
            self.k * crossing.bids.price[seg.bid] + (1.0 - self.k) * crossing.asks.price[seg.ask]
        )
        table = segment_table(crossing, seg, price, price)
        extra = {
            "price_rule": _PRICE_RULE,
            "min_trade_price": float(price.min()),
            "max_trade_price": float(price.max()),
        }
        return table, average_buyer_price(table), extra
