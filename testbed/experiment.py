"""Set up and run one experiment from a configuration: clock, devices, agents, sinks, engine."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labspec.endpoints import PlantEndpoints
from testbed.clock import Clock, LockstepClock, WallClock
from testbed.config import ConfigError, TestbedConfig, parse_config
from testbed.devices import PeerDevices
from testbed.documents import RunFinished, Sink
from testbed.driver_registry import driver_kind
from testbed.engine import Engine, ProgressCallback, StartupError
from testbed.heap import frozen_heap
from testbed.ledger.run_ledger import RunLedger, open_run_ledger
from testbed.runstore import DB_FILE, RunStore
from testbed.telemetry.config import InfluxConfig
from testbed.telemetry.sink import InfluxSink
from testbed.trading import LedgerAttachable, MarketPort, make_peer_agent

if TYPE_CHECKING:
    from testbed.ledger.chain.node import LocalNode
    from testbed.ledger.chain.run_chain import RunChain

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunResult:
    run_dir: Path
    finished: RunFinished
    influx_backlog: Any = None


def with_plant_endpoints(config: TestbedConfig, endpoints: PlantEndpoints) -> TestbedConfig:
    """The configuration with every device endpoint taken from a running emulated plant: each
    device is the plant's device of the same id (a PCC meter not found so, the peer's meter),
    and the site's driver settings stay on top."""
    data = config.model_dump(mode="json", exclude_none=True)
    data["plant"] = {
        **data.get("plant", {}),
        "control_host": endpoints.control.host,
        "control_port": endpoints.control.port,
    }
    for name, peer in config.peers.items():
        devices = data["peers"][name]["devices"]
        for channel, entry in peer.devices.items():
            endpoint = endpoints.devices.get(entry.name)
            if endpoint is None and channel == "meter" and name in endpoints.meters:
                endpoint = endpoints.meter(name)
            if endpoint is None:
                raise ConfigError(
                    f"peers.{name}.devices.{channel}: the plant serves no device {entry.name!r} "
                    f"(it serves: {', '.join(endpoints.devices) or 'none'}); the configuration "
                    "and the plant's site disagree"
                )
            kind = driver_kind(entry.driver)
            try:
                filled = kind.configure(entry.name, None, endpoint, entry.settings, entry.config)
            except ValueError as error:  # pydantic's ValidationError is a ValueError too
                raise ConfigError(f"peers.{name}.devices.{channel}: {error}") from None
            devices[channel]["config"] = filled.model_dump(mode="json", exclude_none=True)
    return parse_config(data, "configuration with the plant's endpoints")


def with_overrides(
    config: TestbedConfig, hours: float | None = None, seed: int | None = None
) -> TestbedConfig:
    """The configuration with the command line's `--hours` and `--seed`."""
    data = config.model_dump(mode="json", exclude_none=True)
    if hours is not None:
        data["experiment"]["hours"] = hours
    if seed is not None:
        data["experiment"]["seed"] = seed
    return parse_config(data, "configuration with the command line's options")


def with_site(config: TestbedConfig, site: Path) -> TestbedConfig:
    """The configuration on another site: its peers are built from the site file, and a market
    that asks for the site's feeder (`params.feeder = "site"`) gets this site's."""
    data = config.model_dump(mode="json", exclude_none=True)
    data["site"] = str(Path(site).resolve())  # the run directory's config.toml works from anywhere
    data.pop("peers", None)
    if data["market"].get("params", {}).get("feeder") == "site":
        data["market"]["params"]["feeder"] = data["site"]
    return parse_config(data, f"configuration on the site {site}")


def default_run_id(config: TestbedConfig) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{config.market.mechanism}-seed{config.experiment.seed}"


def make_clock(config: TestbedConfig) -> Clock:
    if config.clock.mode == "lockstep":
        if not config.plant.control_port:
            raise ConfigError(
                "clock.mode = 'lockstep' needs the plant's control endpoint: set "
                "plant.control_port or plant.endpoints_json"
            )
        return LockstepClock(config.plant.control_host, config.plant.control_port)
    return WallClock(config.clock.start)


def influx_config(config: TestbedConfig, override: InfluxConfig | None) -> InfluxConfig | None:
    if override is not None:
        return override
    if config.sinks.influx is None:
        return None
    return InfluxConfig.model_validate(config.sinks.influx)


def with_influx_settings(config: TestbedConfig, influx: InfluxConfig | None) -> TestbedConfig:
    """The configuration with the InfluxDB settings the run uses in `[sinks.influx]`, so that
    the run directory's config.toml keeps them (for `testbed telemetry replay` and `status`)."""
    if influx is None:
        return config
    sinks = config.sinks.model_copy(update={"influx": influx.stored_settings()})
    return config.model_copy(update={"sinks": sinks})


def check_influx_target(influx: InfluxConfig) -> None:
    """The InfluxDB first contact before a run (a missing v1 database is created); raises
    StartupError with one line when the target cannot take the run's points."""
    from testbed.telemetry.target import InfluxTargetError, prepare_target

    try:
        report = prepare_target(influx)
    except InfluxTargetError as error:
        raise StartupError(str(error)) from None
    if report.down_reason is not None:
        log.warning("%s", report.text())


