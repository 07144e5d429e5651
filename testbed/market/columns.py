"""A column-wise order book (numpy arrays): what the mechanisms clear, fast for many orders."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from testbed.market.book import QUANTITY_RESOLUTION_KWH, Order, Side


@dataclass(frozen=True, eq=False)
class OrderColumns:
    """One interval's orders, one numpy array per field (row i is order i).

    `order_id` and `peer` hold strings (object arrays); `is_buy` is True for bids (buy) and False
    for asks (sell); `quantity_kwh`, `price` (currency per kWh) and `time` (submission, seconds)
    are float64. A book read from CSV by pyarrow holds `order_id` and `peer` as ArrowStrings,
    which become numpy arrays only when something indexes them.
    """

    order_id: np.ndarray | ArrowStrings
    peer: np.ndarray | ArrowStrings
    is_buy: np.ndarray
    quantity_kwh: np.ndarray
    price: np.ndarray
    time: np.ndarray
    interval_start: datetime | None = None

    def __post_init__(self) -> None:
        n = len(self.order_id)
        for name in ("peer", "is_buy", "quantity_kwh", "price", "time"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"OrderColumns.{name} has {len(getattr(self, name))} rows, order_id has {n}"
                )

    def __len__(self) -> int:
        return len(self.order_id)

    @classmethod
    def from_orders(cls, orders: Sequence[Order]) -> OrderColumns:
        """Columns from Order objects (their sides must be valid)."""
        return cls(
            order_id=np.array([o.order_id for o in orders], dtype=object),
            peer=np.array([o.peer for o in orders], dtype=object),
            is_buy=np.array([o.side == Side.BUY for o in orders], dtype=bool),
            quantity_kwh=np.array([o.quantity_kwh for o in orders], dtype=np.float64),
            price=np.array([o.price for o in orders], dtype=np.float64),
            time=np.array([o.time for o in orders], dtype=np.float64),
            interval_start=orders[0].interval_start if orders else None,
        )

    @classmethod
    def from_arrays(
        cls,
        *,
        order_id: Sequence[Any] | np.ndarray,
        peer: Sequence[Any] | np.ndarray,
        is_buy: Sequence[Any] | np.ndarray,
        quantity_kwh: Sequence[Any] | np.ndarray,
        price: Sequence[Any] | np.ndarray,
        time: Sequence[Any] | np.ndarray | None = None,
        interval_start: datetime | None = None,
    ) -> OrderColumns:
        """Columns from array-likes; `time` defaults to 0 for every order."""
        quantity = np.asarray(quantity_kwh, dtype=np.float64)
        return cls(
            order_id=np.asarray(order_id, dtype=object),
            peer=np.asarray(peer, dtype=object),
            is_buy=np.asarray(is_buy, dtype=bool),
            quantity_kwh=quantity,
            price=np.asarray(price, dtype=np.float64),
            time=np.zeros(len(quantity)) if time is None else np.asarray(time, dtype=np.float64),
            interval_start=interval_start,
        )

    def take(self, rows: np.ndarray) -> OrderColumns:
        """The orders at `rows` (an index array or a boolean mask)."""
        return OrderColumns(
            order_id=_take(self.order_id, rows),
            peer=_take(self.peer, rows),
            is_buy=self.is_buy[rows],
            quantity_kwh=self.quantity_kwh[rows],
            price=self.price[rows],
            time=self.time[rows],
            interval_start=self.interval_start,
        )

    def duplicated(self, rows: np.ndarray) -> np.ndarray:
        """For the positions `rows`: True where the order_id occurred at an earlier position."""
        if isinstance(self.order_id, ArrowStrings):
            ids = self.order_id if len(rows) == len(self) else self.order_id.take(rows)
            codes = ids.array.dictionary_encode()
            if len(codes.dictionary) == len(rows):
                return np.zeros(len(rows), dtype=bool)
            index = codes.indices.to_numpy()
            first = np.zeros(len(rows), dtype=bool)
            first[np.unique(index, return_index=True)[1]] = True
            return ~first
        import pandas as pd

        duplicated: np.ndarray = pd.Series(self.order_id[rows]).duplicated(keep="first").to_numpy()
        return duplicated

    def problems(self) -> tuple[np.ndarray, list[tuple[int, str]]]:
        """Vectorised checks: a mask of valid rows and (row, reason) for every invalid row.

        The same rules as `validate_orders` without its known-peer and interval checks. The
        answer is kept: the columns do not change, so a caller that checks before clearing (the
        CLI, to name lines) and the mechanism check once.
        """
        cached: tuple[np.ndarray, list[tuple[int, str]]] | None = self.__dict__.get("_problems")
        if cached is not None:
            return cached[0].copy(), list(cached[1])
        reasons: dict[int, str] = {}
        bad_qty = ~np.isfinite(self.quantity_kwh) | ~(self.quantity_kwh > 0)
        for row in np.flatnonzero(bad_qty):
            reasons[int(row)] = (
                f"quantity_kwh {float(self.quantity_kwh[row])!r} must be a finite number > 0"
            )
        for row in np.flatnonzero(
            np.isfinite(self.quantity_kwh)
            & (self.quantity_kwh > 0)
            & (self.quantity_kwh < QUANTITY_RESOLUTION_KWH)
        ):
            reasons[int(row)] = _below_resolution(float(self.quantity_kwh[row]))
        for row in np.flatnonzero(~np.isfinite(self.price)):
            reasons.setdefault(
                int(row),
                f"price {float(self.price[row])!r} must be a finite number (currency per kWh)",
            )
        for row in np.flatnonzero(~np.isfinite(self.time)):
            reasons.setdefault(
                int(row), f"time {float(self.time[row])!r} must be a finite number (seconds)"
            )
        for row in np.flatnonzero(_empty(self.peer)):
            reasons.setdefault(int(row), "peer is empty")
        ok = np.ones(len(self), dtype=bool)
        if reasons:
            ok[list(reasons)] = False
        duplicated = self.duplicated(np.flatnonzero(ok))
        for row in np.flatnonzero(ok)[duplicated]:
            reasons[int(row)] = (
                f"duplicate order_id {self.order_id[row]!r} (the first order with it is kept)"
            )
            ok[row] = False
        found = (ok, sorted(reasons.items()))
        object.__setattr__(self, "_problems", found)
        return ok.copy(), list(found[1])

    def order(self, row: int) -> Order:
        """Row `row` as an Order (interval_start falls back to the Unix epoch when unknown)."""
        return Order(
            order_id=str(self.order_id[row]),
            peer=str(self.peer[row]),
            side=Side.BUY if self.is_buy[row] else Side.SELL,
            quantity_kwh=float(self.quantity_kwh[row]),
            price=float(self.price[row]),
            interval_start=self.interval_start or _EPOCH,
            time=float(self.time[row]),
        )

    def to_orders(self) -> list[Order]:
        return [self.order(row) for row in range(len(self))]


class ArrowStrings:
    """A pyarrow string array that turns into a numpy object array only when indexed.

    The fast path of a large book read from CSV: sorting and crossing never look at order ids,
    and the trades CSV is written from the arrow array itself (`take`).
    """

    def __init__(self, array: Any) -> None:
        self.array = array
        self._numpy: np.ndarray | None = None

    def numpy(self) -> np.ndarray:
        if self._numpy is None:
            self._numpy = np.asarray(self.array.to_numpy(zero_copy_only=False), dtype=object)
        return self._numpy

    def take(self, rows: np.ndarray) -> ArrowStrings:
        import pyarrow as pa

        rows = np.asarray(rows)
        if rows.dtype == bool:
            return ArrowStrings(self.array.filter(pa.array(rows)))
        return ArrowStrings(self.array.take(pa.array(rows)))

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, key: Any) -> Any:
        return self.numpy()[key]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        values = self.numpy()
        return values if dtype is None else values.astype(dtype)

    def astype(self, dtype: Any) -> np.ndarray:
        return self.numpy().astype(dtype)

    def tolist(self) -> list[Any]:
        values: list[Any] = self.array.to_pylist()
        return values


def _below_resolution(quantity_kwh: float) -> str:
    return (
        f"quantity_kwh {quantity_kwh!r} is below the market's resolution of "
        f"{QUANTITY_RESOLUTION_KWH:g} kWh"
    )


def _empty(values: np.ndarray | ArrowStrings) -> np.ndarray:
    """True where a string column holds an empty string (or nothing)."""
    if isinstance(values, ArrowStrings):
        import pyarrow.compute as pc

        empty: np.ndarray = pc.fill_null(pc.equal(values.array, ""), True).to_numpy(
            zero_copy_only=False
        )
        return empty
    return np.array([value is None or str(value) == "" for value in values], dtype=bool)


def _take(values: np.ndarray | ArrowStrings, rows: np.ndarray) -> np.ndarray | ArrowStrings:
    return values.take(rows) if isinstance(values, ArrowStrings) else values[rows]


_EPOCH = datetime.fromisoformat("1970-01-01T00:00:00+00:00")
