"""Tampering with a ledger: every change, removal, insertion, move, forged or swapped signature
and replayed order is found by `verify`, which names the entry.

The ledger is the small day of `builder.small_day` (51 entries); each example edits a copy of its
run.sqlite as an attacker would, with SQL, and without the operator's private key unless the test
says otherwise.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testbed.ledger import keys
from testbed.ledger.entries import KINDS, entry_hash, head_message
from testbed.ledger.store import COLUMNS
from testbed.ledger.verify import VerifyReport, verify_run
from tests.ledger.builder import small_day

FIELDS = ("seq", "time", "kind", "subject", "payload", "prev_hash", "hash", "signature")
EXAMPLES = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
Row = list


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lab = small_day(tmp_path_factory.mktemp("ledger"))
    assert verify_run(lab.run_dir).ok
    return lab.root


def rows_of(root: Path) -> list[Row]:
    # closing(): a connection left to the garbage collector removes the WAL files at a random
    # moment, possibly while `tampered` copies the folder.
    with closing(sqlite3.connect(root / "run" / "run.sqlite")) as conn:
        return [
            list(r) for r in conn.execute(f"SELECT {', '.join(COLUMNS)} FROM ledger ORDER BY seq")
        ]


def tampered(base: Path, edit: Callable[[sqlite3.Connection, list[Row]], None]) -> VerifyReport:
    """Verify a copy of the ledger after `edit(conn, rows)`."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        shutil.copytree(base / "run", root / "run")
        conn = sqlite3.connect(root / "run" / "run.sqlite")
        try:
            edit(conn, rows_of(root))
            conn.commit()
        finally:
            conn.close()
        return verify_run(root / "run")


def rewrite(conn: sqlite3.Connection, rows: list[Row], renumber: bool = True) -> None:
    conn.execute("DELETE FROM ledger")
    for position, row in enumerate(rows):
        values = [position, *row[1:]] if renumber else row
        conn.execute(f"INSERT INTO ledger VALUES ({', '.join('?' * len(COLUMNS))})", values)


def changed(value: object, draw_text: str) -> object:
    """A different value of the same column."""
    if isinstance(value, int):
        return value + 1000 + len(draw_text)
    text = str(value)
    candidate = draw_text if draw_text != text else text + "x"
    return candidate


@given(data=st.data())
@EXAMPLES
def test_changing_any_field_of_any_entry_is_found_and_named(
    base: Path, data: st.DataObject
) -> None:
    n = len(rows_of(base))
    index = data.draw(st.integers(0, n - 1), label="entry")
    column = data.draw(st.sampled_from(FIELDS), label="field")

    def edit(conn: sqlite3.Connection, rows: list[Row]) -> None:
        value = rows[index][FIELDS.index(column)]
        if column == "kind":
            new = data.draw(st.sampled_from([k for k in KINDS if k != value]), label="kind")
        elif column in ("prev_hash", "hash", "signature"):
            position = data.draw(st.integers(0, len(value) - 1), label="hex digit")
            digit = data.draw(
                st.sampled_from([d for d in "0123456789abcdef" if d != value[position]])
            )
            new = value[:position] + digit + value[position + 1 :]
        elif column == "payload":
            position = data.draw(st.integers(0, len(value) - 1), label="character")
            char = data.draw(st.characters(codec="utf-8").filter(lambda c: c != value[position]))
            new = value[:position] + char + value[position + 1 :]
        elif column == "seq":
            new = value + data.draw(st.integers(1, 10_000), label="seq shift") + n
        else:
            new = changed(value, data.draw(st.text(max_size=12), label="text"))
        conn.execute(f"UPDATE ledger SET {column} = ? WHERE seq = ?", (new, index))

    report = tampered(base, edit)
    assert not report.ok
    assert report.problem is not None and report.problem.seq == index, str(report.problem)


@pytest.mark.parametrize("renumber", [False, True], ids=["gap", "renumbered"])
def test_deleting_any_entry_is_found_and_named(base: Path, renumber: bool) -> None:
    n = len(rows_of(base))
    for index in range(n):

        def edit(conn: sqlite3.Connection, rows: list[Row], index: int = index) -> None:
            rewrite(conn, rows[:index] + rows[index + 1 :], renumber=renumber)

        report = tampered(base, edit)
        assert report.problem is not None and report.problem.seq == index, (index, report.problem)


