"""Uniform-price call auction (k-double auction): all trades at one price where the curves cross."""

from __future__ import annotations

from typing import Any

from testbed.market.columns import OrderColumns
from testbed.market.matching import Crossing
from testbed.market.mechanism import CallAuction, check_fraction, segment_table
from testbed.market.result import TradeTable

_PRICE_RULE = "k * high + (1 - k) * low of the competitive interval"


class UniformPriceAuction(CallAuction):
    """Bids descending, asks ascending; the curves' intersection gives volume and price.

    Volume: every segment of the merged cumulative quantities whose bid price is at least its
    ask price trades (this maximises the traded surplus). Price: k-double auction on the
    competitive interval [low, high] at the traded volume, price = k * high + (1 - k) * low, where
    low = max(marginal ask, next bid left out) and high = min(marginal bid, next ask left out).
    When nothing is left out on either side this is k * marginal bid + (1 - k) * marginal ask.
    Any price in the interval is individually rational and leaves no excluded order wanting to
    trade. k = 1 favours sellers, k = 0 buyers, k = 0.5 splits the interval.
    """

    name = "uniform"

    def __init__(self, k: float = 0.5) -> None:
        self.k = check_fraction("k", k)

    @property
    def params(self) -> dict[str, Any]:
        return {"k": self.k}

    def no_trade_report(self) -> dict[str, Any]:
        return {"price_rule": _PRICE_RULE}

    def allocate(
        self, crossing: Crossing, book: OrderColumns
    ) -> tuple[TradeTable, float | None, dict[str, Any]]:
        price_range = crossing.competitive_price_range
        if price_range is None:  # allocate runs only on a book that crosses
            raise ValueError("uniform price: the book does not cross")
        low, high = price_range
        price = self.k * high + (1.0 - self.k) * low
        table = segment_table(crossing, crossing.segments, price, price)
        return table, price, {"price_rule": _PRICE_RULE}
