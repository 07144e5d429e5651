"""`testbed telemetry`: the InfluxDB backlog of a run directory, and replaying it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from testbed.cli import app

telemetry_app = typer.Typer(help="The InfluxDB backlog of a run: show it, send it.")
app.add_typer(telemetry_app, name="telemetry")
console = Console()

RunDir = Annotated[Path, typer.Argument(help="A run directory written with InfluxDB configured.")]


def _buffer(run_dir: Path) -> Path:
    from testbed.telemetry.config import InfluxConfig

    path = run_dir / InfluxConfig.model_fields["buffer_file"].default
    if not path.is_file():
        console.print(f"[bold red]error:[/] {run_dir} has no InfluxDB buffer ({path.name})")
        raise typer.Exit(code=2)
    return path


@telemetry_app.command("status")
def status(run_dir: RunDir) -> None:
    """Points still waiting for InfluxDB, points it refused, and the last error."""
    from testbed.telemetry.buffer import read_buffer_state

    state = read_buffer_state(_buffer(run_dir))
    console.print(
        f"{state.pending_points} points pending, {state.dead_letter_points} dead-lettered; "
        f"last success {state.last_success_time or '-'}; last error {state.last_error or '-'}"
    )


@telemetry_app.command("replay")
def replay(
    run_dir: RunDir,
    influx_url: Annotated[str | None, typer.Option("--influx-url")] = None,
    influx_api: Annotated[str | None, typer.Option("--influx-api")] = None,
    influx_db: Annotated[str | None, typer.Option("--influx-db")] = None,
    influx_bucket: Annotated[str | None, typer.Option("--influx-bucket")] = None,
    influx_org: Annotated[str | None, typer.Option("--influx-org")] = None,
    timeout_s: Annotated[float, typer.Option(help="Give up after this long.")] = 600.0,
) -> None:
    """Send a run's backlog (after an outage or a crash), in order, with the run's settings."""
    import tomllib

    from testbed.telemetry.config import InfluxConfig, influx_config_from_cli
    from testbed.telemetry.sink import InfluxSink

    buffer = _buffer(run_dir)
    base = None
    config_file = run_dir / "config.toml"
    if config_file.is_file():
        influx = tomllib.loads(config_file.read_text()).get("sinks", {}).get("influx")
        base = InfluxConfig.model_validate(influx) if influx else None
    config = influx_config_from_cli(
        base,
        url=influx_url,
        api=influx_api,
        database=influx_db,
        bucket=influx_bucket,
        org=influx_org,
    )
    if config is None:
        console.print("[bold red]error:[/] no InfluxDB settings in the run nor on the command line")
        raise typer.Exit(code=2)
    sink = InfluxSink(config, buffer, run_dir.name)
    deadline = time.monotonic() + timeout_s
    while not sink.flush(timeout_s=1.0) and time.monotonic() < deadline:
        backlog = sink.backlog()
        console.print(f"{backlog.pending_points} points pending; last error {backlog.last_error}")
    backlog = sink.close()
    console.print(
        f"{backlog.sent_points} points sent, {backlog.pending_points} pending, "
        f"{backlog.dead_letter_points} dead-lettered"
    )
    if not backlog.drained:
        raise typer.Exit(code=1)