@given(data=st.data())
@EXAMPLES
def test_moving_an_entry_is_found_and_named(base: Path, data: st.DataObject) -> None:
    n = len(rows_of(base))
    i = data.draw(st.integers(0, n - 2), label="first")
    j = data.draw(st.integers(i + 1, n - 1), label="second")

    def edit(conn: sqlite3.Connection, rows: list[Row]) -> None:
        rows[i], rows[j] = rows[j], rows[i]
        rewrite(conn, rows)

    report = tampered(base, edit)
    assert report.problem is not None and report.problem.seq == i, str(report.problem)


@given(data=st.data())
@EXAMPLES
def test_inserting_an_entry_is_found_and_named(base: Path, data: st.DataObject) -> None:
    n = len(rows_of(base))
    at = data.draw(st.integers(0, n), label="position")
    copy_of = data.draw(st.integers(0, n - 1).filter(lambda k: k != at), label="copy of")
    forge = data.draw(st.booleans(), label="forged with a key of its own")
    attacker = keys.KeyPair.generate()

    def edit(conn: sqlite3.Connection, rows: list[Row]) -> None:
        inserted = list(rows[copy_of])
        if forge:  # a well-linked entry with a correct hash, signed by the wrong key
            prev = rows[at - 1][6] if at else "0" * 64
            inserted[0], inserted[5] = at, prev
            inserted[6] = entry_hash(at, *inserted[1:5], prev)
            inserted[7] = attacker.sign(bytes.fromhex(inserted[6]))
        rewrite(conn, [*rows[:at], inserted, *rows[at:]])

    report = tampered(base, edit)
    assert report.problem is not None and report.problem.seq == at, str(report.problem)


@given(data=st.data())
@EXAMPLES
def test_a_forged_or_swapped_signature_is_found_and_named(base: Path, data: st.DataObject) -> None:
    n = len(rows_of(base))
    i = data.draw(st.integers(0, n - 1), label="entry")
    swap_with = data.draw(st.none() | st.integers(0, n - 1).filter(lambda j: j != i), label="swap")
    attacker = keys.KeyPair.generate()

    def edit(conn: sqlite3.Connection, rows: list[Row]) -> None:
        if swap_with is None:
            forged = attacker.sign(bytes.fromhex(rows[i][6]))
            conn.execute("UPDATE ledger SET signature = ? WHERE seq = ?", (forged, i))
        else:
            for a, b in ((i, swap_with), (swap_with, i)):
                conn.execute("UPDATE ledger SET signature = ? WHERE seq = ?", (rows[b][7], a))

    report = tampered(base, edit)
    expected = i if swap_with is None else min(i, swap_with)
    assert report.problem is not None and report.problem.seq == expected, str(report.problem)
    assert "signature does not verify" in report.problem.what


def test_editing_a_stored_wallet_or_the_head_is_found(base: Path) -> None:
    report = tampered(
        base,
        lambda conn, rows: conn.execute(
            "UPDATE wallets SET balance_paisa = balance_paisa + 1 WHERE wallet = 'C'"
        ),
    )
    assert report.problem is not None and "wallet 'C'" in report.problem.what
    report = tampered(base, lambda conn, rows: conn.execute("DELETE FROM ledger_head"))
    assert report.problem is not None and "signed head is missing" in report.problem.what


def operator_appends(base: Path, make: Callable[[list[Row]], tuple[str, str, str]]) -> VerifyReport:
    """The operator itself (with its key) appends an entry that breaks the rules."""
    key = keys.load(base / "keys" / "operator" / "operator.key")

    def edit(conn: sqlite3.Connection, rows: list[Row]) -> None:
        kind, subject, payload = make(rows)
        rows = rows[:-1]  # before the close entry
        conn.execute("DELETE FROM ledger WHERE seq = ?", (len(rows),))
        seq, prev = len(rows), rows[-1][6]
        digest = entry_hash(seq, rows[-1][1], kind, subject, payload, prev)
        row = [
            seq,
            rows[-1][1],
            kind,
            subject,
            payload,
            prev,
            digest,
            key.sign(bytes.fromhex(digest)),
        ]
        conn.execute(f"INSERT INTO ledger VALUES ({', '.join('?' * len(COLUMNS))})", row)
        conn.execute("DELETE FROM ledger_head")
        head = key.sign(head_message(seq, digest))
        conn.execute("INSERT INTO ledger_head VALUES (?, ?, ?)", (seq, digest, head))

    return tampered(base, edit)


