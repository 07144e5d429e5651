"""`python -m hil_sim`: serve the emulated plant of a site on loopback until Ctrl-C or SIGTERM.

    python -m hil_sim [--config plant.toml] [--site SITE.toml] [--seed N]
                      [--endpoints-json FILE] [--realtime] [--step S]
                      [--host 127.0.0.1] [--loop auto|asyncio|uvloop] [--exit-with-parent]

The site defaults to the IIT Gandhinagar three-peer testbed (labspec/sites/iitgn.toml).

Prints every endpoint, writes them as JSON when asked (see labspec.endpoints), and stops cleanly
(servers closed, endpoints file removed) on SIGINT or SIGTERM. A configuration problem prints one
line naming the key, the value and what is allowed, and exits with status 2.

The event loop is uvloop when it is installed (`--loop auto`, the default: about 15 % less CPU per
lockstep step), else asyncio's own; `--loop asyncio` forces the latter, `--loop uvloop` fails when
uvloop is missing.

`--exit-with-parent` stops the plant when the process that started it is gone (a `testbed demo`
killed with SIGKILL leaves no plant behind; the plant runs in its own session, so a Ctrl-C in the
terminal reaches the controller alone).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError

from hil_sim.config import ConfigError, PlantConfig, describe_validation_error
from hil_sim.servers.settings import ServersConfig, check_secrets, load_config
from labspec.endpoints import ModbusEndpoint, OpcUaEndpoint, PlantEndpoints

EXIT_CONFIG_ERROR = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hil_sim",
        description="Serve the emulated P2P testbed plant (Modbus TCP/SunSpec, OPC UA, SCPI).",
    )
    parser.add_argument("--config", type=Path, help="TOML file with [plant] and [servers] tables")
    parser.add_argument("--site", type=Path, help="site file (default: the IIT Gandhinagar site)")
    parser.add_argument("--seed", type=int, help="seed of the plant's profiles (default 0)")
    parser.add_argument("--endpoints-json", type=Path, help="write the endpoints to this file")
    parser.add_argument(
        "--realtime", action="store_true", help="free-running: step the plant with the wall clock"
    )
    parser.add_argument(
        "--step", type=float, metavar="S", help="realtime step in seconds (default 1)"
    )
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--log-level", default="WARNING", help="logging level (default WARNING)")
    parser.add_argument(
        "--exit-with-parent",
        action="store_true",
        help="stop when the process that started the plant is gone",
    )
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="event loop: uvloop when installed (auto, the default), or asyncio's own",
    )
    return parser


def loop_factory(choice: str = "auto") -> tuple[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The event loop to serve on: (name, factory). "auto" takes uvloop when it is installed."""
    if choice in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise ConfigError("--loop = 'uvloop': uvloop is not installed") from None
        else:
            return "uvloop", uvloop.new_event_loop
    return "asyncio", asyncio.new_event_loop


def _settings(args: argparse.Namespace) -> tuple[PlantConfig, ServersConfig]:
    if args.config is not None:
        plant, servers = load_config(args.config)
    else:
        plant, servers = PlantConfig(), ServersConfig()
    if args.site is not None or args.seed is not None:
        data: dict[str, object] = {"seed": plant.seed, "start": plant.start, "site": plant.site}
        if args.site is not None:
            data["site"] = args.site
        if args.seed is not None:
            data["seed"] = args.seed
        plant = PlantConfig.from_mapping(data, prefix="--")
    overrides: dict[str, object] = {}
    if args.realtime:
        overrides["realtime"] = True
    if args.step is not None:
        overrides["step_s"] = args.step
    if args.host is not None:
        overrides["host"] = args.host
    if overrides:
        try:
            servers = ServersConfig.model_validate({**servers.model_dump(), **overrides})
        except ValidationError as exc:
            message = describe_validation_error(exc, "servers", ServersConfig)
            for key, option in (("servers.step_s", "--step"), ("servers.host", "--host")):
                message = message.replace(key, option)
            raise ConfigError(message) from None
    check_secrets(servers)
    return plant, servers


def _describe(endpoints: PlantEndpoints, start: str) -> str:
    lines = [f"hil_sim serving ({endpoints.mode}, plant time {start}, pid {endpoints.pid})"]
    for name, ep in endpoints.devices.items():
        if isinstance(ep, ModbusEndpoint):
            lines.append(
                f"  {name:<11} modbus  {ep.host}:{ep.port}  unit {ep.unit}  base {ep.base_address}"
            )
        elif isinstance(ep, OpcUaEndpoint):
            lines.append(f"  {name:<11} opcua   {ep.url}  security {ep.security}")
        else:
            lines.append(f"  {name:<11} scpi    {ep.resource}")
    lines.append(f"  {'control':<11} json    {endpoints.control.host}:{endpoints.control.port}")
    return "\n".join(lines)


PARENT_CHECK_S = 1.0


async def _watch_parent(stop: asyncio.Event) -> None:
    """Set `stop` once the parent process is gone (this process is handed to another parent)."""
    parent = os.getppid()
    while os.getppid() == parent:
        await asyncio.sleep(PARENT_CHECK_S)
    logging.getLogger("hil_sim").warning("the process that started the plant is gone; stopping")
    stop.set()


async def _serve(
    plant: PlantConfig,
    servers: ServersConfig,
    endpoints_json: Path | None,
    exit_with_parent: bool = False,
) -> None:
    from hil_sim.runner import HilSim

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    watcher = loop.create_task(_watch_parent(stop)) if exit_with_parent else None
    sim = HilSim(plant, servers)
    endpoints = await sim.start()
    try:
        if endpoints_json is not None:
            endpoints.write(endpoints_json)
        print(_describe(endpoints, sim.now.isoformat()), flush=True)
        await stop.wait()
    finally:
        if watcher is not None:
            watcher.cancel()
        await sim.stop()
        if endpoints_json is not None:
            endpoints_json.unlink(missing_ok=True)
    print("hil_sim stopped", flush=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM while starting up: stop like Ctrl-C


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    level = logging.getLevelName(args.log_level.upper())
    if not isinstance(level, int):
        print(f"hil_sim: --log-level = {args.log_level!r}: must be one of DEBUG, INFO, WARNING, "
              "ERROR", file=sys.stderr)  # fmt: skip
        return EXIT_CONFIG_ERROR
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        plant, servers = _settings(args)
        loop_name, new_loop = loop_factory(args.loop)
        logging.getLogger("hil_sim").info("serving on the %s event loop", loop_name)
        with asyncio.Runner(loop_factory=new_loop) as runner:
            runner.run(_serve(plant, servers, args.endpoints_json, args.exit_with_parent))
    except KeyboardInterrupt:
        print("hil_sim stopped while starting", file=sys.stderr)
        return 0
    except ConfigError as exc:
        print(f"hil_sim: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    except OSError as exc:
        print(f"hil_sim: cannot serve: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
