"""`InfluxSink`: the run's documents to InfluxDB, through a buffer file that loses nothing.

    control loop --emit()--> in-memory queue --spooler thread--> SQLite buffer (WAL, run dir)
                                                    --forwarder thread--> InfluxDB (in order)

`emit()` only appends the document to a deque (no formatting, no I/O, never blocks). The spooler
wakes every `spool_interval_s`, formats the queued documents as line protocol and appends them to
the buffer file in one transaction. The forwarder sends batches and deletes them once acknowledged.
A new sink on the same buffer file (e.g. after the controller was restarted) resumes with whatever
an earlier one left.

Delivery is at least once: a batch whose acknowledgement was lost (the connection broke after the
server stored it) is sent again. InfluxDB overwrites a point with the same measurement, tags and
time, and the schema makes points unique, so a repeat changes nothing there.
"""

from __future__ import annotations

import collections
import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from testbed.documents import Document, Sample
from testbed.telemetry.buffer import DeadLetter, PointBuffer
from testbed.telemetry.config import InfluxConfig
from testbed.telemetry.forwarder import Forwarder
from testbed.telemetry.schema import PointFormatter
from testbed.telemetry.writers import PointWriter, make_writer

log = logging.getLogger(__name__)

MAX_DOCUMENTS_PER_TRANSACTION = 50_000


@dataclass(frozen=True, slots=True)
class RawLines:
    """Line-protocol points to send as they are (for measurements outside the schema)."""

    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Backlog:
    """What has not reached InfluxDB yet, and how the connection is doing."""

    queued_documents: int  # emitted, not yet in the buffer file
    pending_points: int  # in the buffer file, not yet acknowledged
    dead_letter_points: int  # refused by the server as malformed (kept in the file)
    sent_points: int  # acknowledged since this sink started
    last_error: str | None
    last_error_time: datetime | None
    last_success_time: datetime | None

    @property
    def drained(self) -> bool:
        """Everything emitted so far was acknowledged or dead-lettered."""
        return self.queued_documents == 0 and self.pending_points == 0

    @property
    def healthy(self) -> bool:
        """No error yet, or a successful write after the last error."""
        if self.last_error_time is None:
            return True
        return self.last_success_time is not None and self.last_success_time > self.last_error_time


class BufferInUse(RuntimeError):
    """Another sink (in this or another process) is using the buffer file."""


