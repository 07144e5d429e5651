"""Verify a ledger: every link, every signature, every rule, the signed head and the wallets.

The report names the first bad entry and what is wrong with it. Checks, in order, for each entry:
its position (`seq`), its link to the previous entry's hash, its own hash against its contents, the
operator's signature of that hash (key from the genesis entry, and from a trusted copy when given),
and the rules replayed (`LedgerState.apply`: peers' signatures on orders and registrations, order
ids used once, order windows, trades of accepted orders only, transfers that settle each interval,
no negative balance). Then the signed head (a cut tail) and the stored wallets against the replay.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from testbed.ledger.entries import GENESIS_PREV_HASH, Entry, entry_hash, head_message
from testbed.ledger.errors import LedgerRuleError
from testbed.ledger.keys import signature_valid
from testbed.ledger.money import from_paisa
from testbed.ledger.state import LedgerState
from testbed.ledger.store import COLUMNS, LEDGER_TABLES, has_ledger, has_table, read_entries

DB_FILE = "run.sqlite"


@dataclass(frozen=True, slots=True)
class Problem:
    """What is wrong, and with which entry (`seq` None: the ledger as a whole)."""

    seq: int | None
    what: str

    def __str__(self) -> str:
        return f"entry {self.seq}: {self.what}" if self.seq is not None else self.what


@dataclass(slots=True)
class VerifyReport:
    n_entries: int = 0
    operator_key: str = ""
    operator_key_trusted: bool = False
    closed: bool = False
    problem: Problem | None = None
    wallets: dict[str, tuple[int, int]] = field(default_factory=dict)  # replayed
    state: LedgerState | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def wallet_rows(self) -> list[dict[str, object]]:
        """Each replayed wallet in the currency: balance, debt, minted, redeemed, and what
        settlement moved (balance - debt - minted + redeemed)."""
        if self.state is None:
            return []
        return [
            {
                "wallet": name,
                "kind": wallet.kind,
                "balance": from_paisa(wallet.balance_paisa),
                "debt": from_paisa(wallet.debt_paisa),
                "minted": from_paisa(wallet.minted_paisa),
                "redeemed": from_paisa(wallet.redeemed_paisa),
                "settled": from_paisa(wallet.settled_paisa),
            }
            for name, wallet in sorted(self.state.wallets.wallets.items())
        ]

    def describe(self) -> str:
        if self.problem is not None:
            return f"ledger NOT verified: {self.problem}"
        trust = "" if self.operator_key_trusted else " (operator key not checked against a copy)"
        end = "closed" if self.closed else "open (no close entry yet)"
        return (
            f"ledger verified: {self.n_entries} entries, every link and signature, wallets equal "
            f"the replay; {end}{trust}"
        )


def verify_run(run_dir: Path | str, trusted_operator_key: str | None = None) -> VerifyReport:
    """Verify the ledger in a run directory's run.sqlite."""
    path = Path(run_dir) / DB_FILE
    if not path.is_file():
        return VerifyReport(problem=Problem(None, f"{path} does not exist"))
    try:
        with _read_only(path) as conn:
            return verify_connection(conn, trusted_operator_key)
    except sqlite3.DatabaseError as error:  # a truncated or overwritten file
        return VerifyReport(problem=Problem(None, f"{path} is not a readable ledger ({error})"))


@contextlib.contextmanager
def _read_only(path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0)
    try:
        yield conn
    finally:
        conn.close()


def verify_connection(
    conn: sqlite3.Connection, trusted_operator_key: str | None = None
) -> VerifyReport:
    report = VerifyReport()
    if not has_ledger(conn):
        report.problem = Problem(None, "the run has no ledger")
        return report
    missing = [table for table in LEDGER_TABLES if not has_table(conn, table)]
    if missing:
        report.problem = Problem(None, f"the run's ledger lacks its table {missing[0]!r}")
        return report
    conn.execute("BEGIN")  # one snapshot of entries, head and wallets, also of a live run
    try:
        entries = read_entries(conn)
        report.n_entries = len(entries)
        state = LedgerState()
        report.state = state
        problem = _replay(entries, state, report, trusted_operator_key)
        if problem is None and entries:
            problem = _check_head(conn, entries[-1], report.operator_key)
        if problem is None:
            problem = _check_wallets(conn, state)
    finally:
        conn.rollback()
    report.problem = problem
    report.closed = state.closed
    report.wallets = state.wallets.balances()
    return report