def test_a_replayed_order_is_found_even_when_the_operator_signs_it(base: Path) -> None:
    def replay(rows: list[Row]) -> tuple[str, str, str]:
        order = next(r for r in rows if r[2] == "order" and '"status":"accepted"' in r[4])
        return "order", order[3], order[4]

    report = operator_appends(base, replay)
    n = len(rows_of(base))
    assert report.problem is not None and report.problem.seq == n - 1
    assert "replayed (first at entry" in report.problem.what


def test_an_order_with_a_bad_peer_signature_is_found_even_when_the_operator_signs_it(
    base: Path,
) -> None:
    def forged(rows: list[Row]) -> tuple[str, str, str]:
        order = next(r for r in rows if r[2] == "order" and '"status":"accepted"' in r[4])
        payload = order[4].replace('"order_id":"o1"', '"order_id":"o99"')
        return "order", order[3], payload

    report = operator_appends(base, forged)
    assert report.problem is not None and "signature does not verify" in report.problem.what


def test_a_transfer_the_settlement_does_not_call_for_is_found(base: Path) -> None:
    def pay_myself(rows: list[Row]) -> tuple[str, str, str]:
        payload = (
            '{"advanced_paisa":0,"amount_paisa":500,"from":"C","interval_start":'
            '"2024-06-01T06:30:00+00:00","memo":"p2p","paid_paisa":500,"repaid_paisa":0,'
            '"to":"operator"}'
        )
        return "transfer", "C", payload

    report = operator_appends(base, pay_myself)
    assert report.problem is not None and "no settlement calls for" in report.problem.what


def _truncated(db: Path) -> None:
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2])


def _overwritten(db: Path) -> None:
    db.write_bytes(b"not a database " * 300)


def _by_sql(statement: str) -> Callable[[Path], None]:
    def edit(db: Path) -> None:
        with closing(sqlite3.connect(db)) as conn:
            conn.executescript(statement)
            conn.commit()

    return edit


UNTYPED = (  # the ledger table rebuilt without its column types, then one value changed
    "CREATE TABLE loose (seq, time, kind, subject, payload, prev_hash, hash, signature); "
    "INSERT INTO loose SELECT * FROM ledger; DROP TABLE ledger; "
    "ALTER TABLE loose RENAME TO ledger; "
)


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (_by_sql("DROP TABLE ledger_head"), "lacks its table 'ledger_head'"),
        (_by_sql("DROP TABLE wallets"), "lacks its table 'wallets'"),
        (_by_sql("UPDATE wallets SET kind = 'operator' WHERE wallet = 'B'"), "wallet 'B'"),
        (_by_sql("UPDATE wallets SET debt_paisa = 5 WHERE wallet = 'A'"), "wallet 'A'"),
        (_by_sql(UNTYPED.replace("(seq,", "(seq TEXT,")), "entry 0: its seq is a str"),
        (_by_sql(UNTYPED + "UPDATE ledger SET seq = 5.0 WHERE seq = 5"), "its seq is a float"),
        (
            _by_sql(UNTYPED + "UPDATE ledger SET payload = CAST(payload AS BLOB) WHERE seq = 5"),
            "entry 5: its payload is a bytes",
        ),
        (_by_sql(UNTYPED + "UPDATE ledger SET hash = NULL WHERE seq = 7"), "entry 7: its hash is"),
        (_truncated, "is not a readable ledger"),
        (_overwritten, "is not a readable ledger"),
    ],
    ids=[
        "head-table-dropped",
        "wallets-dropped",
        "wallet-kind",
        "wallet-debt",
        "seq-text",
        "seq-real",
        "payload-blob",
        "hash-null",
        "cut",
        "garbage",
    ],
)
def test_a_broken_run_store_is_named_by_verify_with_exit_1_never_a_traceback(
    base: Path, tmp_path: Path, edit: Callable[[Path], None], named: str
) -> None:
    from typer.testing import CliRunner

    from testbed.cli import app

    shutil.copytree(base / "run", tmp_path / "run")
    edit(tmp_path / "run" / "run.sqlite")
    report = verify_run(tmp_path / "run")
    assert report.problem is not None and named in str(report.problem), report.describe()
    result = CliRunner().invoke(app, ["ledger", "verify", str(tmp_path / "run")])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "NOT verified" in result.output
