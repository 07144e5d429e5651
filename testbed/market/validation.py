"""Order checks before clearing: a bad order is rejected with its reason, the rest still clears."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from datetime import datetime

from testbed.market.book import QUANTITY_RESOLUTION_KWH, Order, Side
from testbed.messages import quoted


def order_problem(
    order: Order,
    peers: Iterable[str] | None = None,
    interval_start: datetime | None = None,
) -> str | None:
    """Why `order` cannot enter the book, or None when it can."""
    if not isinstance(order.order_id, str) or not order.order_id:
        return f"order_id {quoted(order.order_id)} must be a non-empty string"
    side: object = order.side  # an Order built from untyped data may hold a plain string
    if not isinstance(side, Side):
        try:
            Side(str(side))
        except ValueError:
            return f"side {quoted(side)} is not 'buy' or 'sell'"
    if not isinstance(order.peer, str) or not order.peer:
        return f"peer {quoted(order.peer)} must be a non-empty string"
    if not _is_finite_number(order.quantity_kwh) or order.quantity_kwh <= 0:
        return f"quantity_kwh {quoted(order.quantity_kwh)} must be a finite number > 0"
    if order.quantity_kwh < QUANTITY_RESOLUTION_KWH:
        return (
            f"quantity_kwh {quoted(order.quantity_kwh)} is below the market's resolution of "
            f"{QUANTITY_RESOLUTION_KWH:g} kWh"
        )
    if not _is_finite_number(order.price):
        return f"price {quoted(order.price)} must be a finite number (currency per kWh)"
    if not _is_finite_number(order.time):
        return f"time {quoted(order.time)} must be a finite number (seconds)"
    if peers is not None:
        known = set(peers)
        if order.peer not in known:
            return f"unknown peer {quoted(order.peer)} (known peers: {', '.join(sorted(known))})"
    if interval_start is not None and order.interval_start != interval_start:
        return (
            f"interval_start {_iso(order.interval_start)} is not the market interval "
            f"{_iso(interval_start)}"
        )
    return None


def validate_orders(
    orders: Sequence[Order],
    peers: Iterable[str] | None = None,
    interval_start: datetime | None = None,
) -> tuple[list[Order], list[tuple[Order, str]]]:
    """Split a book into the orders that may clear and the rejected ones with their reasons.

    Rejected: an empty order_id or peer, a side other than buy/sell, a non-finite, negative or zero
    quantity or one below QUANTITY_RESOLUTION_KWH (1e-9 kWh), a non-finite price or time, a peer
    not in `peers` (when given), an interval other than `interval_start` (when given), and a
    repeated order_id (the first one stays).
    Negative prices are allowed (energy prices can be negative).
    """
    known = None if peers is None else frozenset(peers)
    valid: list[Order] = []
    rejected: list[tuple[Order, str]] = []
    seen: set[str] = set()
    for order in orders:
        problem = order_problem(order, known, interval_start)
        if problem is None and order.order_id in seen:
            problem = (
                f"duplicate order_id {quoted(order.order_id)} (the first order with it is kept)"
            )
        if problem is None:
            seen.add(order.order_id)
            valid.append(order)
        else:
            rejected.append((order, problem))
    return valid, rejected


def _is_finite_number(value: object) -> bool:
    if type(value) is float:  # the common case, without the slower ABC check
        return math.isfinite(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    return math.isfinite(value)


def _iso(moment: datetime) -> str:
    return moment.isoformat() if isinstance(moment, datetime) else repr(moment)
