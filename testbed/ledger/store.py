"""The ledger's tables in the run store's SQLite file, and the writer that appends to them.

- `ledger`: one row per entry (seq, time, kind, subject, payload, prev_hash, hash, signature),
  append-only;
- `ledger_head`: one row, the last entry's seq and hash signed by the operator (a cut tail shows);
- `wallets`: each wallet's balance and debt in paisa after the last entry (`seq`), what `verify`
  compares with the replay.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import astuple
from datetime import datetime
from pathlib import Path
from typing import Any

from testbed.ledger.canonical import canonical_json
from testbed.ledger.entries import GENESIS_PREV_HASH, Entry, entry_hash, head_message
from testbed.ledger.keys import KeyPair
from testbed.ledger.orders import iso
from testbed.ledger.state import LedgerState

SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (
    seq INTEGER PRIMARY KEY, time TEXT NOT NULL, kind TEXT NOT NULL, subject TEXT NOT NULL,
    payload TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL, signature TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger_head (
    seq INTEGER NOT NULL, hash TEXT NOT NULL, signature TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS wallets (
    wallet TEXT PRIMARY KEY, kind TEXT NOT NULL, balance_paisa INTEGER NOT NULL,
    debt_paisa INTEGER NOT NULL, seq INTEGER NOT NULL
);
"""
LEDGER_TABLES = ("ledger", "ledger_head", "wallets")
COLUMNS = ("seq", "time", "kind", "subject", "payload", "prev_hash", "hash", "signature")


class LedgerWriter:
    """Appends entries: each is checked against the rules (`LedgerState.apply`), hashed onto the
    previous one and signed with the operator's key. Rows reach SQLite in one transaction per
    `batch()`, together with the signed head and the wallets."""

    def __init__(self, db_path: Path | str, operator_key: KeyPair) -> None:
        self.db_path = Path(db_path)
        self._key = operator_key
        self._conn = sqlite3.connect(self.db_path, isolation_level=None, timeout=10.0)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(SCHEMA)
        if self._conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0]:
            raise FileExistsError(f"{self.db_path} already holds a ledger")
        self.state = LedgerState()
        self.head_hash = GENESIS_PREV_HASH
        self.next_seq = 0
        self._pending: list[Entry] = []
        self._depth = 0
        self._closed = False

    @property
    def operator_public_key(self) -> str:
        return self._key.public_hex

    def append(self, time: datetime, kind: str, subject: str, data: dict[str, Any]) -> Entry:
        """Check, hash, sign and queue one entry (inside `batch()`)."""
        if self._depth == 0:
            raise RuntimeError("LedgerWriter.append outside a batch()")
        payload = canonical_json(data)
        seq, when = self.next_seq, iso(time)
        self.state.apply(seq, when, kind, subject, json.loads(payload))
        digest = entry_hash(seq, when, kind, subject, payload, self.head_hash)
        entry = Entry(seq, when, kind, subject, payload, self.head_hash, digest, self.sign(digest))
        self._pending.append(entry)
        self.head_hash = digest
        self.next_seq += 1
        return entry

    def sign(self, hash_hex: str) -> str:
        return self._key.sign(bytes.fromhex(hash_hex))

    @contextlib.contextmanager
    def batch(self) -> Iterator[LedgerWriter]:
        """Entries appended inside are written in one transaction at the end (also when the block
        raises: what was appended is valid and stays)."""
        self._depth += 1
        try:
            yield self
        finally:
            self._depth -= 1
            if self._depth == 0:
                self._write()

    def _write(self) -> None:
        if not self._pending:
            return
        conn = self._conn
        last = self._pending[-1]
        head_signature = self._key.sign(head_message(last.seq, last.hash))
        wallet_rows = [
            (name, wallet.kind, wallet.balance_paisa, wallet.debt_paisa, last.seq)
            for name, wallet in self.state.wallets.wallets.items()
        ]
        conn.execute("BEGIN")
        try:
            conn.executemany(
                f"INSERT INTO ledger VALUES ({', '.join('?' * len(COLUMNS))})",
                [astuple(entry) for entry in self._pending],
            )
            conn.execute("DELETE FROM ledger_head")
            conn.execute(
                "INSERT INTO ledger_head VALUES (?, ?, ?)", (last.seq, last.hash, head_signature)
            )
            conn.executemany("INSERT OR REPLACE INTO wallets VALUES (?, ?, ?, ?, ?)", wallet_rows)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._pending.clear()

    def close(self) -> None:
        if self._closed:
            return
        self._write()
        self._conn.close()
        self._closed = True


def read_entries(conn: sqlite3.Connection) -> list[Entry]:
    rows = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM ledger ORDER BY seq").fetchall()
    return [Entry(*row) for row in rows]


def has_table(conn: sqlite3.Connection, name: str) -> bool:
    found = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    return found is not None


def has_ledger(conn: sqlite3.Connection) -> bool:
    return has_table(conn, "ledger")
