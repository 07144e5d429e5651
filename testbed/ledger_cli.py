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
    except sqlite3.DatabaseError as error:  # a truncated or overwritten file
        console.print(f"[bold red]error:[/] {path} is not a readable ledger ({error})")
        raise typer.Exit(code=2) from None
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
            str(entry.time)[:19].replace("T", " "),
            str(entry.kind),
            str(entry.subject),
            describe_entry(entry, currency),
            str(entry.hash)[:12],
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


@ledger_app.command("node")
def node(
    port: Annotated[int, typer.Option(help="The loopback port to listen on.")] = 8545,
    state: Annotated[
        Path | None,
        typer.Option(help="Keep the chain in this file (loaded at start, written at Ctrl-C)."),
    ] = None,
) -> None:
    """Run a local Ethereum development node (anvil, from `chain/`) until Ctrl-C; runs send to it
    with `[ledger.chain] url = "http://127.0.0.1:PORT"`."""
    import time

    from testbed.ledger.chain.artifact import ChainSetupError
    from testbed.ledger.chain.node import start_node

    try:
        running = start_node(port, state_path=state)
    except ChainSetupError as error:
        console.print(f"[bold red]error:[/] {error}")
        raise typer.Exit(code=2) from None
    console.print(
        f"chain node at {running.url} (chain state: {state or 'in memory'}); Ctrl-C stops"
    )
    try:
        while running.process.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()


@ledger_app.command("chain-account")
def chain_account(
    key_file: Annotated[Path, typer.Argument(help="Where to write the new private key.")],
) -> None:
    """Make a new chain account for the operator (the contract's writer): its private key goes to
    KEY_FILE (mode 0600, never overwritten); fund its address on the chain, then name the file in
    [ledger.chain] account_key_file."""
    from testbed.ledger.chain.account import create_account_file

    try:
        address = create_account_file(key_file)
    except FileExistsError:
        console.print(f"[bold red]error:[/] {key_file} exists: it is not overwritten")
        raise typer.Exit(code=2) from None
    console.print(f"account {address}; its private key is in {key_file}", highlight=False)


@ledger_app.command("chain")
def chain(
    run_dir: RunDir,
    url: Annotated[
        str | None,
        typer.Option(help="The node (default: the run's own node from its state, else its URL)."),
    ] = None,
    account_key: Annotated[
        Path | None,
        typer.Option(
            help="The private key file of the account that writes the run's contract "
            "(default: the node's unlocked development account)."
        ),
    ] = None,
) -> None:
    """Send the run's finalised results still waiting for the chain, then compare every wallet on
    the contract with the embedded ledger and check the anchored entry's hash.

    Exit status 0 when they agree, 1 when they do not, 2 when the chain cannot be reached."""
    from testbed.ledger.chain.account import ChainKeyError
    from testbed.ledger.chain.artifact import ChainSetupError
    from testbed.ledger.chain.check import check_chain
    from testbed.ledger.chain.mirror import ChainRejected, ChainUnavailable
    from testbed.ledger.money import format_money

    try:
        check = check_chain(run_dir, url, account_key_file=account_key)
    except (ChainUnavailable, ChainRejected, ChainSetupError, ChainKeyError) as error:
        console.print(f"[bold red]error:[/] {error}")
        raise typer.Exit(code=2) from None
    console.print(
        f"contract {check.address} at {check.url}: {check.transactions} transactions, "
        f"{check.gas_used:,} gas; {check.sent_now} sent now; anchored up to ledger entry "
        f"{check.anchored_seq}",
        highlight=False,
    )
    table = Table(title="Wallets: contract against ledger")
    for column in ("wallet", "on chain", "debt on chain", "in ledger", "debt in ledger"):
        table.add_column(column, justify="left" if column == "wallet" else "right")
    for name, (balance, debt) in check.on_chain.items():
        ledger_balance, ledger_debt = check.in_ledger[name]
        table.add_row(
            name,
            format_money(balance, check.currency),
            format_money(debt, check.currency),
            format_money(ledger_balance, check.currency),
            format_money(ledger_debt, check.currency),
        )
    console.print(table)
    if check.ok:
        console.print("[green]chain agrees with the ledger[/]")
        raise typer.Exit(code=0)
    for problem in check.problems:
        console.print(f"[bold red]{problem}[/]", highlight=False)
    raise typer.Exit(code=1)
