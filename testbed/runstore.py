"""The run store: one directory per run, written by a document sink and read back as DataFrames.

A run directory holds:
- `config.toml`: the configuration the run used,
- `meta.json`: run_id, format_version, started_at, finished_at, status, seed, mechanism, hours,
- `run.sqlite`: tables `samples` (wide: one REAL column per sample field), `orders`, `trades`,
  `clearings`, `settlements`, `interlocks` and `format_version`, in WAL mode so a reader can read
  while the run writes,
- `summary.json`: per-peer and market totals, written when the run ends.

Every time in the database is a REAL of unix seconds (UTC); the reader turns them back into
timezone-aware pandas timestamps.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import socket
import sqlite3
import time
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from testbed.documents import (
    AgentPlan,
    Clearing,
    Document,
    Interlock,
    OrderBook,
    RunFinished,
    RunStarted,
    Sample,
    Settlement,
)

FORMAT_VERSION = 1
CONFIG_FILE = "config.toml"
META_FILE = "meta.json"
DB_FILE = "run.sqlite"
SUMMARY_FILE = "summary.json"
STATUSES = ("running", "finished", "interrupted", "failed")

_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SAMPLE_KEYS = ("time_s", "peer", "device")
_SETTLEMENT_FIELDS = tuple(f.name for f in dataclasses.fields(Settlement))
_INTERLOCK_FIELDS = tuple(f.name for f in dataclasses.fields(Interlock))
# one agent_plans row per horizon step: the forecast's mean, then the plan (generator convention)
_PLAN_FIELDS = (
    "forecast_load_kw",
    "forecast_pv_kw",
    "load_kw",
    "pv_kw",
    "battery_kw",
    "ev_kw",
    "net_kw",
    "soc_pct",
    "ev_soc_pct",
    "ev_plugged",
    "value_per_kwh",
)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS format_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS samples (time_s REAL NOT NULL, peer TEXT NOT NULL, device TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS samples_time ON samples (time_s);
CREATE TABLE IF NOT EXISTS orders (
    interval_start REAL NOT NULL, order_id TEXT NOT NULL, peer TEXT NOT NULL, side TEXT NOT NULL,
    quantity_kwh REAL NOT NULL, price REAL NOT NULL, time REAL, accepted INTEGER NOT NULL,
    reason TEXT
);
CREATE TABLE IF NOT EXISTS trades (
    interval_start REAL NOT NULL, buy_order_id TEXT, sell_order_id TEXT, buyer TEXT NOT NULL,
    seller TEXT NOT NULL, quantity_kwh REAL NOT NULL, price REAL NOT NULL, seller_price REAL,
    network_charge REAL
);
CREATE TABLE IF NOT EXISTS clearings (
    interval_start REAL NOT NULL, mechanism TEXT NOT NULL, clearing_price REAL,
    volume_kwh REAL NOT NULL, n_trades INTEGER NOT NULL, report_json TEXT
);
CREATE TABLE IF NOT EXISTS settlements (
    interval_start REAL NOT NULL, peer TEXT NOT NULL,
    {", ".join(f"{name} REAL" for name in _SETTLEMENT_FIELDS[2:])}
);
CREATE TABLE IF NOT EXISTS interlocks (
    time REAL NOT NULL, peer TEXT NOT NULL, device TEXT NOT NULL, kind TEXT NOT NULL,
    reason TEXT, action TEXT
);
CREATE TABLE IF NOT EXISTS agent_plans (
    interval_start REAL NOT NULL, peer TEXT NOT NULL, agent TEXT NOT NULL, step INTEGER NOT NULL,
    step_start REAL NOT NULL, {", ".join(f"{name} REAL" for name in _PLAN_FIELDS)},
    fallback_reason TEXT
);
"""


class RunDirError(Exception):
    """A run directory that cannot be read: missing, partial, or written by another format."""


# --------------------------------------------------------------------------------------------
# Small helpers


