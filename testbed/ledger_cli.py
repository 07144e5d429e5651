"""`testbed ledger`: verify a run's ledger, or show it readably."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from testbed.cli import app

ledger_app = typer.Typer(help="A run's registry, wallets and hash-chained ledger.")
app.add_typer(ledger_app, name="ledger")
console = Console()

RunDir = Annotated[Path, typer.Argument(help="A run directory.")]


def _trusted_key(run_dir: Path, operator_key: Path | None) -> str | None:
    from testbed.ledger.keys import KeyFileError, read_public
    from testbed.ledger.run_ledger import KEYS_DIR_NAME, operator_public_key

    try:
        if operator_key is not None:
            return read_public(operator_key)
        return operator_public_key(run_dir.resolve().parent / KEYS_DIR_NAME)
    except KeyFileError as error:
        console.print(f"[bold red]error:[/] {error}")
        raise typer.Exit(code=2) from None


@ledger_app.command("verify")
def verify(
    run_dir: RunDir,
    operator_key: Annotated[
        Path | None,
        typer.Option(
            help="The operator's public key file to trust (default: keys/operator/operator.pub "
            "beside the run directory, when there is one)."
        ),
    ] = None,
) -> None:
    """Check every link, every signature and the rules, and that every wallet equals the replay.

    Exit status 0 when the ledger verifies, 1 when it does not (the first bad entry is named)."""
    from testbed.ledger.verify import verify_run

    if not run_dir.is_dir():
        console.print(f"[bold red]error:[/] run directory {run_dir} does not exist")
        raise typer.Exit(code=2)
    report = verify_run(run_dir, _trusted_key(run_dir, operator_key))
    style = "green" if report.ok else "bold red"
    console.print(f"[{style}]{report.describe()}[/]", highlight=False)
    if report.ok:
        console.print(f"operator key {report.operator_key}", highlight=False)
    raise typer.Exit(code=0 if report.ok else 1)


@ledger_app.command("show")
def show(
    run_dir: RunDir,
    kind: Annotated[
        list[str] | None, typer.Option(help="Only entries of this kind (repeatable).")
    ] = None,
    subject: Annotated[
        str | None, typer.Option(help="Only entries about this peer or wallet.")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many entries (0: all).")] = 0,
) -> None:
    """The ledger's entries in words, then the wallets and the verification status."""
    from testbed.ledger.describe import describe_entry
    from testbed.ledger.money import format_money
    from testbed.ledger.store import has_ledger, read_entries
    from testbed.ledger.verify import verify_run

    path = run_dir / "run.sqlite"
    if not path.is_file():
        console.print(f"[bold red]error:[/] {run_dir} has no run.sqlite")
        raise typer.Exit(code=2)
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        if not has_ledger(conn):
            console.print(f"[bold red]error:[/] {run_dir} has no ledger")
            raise typer.Exit(code=2)
        entries = read_entries(conn)
    finally:
        conn.close()
    report = verify_run(run_dir, _trusted_key(run_dir, None))
    currency = report.state.currency if report.state is not None else "INR"
    chosen = [
        e
        for e in entries
        if (not kind or e.kind in kind) and (subject is None or e.subject == subject)
    ]
    if limit:
        chosen = chosen[:limit]
    table = Table(title=f"Ledger of {run_dir.name}: {len(chosen)} of {len(entries)} entries")
    for column in ("seq", "time (UTC)", "kind", "subject", "what", "hash"):
        table.add_column(column, overflow="fold")
    for entry in chosen:
        table.add_row(
            str(entry.seq),
            entry.time[:19].replace("T", " "),
            entry.kind,
            entry.subject,
            describe_entry(entry, currency),
            entry.hash[:12],
        )
    console.print(table)
    wallets = Table(title="Wallets (replayed from the ledger)")
    for column in ("wallet", "balance", "debt"):
        wallets.add_column(column, justify="right" if column != "wallet" else "left")
    for name, (balance, debt) in report.wallets.items():
        wallets.add_row(name, format_money(balance, currency), format_money(debt, currency))
    console.print(wallets)
    style = "green" if report.ok else "bold red"
    console.print(f"[{style}]{report.describe()}[/]", highlight=False)
