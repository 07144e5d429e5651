"""Order books and trades as CSV: the `testbed clear` input and output, and the run store's format.

Order columns: order_id, peer, side (buy or sell), quantity_kwh, price (currency per kWh), and
optionally time (submission, seconds or an ISO-8601 timestamp) and interval_start (ISO-8601).
Trade columns: buy_order_id, sell_order_id, buyer, seller, quantity_kwh, price.

A file is read by pyarrow's CSV reader straight into columns when its values are plain (numbers
that parse, no padding around ids); anything else goes through the pandas reader, which names every
row that does not parse. Both give the same book. Trades of a ClearingResult are written by
pyarrow's CSV writer from columns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple

import numpy as np

from testbed.market.book import Order, Side, Trade
from testbed.market.columns import ArrowStrings, OrderColumns
from testbed.market.result import TRADE_COLUMNS, ClearingResult
from testbed.messages import quoted

if TYPE_CHECKING:
    import pandas as pd

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


# What a parser gives: the columns, the rows that did not parse, and each kept row's interval_start
# (None where its cell is empty; the list is None when the file has no such column or it is unused)
_Parsed = tuple[OrderColumns, list[RowProblem], list[datetime | None] | None]


def read_order_columns(
    source: Source, interval_start: datetime | None = None
) -> tuple[OrderColumns, list[RowProblem]]:
    """Parse an order CSV into columns; rows that do not parse are returned as problems.

    Values that parse but are not acceptable (a negative quantity, a NaN price) are kept here:
    `validate_orders` or the mechanism rejects them with a reason. `interval_start` is taken from
    the argument, else from the first row's `interval_start` column, else left unknown.
    """
    fast = _parse_arrow(source, interval_start, want_starts=False)
    columns, problems, _ = fast if fast is not None else _parse(source, interval_start)
    return columns, problems


def read_orders_csv(source: Source, interval_start: datetime | None = None) -> CsvOrders:
    """Parse an order CSV into Order objects; returns (orders, problems).

    Each order takes its row's interval_start when the column exists, else `interval_start`
    (else the Unix epoch, a marker for "unknown"). Rows that do not parse are problems, with
    their line number and reason.
    """
    fast = _parse_arrow(source, interval_start, want_starts=True)
    columns, problems, starts = fast if fast is not None else _parse(source, interval_start)
    orders = columns.to_orders()
    if starts is not None:
        orders = [
            _with_interval(order, start) if start is not None else order
            for order, start in zip(orders, starts, strict=True)
        ]
    return CsvOrders(orders, problems)


def _parse_arrow(
    source: Source, interval_start: datetime | None, want_starts: bool
) -> _Parsed | None:
    """The pyarrow path for a file of plain values; None when the pandas path must decide."""
    if not isinstance(source, str | Path):
        return None
    import pyarrow as pa
    import pyarrow.csv as pcsv

    text_dict = pa.dictionary(pa.int32(), pa.string())
    types = {
        "order_id": pa.string(),
        "peer": pa.string(),
        "side": text_dict,
        "quantity_kwh": pa.float64(),
        "price": pa.float64(),
        "time": pa.float64(),
        "interval_start": text_dict,
    }
    try:
        table = pcsv.read_csv(
            source,
            convert_options=pcsv.ConvertOptions(
                column_types=types, strings_can_be_null=False, null_values=[""]
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None  # a value that does not parse: the pandas path names the row
    if any(name not in table.column_names for name in REQUIRED_ORDER_COLUMNS):
        return None  # the pandas path strips header names and names what is missing
    ids = table.column("order_id").combine_chunks()
    peers = table.column("peer").combine_chunks()
    if _padded(ids) or _padded(peers):
        return None  # the pandas path strips them
    count = table.num_rows
    reasons: list[str | None] = [None] * count
    bad = np.zeros(count, dtype=bool)

    def flag(rows: np.ndarray, message: str | Callable[[int], str]) -> None:
        for row in rows.tolist():
            if not bad[row]:
                bad[row] = True
                reasons[row] = message if isinstance(message, str) else message(row)

    flag(np.flatnonzero(_lengths(ids) == 0), "order_id is empty")
    side = table.column("side").combine_chunks()
    words = [str(word).strip().lower() for word in side.dictionary.to_pylist()]
    code = np.array([_SIDES.get(word, -1) for word in words] + [-1], dtype=np.int8)
    side_index = side.indices.fill_null(len(words)).to_numpy()
    side_code = code[side_index]
    side_text = [*side.dictionary.to_pylist(), ""]
    flag(
        np.flatnonzero(side_code < 0),
        lambda row: f"side {side_text[side_index[row]]!r} is not buy or sell",
    )
    numbers = {}
    for name in ("quantity_kwh", "price"):
        column = table.column(name).combine_chunks()
        if column.null_count:
            flag(
                np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False)),
                f"{name} '' is not a number",
            )
            column = column.fill_null(np.nan)
        numbers[name] = column.to_numpy()
    time = np.zeros(count)
    if "time" in table.column_names:
        column = table.column("time").combine_chunks()
        time = (column.fill_null(0.0) if column.null_count else column).to_numpy()
    starts = None
    if "interval_start" in table.column_names:
        column = table.column("interval_start").combine_chunks()
        texts = column.dictionary.to_pylist()
        moments = [_parse_time(text) for text in texts] + [None]
        index = column.indices.fill_null(len(texts)).to_numpy()
        unparsed = np.array(
            [m is None and t.strip() != "" for m, t in zip(moments, [*texts, ""], strict=True)],
            dtype=bool,
        )
        flag(
            np.flatnonzero(unparsed[index]),
            lambda row: f"interval_start {texts[index[row]]!r} is not ISO-8601",
        )
        ok_index = index[~bad]
        if interval_start is None and len(ok_index):
            interval_start = moments[ok_index[0]]
        if want_starts:
            starts = [moments[i] for i in ok_index.tolist()]
    problems = [
        RowProblem(row + 2, str(ids[row].as_py()), str(reasons[row]))
        for row in np.flatnonzero(bad).tolist()
    ]
    ok = ~bad
    order_id, peer = ArrowStrings(ids), ArrowStrings(peers)
    if bad.any():
        order_id, peer = order_id.take(ok), peer.take(ok)
    columns = OrderColumns(
        order_id=order_id,
        peer=peer,
        is_buy=(side_code == 1)[ok],
        quantity_kwh=numbers["quantity_kwh"][ok],
        price=numbers["price"][ok],
        time=time[ok],
        interval_start=interval_start,
    )
    return columns, problems, starts


_WHITESPACE = np.array([9, 10, 11, 12, 13, 28, 29, 30, 31, 32], dtype=np.uint8)


def _string_buffers(strings: Any) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, data bytes) of a pyarrow string array, without copying."""
    _, offsets, data = strings.buffers()
    start = strings.offset
    offs = np.frombuffer(offsets, dtype=np.int32)[start : start + len(strings) + 1]
    body = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    return offs, body


