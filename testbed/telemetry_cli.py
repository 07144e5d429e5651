"""`testbed telemetry`: the InfluxDB backlog of a run directory, and replaying it.

Both commands take the InfluxDB settings the run kept in its config.toml (`[sinks.influx]`);
flags override single keys (`--influx-url` alone sends the backlog to another server).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from testbed.cli import app
from testbed.influx_options import InfluxApi, InfluxBucket, InfluxDb, InfluxOrg, InfluxUrl

if TYPE_CHECKING:
    from testbed.telemetry.config import InfluxConfig

telemetry_app = typer.Typer(help="The InfluxDB backlog of a run: show it, send it.")
app.add_typer(telemetry_app, name="telemetry")
console = Console()

RunDir = Annotated[Path, typer.Argument(help="A run directory written with InfluxDB configured.")]
InfluxSkipCreation = Annotated[
    bool | None,
    typer.Option(
        "--influx-skip-database-creation/--influx-create-database",
        help="v1: never create the database (default: the run's setting).",
        show_default=False,
    ),
]


def _fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True, highlight=False)
    return typer.Exit(code=code)


def _settings(run_dir: Path, **flags: Any) -> InfluxConfig | None:
    """The run's stored `[sinks.influx]` with the flags over it; None when neither names one."""
    import tomllib

    from pydantic import ValidationError

    from testbed.runstore import CONFIG_FILE
    from testbed.telemetry.config import (
        InfluxConfig,
        describe_settings_error,
        influx_config_from_cli,
    )

    if not run_dir.is_dir():
        raise _fail(f"{run_dir} is not a run directory")
    stored: dict[str, Any] | None = None
    config_file = run_dir / CONFIG_FILE
    if config_file.is_file():
        try:
            stored = tomllib.loads(config_file.read_text()).get("sinks", {}).get("influx")
        except tomllib.TOMLDecodeError as error:
            raise _fail(f"{config_file}: {error}") from None
    given = {key: value for key, value in flags.items() if value is not None}
    try:
        if stored is None:
            return influx_config_from_cli(**given)
        return InfluxConfig.model_validate({**stored, **given})
    except ValidationError as error:
        source = f"{config_file} [sinks.influx] and the flags" if stored else "the flags"
        raise _fail(f"InfluxDB settings ({source}): {describe_settings_error(error)}") from None


def _buffer(run_dir: Path, settings: InfluxConfig | None) -> Path:
    from testbed.telemetry.config import InfluxConfig

    name = settings.buffer_file if settings else InfluxConfig.model_fields["buffer_file"].default
    path = run_dir / name
    if not path.is_file():
        raise _fail(f"{run_dir} has no InfluxDB buffer ({path.name})")
    return path


@telemetry_app.command("status")
def status(
    run_dir: RunDir,
    influx_url: InfluxUrl = None,
    influx_api: InfluxApi = None,
    influx_db: InfluxDb = None,
    influx_bucket: InfluxBucket = None,
    influx_org: InfluxOrg = None,
    check: Annotated[
        bool, typer.Option("--check", help="Also ask the server whether it takes the points.")
    ] = False,
) -> None:
    """Points still waiting for InfluxDB, points it refused, the last error, and the target."""
    from testbed.telemetry.buffer import read_buffer_state
    from testbed.telemetry.target import InfluxTargetError, check_target

    settings = _settings(
        run_dir,
        url=influx_url,
        api=influx_api,
        database=influx_db,
        bucket=influx_bucket,
        org=influx_org,
    )
    state = read_buffer_state(_buffer(run_dir, settings))
    console.print(
        f"{state.pending_points} points pending, {state.dead_letter_points} dead-lettered; "
        f"last success {state.last_success_time or '-'}; last error {state.last_error or '-'}",
        soft_wrap=True,
        highlight=False,
    )
    if settings is None:
        console.print("target: none in the run's config.toml (give --influx-url ...)")
        return
    console.print(f"target: {settings.target_text()}", soft_wrap=True, highlight=False)
    if check:
        try:
            report = check_target(settings, create_database=False)
        except InfluxTargetError as error:
            raise _fail(str(error), code=1) from None
        console.print(report.text(), soft_wrap=True, highlight=False)


@telemetry_app.command("replay")
def replay(
    run_dir: RunDir,
    influx_url: InfluxUrl = None,
    influx_api: InfluxApi = None,
    influx_db: InfluxDb = None,
    influx_bucket: InfluxBucket = None,
    influx_org: InfluxOrg = None,
    influx_skip_database_creation: InfluxSkipCreation = None,
    timeout_s: Annotated[float, typer.Option(help="Give up after this long.")] = 600.0,
) -> None:
    """Send a run's backlog (after an outage or a crash), in order, with the run's settings;
    flags override single keys. A missing v1 database is created first."""
    from testbed.telemetry.sink import BufferInUse, InfluxSink
    from testbed.telemetry.target import InfluxTargetError, check_target

    config = _settings(
        run_dir,
        url=influx_url,
        api=influx_api,
        database=influx_db,
        bucket=influx_bucket,
        org=influx_org,
        skip_database_creation=influx_skip_database_creation,
    )
    if config is None:
        raise _fail(
            f"no InfluxDB settings in {run_dir}/config.toml nor on the command line: give "
            "--influx-url with --influx-db (v1), or --influx-bucket and --influx-org (v2)"
        )
    buffer = _buffer(run_dir, config)
    try:
        report = check_target(config)
    except InfluxTargetError as error:
        raise _fail(str(error)) from None
    console.print(report.text(), soft_wrap=True, highlight=False)
    try:
        sink = InfluxSink(config, buffer, run_dir.name)
    except BufferInUse as error:
        raise _fail(f"{error} (is the run still going, or another replay?)") from None
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
