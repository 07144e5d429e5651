"""The operator's own journal (SQLite, WAL): every submission it answered, every order with its
status, every clearing and settlement it published, and its counters; and the rejections that
fall outside any interval's book (`unbooked`: late orders, unreadable submissions) until a report
carries them to the controller.

Written before the operator publishes anything, so that after a broker restart (or its own) it
answers a repeated request with exactly what it said the first time and loses no accepted order.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS submissions (
    message_id TEXT NOT NULL, peer TEXT NOT NULL, ack TEXT NOT NULL, received_at TEXT NOT NULL,
    PRIMARY KEY (peer, message_id)
);
CREATE TABLE IF NOT EXISTS orders (
    interval_start TEXT NOT NULL, peer TEXT NOT NULL, order_id TEXT NOT NULL, seq INTEGER NOT NULL,
    status TEXT NOT NULL, reason TEXT, signed_order TEXT NOT NULL,
    PRIMARY KEY (interval_start, peer, order_id, status)
);
CREATE TABLE IF NOT EXISTS rejected_messages (
    received_at TEXT NOT NULL, peer TEXT, topic TEXT NOT NULL, reason TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS unbooked (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, item TEXT NOT NULL, report TEXT
);
CREATE TABLE IF NOT EXISTS completions (
    interval_start TEXT NOT NULL, peer TEXT NOT NULL, PRIMARY KEY (interval_start, peer)
);
CREATE TABLE IF NOT EXISTS clearings (interval_start TEXT PRIMARY KEY, report TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS settlements (interval_start TEXT PRIMARY KEY, report TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


def _key(moment: datetime) -> str:
    from datetime import UTC

    return moment.astimezone(UTC).isoformat()


class Journal:
    """Append-mostly records of the operator (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    # -- submissions and orders ---------------------------------------------------------------

    def ack_for(self, peer: str, message_id: str) -> str | None:
        """The answer to `peer`'s submission `message_id` (message ids are each sender's own)."""
        row = self._db.execute(
            "SELECT ack FROM submissions WHERE peer = ? AND message_id = ?", (peer, message_id)
        ).fetchone()
        return None if row is None else row[0]

    def record_submission(
        self,
        message_id: str,
        peer: str,
        ack_json: str,
        received_at: datetime,
        orders: list[tuple[datetime, str, str, int, str, str | None, str]],
        unbooked: list[str] | None = None,
        complete: datetime | None = None,
    ) -> None:
        """The answer to a submission and its orders (interval, peer, id, seq, status, reason,
        signed order JSON), its rejected orders that no book will carry (`SignedCandidate`
        JSON), and the interval the peer said it has submitted everything for (`complete`), in
        one transaction."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT OR IGNORE INTO submissions VALUES (?, ?, ?, ?)",
                (message_id, peer, ack_json, _key(received_at)),
            )
            self._db.executemany(
                "INSERT OR IGNORE INTO orders VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(_key(i), p, o, seq, s, r, signed) for i, p, o, seq, s, r, signed in orders],
            )
            self._db.executemany(
                "INSERT INTO unbooked (kind, item) VALUES ('order', ?)",
                [(item,) for item in unbooked or ()],
            )
            if complete is not None:
                self._db.execute(
                    "INSERT OR IGNORE INTO completions VALUES (?, ?)", (_key(complete), peer)
                )

    def completions(self) -> list[tuple[str, str]]:
        """(interval, peer) of every peer that has submitted everything for an interval."""
        return self._db.execute("SELECT interval_start, peer FROM completions").fetchall()

    def record_rejected_message(
        self,
        received_at: datetime,
        peer: str | None,
        topic: str,
        reason: str,
        payload: bytes,
        unbooked: str | None = None,
    ) -> None:
        """An unreadable message, and its `RejectedMessage` JSON for the next report."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT INTO rejected_messages VALUES (?, ?, ?, ?, ?)",
                (_key(received_at), peer, topic, reason, payload),
            )
            if unbooked is not None:
                self._db.execute(
                    "INSERT INTO unbooked (kind, item) VALUES ('message', ?)", (unbooked,)
                )

    def unbooked_orders(self) -> list[str]:
        """The `SignedCandidate` JSON of every order rejected outside a book, in order."""
        return [
            r[0]
            for r in self._db.execute("SELECT item FROM unbooked WHERE kind = 'order' ORDER BY seq")
        ]

    def rejected_orders(self) -> list[tuple[str, str | None, str]]:
        """(interval, reason, signed order JSON) of every rejected order, in arrival order."""
        return self._db.execute(
            "SELECT interval_start, reason, signed_order FROM orders "
            "WHERE status = 'rejected' ORDER BY seq"
        ).fetchall()

    def pending_unbooked(self) -> list[tuple[int, str, str]]:
        """(seq, kind, JSON) of the unbooked rejections no report has carried yet, in order."""
        return self._db.execute(
            "SELECT seq, kind, item FROM unbooked WHERE report IS NULL ORDER BY seq"
        ).fetchall()

    def _carried(self, report: str, seqs: list[int]) -> None:
        self._db.executemany(
            "UPDATE unbooked SET report = ? WHERE seq = ? AND report IS NULL",
            [(report, seq) for seq in seqs],
        )

    def accepted_orders(self) -> list[tuple[str, str, int, str]]:
        """(interval, peer, seq, signed order JSON) of every accepted order, in arrival order."""
        return self._db.execute(
            "SELECT interval_start, peer, seq, signed_order FROM orders "
            "WHERE status = 'accepted' ORDER BY seq"
        ).fetchall()

    def received_orders(self) -> list[tuple[str, str | None, str]]:
        """(status, reason, signed order JSON) of every order received, in arrival order."""
        return self._db.execute(
            "SELECT status, reason, signed_order FROM orders ORDER BY seq"
        ).fetchall()

    def order_rows(self) -> list[tuple[str, str, str, str, str | None]]:
        return self._db.execute(
            "SELECT interval_start, peer, order_id, status, reason FROM orders ORDER BY seq"
        ).fetchall()

    def rejected_messages(self) -> list[tuple[str, str | None, str, str]]:
        return self._db.execute(
            "SELECT received_at, peer, topic, reason FROM rejected_messages"
        ).fetchall()

    # -- clearings and settlements ------------------------------------------------------------

    def record_clearing(
        self,
        interval_start: datetime,
        report_json: str,
        order_count: int,
        unbooked_seqs: list[int] | None = None,
    ) -> None:
        """The clearing report, and the unbooked rejections it carries, in one transaction."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT OR REPLACE INTO clearings VALUES (?, ?)",
                (_key(interval_start), report_json),
            )
            self._db.execute(
                "INSERT OR REPLACE INTO counters VALUES ('order_count', ?)", (order_count,)
            )
            self._carried(f"clearing {_key(interval_start)}", unbooked_seqs or [])

    def clearing(self, interval_start: datetime) -> str | None:
        row = self._db.execute(
            "SELECT report FROM clearings WHERE interval_start = ?", (_key(interval_start),)
        ).fetchone()
        return None if row is None else row[0]

    def clearings(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT report FROM clearings ORDER BY 1")]

    def record_settlement(
        self, interval_start: datetime, report_json: str, unbooked_seqs: list[int] | None = None
    ) -> None:
        """The settlement report, and the unbooked rejections it carries, in one transaction."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT OR REPLACE INTO settlements VALUES (?, ?)",
                (_key(interval_start), report_json),
            )
            self._carried(f"settlement {_key(interval_start)}", unbooked_seqs or [])

    def settlement(self, interval_start: datetime) -> str | None:
        row = self._db.execute(
            "SELECT report FROM settlements WHERE interval_start = ?", (_key(interval_start),)
        ).fetchone()
        return None if row is None else row[0]

    def settlements(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT report FROM settlements ORDER BY 1")]

    def counter(self, name: str) -> int:
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return 0 if row is None else int(row[0])

    def max_seq(self) -> int:
        row = self._db.execute("SELECT MAX(seq) FROM orders").fetchone()
        return int(row[0] or 0)


def dumps(data: object) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))
