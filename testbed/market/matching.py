"""Vectorised building blocks of every call auction: priority order, the curves' crossing, pairing.

Priority (the tie rule of every call auction here): bids by price descending, asks by price
ascending; equal prices by earlier submission `time`; equal times by `order_id` (string order).
Quantities are divisible, resolved to QUANTITY_RESOLUTION_KWH (1e-9 kWh): two breakpoints that far
apart or more are always distinct. Cumulative quantities are float sums, so breakpoints closer than
QUANTITY_TOLERANCE_KWH (half the resolution) count as one and a remainder smaller than it counts as
filled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from testbed.market.book import QUANTITY_RESOLUTION_KWH
from testbed.market.columns import ArrowStrings, OrderColumns

__all__ = ["QUANTITY_RESOLUTION_KWH", "QUANTITY_TOLERANCE_KWH"]
QUANTITY_TOLERANCE_KWH = QUANTITY_RESOLUTION_KWH / 2  # float noise below this is no quantity


@dataclass(frozen=True, eq=False)
class SideBook:
    """One side of the book in priority order (position 0 trades first)."""

    rows: np.ndarray  # row of each position in the OrderColumns
    price: np.ndarray
    quantity_kwh: np.ndarray
    cum_kwh: np.ndarray  # cumulative quantity at the end of each position

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def total_kwh(self) -> float:
        return float(self.cum_kwh[-1]) if len(self.cum_kwh) else 0.0


def priority_rows(
    price: np.ndarray, time: np.ndarray, order_id: np.ndarray | _Lazy, best_high: bool
) -> np.ndarray:
    """Rows sorted by price (highest first when `best_high`), then time, then order_id."""
    price_key = -price if best_high else price
    rows = np.argsort(price_key, kind="stable")
    sorted_price = price_key[rows]
    if not np.any(sorted_price[1:] == sorted_price[:-1]):
        return rows  # no equal prices: price alone decides
    id_rank = np.empty(len(order_id), dtype=np.int64)
    id_rank[np.argsort(order_id.astype(str), kind="stable")] = np.arange(len(order_id))
    return np.lexsort((id_rank, time, price_key))


def side_books(book: OrderColumns) -> tuple[SideBook, SideBook]:
    """(bids, asks) in priority order."""
    sides: list[SideBook] = []
    for members in (np.flatnonzero(book.is_buy), np.flatnonzero(~book.is_buy)):
        is_buy = len(sides) == 0
        price = book.price[members]
        order = priority_rows(price, book.time[members], _Lazy(book.order_id, members), is_buy)
        rows = members[order]
        quantity = book.quantity_kwh[rows]
        sides.append(SideBook(rows, price[order], quantity, np.cumsum(quantity)))
    return sides[0], sides[1]


class _Lazy:
    """order_id[members], taken only when a tie needs it."""

    def __init__(self, values: np.ndarray | ArrowStrings, members: np.ndarray) -> None:
        self.values, self.members = values, members

    def __len__(self) -> int:
        return len(self.members)

    def astype(self, dtype: Any) -> np.ndarray:
        values: np.ndarray = self.values[self.members].astype(dtype)
        return values


@dataclass(frozen=True, eq=False)
class Segments:
    """Pieces of traded volume, each between one bid position and one ask position."""

    bid: np.ndarray  # position in the bid SideBook
    ask: np.ndarray  # position in the ask SideBook
    quantity_kwh: np.ndarray

    def __len__(self) -> int:
        return len(self.bid)

    def head(self, count: int) -> Segments:
        return Segments(self.bid[:count], self.ask[:count], self.quantity_kwh[:count])


def merge_cumulative(
    bid_cum: np.ndarray,
    ask_cum: np.ndarray,
    drop_short: bool = False,
    tolerance_kwh: float = QUANTITY_TOLERANCE_KWH,
) -> Segments:
    """Merge two cumulative-quantity ladders into segments up to the smaller total.

    Segment t covers (x[t-1], x[t]] on the quantity axis, where x is the union of both ladders'
    breakpoints; its bid (ask) is the one whose cumulative interval contains the segment. A segment
    no longer than `tolerance_kwh` is folded into the next one, or with `drop_short` left out (so
    that no order gets more than its ladder gives it).
    """
    if len(bid_cum) == 0 or len(ask_cum) == 0:
        empty = np.empty(0, dtype=np.int64)
        return Segments(empty, empty, np.empty(0))
    total = min(bid_cum[-1], ask_cum[-1])
    ends = np.concatenate((bid_cum, ask_cum))
    merged = np.argsort(ends, kind="stable")  # two sorted runs: a linear merge
    ends = ends[merged]
    from_bid = merged < len(bid_cum)
    # bid ladders ended before each breakpoint
    bids_before: np.ndarray = np.cumsum(from_bid) - from_bid
    asks_before = np.arange(len(ends)) - bids_before
    # breakpoints within the tolerance of the end are the end (folded), or with `drop_short` kept
    # as they are, so the pieces after them are left out below
    reach = total if drop_short else total - tolerance_kwh
    cut = int(np.searchsorted(ends, reach, side="left"))
    ends = np.append(ends[:cut], total)
    bid, ask = bids_before[: cut + 1], asks_before[: cut + 1]
    length = np.diff(ends, prepend=0.0)
    keep = length > tolerance_kwh
    if not keep.all():
        ends, bid, ask = ends[keep], bid[keep], ask[keep]
        length = length[keep] if drop_short else np.diff(ends, prepend=0.0)
    return Segments(bid, ask, length)


def pair_fills(bid_fill: np.ndarray, ask_fill: np.ndarray) -> Segments:
    """Pair buyers' and sellers' filled quantities (equal totals) in priority order.

    The fills are given, so every piece of them is kept down to the float noise of their sums
    (1e-12 of the total; a fill of half the resolution is a trade), and a noise piece is left out
    rather than added to a neighbouring order.
    """
    bid_fill = np.asarray(bid_fill, dtype=np.float64)
    ask_fill = np.asarray(ask_fill, dtype=np.float64)
    bid_cum, ask_cum = np.cumsum(bid_fill), np.cumsum(ask_fill)
    total = min(bid_cum[-1], ask_cum[-1]) if len(bid_cum) and len(ask_cum) else 0.0
    noise = 1e-12 * float(total)
    segments = merge_cumulative(bid_cum, ask_cum, drop_short=True, tolerance_kwh=noise)
    # Orders with a zero fill own no segment: searchsorted skips them by construction.
    return segments


@dataclass(frozen=True, eq=False)
class Crossing:
    """Where the demand (bids) and supply (asks) curves cross: the efficient allocation."""

    bids: SideBook
    asks: SideBook
    segments: Segments  # the traded segments, in priority order
    volume_kwh: float
    marginal_bid: int | None  # position of the bid in the last traded segment
    marginal_ask: int | None
    next_bid_price: float  # price of the first bid quantity left out (-inf if none)
    next_ask_price: float  # price of the first ask quantity left out (+inf if none)

    @property
    def bid_fill_kwh(self) -> np.ndarray:
        return np.bincount(
            self.segments.bid, weights=self.segments.quantity_kwh, minlength=len(self.bids)
        )

    @property
    def ask_fill_kwh(self) -> np.ndarray:
        return np.bincount(
            self.segments.ask, weights=self.segments.quantity_kwh, minlength=len(self.asks)
        )

    @property
    def welfare(self) -> float:
        """Gains from trade on the reported prices (sum of bid minus ask over traded kWh)."""
        seg = self.segments
        return float(
            np.sum(seg.quantity_kwh * (self.bids.price[seg.bid] - self.asks.price[seg.ask]))
        )

    @property
    def competitive_price_range(self) -> tuple[float, float] | None:
        """[low, high] prices at which the traded volume is a competitive equilibrium.

        low = max(marginal ask, next bid), high = min(marginal bid, next ask): at any price in it
        every traded bid (ask) is willing to trade and no order left out wants to.
        """
        if self.marginal_bid is None or self.marginal_ask is None:
            return None
        low = max(float(self.asks.price[self.marginal_ask]), self.next_bid_price)
        high = min(float(self.bids.price[self.marginal_bid]), self.next_ask_price)
        return low, high


def cross(bids: SideBook, asks: SideBook) -> Crossing:
    """Trade every segment where the bid's price is at least the ask's (bid >= ask trades)."""
    segments = merge_cumulative(bids.cum_kwh, asks.cum_kwh)
    trades = bids.price[segments.bid] >= asks.price[segments.ask]
    # Bid prices fall and ask prices rise along the quantity axis: the traded segments are a prefix.
    count = len(trades) if trades.all() else int(np.argmin(trades))
    traded = segments.head(count)
    volume = float(np.sum(traded.quantity_kwh))
    return Crossing(
        bids=bids,
        asks=asks,
        segments=traded,
        volume_kwh=volume,
        marginal_bid=int(traded.bid[-1]) if count else None,
        marginal_ask=int(traded.ask[-1]) if count else None,
        next_bid_price=_price_after(bids, volume, default=-np.inf),
        next_ask_price=_price_after(asks, volume, default=np.inf),
    )


def _price_after(side: SideBook, volume_kwh: float, default: float) -> float:
    """Price of the first quantity on `side` beyond `volume_kwh` of cumulative quantity."""
    position = int(np.searchsorted(side.cum_kwh, volume_kwh + QUANTITY_TOLERANCE_KWH, side="right"))
    if position >= len(side):
        return default
    return float(side.price[position])
