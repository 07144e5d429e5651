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

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
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


# What a parser gives: the columns, the rows that did not parse, each kept row's interval_start
# (None where its cell is empty; the list is None when the file has no such column or it is unused)
# and the record number (0 = the first row after the header) of each kept row
_Parsed = tuple[OrderColumns, list[RowProblem], list[datetime | None] | None, np.ndarray]


@dataclass(frozen=True)
class OrderFile:
    """An order CSV read for clearing: the book, the rows that did not parse, and where each
    book row came from in the file."""

    columns: OrderColumns
    problems: list[RowProblem]
    records: np.ndarray  # record number of each book row (0 = the first row after the header)
    path: Path | None

    def line_of(self, rows: np.ndarray | list[int]) -> list[int]:
        """The file line of each book row in `rows` (the header is line 1)."""
        records = self.records[np.asarray(rows, dtype=np.int64)]
        lines = self._record_lines
        found: list[int] = (records + 2 if lines is None else lines[records]).tolist()
        return found

    @cached_property
    def _record_lines(self) -> np.ndarray | None:
        return record_lines(self.path) if self.path is not None else None


def read_order_file(source: Source) -> OrderFile:
    """`read_order_columns` for one interval, keeping where each row came from.

    A row whose interval_start differs from the book's (the first row's) is a problem: one file
    is one market interval, and energy of different intervals does not trade.
    """
    fast = _parse_arrow(source, None, want_starts=False, one_interval=True)
    parsed = fast if fast is not None else _parse(source, None, one_interval=True)
    columns, problems, _, records = parsed
    path = Path(source) if isinstance(source, str | Path) else None
    return OrderFile(columns, _with_file_lines(problems, path), records, path)


def read_order_columns(
    source: Source, interval_start: datetime | None = None
) -> tuple[OrderColumns, list[RowProblem]]:
    """Parse an order CSV into columns; rows that do not parse are returned as problems.

    Values that parse but are not acceptable (a negative quantity, a NaN price) are kept here:
    `validate_orders` or the mechanism rejects them with a reason. `interval_start` is taken from
    the argument, else from the first row's `interval_start` column, else left unknown.
    """
    fast = _parse_arrow(source, interval_start, want_starts=False)
    columns, problems, _, _ = fast if fast is not None else _parse(source, interval_start)
    path = Path(source) if isinstance(source, str | Path) else None
    return columns, _with_file_lines(problems, path)


def read_orders_csv(source: Source, interval_start: datetime | None = None) -> CsvOrders:
    """Parse an order CSV into Order objects; returns (orders, problems).

    Each order takes its row's interval_start when the column exists, else `interval_start`
    (else the Unix epoch, a marker for "unknown"). Rows that do not parse are problems, with
    their line number and reason.
    """
    fast = _parse_arrow(source, interval_start, want_starts=True)
    columns, problems, starts, _ = fast if fast is not None else _parse(source, interval_start)
    problems = _with_file_lines(problems, Path(source) if isinstance(source, str | Path) else None)
    orders = columns.to_orders()
    if starts is not None:
        orders = [
            _with_interval(order, start) if start is not None else order
            for order, start in zip(orders, starts, strict=True)
        ]
    return CsvOrders(orders, problems)