async def run_experiment(
    config: TestbedConfig,
    run_dir: Path,
    *,
    run_id: str | None = None,
    influx: InfluxConfig | None = None,
    progress: ProgressCallback | None = None,
    on_engine: Callable[[Engine], None] | None = None,
    check_influx: bool = True,
    market: MarketPort | None = None,
) -> RunResult:
    """Run the experiment into `run_dir`; a first Ctrl-C ends the current interval cleanly.

    With InfluxDB configured, its target is checked first (`check_influx_target`; pass
    `check_influx=False` when the caller did it) and its settings are kept in config.toml.
    `market`: trade through the platform (`testbed.platform.controller_link.RemoteMarket`, the
    agents in their own processes) instead of agents in this process.
    """
    run_id = run_id or run_dir.name
    influx_cfg = influx_config(config, influx)
    if influx_cfg is not None and check_influx:
        check_influx_target(influx_cfg)
    config = with_influx_settings(config, influx_cfg)
    clock = make_clock(config)
    peers = {
        name: PeerDevices(name, peer, peer.peer_assets(name), config.control, lambda: clock.now)
        for name, peer in config.peers.items()
    }
    agents = (
        {name: make_peer_agent(config, name) for name in sorted(config.peers)}
        if market is None
        else {}
    )
    created = not run_dir.exists()
    chain_node = _start_chain_node(config, run_dir, created)
    store = RunStore(run_dir)
    run_chain = _open_chain(config, chain_node, store, run_dir, run_id, created)
    run_ledger = _open_ledger(config, run_dir, run_id, store, run_chain, created)
    port: object = market  # mypy takes MarketPort and LedgerAttachable for disjoint protocols
    if run_ledger is not None and isinstance(port, LedgerAttachable):
        port.attach_ledger(run_ledger)
    sinks: list[Sink] = [store]
    influx_sink = InfluxSink.in_run_dir(influx_cfg, run_dir, run_id) if influx_cfg else None
    if influx_sink is not None:
        sinks.append(influx_sink)

    engine = Engine(
        config, run_id, clock, peers, agents, sinks, progress, market, ledger=run_ledger
    )
    if on_engine is not None:
        on_engine(engine)
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()

    def on_sigint() -> None:
        """First Ctrl-C: finish the current interval, settle it, stop. Second: stop now."""
        if engine.stop_requested and main is not None:
            main.cancel()
        engine.stop_requested = True

    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, on_sigint)
    status = "failed"
    started = False
    try:
        with frozen_heap():  # full garbage collections scan only what the run allocates
            finished = await engine.run(config.experiment.hours)
        started = True
        status = finished.status
    except StartupError:
        raise
    except BaseException:
        started = True
        raise
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)
        if run_ledger is not None:
            run_ledger.close(None, status)  # the engine wrote the close entry; this closes the file
        if run_chain is not None:
            run_chain.close()  # what the node did not take yet waits in the ledger
        store.close(status)
        backlog = influx_sink.close() if influx_sink is not None else None
        if not started and created:  # nothing was recorded: leave no half-made run directory
            shutil.rmtree(run_dir, ignore_errors=True)
    return RunResult(run_dir, finished, backlog)


def _start_chain_node(
    config: TestbedConfig, run_dir: Path, created: bool
) -> tuple[str, LocalNode | None] | None:
    """With `[ledger.chain]` on: (url, own node or None); a node that does not answer, or chain
    tools that are missing, stop the run before anything is recorded."""
    if not (config.ledger.enabled and config.ledger.chain.enabled):
        return None
    from testbed.ledger.chain.account import ChainKeyError
    from testbed.ledger.chain.artifact import ChainSetupError
    from testbed.ledger.chain.mirror import ChainUnavailable
    from testbed.ledger.chain.run_chain import start_run_node

    try:
        return start_run_node(config.ledger.chain, run_dir)
    except (ChainUnavailable, ChainSetupError, ChainKeyError) as error:
        if created:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise StartupError(f"[ledger.chain] {error}") from None


def _open_ledger(
    config: TestbedConfig,
    run_dir: Path,
    run_id: str,
    store: RunStore,
    run_chain: RunChain | None,
    created: bool,
) -> RunLedger | None:
    """The run's ledger (None with `[ledger] enabled = false`); a key or KYC file in the keys
    folder that cannot be used stops the run before anything is recorded, naming the file."""
    if not config.ledger.enabled:
        return None
    try:
        return open_run_ledger(
            config,
            run_dir,
            run_id,
            run_dir / DB_FILE,
            on_finalised=run_chain.on_finalised if run_chain is not None else None,
        )
    except (OSError, ValueError) as error:  # KeyFileError, a KYC file, a folder not writable
        if run_chain is not None:
            run_chain.close()
        store.close("failed")
        if created:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise StartupError(f"[ledger] {error}") from None


def _open_chain(
    config: TestbedConfig,
    chain_node: tuple[str, LocalNode | None] | None,
    store: RunStore,
    run_dir: Path,
    run_id: str,
    created: bool,
) -> RunChain | None:
    """The run's contract deployed on the chain node (None without `[ledger.chain]`)."""
    if chain_node is None:
        return None
    from testbed.ledger.chain.artifact import ChainSetupError
    from testbed.ledger.chain.mirror import ChainRejected, ChainUnavailable
    from testbed.ledger.chain.run_chain import open_run_chain

    url, node = chain_node
    try:
        return open_run_chain(config.ledger.chain, url, node, run_dir / DB_FILE, run_id)
    except (ChainUnavailable, ChainRejected, ChainSetupError) as error:
        store.close("failed")
        if created:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise StartupError(f"[ledger.chain] {error}") from None
