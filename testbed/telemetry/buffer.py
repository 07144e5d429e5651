"""The on-disk point buffer: an SQLite file (WAL mode) in the run directory.

`pending` holds line-protocol points in the order they were produced until the server acknowledges
them; `dead_letter` holds points the server refused as malformed, with its answer; `state` keeps the
last success and the last error so a CLI can report them while no sink runs. Each thread opens its
own `PointBuffer` on the same file.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (seq INTEGER PRIMARY KEY, line TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS dead_letter (
    id INTEGER PRIMARY KEY,
    line TEXT NOT NULL,
    http_status INTEGER,
    error TEXT NOT NULL,
    failed_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A point the server refused, with its answer."""

    line: str
    http_status: int | None
    error: str
    failed_at: datetime


@dataclass(frozen=True, slots=True)
class BufferState:
    """What the buffer file alone tells (no running sink needed)."""

    pending_points: int
    dead_letter_points: int
    last_success_time: datetime | None
    last_error: str | None
    last_error_time: datetime | None


def _now_text() -> str:
    return datetime.now(UTC).isoformat()


def _parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


class PointBuffer:
    """One connection to the buffer file (use one per thread)."""

    def __init__(self, path: Path | str, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a committed point survives a crash of the process (not of the OS).
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    # -- producer side -------------------------------------------------------------------------

    def append(self, lines: list[str]) -> None:
        """Store points at the end of the queue, in one transaction."""
        if not lines:
            return
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT INTO pending(line) VALUES (?)", [(line,) for line in lines])
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # -- forwarder side ------------------------------------------------------------------------

    def peek(self, limit: int) -> list[tuple[int, str]]:
        """The oldest `limit` pending points as (seq, line), in order."""
        return self._db.execute(
            "SELECT seq, line FROM pending ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()

    def acknowledge(self, first_seq: int, last_seq: int) -> None:
        """Delete the points the server accepted (a contiguous run of the queue)."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        db.execute("DELETE FROM pending WHERE seq BETWEEN ? AND ?", (first_seq, last_seq))
        db.execute(
            "INSERT INTO state(key, value) VALUES ('last_success', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (_now_text(),),
        )
        db.execute("COMMIT")

    def dead_letter(self, seq: int, http_status: int | None, error: str) -> None:
        """Move one pending point to the dead-letter table with the server's answer."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        db.execute(
            "INSERT INTO dead_letter(line, http_status, error, failed_at) "
            "SELECT line, ?, ?, ? FROM pending WHERE seq = ?",
            (http_status, error, _now_text(), seq),
        )
        db.execute("DELETE FROM pending WHERE seq = ?", (seq,))
        db.execute("COMMIT")

    def dead_letter_lines(self, items: list[tuple[str, str]]) -> None:
        """Store (text, error) of documents that could not even be formatted as points."""
        if not items:
            return
        now = _now_text()
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "INSERT INTO dead_letter(line, http_status, error, failed_at) VALUES (?, NULL, ?, ?)",
            [(text, error, now) for text, error in items],
        )
        db.execute("COMMIT")

    def record_error(self, error: str) -> None:
        self._db.execute(
            "INSERT INTO state(key, value) VALUES ('last_error', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (f"{_now_text()} {error}",),
        )

    # -- inspection ----------------------------------------------------------------------------

    def pending_count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM pending").fetchone()[0]

    def dead_letter_count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM dead_letter").fetchone()[0]

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The oldest dead-lettered points."""
        rows = self._db.execute(
            "SELECT line, http_status, error, failed_at FROM dead_letter ORDER BY id LIMIT ?",
            (limit,),
        ).fetchall()
        return [
            DeadLetter(line, status, error, datetime.fromisoformat(at))
            for line, status, error, at in rows
        ]

    def requeue_dead_letters(self) -> int:
        """Put every dead-lettered point back at the end of the queue (after fixing the cause)."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        moved = db.execute(
            "INSERT INTO pending(line) SELECT line FROM dead_letter ORDER BY id"
        ).rowcount
        db.execute("DELETE FROM dead_letter")
        db.execute("COMMIT")
        return moved

    def state(self) -> BufferState:
        values = dict(self._db.execute("SELECT key, value FROM state").fetchall())
        last_error_text = values.get("last_error")
        last_error_time, last_error = None, None
        if last_error_text:
            stamp, _, last_error = last_error_text.partition(" ")
            last_error_time = _parse_time(stamp)
        return BufferState(
            pending_points=self.pending_count(),
            dead_letter_points=self.dead_letter_count(),
            last_success_time=_parse_time(values.get("last_success")),
            last_error=last_error,
            last_error_time=last_error_time,
        )


def read_buffer_state(path: Path | str) -> BufferState:
    """Pending and dead-lettered points of a buffer file, e.g. for `testbed status`."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no telemetry buffer at {path}")
    buffer = PointBuffer(path)
    try:
        return buffer.state()
    finally:
        buffer.close()
