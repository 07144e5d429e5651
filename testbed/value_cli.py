"""`testbed value RUN`: the share of its day's perfect-foresight value a finished run captured."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from testbed.cli import app

console = Console()


@app.command("value")
def value(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Baseline, perfect-foresight optimum and actual bills of a run's day, and the value captured.

    Bills are the community's (and each peer's) cash net of the value of the energy left in
    storage; captured % = (baseline - actual) / (baseline - optimum). See docs/value.md.
    """
    from testbed.runstore import RunDirError
    from testbed.value import IncompleteRun, InfeasibleOptimum, value_report

    try:
        report = value_report(run_dir)
    except (RunDirError, IncompleteRun, InfeasibleOptimum) as error:
        if as_json:
            print(json.dumps({"run_dir": str(run_dir), "error": str(error)}))
        else:
            console.print(f"[bold red]no value figure:[/] {error}")
        raise typer.Exit(code=2) from None
    if as_json:
        print(json.dumps(report.as_dict(), indent=1))
        return
    currency = "INR"
    table = Table(title=f"Value captured: {run_dir}")
    for column in ("", "baseline", "optimum", "run", "captured %"):
        table.add_column(column, justify="right")
    rows = [("community", report.community), *sorted(report.peers.items())]
    for name, bills in rows:
        table.add_row(
            name,
            f"{bills.baseline_bill:.2f}",
            f"{bills.optimum_bill:.2f}",
            f"{bills.actual_bill:.2f}",
            "n/a" if bills.captured_pct is None else f"{bills.captured_pct:.1f}",
        )
    console.print(table)
    console.print(
        f"bills in {currency}: cash net of the value of energy left in storage; "
        f"{report.intervals} intervals; the optimum's P2P energy priced at "
        f"{report.p2p_price:.2f} {currency}/kWh per peer"
    )
