"""Order books and trades as CSV: the `testbed clear` input and output, and the run store's format.

Order columns: order_id, peer, side (buy or sell), quantity_kwh, price (currency per kWh), and
optionally time (submission, seconds or an ISO-8601 timestamp) and interval_start (ISO-8601).
Trade columns: buy_order_id, sell_order_id, buyer, seller, quantity_kwh, price.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, NamedTuple

import numpy as np
import pandas as pd

from testbed.market.book import Order, Side, Trade
from testbed.market.columns import OrderColumns
from testbed.market.result import TRADE_COLUMNS, ClearingResult
from testbed.messages import quoted

ORDER_COLUMNS = ("order_id", "peer", "side", "quantity_kwh", "price", "time", "interval_start")
REQUIRED_ORDER_COLUMNS = ORDER_COLUMNS[:5]
_SIDES = {"buy": True, "bid": True, "sell": False, "ask": False, "offer": False}

Source = str | Path | IO[str]


@dataclass(frozen=True)
class RowProblem:
    """A CSV row that could not become an order."""

    line: int  # line number in the file (the header is line 1)
    order_id: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line} (order_id {quoted(self.order_id)}): {self.reason}"


class CsvOrders(NamedTuple):
    orders: list[Order]
    problems: list[RowProblem]


def read_order_columns(
    source: Source, interval_start: datetime | None = None
) -> tuple[OrderColumns, list[RowProblem]]:
    """Parse an order CSV into columns; rows that do not parse are returned as problems.

    Values that parse but are not acceptable (a negative quantity, a NaN price) are kept here:
    `validate_orders` or the mechanism rejects them with a reason. `interval_start` is taken from
    the argument, else from the first row's `interval_start` column, else left unknown.
    """
    columns, problems, _ = _parse(source, interval_start)
    return columns, problems


def read_orders_csv(source: Source, interval_start: datetime | None = None) -> CsvOrders:
    """Parse an order CSV into Order objects; returns (orders, problems).

    Each order takes its row's interval_start when the column exists, else `interval_start`
    (else the Unix epoch, a marker for "unknown"). Rows that do not parse are problems, with
    their line number and reason.
    """
    columns, problems, starts = _parse(source, interval_start)
    orders = columns.to_orders()
    if starts is not None:
        orders = [
            _with_interval(order, start) if start is not None else order
            for order, start in zip(orders, starts, strict=True)
        ]
    return CsvOrders(orders, problems)


def _parse(source: Source, interval_start: datetime | None):
    frame = pd.read_csv(source, dtype=str, keep_default_na=False, skipinitialspace=True)
    frame.columns = [str(name).strip() for name in frame.columns]
    missing = [name for name in REQUIRED_ORDER_COLUMNS if name not in frame.columns]
    if missing:
        raise ValueError(
            f"order CSV lacks column(s) {', '.join(missing)} "
            f"(required: {', '.join(REQUIRED_ORDER_COLUMNS)}; optional: time, interval_start)"
        )
    order_id = frame["order_id"].str.strip()
    reasons = pd.Series("", index=frame.index, dtype=object)

    def flag(mask: pd.Series, message: pd.Series | str) -> None:
        fresh = mask & (reasons == "")
        reasons[fresh] = message if isinstance(message, str) else message[fresh]

    def value_of(name: str) -> pd.Series:
        return name + " " + frame[name].map(quoted)

    flag(order_id == "", "order_id is empty")
    side_text = frame["side"].str.strip().str.lower()
    flag(~side_text.isin(list(_SIDES)), value_of("side") + " is not buy or sell")
    quantity = _numbers(frame["quantity_kwh"])
    flag(
        quantity.isna() & ~_says_nan(frame["quantity_kwh"]),
        value_of("quantity_kwh") + " is not a number",
    )
    price = _numbers(frame["price"])
    flag(price.isna() & ~_says_nan(frame["price"]), value_of("price") + " is not a number")
    time = pd.Series(0.0, index=frame.index)
    if "time" in frame.columns:
        blank = frame["time"].str.strip() == ""
        time = _seconds(frame["time"]).where(~blank, 0.0)
        flag(
            time.isna() & ~_says_nan(frame["time"]),
            value_of("time") + " is neither seconds nor an ISO-8601 timestamp",
        )
    starts = None
    if "interval_start" in frame.columns:
        text = frame["interval_start"].str.strip()
        starts = text.map(_parse_time)
        flag(starts.isna() & (text != ""), value_of("interval_start") + " is not ISO-8601")
    ok = (reasons == "").to_numpy()
    problems = [
        RowProblem(int(i) + 2, str(order_id[i]), str(reasons[i]))
        for i in np.flatnonzero(~ok).tolist()
    ]
    kept_starts = (
        None
        if starts is None
        else [None if pd.isna(value) else value for value in starts[ok].tolist()]
    )
    if interval_start is None and kept_starts:
        interval_start = kept_starts[0]
    columns = OrderColumns(
        order_id=order_id.to_numpy(dtype=object)[ok],
        peer=frame["peer"].str.strip().to_numpy(dtype=object)[ok],
        is_buy=side_text.isin([name for name, buy in _SIDES.items() if buy]).to_numpy()[ok],
        quantity_kwh=quantity.to_numpy(dtype=np.float64)[ok],
        price=price.to_numpy(dtype=np.float64)[ok],
        time=time.to_numpy(dtype=np.float64)[ok],
        interval_start=interval_start,
    )
    return columns, problems, kept_starts


def write_orders_csv(orders: Iterable[Order] | OrderColumns, target: Source) -> None:
    """Write orders in the columns `read_orders_csv` reads (interval_start as ISO-8601 UTC)."""
    if isinstance(orders, OrderColumns):
        start = orders.interval_start.isoformat() if orders.interval_start else ""
        frame = pd.DataFrame(
            {
                "order_id": orders.order_id,
                "peer": orders.peer,
                "side": np.where(orders.is_buy, "buy", "sell"),
                "quantity_kwh": orders.quantity_kwh,
                "price": orders.price,
                "time": orders.time,
                "interval_start": start,
            },
            columns=list(ORDER_COLUMNS),
        )
    else:
        frame = pd.DataFrame(
            [
                (
                    o.order_id,
                    o.peer,
                    Side(o.side).value,
                    o.quantity_kwh,
                    o.price,
                    o.time,
                    o.interval_start.isoformat(),
                )
                for o in orders
            ],
            columns=list(ORDER_COLUMNS),
        )
    frame.to_csv(target, index=False)


def write_trades_csv(trades: Iterable[Trade] | ClearingResult, target: Source) -> None:
    """Write trades as buy_order_id, sell_order_id, buyer, seller, quantity_kwh, price."""
    if isinstance(trades, ClearingResult):
        frame = trades.trades_frame()
    else:
        frame = pd.DataFrame(
            [
                (t.buy_order_id, t.sell_order_id, t.buyer, t.seller, t.quantity_kwh, t.price)
                for t in trades
            ],
            columns=list(TRADE_COLUMNS),
        )
    frame.to_csv(target, index=False)


def read_trades_csv(source: Source) -> list[Trade]:
    frame = pd.read_csv(
        source, dtype={"buy_order_id": str, "sell_order_id": str, "buyer": str, "seller": str}
    )
    return [
        Trade(
            str(r.buy_order_id),
            str(r.sell_order_id),
            str(r.buyer),
            str(r.seller),
            float(r.quantity_kwh),
            float(r.price),
        )
        for r in frame.itertuples(index=False)
    ]


def _numbers(text: pd.Series) -> pd.Series:
    return pd.to_numeric(text.str.strip(), errors="coerce").astype(np.float64)


def _says_nan(text: pd.Series) -> pd.Series:
    """True where the text is literally a NaN (kept, so validation can name it)."""
    return text.str.strip().str.lower().isin(["nan", "+nan", "-nan"])


def _seconds(text: pd.Series) -> pd.Series:
    seconds = _numbers(text)
    needs_date = seconds.isna() & (text.str.strip() != "") & ~_says_nan(text)
    if needs_date.any():
        parsed = pd.to_datetime(text[needs_date], utc=True, errors="coerce", format="ISO8601")
        epoch = pd.Timestamp(0, tz="UTC")
        seconds[needs_date] = (parsed - epoch).dt.total_seconds()
    return seconds


def _parse_time(value: str) -> datetime | None:
    value = str(value).strip()
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _with_interval(order: Order, start: datetime) -> Order:
    return Order(
        order.order_id,
        order.peer,
        order.side,
        order.quantity_kwh,
        order.price,
        start,
        order.time,
    )
