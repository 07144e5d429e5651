"""`testbed run` and `testbed demo`: run an experiment, show progress, end with a summary table."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from testbed.cli import app
from testbed.influx_options import InfluxApi, InfluxBucket, InfluxDb, InfluxOrg, InfluxUrl
from testbed.messages import bounded
from testbed.summary import metering_notes

if TYPE_CHECKING:  # the experiment stack (cvxpy, asyncua, pymodbus) loads only when a run starts
    from testbed.config import TestbedConfig
    from testbed.experiment import RunResult
    from testbed.platform.sizing import AgentLayout
    from testbed.telemetry.config import InfluxConfig

DEFAULT_EMULATED_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "emulated.toml"
console = Console()

Hours = Annotated[float | None, typer.Option(help="Length of the experiment in hours.")]
Seed = Annotated[int | None, typer.Option(help="Seed of the plant's profiles and the agents.")]
Out = Annotated[
    Path | None,
    typer.Option(help="Run directory to write (default: runs/<time>-<mechanism>-seed<N>)."),
]
InfluxSkipCreation = Annotated[
    bool | None,
    typer.Option(
        "--influx-skip-database-creation/--influx-create-database",
        help="v1: never create the database (default: create it when it is missing).",
        show_default=False,
    ),
]
InfluxSpoolIfDown = Annotated[
    bool | None,
    typer.Option(
        "--influx-spool-if-down/--influx-fail-if-down",
        help="InfluxDB not answering at start: run anyway and keep the points in the run "
        "directory until it does (default: stop with an error).",
        show_default=False,
    ),
]


def _fail(message: str) -> typer.Exit:
    console.print(f"[bold red]error:[/] {escape(bounded(message))}", soft_wrap=True)
    return typer.Exit(code=2)


def _influx(config: TestbedConfig, **flags: Any) -> InfluxConfig | None:
    """The InfluxDB settings (the file's `[sinks.influx]`, flags override single keys), checked
    against the server before anything starts: one line and exit status 2 when it cannot take
    the run's points. A missing v1 database is created."""
    from pydantic import ValidationError

    from testbed.telemetry.config import (
        InfluxConfig,
        describe_settings_error,
        influx_config_from_cli,
    )
    from testbed.telemetry.target import InfluxTargetError, prepare_target

    base = InfluxConfig.model_validate(config.sinks.influx) if config.sinks.influx else None
    try:
        influx = influx_config_from_cli(base, **flags)
    except ValidationError as error:
        raise _fail(f"InfluxDB settings: {describe_settings_error(error)}") from None
    if influx is None:
        return None
    try:
        report = prepare_target(influx)
    except InfluxTargetError as error:
        raise _fail(str(error)) from None
    style = "yellow" if report.down_reason is not None else "dim"
    console.print(f"[{style}]{report.text()}[/]", soft_wrap=True, highlight=False)
    return influx


def _run_dir(config: TestbedConfig, out: Path | None) -> Path:
    from testbed.experiment import default_run_id

    run_dir = out if out is not None else config.sinks.run_store.root / default_run_id(config)
    if (run_dir / "run.sqlite").exists():
        raise _fail(f"{run_dir} already holds a run; choose another --out")
    return run_dir


class _ProgressBar:
    """A rich progress bar fed by the engine, redrawn at most ten times a second."""

    def __init__(self, progress: Progress, hours: float, zone: tzinfo = UTC) -> None:
        self.progress = progress
        self.task = progress.add_task("experiment", total=1, plant_time="")
        self.hours = hours
        self.zone = zone  # plant time is shown on the site's clock
        self._next_update = 0.0

    def __call__(self, step: int, total: int, now: datetime) -> None:
        wall = time.monotonic()
        if wall < self._next_update and step + 1 < total:
            return
        self._next_update = wall + 0.1
        self.progress.update(
            self.task,
            total=total,
            completed=step + 1,
            plant_time=f"{now.astimezone(self.zone):%Y-%m-%d %H:%M %Z}",
        )


def _site_zone(config: TestbedConfig) -> tzinfo:
    """The site's zone (the first peer's assets), for showing plant time; UTC without peers."""
    for name, peer in config.peers.items():
        return peer.peer_assets(name).zone
    return UTC


def _execute(
    config: TestbedConfig,
    run_dir: Path,
    influx: InfluxConfig | None,
    platform: PlatformLink | None = None,
) -> RunResult:
    from instruments.event_loop import loop_factory
    from testbed.config import ConfigError
    from testbed.engine import StartupError
    from testbed.experiment import run_experiment

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TextColumn("{task.fields[plant_time]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        bar = _ProgressBar(progress, config.experiment.hours, _site_zone(config))
        try:
            _, new_loop = loop_factory("auto")
            with asyncio.Runner(loop_factory=new_loop) as runner:
                if platform is None:
                    return runner.run(
                        run_experiment(
                            config, run_dir, influx=influx, progress=bar, check_influx=False
                        )
                    )
                return runner.run(_run_on_platform(config, run_dir, influx, bar, platform))
        except StartupError as error:
            raise _fail(f"the run did not start: {error}") from None
        except ConfigError as error:
            raise _fail(str(error)) from None


class PlatformLink:
    """Where the controller meets the operator and the agents: the broker and its password;
    `describe_failure` adds what the platform's processes said when they did not come up."""

    def __init__(
        self,
        address: Any,
        password: str,
        describe_failure: Any = None,
        layout: AgentLayout | None = None,
    ) -> None:
        self.address = address
        self.password = password
        self.describe_failure = describe_failure or (lambda: "")
        self.layout = layout  # the agent processes started here (None: started elsewhere)

    def start_wait_s(self, config: TestbedConfig) -> float:
        """How long to wait for every agent: the layout's wait, else `[platform]
        start_timeout_s`, else one that grows with the peers."""
        from testbed.platform.sizing import agent_layout

        if self.layout is not None:
            return self.layout.start_wait_s
        platform = config.platform
        return agent_layout(
            list(config.peers),
            agents_per_process=platform.agents_per_process,
            start_timeout_s=platform.start_timeout_s,
        ).start_wait_s


async def _run_on_platform(
    config: TestbedConfig,
    run_dir: Path,
    influx: InfluxConfig | None,
    bar: _ProgressBar,
    platform: PlatformLink,
) -> RunResult:
    """The run with the engine as the platform's controller (agents in their own processes)."""
    from testbed.engine import StartupError
    from testbed.experiment import run_experiment
    from testbed.platform.controller_link import PlatformTimeout
    from testbed.platform.link import LinkRefused
    from testbed.platform.roles import connect_controller

    wait_s = platform.start_wait_s(config)
    if platform.layout is not None:
        console.print(f"started {platform.layout.describe()}")
    else:
        console.print(f"waiting up to {wait_s:.0f} s for {len(config.peers)} agent(s) to connect")

    def online(count: int, wanted: int) -> None:  # about four lines however many peers
        if count in (0, wanted) or count % max(1, wanted // 4) == 0:
            console.print(f"agents online: {count}/{wanted}")

    try:
        market = await connect_controller(
            config, platform.address, platform.password, wait_s, online
        )
    except (PlatformTimeout, LinkRefused, OSError) as error:
        raise StartupError(f"the trading platform: {error}{platform.describe_failure()}") from None
    try:
        return await run_experiment(
            config, run_dir, influx=influx, progress=bar, check_influx=False, market=market
        )
    finally:
        await market.close()


def _money(value: float) -> str:
    return f"{value:,.2f}"


def print_summary(result: RunResult, started: float) -> None:
    """The summary table of a finished (or interrupted) run."""
    summary: dict[str, Any] = dict(result.finished.summary)
    currency = summary.get("currency", "")
    table = Table(title=f"Run {result.run_dir.name}: {result.finished.status}")
    for header in (
        "peer",
        "P2P bought kWh",
        "P2P sold kWh",
        "grid import kWh",
        "grid export kWh",
        f"bill {currency}",
        f"grid-only {currency}",
        f"saving {currency}",
    ):
        table.add_column(header, justify="right")
    for peer, totals in summary.get("peers", {}).items():
        table.add_row(
            peer,
            f"{totals['p2p_bought_kwh']:.3f}",
            f"{totals['p2p_sold_kwh']:.3f}",
            f"{totals['grid_import_kwh']:.3f}",
            f"{totals['grid_export_kwh']:.3f}",
            _money(totals["bill"]),
            _money(totals["bill_grid_only"]),
            _money(totals["bill_grid_only"] - totals["bill"]),
        )
    console.print(table)
    market = summary.get("market", {})
    price = market.get("mean_clearing_price")
    console.print(
        f"market {market.get('mechanism')}: {market.get('traded_kwh', 0):.3f} kWh traded in "
        f"{market.get('cleared_intervals', 0)} of {market.get('intervals', 0)} intervals, mean "
        f"clearing price {'-' if price is None else f'{price:.3f} {currency}/kWh'}"
    )
    console.print(
        f"energy balance error {summary.get('energy_balance_error_kwh', 0):.6f} kWh of "
        f"{summary.get('energy_through_pcc_kwh', 0):.3f} kWh through the PCCs; interlocks "
        f"{summary.get('interlocks') or 'none'}"
    )
    for line in metering_notes(summary):
        console.print(line)
    if result.influx_backlog is not None:
        backlog = result.influx_backlog
        state = "all acknowledged" if backlog.drained else "backlog left in the run directory"
        console.print(
            f"InfluxDB: {backlog.sent_points} points sent, {backlog.pending_points} pending, "
            f"{backlog.dead_letter_points} dead-lettered ({state})"
            + (f"; last error: {backlog.last_error}" if backlog.last_error else "")
        )
    console.print(
        f"wall time {time.monotonic() - started:.1f} s; run directory {result.run_dir} "
        f"(summary.json, run.sqlite)"
    )


@app.command("run")
def run_command(
    config_file: Annotated[Path, typer.Option("--config", help="Experiment TOML file.")],
    hours: Hours = None,
    seed: Seed = None,
    out: Out = None,
    endpoints_json: Annotated[
        Path | None,
        typer.Option(help="Take device endpoints from a running emulated plant's JSON file."),
    ] = None,
    influx_url: InfluxUrl = None,
    influx_api: InfluxApi = None,
    influx_db: InfluxDb = None,
    influx_bucket: InfluxBucket = None,
    influx_org: InfluxOrg = None,
    influx_skip_database_creation: InfluxSkipCreation = None,
    influx_spool_if_down: InfluxSpoolIfDown = None,
    platform: Annotated[
        bool,
        typer.Option(
            "--platform",
            help="Trade through the platform (operator and agents on the broker in "
            "platform.dir's broker.json) instead of agents in this process.",
        ),
    ] = False,
) -> None:
    """Run an experiment on the devices the configuration names (the lab, or a running plant)."""
    from testbed.config import ConfigError, load_config, load_plant_endpoints
    from testbed.experiment import with_overrides, with_plant_endpoints

    started = time.monotonic()
    try:
        config = with_overrides(load_config(config_file), hours, seed)
        endpoints_path = endpoints_json or config.plant.endpoints_json
        if endpoints_path is not None:
            endpoints = load_plant_endpoints(endpoints_path)
            config = with_plant_endpoints(config, endpoints)
    except (ConfigError, OSError, ValueError) as error:
        raise _fail(str(error)) from None
    run_dir = _run_dir(config, out)
    influx = _influx(
        config,
        url=influx_url,
        api=influx_api,
        database=influx_db,
        bucket=influx_bucket,
        org=influx_org,
        skip_database_creation=influx_skip_database_creation,
        spool_if_down_at_start=influx_spool_if_down,
    )
    link = None
    if platform:
        from testbed.platform.deployment import PlatformDir

        folder = PlatformDir.for_config(config.platform.dir, config)
        try:
            link = PlatformLink(folder.address(), folder.password("controller"))
        except (OSError, ValueError, RuntimeError) as error:
            raise _fail(str(error)) from None
        # the run's ledger registers the identities the agents sign with
        ledger = config.ledger.model_copy(update={"keys_dir": folder.keys_dir.resolve()})
        config = config.model_copy(update={"ledger": ledger})
    result = _execute(config, run_dir, influx, link)
    print_summary(result, started)


@app.command("demo")
def demo_command(
    hours: Hours = 24.0,
    seed: Seed = 1,
    out: Out = None,
    config_file: Annotated[
        Path, typer.Option("--config", help="Experiment TOML file for the emulated plant.")
    ] = DEFAULT_EMULATED_CONFIG,
    site_file: Annotated[
        Path | None,
        typer.Option(
            "--site",
            help="Site file: the plant and the controller's peers are built from it "
            "(default: the configuration's site, else the IIT Gandhinagar testbed).",
        ),
    ] = None,
    influx_url: InfluxUrl = None,
    influx_api: InfluxApi = None,
    influx_db: InfluxDb = None,
    influx_bucket: InfluxBucket = None,
    influx_org: InfluxOrg = None,
    influx_skip_database_creation: InfluxSkipCreation = None,
    influx_spool_if_down: InfluxSpoolIfDown = None,
    in_process: Annotated[
        bool,
        typer.Option(
            "--in-process",
            help="Agents and market operator inside this process (no broker), as before the "
            "platform; the same seed gives the same settlement.",
        ),
    ] = False,
) -> None:
    """Start the emulated plant and run a day on it (lockstep, as fast as the protocols allow).

    Without --in-process: its own mosquitto on a free loopback port, the market operator and one
    agent process per peer, with this process as the controller; all stopped at the end."""
    from labspec.site import SiteError
    from testbed.config import ConfigError, load_config
    from testbed.experiment import with_overrides, with_plant_endpoints, with_site
    from testbed.plant_process import PlantStartError, emulated_plant

    started = time.monotonic()
    try:
        config = with_overrides(load_config(config_file), hours, seed)
        if site_file is not None:
            config = with_site(config, site_file)
        site = config.site_model()
    except (ConfigError, SiteError) as error:
        raise _fail(str(error)) from None
    run_dir = _run_dir(config, out)
    influx = _influx(
        config,
        url=influx_url,
        api=influx_api,
        database=influx_db,
        bucket=influx_bucket,
        org=influx_org,
        skip_database_creation=influx_skip_database_creation,
        spool_if_down_at_start=influx_spool_if_down,
    )
    if not in_process:
        in_process = _platform_unavailable()
    console.print(
        f"starting the emulated plant of {site.site.name} ({len(site.peers)} peers, "
        f"{len(site.devices)} devices; seed {config.experiment.seed}) ..."
    )
    try:
        # The plant owns a lockstep day's clock: it starts at the configuration's clock.start.
        start = config.clock.start
        plant_toml = f"start = {start.isoformat()}\n" if start is not None else ""
        with emulated_plant(config.experiment.seed, plant_toml=plant_toml, site=site) as endpoints:
            config = with_plant_endpoints(config, endpoints)
            if in_process:
                result = _execute(config, run_dir, influx)
            else:
                result = _demo_on_platform(config, run_dir, influx)
    except PlantStartError as error:
        raise _fail(str(error)) from None
    print_summary(result, started)


def _platform_unavailable() -> bool:
    """True (after saying so) when mosquitto is not installed: the demo then trades in this
    process, which gives the same settlement as the platform on the same seed."""
    from testbed.platform.broker import BrokerStartError, mosquitto_binary

    try:
        mosquitto_binary()
    except BrokerStartError as error:
        console.print(
            f"[yellow]{error}; trading in this process instead (as --in-process)[/yellow]"
        )
        return True
    return False


def _demo_on_platform(
    config: TestbedConfig, run_dir: Path, influx: InfluxConfig | None
) -> RunResult:
    """Broker, operator and agent processes in a folder of their own; the journal and the
    processes' logs are kept in the run directory's `platform/` afterwards."""
    import shutil
    import signal
    import tempfile

    from testbed.ledger.keys import KeyFileError
    from testbed.platform.broker import BrokerStartError
    from testbed.platform.credentials import CredentialsError
    from testbed.platform.processes import platform_processes, with_run_keys

    config = with_run_keys(config, run_dir)

    def terminated(*_: object) -> None:  # SIGTERM ends the run and stops every child
        raise SystemExit(143)

    previous = signal.signal(signal.SIGTERM, terminated)
    with tempfile.TemporaryDirectory(prefix="platform-") as folder:
        console.print("starting mosquitto, the market operator and the agents ...")
        try:
            with platform_processes(config, Path(folder)) as platform:
                link = PlatformLink(
                    platform.address,
                    platform.controller_password(),
                    lambda: _platform_failure(platform),
                    platform.layout,
                )
                result = _execute(config, run_dir, influx, link)
        except (BrokerStartError, CredentialsError, FileNotFoundError, KeyFileError) as error:
            raise _fail(str(error)) from None
        finally:
            signal.signal(signal.SIGTERM, previous)
            kept = run_dir / "platform"
            if run_dir.exists():
                for name in ("operator", "logs"):
                    if (Path(folder) / name).exists():
                        shutil.copytree(Path(folder) / name, kept / name, dirs_exist_ok=True)
    return result


def _platform_failure(platform: Any) -> str:
    gone = platform.exited()
    if not gone:
        return ""
    logs = platform.folder.root / "logs"
    tails = []
    for path in sorted(logs.glob("*.log")):
        text = path.read_text(encoding="utf-8", errors="replace").strip()
        if text:
            tails.append(f"{path.name}: {text[-600:]}")
    return f" (exited: {', '.join(gone)}; " + " | ".join(tails) + ")"
