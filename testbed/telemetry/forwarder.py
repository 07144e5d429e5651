"""The background thread that sends the buffer file's points to the server, oldest first.

A batch is deleted from the file only after the server acknowledged it. While the server is down,
slow or failing, the batch stays and is retried with exponential backoff; the next batch waits, so
points arrive in order. A batch refused as malformed is split in halves until the refused points
are isolated and moved, one by one, to the dead-letter table with the server's answer.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from testbed.telemetry.buffer import Chunk, PointBuffer
from testbed.telemetry.writers import PointsRejected, PointWriter, ServerUnavailable

log = logging.getLogger(__name__)


@dataclass
class ForwarderStats:
    """Counters the forwarder thread writes and other threads read (single writer each)."""

    sent_points: int = 0
    dead_lettered_points: int = 0
    requests: int = 0
    failed_requests: int = 0
    last_error: str | None = None
    last_error_time: datetime | None = None
    last_success_time: datetime | None = None


class Forwarder(threading.Thread):
    """Drains the buffer file into a `PointWriter` until stopped."""

    def __init__(
        self,
        buffer_path: Path,
        writer: PointWriter,
        *,
        batch_size: int,
        flush_interval_s: float,
        retry_initial_s: float,
        retry_max_s: float,
    ) -> None:
        super().__init__(name="influx-forwarder", daemon=True)
        self._buffer_path = buffer_path
        self._writer = writer
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self.stats = ForwarderStats()
        self.wake = threading.Event()  # more points, or a flush was asked for
        self._eager = threading.Event()  # send partial batches now (flush / close)
        self._halt = threading.Event()  # stop after the current request

    # -- control from other threads ------------------------------------------------------------

    def send_now(self) -> None:
        """Send partial batches at once instead of waiting for the flush interval."""
        self._eager.set()
        self.wake.set()

    def send_when_full(self) -> None:
        """Back to normal batching after a flush."""
        self._eager.clear()

    def halt(self) -> None:
        """Stop after the request in flight (if any); unsent points stay in the file."""
        self._halt.set()
        self.wake.set()

    # -- thread --------------------------------------------------------------------------------

    def run(self) -> None:
        buffer = PointBuffer(self._buffer_path)
        try:
            self._loop(buffer)
        except Exception:  # keep the reason visible; points stay in the file
            log.exception("telemetry forwarder stopped")
            self.stats.last_error = "forwarder crashed, see log"
            self.stats.last_error_time = datetime.now(UTC)
        finally:
            buffer.close()
            self._writer.close()

    def _loop(self, buffer: PointBuffer) -> None:
        backoff_s = self._retry_initial_s
        partial_since: float | None = None
        while not self._halt.is_set():
            self.wake.clear()
            chunks = buffer.peek(self._batch_size)
            if not chunks:
                partial_since = None
                self.wake.wait(self._flush_interval_s)
                continue
            points = sum(chunk.points for chunk in chunks)
            if points < self._batch_size and not self._eager.is_set():
                now = time.monotonic()
                partial_since = partial_since if partial_since is not None else now
                remaining_s = partial_since + self._flush_interval_s - now
                if remaining_s > 0:
                    self.wake.wait(remaining_s)
                    continue
            partial_since = None
            try:
                self._deliver(buffer, chunks)
            except ServerUnavailable as error:
                self._note_error(buffer, str(error))
                self._halt.wait(backoff_s)
                backoff_s = min(backoff_s * 2, self._retry_max_s)
                continue
            backoff_s = self._retry_initial_s

    def _deliver(self, buffer: PointBuffer, chunks: list[Chunk]) -> None:
        """Send chunks; on rejection bisect to find the refused points. Raises ServerUnavailable."""
        body = "\n".join(chunk.body for chunk in chunks).encode()
        points = sum(chunk.points for chunk in chunks)
        self.stats.requests += 1
        try:
            self._writer.send(body)
        except ServerUnavailable:
            self.stats.failed_requests += 1
            raise
        except PointsRejected as rejection:
            self.stats.failed_requests += 1
            if points == 1:
                buffer.dead_letter(chunks[0].seq, rejection.status, rejection.message)
                self.stats.dead_lettered_points += 1
                self.stats.last_error = f"dead-lettered a point: {rejection}"
                self.stats.last_error_time = datetime.now(UTC)
                log.warning("InfluxDB refused a point (%s): %s", rejection, chunks[0].body[:200])
                return
            if len(chunks) == 1:
                chunks = buffer.split(chunks)  # one row per point, so halves can be acknowledged
            middle = len(chunks) // 2
            self._deliver(buffer, chunks[:middle])
            self._deliver(buffer, chunks[middle:])
            return
        buffer.acknowledge(chunks[0].seq, chunks[-1].seq)
        self.stats.sent_points += points
        self.stats.last_success_time = datetime.now(UTC)

    def _note_error(self, buffer: PointBuffer, error: str) -> None:
        if error != self.stats.last_error:
            log.warning("InfluxDB write failed, points kept in %s: %s", self._buffer_path, error)
        self.stats.last_error = error
        self.stats.last_error_time = datetime.now(UTC)
        buffer.record_error(error)
