"""Continuous double auction: an order book that matches each order on arrival."""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any

import numpy as np

from testbed.market.book import Order, Side, Trade
from testbed.market.matching import QUANTITY_TOLERANCE_KWH, cross, side_books
from testbed.market.mechanism import Book, average_buyer_price, prepare_book
from testbed.market.result import ClearingResult, SupplyDemandCurves, TradeTable, build_report


@dataclass(slots=True)
class _Resting:
    order: Order
    remaining_kwh: float
    sequence: int


class ContinuousDoubleAuction:
    """A limit order book with price-time priority; a trade happens at the resting order's price.

    An arriving bid trades with the lowest asks at or below its limit (an arriving ask with the
    highest bids at or above its limit), oldest first at equal price ("time" is the arrival
    order), each trade at the resting order's price; what is left rests in the book.
    """

    def __init__(self) -> None:
        self._bids: list[tuple[float, int, str]] = []  # (-price, sequence, order_id)
        self._asks: list[tuple[float, int, str]] = []  # (price, sequence, order_id)
        self._resting: dict[str, _Resting] = {}
        self._sequence = 0

    def submit(self, order: Order) -> list[Trade]:
        """Match `order` against the book; returns the trades it made (possibly none)."""
        if order.order_id in self._resting:
            raise ValueError(f"order_id {order.order_id!r} is already resting in the book")
        if not order.quantity_kwh > 0:
            raise ValueError(f"quantity_kwh {order.quantity_kwh!r} must be > 0")
        is_buy = Side(order.side) is Side.BUY
        opposite = self._asks if is_buy else self._bids
        remaining = float(order.quantity_kwh)
        trades: list[Trade] = []
        while remaining > QUANTITY_TOLERANCE_KWH:
            best = self._top(opposite)
            if best is None:
                break
            crosses = best.order.price <= order.price if is_buy else best.order.price >= order.price
            if not crosses:
                break
            quantity = min(remaining, best.remaining_kwh)
            buy, sell = (order, best.order) if is_buy else (best.order, order)
            trades.append(
                Trade(buy.order_id, sell.order_id, buy.peer, sell.peer, quantity, best.order.price)
            )
            remaining -= quantity
            best.remaining_kwh -= quantity
            if best.remaining_kwh <= QUANTITY_TOLERANCE_KWH:
                heapq.heappop(opposite)
                del self._resting[best.order.order_id]
        if remaining > QUANTITY_TOLERANCE_KWH:
            self._sequence += 1
            self._resting[order.order_id] = _Resting(order, remaining, self._sequence)
            key = -order.price if is_buy else order.price
            heapq.heappush(
                self._bids if is_buy else self._asks, (key, self._sequence, order.order_id)
            )
        return trades

    def cancel(self, order_id: str) -> bool:
        """Withdraw a resting order; False if it is not (or no longer) in the book."""
        return self._resting.pop(order_id, None) is not None

    def remaining_kwh(self, order_id: str) -> float:
        entry = self._resting.get(order_id)
        return entry.remaining_kwh if entry else 0.0

    @property
    def best_bid(self) -> float | None:
        top = self._top(self._bids)
        return top.order.price if top else None

    @property
    def best_ask(self) -> float | None:
        top = self._top(self._asks)
        return top.order.price if top else None

    def resting(self) -> list[tuple[Order, float]]:
        """Resting orders with their remaining kWh, in arrival order."""
        entries = sorted(self._resting.values(), key=lambda entry: entry.sequence)
        return [(entry.order, entry.remaining_kwh) for entry in entries]

    def _top(self, heap: list[tuple[float, int, str]]) -> _Resting | None:
        while heap:
            _, sequence, order_id = heap[0]
            entry = self._resting.get(order_id)
            if entry is not None and entry.sequence == sequence:
                return entry
            heapq.heappop(heap)  # cancelled or filled
        return None


class ContinuousDoubleAuctionMechanism:
    """The `cda` mechanism: replay a book through a ContinuousDoubleAuction in submission order.

    Orders arrive by `time`, then order_id. `clearing_price` is the volume-weighted average trade
    price; trades are budget balanced. The report also gives the book's efficient volume and
    welfare so the CDA's efficiency can be read, and the curves of the whole book.
    """

    name = "cda"

    @property
    def params(self) -> dict[str, Any]:
        return {}

    def clear(self, orders: Book) -> ClearingResult:
        book, rejected = prepare_book(orders)
        arrival: np.ndarray | list[int] = (
            np.lexsort((book.order_id.astype(str), book.time)) if len(book) else []
        )
        market = ContinuousDoubleAuction()
        row_of = {str(order_id): row for row, order_id in enumerate(book.order_id.tolist())}
        buy_rows: list[int] = []
        sell_rows: list[int] = []
        quantity: list[float] = []
        price: list[float] = []
        for row in arrival:
            for trade in market.submit(book.order(int(row))):
                buy_rows.append(row_of[trade.buy_order_id])
                sell_rows.append(row_of[trade.sell_order_id])
                quantity.append(trade.quantity_kwh)
                price.append(trade.price)
        prices = np.asarray(price, dtype=np.float64)
        table = TradeTable(
            buy_row=np.asarray(buy_rows, dtype=np.int64),
            sell_row=np.asarray(sell_rows, dtype=np.int64),
            quantity_kwh=np.asarray(quantity, dtype=np.float64),
            buyer_price=prices,
            seller_price=prices.copy(),
        )
        clearing_price = average_buyer_price(table)
        crossing = cross(*side_books(book))
        extra = {
            "clearing_price": clearing_price,
            "price_rule": "each trade at the resting order's price; clearing_price is the average",
            "resting_orders": len(market.resting()),
        }
        if len(table):
            extra.update(min_trade_price=float(prices.min()), max_trade_price=float(prices.max()))
        report = build_report(
            mechanism=self.name,
            params=self.params,
            book=book,
            rejected=rejected,
            table=table,
            crossing=crossing,
            extra=extra,
        )
        curves = SupplyDemandCurves.from_sides(crossing, clearing_price)
        report["curves"] = curves.to_dict()
        return ClearingResult(
            mechanism=self.name,
            book=book,
            table=table,
            clearing_price=clearing_price,
            report=report,
            curves=curves,
        )

    def __repr__(self) -> str:
        return "ContinuousDoubleAuctionMechanism()"