class InfluxSink:
    """A `Sink` that writes every document to InfluxDB and keeps what is unsent on disk."""

    def __init__(
        self,
        config: InfluxConfig,
        buffer_path: Path | str,
        run_id: str | None = None,
        *,
        writer: PointWriter | None = None,
    ) -> None:
        """`buffer_path`: the buffer file (usually `run_dir / config.buffer_file`)."""
        self.config = config
        self.buffer_path = Path(buffer_path)
        self.buffer_path.parent.mkdir(parents=True, exist_ok=True)
        writer = writer if writer is not None else make_writer(config)
        self._lock_file = self._take_lock(self.buffer_path)
        try:
            self._start(config, run_id, writer)
        except BaseException:
            self._release_lock()
            raise

    def _start(self, config: InfluxConfig, run_id: str | None, writer: PointWriter) -> None:
        self._queue: collections.deque[Document | RawLines] = collections.deque()
        self._closed = False
        self._formatter = PointFormatter(run_id)
        self._spool_buffer = PointBuffer(self.buffer_path)
        self._pending_at_start = self._spool_buffer.pending_count()
        self._dead_at_start = self._spool_buffer.dead_letter_count()
        self._spooled_points = 0
        self._unformattable = 0
        self._in_hand = 0  # documents the spooler took from the queue and has not counted yet
        self._spool_error: str | None = None
        self._since_wake = self._pending_at_start
        self._stop_spooling = threading.Event()
        self._spool_now = threading.Event()
        self._spooler = threading.Thread(
            target=self._spool_loop, name="influx-spooler", daemon=True
        )
        self._forwarder = Forwarder(
            self.buffer_path,
            writer,
            batch_size=config.batch_size,
            flush_interval_s=config.flush_interval_s,
            retry_initial_s=config.retry_initial_s,
            retry_max_s=config.retry_max_s,
        )
        self._spooler.start()
        self._forwarder.start()

    @classmethod
    def in_run_dir(
        cls, config: InfluxConfig, run_dir: Path | str, run_id: str | None = None
    ) -> InfluxSink:
        """A sink whose buffer file is `run_dir / config.buffer_file`."""
        return cls(config, Path(run_dir) / config.buffer_file, run_id)

    # -- the control loop's side ---------------------------------------------------------------

    def emit(self, doc: Document) -> None:
        """Queue a document (O(1), no I/O, thread-safe). Documents must not be changed after they
        are emitted, and emitting must have stopped when `close()` is called."""
        if self._closed:
            raise RuntimeError("InfluxSink is closed")
        self._queue.append(doc)

    def emit_lines(self, lines: Iterable[str]) -> None:
        """Queue raw line-protocol points (nanosecond timestamps) to send as they are."""
        if self._closed:
            raise RuntimeError("InfluxSink is closed")
        points = (point for text in lines for point in text.split("\n") if point.strip())
        self._queue.append(RawLines(tuple(points)))

    # -- status --------------------------------------------------------------------------------

    def backlog(self) -> Backlog:
        # Read order matters: queue, then what the spooler holds, then the counters. A document
        # is always in at least one of them, so an empty backlog is never reported too early.
        queued = len(self._queue)
        queued += self._in_hand
        stats = self._forwarder.stats
        removed = stats.sent_points + stats.dead_lettered_points
        return Backlog(
            queued_documents=queued,
            pending_points=max(0, self._pending_at_start + self._spooled_points - removed),
            dead_letter_points=self._dead_at_start
            + stats.dead_lettered_points
            + self._unformattable,
            sent_points=stats.sent_points,
            last_error=self._spool_error or stats.last_error,
            last_error_time=stats.last_error_time,
            last_success_time=stats.last_success_time,
        )

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The oldest points the server refused, with its answers."""
        buffer = PointBuffer(self.buffer_path)
        try:
            return buffer.dead_letters(limit)
        finally:
            buffer.close()

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until everything emitted so far is acknowledged (or dead-lettered); True if so."""
        deadline = time.monotonic() + timeout_s
        self._forwarder.send_now()
        try:
            while time.monotonic() < deadline:
                self._spool_now.set()
                if self.backlog().drained and self._forwarder.is_alive():
                    return True
                if not self._forwarder.is_alive():
                    return False
                time.sleep(0.005)
            return self.backlog().drained
        finally:
            if not self._closed:
                self._forwarder.send_when_full()

    def close(self, timeout_s: float = 5.0) -> Backlog:
        """Write every queued document to the buffer file, send what can be sent within
        `timeout_s`, and leave the rest in the file for the next sink. Returns the final backlog
        (`backlog()` keeps answering after close).
        """
        if self._closed:
            return self.backlog()
        self._closed = True
        deadline = time.monotonic() + timeout_s
        self._stop_spooling.set()
        self._spool_now.set()
        self._spooler.join()  # local disk only: always finishes
        self._spool_buffer.close()
        self._forwarder.send_now()
        while time.monotonic() < deadline and self.backlog().pending_points > 0:
            if not self._forwarder.is_alive():
                break
            time.sleep(0.005)
        self._forwarder.halt()
        # A request in flight ends within its own timeouts.
        self._forwarder.join(self.config.connect_timeout_s + self.config.request_timeout_s + 1.0)
        final = self.backlog()
        if final.pending_points:
            log.warning(
                "InfluxDB sink closed with %d points left in %s (sent when a sink reopens it)",
                final.pending_points,
                self.buffer_path,
            )
        self._release_lock()
        return final

    # -- spooler thread ------------------------------------------------------------------------

    def _spool_loop(self) -> None:
        interval_s = self.config.spool_interval_s
        batch_size = self.config.batch_size
        while True:
            stopping = self._stop_spooling.is_set()
            self._spool_once()
            if stopping and not self._queue:
                return
            if self._since_wake >= batch_size:
                self._since_wake = 0
                self._forwarder.wake.set()
            self._spool_now.wait(interval_s)
            self._spool_now.clear()

    def _spool_once(self) -> None:
        queue = self._queue
        while queue:
            lines: list[str] = []
            unformattable: list[tuple[str, str]] = []
            formatter = self._formatter
            sample_line = formatter.sample_line
            append = lines.append
            taking = min(len(queue), MAX_DOCUMENTS_PER_TRANSACTION)
            self._in_hand = taking
            for _ in range(taking):
                doc = queue.popleft()
                if isinstance(doc, Sample):
                    try:
                        append(sample_line(doc))
                    except Exception as error:
                        unformattable.append((repr(doc)[:10_000], f"cannot format: {error}"))
                    continue
                if isinstance(doc, RawLines):
                    lines.extend(doc.lines)
                    continue
                before = len(lines)
                try:
                    formatter.lines(doc, lines)
                except Exception as error:  # a bad document must not stop the others
                    del lines[before:]  # all of a document's points, or none
                    unformattable.append((repr(doc)[:10_000], f"cannot format: {error}"))
            try:
                self._spool_buffer.append(lines, self.config.batch_size)
                self._spool_buffer.dead_letter_lines(unformattable)
            except Exception as error:
                self._spool_error = f"cannot write the buffer file {self.buffer_path}: {error}"
                log.exception("cannot write the telemetry buffer %s", self.buffer_path)
                raise
            self._spooled_points += len(lines)
            self._unformattable += len(unformattable)
            self._since_wake += len(lines)
            self._in_hand = 0

    # -- one sink per buffer file --------------------------------------------------------------

    @staticmethod
    def _take_lock(buffer_path: Path) -> int:
        lock_path = buffer_path.with_name(buffer_path.name + ".lock")
        descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise BufferInUse(f"another InfluxDB sink is using {buffer_path}") from None
        return descriptor

    def _release_lock(self) -> None:
        if self._lock_file >= 0:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            os.close(self._lock_file)
            self._lock_file = -1
