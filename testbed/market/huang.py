"""Huang, Scheller-Wolf and Sycara (2002): a truthful multi-unit double auction."""

from __future__ import annotations

from typing import Any

import numpy as np

from testbed.market.columns import OrderColumns
from testbed.market.matching import Crossing, pair_fills
from testbed.market.mechanism import CallAuction, segment_table
from testbed.market.result import TradeTable


class HuangAuction(CallAuction):
    """Exclude the marginal buyer and seller; their prices become the buyers' and sellers' prices.

    K is the bid and L the ask of the last traded segment of the efficient allocation. Bids ranked
    before K buy at b_K, asks ranked before L sell at s_L, and the operator keeps
    (b_K - s_L) per kWh. The longer side is rationed to the shorter side's total by cutting every
    order on it by the same amount, an order smaller than the cut leaving altogether (the paper's
    footnote rule, as in pymarket): each order on the long side gives up min(quantity, r), with r
    chosen so the cuts add up to the excess. Ties in price are ranked by the book's priority rule,
    so only the marginal order itself is excluded (pymarket merges equal-price orders first).
    """

    name = "huang"

    @property
    def params(self) -> dict[str, Any]:
        return {}

    def no_trade_report(self) -> dict[str, Any]:
        return {
            "buyer_price": None,
            "seller_price": None,
            "rationed_side": None,
            "excluded_bid": None,
            "excluded_ask": None,
        }

    def allocate(
        self, crossing: Crossing, book: OrderColumns
    ) -> tuple[TradeTable, float | None, dict[str, Any]]:
        bid_k, ask_l = crossing.marginal_bid, crossing.marginal_ask
        buyer_price = float(crossing.bids.price[bid_k])
        seller_price = float(crossing.asks.price[ask_l])
        buy = crossing.bids.quantity_kwh[:bid_k].copy()
        sell = crossing.asks.quantity_kwh[:ask_l].copy()
        excess = float(buy.sum() - sell.sum())
        if excess > 0:
            buy = ration_equal_cut(buy, excess)
        elif excess < 0:
            sell = ration_equal_cut(sell, -excess)
        extra = {
            "buyer_price": buyer_price,
            "seller_price": seller_price,
            "rationed_side": "buyers" if excess > 0 else "sellers" if excess < 0 else None,
            "excluded_bid": str(book.order_id[crossing.bids.rows[bid_k]]),
            "excluded_ask": str(book.order_id[crossing.asks.rows[ask_l]]),
        }
        if len(buy) == 0 or len(sell) == 0:
            return TradeTable.empty(), None, extra
        segments = pair_fills(buy, sell)
        table = segment_table(crossing, segments, buyer_price, seller_price)
        return table, buyer_price, extra


def ration_equal_cut(quantity: np.ndarray, cut: float) -> np.ndarray:
    """Reduce `quantity` by `cut` in total: each entry gives up min(entry, r), one r for all."""
    if cut <= 0:
        return quantity.copy()
    total = float(quantity.sum())
    if cut >= total:
        return np.zeros_like(quantity)
    ascending = np.sort(quantity)
    n = len(ascending)
    below = np.concatenate(([0.0], np.cumsum(ascending)[:-1]))  # sum of entries smaller than k-th
    reach = below + (n - np.arange(n)) * ascending  # total cut if r = k-th smallest entry
    k = int(np.searchsorted(reach, cut, side="left"))
    r = (cut - below[k]) / (n - k)
    kept: np.ndarray = quantity - np.minimum(quantity, r)
    return kept
