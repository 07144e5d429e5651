"""A book as a community of peers, each with its own step offers (padded arrays per side)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from testbed.market.columns import OrderColumns
from testbed.market.matching import cross, pair_fills, side_books


@dataclass(frozen=True, eq=False)
class Community:
    """Peers and their offers: row n of each (N, K) array is peer n's bids (or asks), padded.

    Step k of a peer is its k-th order in the book's priority order; padding has quantity 0.
    `bid_row`/`ask_row` give the book row of each step (-1 for padding).
    """

    book: OrderColumns
    peers: tuple[str, ...]
    bid_price: np.ndarray
    bid_qty: np.ndarray
    bid_row: np.ndarray
    ask_price: np.ndarray
    ask_qty: np.ndarray
    ask_row: np.ndarray

    @classmethod
    def from_book(cls, book: OrderColumns, pad: bool = True) -> Community:
        """`pad` rounds the steps per peer up to a power of two, so that intervals with similar
        books share one compiled optimisation problem."""
        peer_of_row = np.asarray(book.peer, dtype=object)
        peers = tuple(sorted(set(peer_of_row.tolist())))
        index = {peer: i for i, peer in enumerate(peers)}
        peer_index = np.array([index[p] for p in peer_of_row.tolist()], dtype=np.int64)
        bids, asks = side_books(book)
        arrays = []
        for side in (bids, asks):
            owner = peer_index[side.rows]
            order = np.argsort(owner, kind="stable")  # by peer, priority kept within a peer
            rows, owner = side.rows[order], owner[order]
            counts = np.bincount(owner, minlength=len(peers))
            width = int(counts.max()) if len(counts) and counts.max() > 0 else 1
            if pad:
                width = 1 << (width - 1).bit_length()
            starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
            position = np.arange(len(rows)) - starts[owner]
            price = np.zeros((len(peers), width))
            qty = np.zeros((len(peers), width))
            row = np.full((len(peers), width), -1, dtype=np.int64)
            price[owner, position] = book.price[rows]
            qty[owner, position] = book.quantity_kwh[rows]
            row[owner, position] = rows
            arrays += [price, qty, row]
        return cls(book, peers, *arrays)

    @property
    def size(self) -> int:
        return len(self.peers)

    def row_fills(self, bid_fill: np.ndarray, ask_fill: np.ndarray) -> np.ndarray:
        """Fill of every book row from the (N, K) step fills."""
        fills = np.zeros(len(self.book))
        for rows, fill in ((self.bid_row, bid_fill), (self.ask_row, ask_fill)):
            used = rows >= 0
            fills[rows[used]] = fill[used]
        return fills

    def peer_of(self, rows: np.ndarray) -> np.ndarray:
        index = {peer: i for i, peer in enumerate(self.peers)}
        peers = np.asarray(self.book.peer, dtype=object)[rows]
        return np.array([index[p] for p in peers.tolist()], dtype=np.int64)

    def balanced(self, row_fill: np.ndarray) -> np.ndarray:
        """Fills with the longer side trimmed, from its last orders in priority order, so that
        exactly as much is bought as is sold (solvers balance only to their tolerance)."""
        bids, asks = side_books(self.book)
        out = np.array(row_fill, dtype=np.float64)
        excess = float(out[bids.rows].sum() - out[asks.rows].sum())
        rows = bids.rows if excess > 0 else asks.rows
        left = abs(excess)
        for row in rows[::-1].tolist():
            if left <= 0:
                break
            take = min(left, float(out[row]))
            out[row] -= take
            left -= take
        return out

    def pool_pairs(self, row_fill: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(buy_row, sell_row, kWh): filled bids and asks paired in priority order."""
        bids, asks = side_books(self.book)
        segments = pair_fills(row_fill[bids.rows], row_fill[asks.rows])
        return bids.rows[segments.bid], asks.rows[segments.ask], segments.quantity_kwh


def gainful_volume_kwh(book: OrderColumns) -> float:
    """The pool's efficient volume counting only trades that gain (bid above ask): the scale of
    what matters to welfare, whatever the size of orders that cannot trade or trade at a tie."""
    crossing = cross(*side_books(book))
    seg = crossing.segments
    gain = crossing.bids.price[seg.bid] > crossing.asks.price[seg.ask]
    return float(np.sum(seg.quantity_kwh[gain]))


def clean_fills(fill: np.ndarray, qty: np.ndarray, tolerance: float = 1e-9) -> np.ndarray:
    """Solver fills clipped to [0, qty], with values within `tolerance` of a bound on it.

    An order smaller than the tolerance is near both bounds: it goes to the nearer one.
    """
    fill = np.clip(np.asarray(fill, dtype=np.float64), 0.0, qty)
    empty = fill < tolerance
    full = qty - fill < tolerance
    both = empty & full
    full[both] = 2 * fill[both] > qty[both]
    empty[both] = ~full[both]
    fill[empty] = 0.0
    fill[full] = qty[full]
    return fill


def bilateral_pairs(
    community: Community, row_fill: np.ndarray, pair_kwh: np.ndarray, tolerance: float = 1e-9
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Order-level trades from peer-pair quantities pair_kwh[seller, buyer].

    Each seller's filled asks (in priority order) are handed out to its buyers, and each buyer's
    filled bids to its sellers; a pair's two lists are then matched piece by piece.
    Returns (buy_row, sell_row, kWh, seller index, buyer index).
    """
    n = community.size
    asks_of = [_filled(community.ask_row[i], row_fill) for i in range(n)]
    bids_of = [_filled(community.bid_row[i], row_fill) for i in range(n)]
    out_buy, out_sell, out_kwh, out_s, out_b = [], [], [], [], []
    for seller in range(n):
        for buyer in range(n):
            amount = float(pair_kwh[seller, buyer])
            if amount <= tolerance:
                continue
            left = amount
            while left > tolerance and asks_of[seller] and bids_of[buyer]:
                ask_row, ask_left = asks_of[seller][0]
                bid_row, bid_left = bids_of[buyer][0]
                piece = min(left, ask_left, bid_left)
                out_buy.append(bid_row)
                out_sell.append(ask_row)
                out_kwh.append(piece)
                out_s.append(seller)
                out_b.append(buyer)
                left -= piece
                _consume(asks_of[seller], piece, tolerance)
                _consume(bids_of[buyer], piece, tolerance)
    return (
        np.array(out_buy, dtype=np.int64),
        np.array(out_sell, dtype=np.int64),
        np.array(out_kwh, dtype=np.float64),
        np.array(out_s, dtype=np.int64),
        np.array(out_b, dtype=np.int64),
    )


def _filled(rows: np.ndarray, row_fill: np.ndarray) -> list[list[float]]:
    return [[int(r), float(row_fill[r])] for r in rows.tolist() if r >= 0 and row_fill[r] > 0]


def _consume(queue: list[list[float]], amount: float, tolerance: float) -> None:
    queue[0][1] -= amount
    if queue[0][1] <= tolerance:
        queue.pop(0)