def _parse_arrow(
    source: Source, interval_start: datetime | None, want_starts: bool, one_interval: bool = False
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
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        _raise_if_long_row(str(error), Path(source))
        return None  # a value that does not parse: the pandas path names the row
    _check_header(table.column_names)
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
        if one_interval and interval_start is not None:
            other = np.array([m is not None and m != interval_start for m in moments])
            book_start = interval_start
            flag(
                np.flatnonzero(other[index]),
                lambda row: _other_interval(texts[index[row]], book_start),
            )
            ok_index = index[~bad]
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
    return columns, problems, starts, np.flatnonzero(ok)


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


def _parse(source: Source, interval_start: datetime | None, one_interval: bool = False) -> _Parsed:
    import warnings

    import pandas as pd

    try:
        with warnings.catch_warnings():
            # a first row longer than the header: pandas would drop its extra values with a warning
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(
                source, dtype=str, keep_default_na=False, skipinitialspace=True, index_col=False
            )
    except pd.errors.ParserWarning:
        raise ValueError("line 2 has more values than the header names columns") from None
    except UnicodeDecodeError as error:
        if isinstance(source, str | Path):
            raise ValueError(_not_utf8(Path(source))) from None
        raise ValueError(f"the file is not UTF-8 text ({error})") from None
    frame.columns = [str(name).strip() for name in frame.columns]
    _check_header(list(frame.columns), mangled=True)
    missing = [name for name in REQUIRED_ORDER_COLUMNS if name not in frame.columns]
    if missing:
        found = ", ".join(repr(name) for name in frame.columns) or "none"
        raise ValueError(
            f"order CSV lacks column(s) {', '.join(missing)} "
            f"(required: {', '.join(REQUIRED_ORDER_COLUMNS)}; optional: time, interval_start; "
            f"the header has {found})"
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
        if one_interval:
            parsed = starts[(reasons == "") & starts.notna()]
            book_start = interval_start if interval_start is not None else None
            if book_start is None and len(parsed):
                book_start = parsed.iloc[0]
            if book_start is not None:
                other = starts.map(lambda m: m is not None and not pd.isna(m) and m != book_start)
                flag(other, text.map(lambda t: _other_interval(t, book_start)))
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
    return columns, problems, kept_starts, np.flatnonzero(ok)


def _check_header(names: list[str], mangled: bool = False) -> None:
    """A column named twice is an error (pandas renames the second 'price' to 'price.1')."""
    seen = set()
    for name in names:
        base, dot, number = name.rpartition(".")
        if mangled and dot and number.isdigit() and base in names:
            name = base
        if name in seen and name:
            raise ValueError(f"the header names column {name!r} more than once")
        seen.add(name)


def _raise_if_long_row(message: str, path: Path) -> None:
    """pyarrow's 'Expected 5 columns, got 6: <row>' as an error naming the line."""

    match = re.search(r"Expected (\d+) columns, got (\d+): (.*)", message, re.DOTALL)
    if match is None or int(match.group(2)) <= int(match.group(1)):
        return  # a short row: its missing values are named row by row
    expected, got, row = int(match.group(1)), int(match.group(2)), match.group(3).rstrip("\r\n")
    where = "a row"
    try:
        data = path.read_bytes()
        offset = data.find(row.encode())
        if offset >= 0:
            line = data.count(b"\n", 0, offset) + 1
            where = f"line {line}"
    except OSError:
        pass
    raise ValueError(
        f"{where} has {got} values but the header names {expected} columns: {quoted(row)}"
    )


def _not_utf8(path: Path) -> str:
    """Where a file stops being UTF-8 text, for the error message."""
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "the file is UTF-16 text; save it as UTF-8 (or plain ASCII)"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        return (
            f"line {line} is not UTF-8 text (byte 0x{data[error.start]:02x}); "
            "save the file as UTF-8"
        )
    return "the file is not UTF-8 text; save it as UTF-8"


def _other_interval(text: str, book_start: datetime) -> str:
    return (
        f"interval_start {quoted(str(text).strip())} is not the book's interval "
        f"{book_start.isoformat()} (the first row's): clear one interval per file"
    )


# an empty line or one of spaces, ended by LF, CRLF or a lone CR
_BLANK_LINE = re.compile(rb"(?:^|\n)[ \t]*\r?\n|(?:^|\r)[ \t]*\r(?!\n)")


def record_lines(path: Path) -> np.ndarray | None:
    """The file line each data record starts on (header = line 1), or None when that is simply
    record + 2 (no blank lines and no quoted values that could hold a line break)."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if not _BLANK_LINE.search(data) and b'"' not in data:
        return None
    import csv
    import io

    reader = csv.reader(io.StringIO(data.decode("utf-8-sig", errors="replace"), newline=""))
    starts: list[int] = []
    end = 0
    header = False
    for record in reader:
        start, end = end + 1, reader.line_num
        if not record or (len(record) == 1 and not record[0].strip()):
            continue  # blank lines (or only spaces) are skipped by the readers
        if header:
            starts.append(start)
        header = True
    return np.array(starts, dtype=np.int64)


def _with_file_lines(problems: list[RowProblem], path: Path | None) -> list[RowProblem]:
    """Problems numbered by record (record + 2) renumbered by the file's own lines."""
    if not problems or path is None:
        return problems
    lines = record_lines(path)
    if lines is None:
        return problems
    return [
        RowProblem(
            int(lines[p.line - 2]) if p.line - 2 < len(lines) else p.line, p.order_id, p.reason
        )
        for p in problems
    ]


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