def _number(value: float | None) -> float | None:
    """A finite float, or None (NULL) for a missing or non-finite value."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _unix_s(moment: datetime, what: str) -> float:
    if moment.tzinfo is None:
        raise ValueError(f"{what} = {moment.isoformat()} has no timezone; give a UTC datetime")
    return moment.timestamp()


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment is not None else None


def _write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON through a temporary file so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _find_key(data: Any, names: Sequence[str], depth: int = 0) -> Any:
    """The first value under one of `names`, searched breadth-first two levels deep."""
    if not isinstance(data, Mapping) or depth > 2:
        return None
    for name in names:
        if name in data and not isinstance(data[name], Mapping):
            return data[name]
    for value in data.values():
        found = _find_key(value, names, depth + 1)
        if found is not None:
            return found
    return None


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        items = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{" + items + "}"
    return json.dumps(str(value), ensure_ascii=False)


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key, ensure_ascii=False)


def dump_toml(data: Mapping[str, Any]) -> str:
    """TOML text for plain data (tables, scalars, lists); None values are left out."""
    lines: list[str] = []

    def table(prefix: str, mapping: Mapping[str, Any]) -> None:
        scalars = {k: v for k, v in mapping.items() if v is not None and not isinstance(v, Mapping)}
        tables = {k: v for k, v in mapping.items() if isinstance(v, Mapping)}
        if prefix and (scalars or not tables):
            lines.append(f"\n[{prefix}]")
        for key, value in scalars.items():
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
        for key, value in tables.items():
            table(f"{prefix}.{_toml_key(key)}" if prefix else _toml_key(key), value)

    table("", data)
    return "\n".join(lines).lstrip("\n") + "\n"


# --------------------------------------------------------------------------------------------
# Writer


class RunStore:
    """A document sink that writes one run directory.

    `emit` only appends to in-memory buffers; rows reach SQLite in batches (executemany), committed
    at least every `flush_interval_s` of wall time, at every clearing and interlock, and at close,
    so a reader sees a live run progress.
    """

    def __init__(
        self,
        run_dir: Path | str,
        *,
        flush_interval_s: float = 1.0,
        max_buffered_rows: int = 50_000,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if (self.run_dir / DB_FILE).exists():
            raise FileExistsError(f"run directory {self.run_dir} already holds a run ({DB_FILE})")
        self.flush_interval_s = flush_interval_s
        self.max_buffered_rows = max_buffered_rows
        self._conn = sqlite3.connect(self.run_dir / DB_FILE, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        self._conn.execute("INSERT INTO format_version VALUES (?)", (FORMAT_VERSION,))
        self._sample_columns: set[str] = set(_SAMPLE_KEYS)
        self._samples: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        self._rows: dict[str, list[tuple[Any, ...]]] = {
            "orders": [],
            "trades": [],
            "clearings": [],
            "settlements": [],
            "interlocks": [],
            "agent_plans": [],
        }
        self._n_buffered = 0
        self._last_flush = time.monotonic()
        self._meta: dict[str, Any] | None = None
        self._finished: RunFinished | None = None
        self._closed = False

    # -- the Sink protocol ------------------------------------------------------------------

    def emit(self, doc: Document) -> None:
        """Take one document of the run's stream."""
        if self._closed:
            raise RuntimeError(f"run store {self.run_dir} is closed; it takes no more documents")
        if type(doc) is Sample:
            self._buffer_sample(doc)
        elif isinstance(doc, RunStarted):
            self._start(doc)
            return
        elif self._meta is None:
            raise RuntimeError(f"{type(doc).__name__} arrived before RunStarted in {self.run_dir}")
        elif isinstance(doc, OrderBook):
            self._buffer_order_book(doc)
        elif isinstance(doc, Clearing):
            self._buffer_clearing(doc)
            self.flush()
            return
        elif isinstance(doc, Settlement):
            self._rows["settlements"].append(
                (
                    _unix_s(doc.interval_start, "Settlement.interval_start"),
                    doc.peer,
                    *(getattr(doc, name) for name in _SETTLEMENT_FIELDS[2:]),
                )
            )
            self._n_buffered += 1
        elif isinstance(doc, Interlock):
            self._rows["interlocks"].append(
                (
                    _unix_s(doc.time, "Interlock.time"),
                    doc.peer,
                    doc.device,
                    doc.kind,
                    doc.reason,
                    doc.action,
                )
            )
            self._n_buffered += 1
            self.flush()
            return
        elif isinstance(doc, AgentPlan):
            self._buffer_agent_plan(doc)
        elif isinstance(doc, RunFinished):
            self._finished = doc
            self.flush()
            return
        else:
            raise TypeError(f"run store cannot store a {type(doc).__name__}")
        if (
            self._n_buffered >= self.max_buffered_rows
            or time.monotonic() - self._last_flush >= self.flush_interval_s
        ):
            self.flush()

    def close(self, status: str | None = None) -> None:
        """Flush, set the final status in meta.json and write summary.json if nobody has.

        `status` defaults to the RunFinished document's status, or `interrupted` without one.
        """
        if self._closed:
            return
        if status is None:
            status = self._finished.status if self._finished else "interrupted"
        if status not in STATUSES:
            raise ValueError(f"status = {status!r}: allowed are {', '.join(STATUSES)}")
        self.flush()
        with contextlib.suppress(sqlite3.Error):
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._conn.close()
        self._closed = True
        if self._meta is None:
            return
        finished_at = self._finished.time if self._finished else datetime.now(UTC)
        self._meta.update(status=status, finished_at=_iso(finished_at))
        _write_json_atomic(self.run_dir / META_FILE, self._meta)
        summary_path = self.run_dir / SUMMARY_FILE
        if summary_path.exists():
            return
        if self._finished and self._finished.summary and status in ("finished", "interrupted"):
            # an interrupted run ended its last interval cleanly: its totals are whole intervals
            _write_json_atomic(summary_path, dict(self._finished.summary))
        elif status == "finished":
            _write_json_atomic(summary_path, summarize(RunReader(self.run_dir)))

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close(None if exc_type is None else "failed")

    # -- buffering --------------------------------------------------------------------------

    def _start(self, doc: RunStarted) -> None:
        if self._meta is not None:
            raise RuntimeError(f"a second RunStarted arrived in {self.run_dir}")
        _unix_s(doc.time, "RunStarted.time")
        config_path = self.run_dir / CONFIG_FILE
        if not config_path.exists():
            config_path.write_text(dump_toml(doc.config), encoding="utf-8")
        self._meta = {
            "run_id": doc.run_id,
            "format_version": FORMAT_VERSION,
            "started_at": _iso(doc.time),
            "finished_at": None,
            "status": "running",
            "seed": _find_key(doc.config, ("seed",)),
            "mechanism": _find_key(doc.config, ("mechanism",)),
            "hours": _find_key(doc.config, ("hours",)),
            "writer": {"pid": os.getpid(), "host": socket.gethostname()},
        }
        _write_json_atomic(self.run_dir / META_FILE, self._meta)

    def _buffer_agent_plan(self, doc: AgentPlan) -> None:
        decision = doc.decision
        start = _unix_s(doc.interval_start, "AgentPlan.interval_start")
        forecast = decision.forecast if len(decision.forecast) == len(decision.plan) else ()
        rows = self._rows["agent_plans"]
        for index, step in enumerate(decision.plan):
            expected = forecast[index] if forecast else None
            rows.append(
                (
                    start,
                    doc.peer,
                    doc.agent,
                    index,
                    _unix_s(step.start, "AgentPlan step start"),
                    None if expected is None else _number(expected.load_kw),
                    None if expected is None else _number(expected.pv_kw),
                    _number(step.load_kw),
                    _number(step.pv_kw),
                    _number(step.battery_kw),
                    _number(step.ev_kw),
                    _number(step.net_kw),
                    _number(step.soc_pct),
                    _number(step.ev_soc_pct),
                    1.0 if step.ev_plugged else 0.0,
                    _number(step.value_per_kwh),
                    decision.fallback_reason if index == 0 else None,
                )
            )
        self._n_buffered += len(decision.plan)

    def _buffer_sample(self, doc: Sample) -> None:
        if self._meta is None:
            raise RuntimeError(f"Sample arrived before RunStarted in {self.run_dir}")
        values = doc.values
        key = tuple(values)
        rows = self._samples.get(key)
        if rows is None:
            self._check_field_names(key)
            rows = self._samples[key] = []
        if doc.time.tzinfo is None:
            _unix_s(doc.time, "Sample.time")
        rows.append((doc.time.timestamp(), doc.peer, doc.device, *values.values()))
        self._n_buffered += 1

    @staticmethod
    def _check_field_names(names: tuple[str, ...]) -> None:
        for name in names:
            if not _FIELD_NAME.match(name) or name in _SAMPLE_KEYS:
                raise ValueError(
                    f"sample field {name!r} cannot be a column: use letters, digits and _ "
                    f"(not starting with a digit) and none of {', '.join(_SAMPLE_KEYS)}"
                )

    def _buffer_order_book(self, doc: OrderBook) -> None:
        start = _unix_s(doc.interval_start, "OrderBook.interval_start")
        rows = self._rows["orders"]
        for order in doc.orders:
            rows.append(_order_row(start, order, True, None))
        for order, reason in doc.rejected:
            rows.append(_order_row(start, order, False, reason))
        self._n_buffered += len(doc.orders) + len(doc.rejected)

    def _buffer_clearing(self, doc: Clearing) -> None:
        start = _unix_s(doc.interval_start, "Clearing.interval_start")
        self._rows["clearings"].append(
            (
                start,
                doc.mechanism,
                doc.clearing_price,
                doc.volume_kwh,
                len(doc.trades),
                json.dumps(dict(doc.report), default=str),
            )
        )
        self._rows["trades"].extend(
            (
                start,
                t.buy_order_id,
                t.sell_order_id,
                t.buyer,
                t.seller,
                t.quantity_kwh,
                t.price,
                getattr(t, "seller_price", None),  # None: the seller gets the buyer's price
                getattr(t, "network_charge", None),  # None: the flat prices.network_charge
            )
            for t in doc.trades
        )
        self._n_buffered += 1 + len(doc.trades)

    # -- writing ----------------------------------------------------------------------------

    def flush(self) -> None:
        """Write every buffered row in one transaction."""
        self._last_flush = time.monotonic()
        if not self._n_buffered:
            return
        conn = self._conn
        for names in self._samples:
            self._add_sample_columns(names)
        conn.execute("BEGIN")
        try:
            for names, rows in self._samples.items():
                if rows:
                    columns = ", ".join(f'"{c}"' for c in (*_SAMPLE_KEYS, *names))
                    marks = ", ".join("?" * (len(names) + 3))
                    conn.executemany(f"INSERT INTO samples ({columns}) VALUES ({marks})", rows)
                    rows.clear()
            for table, rows in self._rows.items():
                if rows:
                    marks = ", ".join("?" * len(rows[0]))
                    conn.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
                    rows.clear()
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._n_buffered = 0

    def _add_sample_columns(self, names: tuple[str, ...]) -> None:
        for name in names:
            if name not in self._sample_columns:
                self._conn.execute(f'ALTER TABLE samples ADD COLUMN "{name}" REAL')
                self._sample_columns.add(name)


