"""The on-disk point buffer: an SQLite file (WAL mode) in the run directory.

`pending` holds line-protocol points in the order they were produced until the server acknowledges
them, as chunks: one row holds up to a batch of newline-separated points (one SQLite row per point
would cost more than formatting the point). Chunk keys are spaced by 2**20, so a chunk the server
refused can be split in place into one row per point, keeping the order, to isolate the bad ones.
`dead_letter` holds points the server refused as malformed, with its answer; `state` keeps the last
success and the last error so a CLI can report them while no sink runs. Each thread opens its own
`PointBuffer` on the same file.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    seq INTEGER PRIMARY KEY,
    points INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letter (
    id INTEGER PRIMARY KEY,
    line TEXT NOT NULL,
    http_status INTEGER,
    error TEXT NOT NULL,
    failed_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


SEQ_SPACING = 1 << 20  # room to split a chunk of up to a million points in place


@dataclass(frozen=True, slots=True)
class Chunk:
    """Consecutive pending points: `body` is `points` newline-separated line-protocol lines."""

    seq: int
    points: int
    body: str

    def lines(self) -> list[str]:
        return self.body.split("\n")


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
        # Chunks are large texts: bigger pages halve the cost of storing and deleting them
        # (takes effect when the file is created).
        self._db.execute("PRAGMA page_size=16384")
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a committed point survives a crash of the process (not of the OS).
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    # -- producer side -------------------------------------------------------------------------

    def append(self, lines: list[str], chunk_points: int = 5000) -> None:
        """Store points at the end of the queue, in one transaction, `chunk_points` per row."""
        if not lines:
            return
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            last = db.execute("SELECT MAX(seq) FROM pending").fetchone()[0] or 0
            first = (last // SEQ_SPACING + 1) * SEQ_SPACING
            rows = [
                (first + index * SEQ_SPACING, len(part), "\n".join(part))
                for index, part in enumerate(
                    lines[start : start + chunk_points]
                    for start in range(0, len(lines), chunk_points)
                )
            ]
            db.executemany("INSERT INTO pending(seq, points, body) VALUES (?, ?, ?)", rows)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # -- forwarder side ------------------------------------------------------------------------

    def peek(self, max_points: int) -> list[Chunk]:
        """The oldest pending chunks, in order, up to `max_points` points (at least one chunk)."""
        chunks: list[Chunk] = []
        total = 0
        cursor = self._db.execute("SELECT seq, points, body FROM pending ORDER BY seq")
        try:
            for seq, points, body in cursor:
                if chunks and total + points > max_points:
                    break
                chunks.append(Chunk(seq, points, body))
                total += points
                if total >= max_points:
                    break
        finally:
            cursor.close()
        return chunks

    def split(self, chunks: list[Chunk]) -> list[Chunk]:
        """Replace these chunks by one row per point (same order); return the new rows."""
        singles: list[Chunk] = []
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        for chunk in chunks:
            if chunk.points == 1:
                singles.append(chunk)
                continue
            parts = [Chunk(chunk.seq + i, 1, line) for i, line in enumerate(chunk.lines())]
            db.execute("DELETE FROM pending WHERE seq = ?", (chunk.seq,))
            db.executemany(
                "INSERT INTO pending(seq, points, body) VALUES (?, 1, ?)",
                [(part.seq, part.body) for part in parts],
            )
            singles.extend(parts)
        db.execute("COMMIT")
        return singles

    def acknowledge(self, first_seq: int, last_seq: int) -> None:
        """Delete the chunks the server accepted (a contiguous run of the queue)."""
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
        """Move one pending single-point row to the dead-letter table with the server's answer."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        db.execute(
            "INSERT INTO dead_letter(line, http_status, error, failed_at) "
            "SELECT body, ?, ?, ? FROM pending WHERE seq = ?",
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
        """Points not yet acknowledged."""
        count: int = self._db.execute("SELECT COALESCE(SUM(points), 0) FROM pending").fetchone()[0]
        return count

    def pending_lines(self) -> list[str]:
        """Every pending point, oldest first (for inspection and tests; loads them all)."""
        rows = self._db.execute("SELECT body FROM pending ORDER BY seq").fetchall()
        return [line for (body,) in rows for line in body.split("\n")]

    def dead_letter_count(self) -> int:
        count: int = self._db.execute("SELECT COUNT(*) FROM dead_letter").fetchone()[0]
        return count

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
        lines = [line for (line,) in self._db.execute("SELECT line FROM dead_letter ORDER BY id")]
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        last = db.execute("SELECT MAX(seq) FROM pending").fetchone()[0] or 0
        first = (last // SEQ_SPACING + 1) * SEQ_SPACING
        db.executemany(
            "INSERT INTO pending(seq, points, body) VALUES (?, 1, ?)",
            [(first + index * SEQ_SPACING, line) for index, line in enumerate(lines)],
        )
        db.execute("DELETE FROM dead_letter")
        db.execute("COMMIT")
        return len(lines)

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
