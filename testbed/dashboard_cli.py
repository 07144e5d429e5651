"""`testbed dashboard`: serve the Streamlit dashboard over a folder of run directories."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer

from testbed.cli import app

APP_SCRIPT = Path(__file__).resolve().parents[1] / "dashboards" / "app.py"


def streamlit_command(
    runs: Path,
    port: int,
    refresh_s: float = 2.0,
    influx_url: str | None = None,
    influx_db: str | None = None,
    tz: str | None = None,
) -> list[str]:
    """The `streamlit run` command line that serves the dashboard on 127.0.0.1:`port`."""
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP_SCRIPT),
        "--server.headless=true",
        "--server.address=127.0.0.1",
        f"--server.port={port}",
        "--browser.gatherUsageStats=false",
        "--client.showErrorDetails=none",
        "--client.toolbarMode=minimal",
        "--",
        "--runs",
        str(runs),
        "--refresh-s",
        str(refresh_s),
    ]
    if influx_url:
        command += ["--influx-url", influx_url]
    if influx_db:
        command += ["--influx-db", influx_db]
    if tz:
        command += ["--tz", tz]
    return command


@app.command("dashboard")
def dashboard(
    runs: Annotated[
        Path, typer.Option("--runs", help="folder holding one directory per run")
    ] = Path("runs"),
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="port on 127.0.0.1")] = 8501,
    refresh_s: Annotated[
        float, typer.Option("--refresh-s", min=0.2, help="live page refresh period, seconds")
    ] = 2.0,
    influx_url: Annotated[
        str | None, typer.Option("--influx-url", help="read live samples from this InfluxDB")
    ] = None,
    influx_db: Annotated[str | None, typer.Option("--influx-db", help="InfluxDB database")] = None,
    tz: Annotated[
        str | None,
        typer.Option("--tz", help="IANA zone to show times in (default: the run's site zone)"),
    ] = None,
) -> None:
    """Serve the dashboard (Live, Market, Settlement, Runs) at http://127.0.0.1:PORT."""
    if not APP_SCRIPT.is_file():
        raise typer.BadParameter(f"dashboard app not found at {APP_SCRIPT}")
    if not runs.is_dir():
        typer.echo(f"note: runs folder {runs} does not exist yet; the pages will say so", err=True)
    command = streamlit_command(runs.resolve(), port, refresh_s, influx_url, influx_db, tz)
    typer.echo(f"dashboard: http://127.0.0.1:{port} (runs from {runs.resolve()})", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    if shutil.which(command[0]) is None and not Path(command[0]).exists():
        raise typer.BadParameter(f"python interpreter {command[0]} not found")
    os.execv(command[0], command)  # the server replaces this process: signals reach it directly