def _order_row(start: float, order: Any, accepted: bool, reason: str | None) -> tuple[Any, ...]:
    return (
        start,
        order.order_id,
        order.peer,
        str(order.side),
        order.quantity_kwh,
        order.price,
        order.time,
        int(accepted),
        reason,
    )


# --------------------------------------------------------------------------------------------
# Reader


@dataclass(frozen=True, slots=True)
class RunMeta:
    """What meta.json says about a run."""

    run_id: str
    format_version: int
    status: str
    started_at: datetime | None
    finished_at: datetime | None
    seed: int | None
    mechanism: str | None
    hours: float | None
    writer_pid: int | None
    writer_host: str | None


def _parse_time(text: Any) -> datetime | None:
    return datetime.fromisoformat(text) if isinstance(text, str) else None


def _to_utc(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    for column in columns:
        if column in frame:
            frame[column] = pd.to_datetime(frame[column], unit="s", utc=True)
    return frame


def _bound(moment: datetime | float | None, what: str) -> float | None:
    if moment is None or isinstance(moment, int | float):
        return moment
    if isinstance(moment, pd.Timestamp):
        moment = moment.to_pydatetime()
    return _unix_s(moment, what)


class RunReader:
    """Reads one run directory, also while its run is still writing it.

    Raises `RunDirError` at construction for a directory that is missing, has no meta.json or
    run.sqlite, has an unreadable meta.json, or was written in another format version.
    """

    def __init__(self, run_dir: Path | str) -> None:
        self.run_dir = Path(run_dir)
        if not self.run_dir.is_dir():
            raise RunDirError(f"run directory {self.run_dir} does not exist")
        meta_path = self.run_dir / META_FILE
        if not meta_path.is_file():
            raise RunDirError(
                f"{self.run_dir} is not a complete run directory: it has no {META_FILE} "
                "(the run never started, or this is not a run directory)"
            )
        try:
            raw = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise RunDirError(f"{meta_path} cannot be read: {error}") from None
        if not isinstance(raw, dict):
            raise RunDirError(f"{meta_path} does not hold a JSON object")
        version = raw.get("format_version")
        if version != FORMAT_VERSION:
            older = not isinstance(version, int) or version < FORMAT_VERSION
            raise RunDirError(
                f"{self.run_dir} was written in run-store format version {version}; this testbed "
                f"reads version {FORMAT_VERSION}"
                + (" (an older run: re-run it to view it here)" if older else " (a newer testbed)")
            )
        if not (self.run_dir / DB_FILE).is_file():
            raise RunDirError(f"{self.run_dir} is partial: it has {META_FILE} but no {DB_FILE}")
        status = raw.get("status")
        if status not in STATUSES:
            raise RunDirError(
                f"{meta_path}: status = {status!r}; allowed are {', '.join(STATUSES)}"
            )
        writer = raw.get("writer") or {}
        self.meta = RunMeta(
            run_id=str(raw.get("run_id", self.run_dir.name)),
            format_version=version,
            status=status,
            started_at=_parse_time(raw.get("started_at")),
            finished_at=_parse_time(raw.get("finished_at")),
            seed=raw.get("seed"),
            mechanism=raw.get("mechanism"),
            hours=raw.get("hours"),
            writer_pid=writer.get("pid"),
            writer_host=writer.get("host"),
        )
        with self._connect() as conn:
            row = conn.execute("SELECT version FROM format_version").fetchone()
        if row is None or row[0] != FORMAT_VERSION:
            raise RunDirError(
                f"{self.run_dir / DB_FILE} has format version {row and row[0]}; "
                f"this testbed reads version {FORMAT_VERSION}"
            )

    # -- files --------------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """The configuration the run used (config.toml)."""
        path = self.run_dir / CONFIG_FILE
        try:
            return tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunDirError(f"{self.run_dir} is partial: it has no {CONFIG_FILE}") from None
        except tomllib.TOMLDecodeError as error:
            raise RunDirError(f"{path} is not valid TOML: {error}") from None

    def config_text(self) -> str:
        """config.toml as written, or an empty string if the run has none."""
        path = self.run_dir / CONFIG_FILE
        return path.read_text(encoding="utf-8") if path.is_file() else ""

    def summary(self) -> dict[str, Any] | None:
        """summary.json, or None while the run has not written one."""
        path = self.run_dir / SUMMARY_FILE
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except ValueError as error:
            raise RunDirError(f"{path} is not valid JSON: {error}") from None

    def writer_alive(self) -> bool:
        """True while the run is marked running and its writing process still exists."""
        if self.meta.status != "running":
            return False
        if self.meta.writer_pid is None or self.meta.writer_host != socket.gethostname():
            return True  # another machine: trust meta.json
        try:
            os.kill(self.meta.writer_pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def version_key(self) -> tuple[float, ...]:
        """Changes whenever the run's files change: a cache key for readers of a live run."""
        key: list[float] = []
        for name in (META_FILE, DB_FILE, f"{DB_FILE}-wal", SUMMARY_FILE):
            try:
                stat = (self.run_dir / name).stat()
                key += [stat.st_mtime_ns, stat.st_size]
            except FileNotFoundError:
                key += [0, 0]
        return tuple(key)

    # -- tables -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        uri = f"{(self.run_dir / DB_FILE).resolve().as_uri()}?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=5.0)
        except sqlite3.Error as error:
            raise RunDirError(f"{self.run_dir / DB_FILE} cannot be opened: {error}") from None
        try:
            yield conn
        except sqlite3.DatabaseError as error:
            raise RunDirError(f"{self.run_dir / DB_FILE} cannot be read: {error}") from None
        finally:
            conn.close()

    def _query(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        with self._connect() as conn:
            return pd.read_sql_query(sql, conn, params=list(params))

    def sample_fields(self) -> list[str]:
        """The value columns of `samples` (every field name any Sample carried)."""
        with self._connect() as conn:
            columns = [row[1] for row in conn.execute("PRAGMA table_info(samples)")]
        return [c for c in columns if c not in _SAMPLE_KEYS]

    def samples(
        self,
        peer: str | None = None,
        device: str | None = None,
        start: datetime | float | None = None,
        end: datetime | float | None = None,
        fields: Sequence[str] | None = None,
        every_s: float | None = None,
    ) -> pd.DataFrame:
        """Samples with start <= time < end, optionally averaged over `every_s` buckets.

        Averaged rows carry the mean time of the samples in their bucket.

        Columns: time_s, time (UTC timestamps), peer, device, then the value fields.
        """
        known = self.sample_fields()
        if fields is None:
            fields = known
        unknown = [f for f in fields if f not in known]
        if unknown:
            raise KeyError(f"no sample field {unknown[0]!r}; the run has {', '.join(known)}")
        where, params = ["1"], []
        for column, value in (("peer", peer), ("device", device)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        lo, hi = _bound(start, "start"), _bound(end, "end")
        if lo is not None:
            where.append("time_s >= ?")
            params.append(lo)
        if hi is not None:
            where.append("time_s < ?")
            params.append(hi)
        quoted = [f'"{f}"' for f in fields]
        if every_s:
            if every_s <= 0:
                raise ValueError(f"every_s = {every_s}: must be positive")
            bucket = f"CAST(time_s / {float(every_s)!r} AS INTEGER)"
            averages = [f"AVG({q}) AS {q}" for q in quoted]
            select = ", ".join(["AVG(time_s) AS time_s", "peer", "device", *averages])
            sql = (
                f"SELECT {select} FROM samples WHERE {' AND '.join(where)} "
                f"GROUP BY {bucket}, peer, device ORDER BY 1, peer, device"
            )
        else:
            select = ", ".join(["time_s", "peer", "device", *quoted])
            sql = f"SELECT {select} FROM samples WHERE {' AND '.join(where)} ORDER BY time_s, rowid"
        frame = self._query(sql, params)
        frame.insert(1, "time", pd.to_datetime(frame["time_s"], unit="s", utc=True))
        return frame

    def latest_samples(self, within_s: float = 3600.0) -> pd.DataFrame:
        """The newest sample of every (peer, device) seen in the last `within_s` of the run."""
        fields = self.sample_fields()
        quoted = "".join(f', "{f}"' for f in fields)
        # SQLite returns the bare columns of the row that holds MAX(time_s) in each group.
        sql = (
            f"SELECT MAX(time_s) AS time_s, peer, device{quoted} FROM samples "
            "WHERE time_s >= (SELECT MAX(time_s) FROM samples) - ? "
            "GROUP BY peer, device ORDER BY peer, device"
        )
        frame = self._query(sql, [within_s])
        frame.insert(1, "time", pd.to_datetime(frame["time_s"], unit="s", utc=True))
        return frame

    def time_range(self) -> tuple[datetime, datetime] | None:
        """First and last sample time, or None before the first sample."""
        with self._connect() as conn:
            lo, hi = conn.execute("SELECT MIN(time_s), MAX(time_s) FROM samples").fetchone()
        if lo is None:
            return None
        return datetime.fromtimestamp(lo, UTC), datetime.fromtimestamp(hi, UTC)

    def _interval_table(self, table: str, interval_start: datetime | float | None) -> pd.DataFrame:
        where, params = "", []
        if interval_start is not None:
            where, params = "WHERE interval_start = ?", [_bound(interval_start, "interval_start")]
        frame = self._query(f"SELECT * FROM {table} {where} ORDER BY interval_start, rowid", params)
        return _to_utc(frame, "interval_start")

    def orders(self, interval_start: datetime | float | None = None) -> pd.DataFrame:
        """Every submitted order (accepted and rejected, with the reason)."""
        frame = self._interval_table("orders", interval_start)
        frame["accepted"] = frame["accepted"].astype(bool)
        return frame

    def trades(self, interval_start: datetime | float | None = None) -> pd.DataFrame:
        """Every trade; `seller_price` is NaN where the seller got the buyer's `price`, and
        `network_charge` (per kWh) NaN where the flat prices.network_charge applied."""
        frame = self._interval_table("trades", interval_start)
        for column in ("seller_price", "network_charge"):
            if column in frame:
                frame[column] = frame[column].astype(float)
        return frame

    def clearings(self) -> pd.DataFrame:
        """One row per cleared interval; `clearing_price` is NaN where nothing cleared."""
        frame = self._interval_table("clearings", None)
        frame["clearing_price"] = frame["clearing_price"].astype(float)
        return frame

    def settlements(self, peer: str | None = None) -> pd.DataFrame:
        frame = self._interval_table("settlements", None)
        return frame[frame["peer"] == peer].reset_index(drop=True) if peer else frame

    def agent_plans(self, peer: str | None = None, first_step_only: bool = False) -> pd.DataFrame:
        """Each interval's agent decisions: one row per horizon step (`step` 0 is the interval
        traded), the forecast's mean and the plan in kW; `fallback_reason` on step 0 when the
        agent fell back to the safe plan. Empty for runs written before plans were recorded."""
        where, params = ["1"], []
        if peer is not None:
            where.append("peer = ?")
            params.append(peer)
        if first_step_only:
            where.append("step = 0")
        with self._connect() as conn:
            known = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'agent_plans'"
            ).fetchone()
        if not known:
            columns = ["interval_start", "peer", "agent", "step", "step_start", *_PLAN_FIELDS]
            return pd.DataFrame(columns=[*columns, "fallback_reason"])
        frame = self._query(
            f"SELECT * FROM agent_plans WHERE {' AND '.join(where)} "
            "ORDER BY interval_start, peer, step",
            params,
        )
        frame["ev_plugged"] = frame["ev_plugged"] > 0
        return _to_utc(frame, "interval_start", "step_start")

    def interlocks(
        self, start: datetime | float | None = None, end: datetime | float | None = None
    ) -> pd.DataFrame:
        where, params = ["1"], []
        if (lo := _bound(start, "start")) is not None:
            where.append("time >= ?")
            params.append(lo)
        if (hi := _bound(end, "end")) is not None:
            where.append("time < ?")
            params.append(hi)
        frame = self._query(
            f"SELECT * FROM interlocks WHERE {' AND '.join(where)} ORDER BY time, rowid", params
        )
        return _to_utc(frame, "time")


# --------------------------------------------------------------------------------------------
# Listing and summaries


@dataclass(frozen=True, slots=True)
class RunListing:
    """One directory under a runs folder: its reader, or why it cannot be read."""

    path: Path
    reader: RunReader | None
    error: str | None

    @property
    def name(self) -> str:
        return self.path.name


def list_runs(root: Path | str) -> list[RunListing]:
    """Every run directory under `root`, most recently started or ended first; unreadable ones
    carry their error."""
    root = Path(root)
    if not root.is_dir():
        raise RunDirError(f"runs folder {root} does not exist")
    listings = []
    for path in root.iterdir():
        if not path.is_dir() or not any(
            (path / name).exists() for name in (META_FILE, DB_FILE, CONFIG_FILE)
        ):
            continue
        try:
            listings.append(RunListing(path, RunReader(path), None))
        except RunDirError as error:
            listings.append(RunListing(path, None, str(error)))

    def newest_first(item: RunListing) -> tuple[float, str]:
        # Wall time of the last meta.json write (start or end): simulated start times can tie.
        meta = item.path / META_FILE
        return (path_mtime(meta if meta.exists() else item.path), item.name)

    return sorted(listings, key=newest_first, reverse=True)


def path_mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def summarize(reader: RunReader) -> dict[str, Any]:
    """Per-peer and market totals from the stored settlements and clearings.

    The same keys as the orchestrator's summary.json; `energy_balance_error_kwh` here checks that
    every peer's metered energy equals its P2P plus grid energy.
    """
    settlements = reader.settlements()
    clearings = reader.clearings()
    peers: dict[str, dict[str, float]] = {}
    balance_error = 0.0
    for peer, rows in settlements.groupby("peer", sort=True):
        peers[str(peer)] = {
            name: float(rows[name].sum())
            for name in (
                "p2p_bought_kwh",
                "p2p_sold_kwh",
                "grid_import_kwh",
                "grid_export_kwh",
                "bill",
                "bill_grid_only",
            )
        }
        flows = (
            rows["p2p_sold_kwh"]
            - rows["p2p_bought_kwh"]
            + rows["grid_export_kwh"]
            - rows["grid_import_kwh"]
        )
        balance_error += float((rows["metered_kwh"] - flows).abs().sum())
    priced = clearings.dropna(subset=["clearing_price"])
    priced = priced[priced["volume_kwh"] > 0]
    return {
        "peers": peers,
        "market": {
            "mean_clearing_price": float(priced["clearing_price"].mean()) if len(priced) else None,
            "traded_kwh": float(clearings["volume_kwh"].sum()),
            "intervals": len(clearings),
        },
        "energy_balance_error_kwh": balance_error,
    }