def _replay(
    entries: list[Entry], state: LedgerState, report: VerifyReport, trusted: str | None
) -> Problem | None:
    if not entries:
        return Problem(None, "the ledger is empty")
    previous = GENESIS_PREV_HASH
    for position, entry in enumerate(entries):
        wrong = _wrong_type(entry)
        if wrong is not None:  # a table rebuilt without its column types
            return Problem(position, wrong)
        if entry.seq != position:
            if entry.seq > position:
                return Problem(
                    position, f"missing (entry {entry.seq} follows entry {position - 1})"
                )
            return Problem(entry.seq, f"out of place (found where entry {position} belongs)")
        if entry.prev_hash != previous:
            return Problem(
                entry.seq,
                "its link does not match the previous entry's hash (an entry before it was "
                "changed, removed or moved)",
            )
        computed = entry_hash(
            entry.seq, entry.time, entry.kind, entry.subject, entry.payload, entry.prev_hash
        )
        if computed != entry.hash:
            return Problem(entry.seq, f"{entry.kind}: its hash does not match its contents")
        if position == 0:
            key = _genesis_key(entry)
            if key is None:
                return Problem(0, "the genesis entry names no operator key")
            if trusted is not None and key != trusted:
                return Problem(
                    0,
                    f"the genesis entry's operator key {key[:16]}… is not the trusted operator "
                    f"key {trusted[:16]}…",
                )
            report.operator_key = key
            report.operator_key_trusted = trusted is not None
        if not signature_valid(report.operator_key, bytes.fromhex(entry.hash), entry.signature):
            return Problem(entry.seq, f"{entry.kind}: the operator's signature does not verify")
        try:
            state.apply(entry.seq, entry.time, entry.kind, entry.subject, entry.data())
        except LedgerRuleError as error:
            return Problem(entry.seq, f"{entry.kind}: {error}")
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            return Problem(entry.seq, f"{entry.kind}: malformed payload ({error!r})")
        previous = entry.hash
    return None


def _wrong_type(entry: Entry) -> str | None:
    """What is wrong with the types of an entry's columns (seq a whole number, the rest text)."""
    for name in COLUMNS:
        value = getattr(entry, name)
        wanted = int if name == "seq" else str
        if type(value) is not wanted:
            shown = f"{type(value).__name__} ({str(value)[:20]!r})"
            return f"its {name} is a {shown}, not {wanted.__name__}"
    return None


def _genesis_key(entry: Entry) -> str | None:
    if entry.kind != "genesis":
        return None
    try:
        key = entry.data().get("operator_key")
    except ValueError:
        return None
    return key if isinstance(key, str) else None


def _check_head(conn: sqlite3.Connection, last: Entry, operator_key: str) -> Problem | None:
    row = conn.execute("SELECT seq, hash, signature FROM ledger_head").fetchall()
    if len(row) != 1:
        return Problem(None, f"the signed head is missing or doubled ({len(row)} rows)")
    seq, hash_hex, signature = row[0]
    if not signature_valid(operator_key, head_message(seq, hash_hex), signature):
        return Problem(None, "the ledger head's signature does not verify")
    if seq > last.seq:
        return Problem(last.seq + 1, f"missing (the signed head names entry {seq} as the last)")
    if seq < last.seq:
        return Problem(seq + 1, f"appended after the signed head (entry {seq})")
    if hash_hex != last.hash:
        return Problem(last.seq, "the signed head names another hash for it")
    return None


def _check_wallets(conn: sqlite3.Connection, state: LedgerState) -> Problem | None:
    """Every stored wallet row equals the replay: kind, balance and debt (whole paisa)."""
    stored = {
        name: (kind, balance, debt)
        for name, kind, balance, debt in conn.execute(
            "SELECT wallet, kind, balance_paisa, debt_paisa FROM wallets ORDER BY wallet"
        )
    }
    replayed = {
        name: (wallet.kind, wallet.balance_paisa, wallet.debt_paisa)
        for name, wallet in state.wallets.wallets.items()
    }
    for name in sorted(set(stored) | set(replayed), key=str):
        row, wanted = stored.get(name), replayed.get(name)
        if row is None or wanted is None or row[0] != wanted[0]:
            return Problem(
                None,
                f"wallet {name!r}: stored as {row[0] if row else None!r}, the ledger replays "
                f"{wanted[0] if wanted else None!r}",
            )
        if row[1:] != wanted[1:] or any(type(value) is not int for value in row[1:]):
            return Problem(
                None,
                f"wallet {name!r}: stored (balance, debt) {row[1:]!r} paisa, the ledger replays "
                f"to {wanted[1:]!r}",
            )
    return None


__all__ = ["Problem", "VerifyReport", "verify_connection", "verify_run"]