def _lengths(strings: Any) -> np.ndarray:
    return np.diff(_string_buffers(strings)[0])


def _padded(strings: Any) -> bool:
    """True if any string may start or end with whitespace (a non-ASCII end counts: unsure)."""
    offs, body = _string_buffers(strings)
    filled = offs[1:] > offs[:-1]
    ends = np.concatenate((body[offs[:-1][filled]], body[offs[1:][filled] - 1]))
    return bool(np.isin(ends, _WHITESPACE).any() or (ends >= 0x80).any())


def _parse(source: Source, interval_start: datetime | None) -> _Parsed:
    import pandas as pd

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
    import pandas as pd

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
    """Write trades as buy_order_id, sell_order_id, buyer, seller, quantity_kwh, price (and
    network_charge when a clearing allocated charges per trade)."""
    if isinstance(trades, ClearingResult):
        _write_arrow_csv(trades.trades_arrow(), target)
        return
    import pandas as pd

    frame = pd.DataFrame(
        [
            (t.buy_order_id, t.sell_order_id, t.buyer, t.seller, t.quantity_kwh, t.price)
            for t in trades
        ],
        columns=list(TRADE_COLUMNS),
    )
    frame.to_csv(target, index=False)


def _write_arrow_csv(table: Any, target: Source) -> None:
    """pyarrow's CSV writer to a path, a binary stream, or a text stream (through bytes)."""
    import io

    import pyarrow.csv as pcsv

    options = pcsv.WriteOptions(quoting_style="needed")
    if isinstance(target, str | Path):
        pcsv.write_csv(table, str(target), write_options=options)
        return
    binary = getattr(target, "buffer", None)
    if binary is not None:
        target.flush()
        pcsv.write_csv(table, binary, write_options=options)
        binary.flush()
        return
    sink = io.BytesIO()
    pcsv.write_csv(table, sink, write_options=options)
    target.write(sink.getvalue().decode())


def read_trades_csv(source: Source) -> list[Trade]:
    import pandas as pd

    frame = pd.read_csv(
        source,
        dtype={"buy_order_id": str, "sell_order_id": str, "buyer": str, "seller": str},
        float_precision="round_trip",
    )
    return [
        Trade(
            str(r.buy_order_id),
            str(r.sell_order_id),
            str(r.buyer),
            str(r.seller),
            float(r.quantity_kwh),
            float(r.price),
            network_charge=_charge(getattr(r, "network_charge", None)),
        )
        for r in frame.itertuples(index=False)
    ]


def _charge(value: Any) -> float | None:
    """A trade's network charge from the optional column (empty or absent: None)."""
    if value is None:
        return None
    number = float(value)
    return None if number != number else number


def _numbers(text: pd.Series) -> pd.Series:
    import pandas as pd

    stripped = text.str.strip()
    values = pd.to_numeric(stripped, errors="coerce").astype(np.float64)
    parsed = values.notna().to_numpy()
    # pandas' own parser can be one ulp off; numpy's conversion rounds as Python's float() does,
    # as pyarrow's reader does.
    values[parsed] = stripped.to_numpy(dtype=object)[parsed].astype(np.float64)
    return values


def _says_nan(text: pd.Series) -> pd.Series:
    """True where the text is literally a NaN (kept, so validation can name it)."""
    return text.str.strip().str.lower().isin(["nan", "+nan", "-nan"])


def _seconds(text: pd.Series) -> pd.Series:
    import pandas as pd

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
