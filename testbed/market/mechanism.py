"""The interface every market mechanism offers, and the shared skeleton of the call auctions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from testbed.market.book import Order
from testbed.market.columns import OrderColumns
from testbed.market.matching import Crossing, Segments, cross, side_books
from testbed.market.result import ClearingResult, SupplyDemandCurves, TradeTable, build_report
from testbed.market.validation import validate_orders

Book = Sequence[Order] | OrderColumns
Rejected = list[tuple[Order, str]] | list[tuple[str, str, str]]


@runtime_checkable
class Mechanism(Protocol):
    """Clears one market interval's order book."""

    name: str

    @property
    def params(self) -> dict[str, Any]: ...

    def clear(self, orders: Book) -> ClearingResult: ...


def prepare_book(orders: Book) -> tuple[OrderColumns, Rejected]:
    """Valid orders as columns, and the rejected ones with their reasons.

    Order objects go through `validate_orders` (without peer and interval checks: the caller
    does those); columns through the same checks, vectorised.
    """
    if isinstance(orders, OrderColumns):
        ok, problems = orders.problems()
        rejected = [
            (str(orders.order_id[row]), str(orders.peer[row]), why) for row, why in problems
        ]
        return (orders if ok.all() else orders.take(ok)), rejected
    valid, rejected_orders = validate_orders(list(orders))
    return OrderColumns.from_orders(valid), rejected_orders


def segment_table(
    crossing: Crossing,
    segments: Segments,
    buyer_price: float | np.ndarray,
    seller_price: float | np.ndarray,
) -> TradeTable:
    """A TradeTable from segments between crossing.bids and crossing.asks positions (a price per
    segment, or one for all)."""
    count = len(segments)
    return TradeTable(
        buy_row=crossing.bids.rows[segments.bid],
        sell_row=crossing.asks.rows[segments.ask],
        quantity_kwh=segments.quantity_kwh,
        buyer_price=np.broadcast_to(np.asarray(buyer_price, dtype=np.float64), (count,)).copy(),
        seller_price=np.broadcast_to(np.asarray(seller_price, dtype=np.float64), (count,)).copy(),
    )


def average_buyer_price(table: TradeTable) -> float | None:
    volume = float(np.sum(table.quantity_kwh))
    if volume <= 0:
        return None
    return float(np.sum(table.quantity_kwh * table.buyer_price) / volume)


class CallAuction:
    """A sealed-bid auction cleared once at gate closure: sort, cross, then the mechanism's rule.

    Subclasses implement `allocate(crossing, book) -> (TradeTable, clearing_price, extra_report)`.
    """

    name: ClassVar[str] = "call_auction"

    @property
    def params(self) -> dict[str, Any]:
        return {}

    def allocate(
        self, crossing: Crossing, book: OrderColumns
    ) -> tuple[TradeTable, float | None, dict[str, Any]]:
        raise NotImplementedError

    def no_trade_report(self) -> dict[str, Any]:
        """The mechanism's own report keys when the curves do not cross."""
        return {}

    def clear(self, orders: Book) -> ClearingResult:
        book, rejected = prepare_book(orders)
        bids, asks = side_books(book)
        crossing = cross(bids, asks)
        if crossing.volume_kwh > 0:
            table, clearing_price, extra = self.allocate(crossing, book)
        else:
            table, clearing_price, extra = TradeTable.empty(), None, self.no_trade_report()
        if len(table) == 0:
            clearing_price = None
        report = build_report(
            mechanism=self.name,
            params=self.params,
            book=book,
            rejected=rejected,
            table=table,
            crossing=crossing,
            extra={"clearing_price": clearing_price, **extra},
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
        params = ", ".join(f"{key}={value!r}" for key, value in self.params.items())
        return f"{type(self).__name__}({params})"


def check_fraction(name: str, value: Any) -> float:
    """`value` as a float in [0, 1], or a ValueError naming the parameter."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} = {value!r} must be a number in [0, 1]") from None
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"{name} = {value!r} is outside the allowed range [0, 1]")
    return number
