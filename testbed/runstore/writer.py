"""The run store's writer: a document sink that writes one run directory."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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
from testbed.runstore.files import dump_toml, find_key, write_json_atomic
from testbed.runstore.reader import RunReader
from testbed.runstore.schema import (
    CONFIG_FILE,
    DB_FILE,
    FIELD_NAME,
    FORMAT_VERSION,
    META_FILE,
    SAMPLE_KEYS,
    SCHEMA,
    SETTLEMENT_FIELDS,
    STATUSES,
    SUMMARY_FILE,
    finite_or_none,
    iso_utc,
    unix_s,
)
from testbed.runstore.summary import summarize


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
        self._conn.executescript(SCHEMA)
        self._conn.execute("INSERT INTO format_version VALUES (?)", (FORMAT_VERSION,))
        self._sample_columns: set[str] = set(SAMPLE_KEYS)
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
                    unix_s(doc.interval_start, "Settlement.interval_start"),
                    doc.peer,
                    *(getattr(doc, name) for name in SETTLEMENT_FIELDS[2:]),
                )
            )
            self._n_buffered += 1
        elif isinstance(doc, Interlock):
            self._rows["interlocks"].append(
                (
                    unix_s(doc.time, "Interlock.time"),
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
        self._meta.update(status=status, finished_at=iso_utc(finished_at))
        write_json_atomic(self.run_dir / META_FILE, self._meta)
        summary_path = self.run_dir / SUMMARY_FILE
        if summary_path.exists():
            return
        if self._finished and self._finished.summary and status in ("finished", "interrupted"):
            # an interrupted run ended its last interval cleanly: its totals are whole intervals
            write_json_atomic(summary_path, dict(self._finished.summary))
        elif status == "finished":
            write_json_atomic(summary_path, summarize(RunReader(self.run_dir)))

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close(None if exc_type is None else "failed")

    # -- buffering --------------------------------------------------------------------------

    def _start(self, doc: RunStarted) -> None:
        if self._meta is not None:
            raise RuntimeError(f"a second RunStarted arrived in {self.run_dir}")
        unix_s(doc.time, "RunStarted.time")
        config_path = self.run_dir / CONFIG_FILE
        if not config_path.exists():
            config_path.write_text(dump_toml(doc.config), encoding="utf-8")
        self._meta = {
            "run_id": doc.run_id,
            "format_version": FORMAT_VERSION,
            "started_at": iso_utc(doc.time),
            "finished_at": None,
            "status": "running",
            "seed": find_key(doc.config, ("seed",)),
            "mechanism": find_key(doc.config, ("mechanism",)),
            "hours": find_key(doc.config, ("hours",)),
            "writer": {"pid": os.getpid(), "host": socket.gethostname()},
        }
        write_json_atomic(self.run_dir / META_FILE, self._meta)

    def _buffer_agent_plan(self, doc: AgentPlan) -> None:
        decision = doc.decision
        start = unix_s(doc.interval_start, "AgentPlan.interval_start")
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
                    unix_s(step.start, "AgentPlan step start"),
                    None if expected is None else finite_or_none(expected.load_kw),
                    None if expected is None else finite_or_none(expected.pv_kw),
                    finite_or_none(step.load_kw),
                    finite_or_none(step.pv_kw),
                    finite_or_none(step.battery_kw),
                    finite_or_none(step.ev_kw),
                    finite_or_none(step.net_kw),
                    finite_or_none(step.soc_pct),
                    finite_or_none(step.ev_soc_pct),
                    1.0 if step.ev_plugged else 0.0,
                    finite_or_none(step.value_per_kwh),
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
            unix_s(doc.time, "Sample.time")
        rows.append((doc.time.timestamp(), doc.peer, doc.device, *values.values()))
        self._n_buffered += 1

    @staticmethod
    def _check_field_names(names: tuple[str, ...]) -> None:
        for name in names:
            if not FIELD_NAME.match(name) or name in SAMPLE_KEYS:
                raise ValueError(
                    f"sample field {name!r} cannot be a column: use letters, digits and _ "
                    f"(not starting with a digit) and none of {', '.join(SAMPLE_KEYS)}"
                )

    def _buffer_order_book(self, doc: OrderBook) -> None:
        start = unix_s(doc.interval_start, "OrderBook.interval_start")
        rows = self._rows["orders"]
        for order in doc.orders:
            rows.append(_order_row(start, order, True, None))
        for order, reason in doc.rejected:
            rows.append(_order_row(start, order, False, reason))
        self._n_buffered += len(doc.orders) + len(doc.rejected)

    def _buffer_clearing(self, doc: Clearing) -> None:
        start = unix_s(doc.interval_start, "Clearing.interval_start")
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
                    columns = ", ".join(f'"{c}"' for c in (*SAMPLE_KEYS, *names))
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
