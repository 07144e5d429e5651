"""`testbed broker`, `testbed operator`, `testbed agent` and `testbed platform init|certs`: the
trading platform's roles as processes (docs/platform.md)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from testbed.cli import app

if TYPE_CHECKING:
    from testbed.config import TestbedConfig
    from testbed.platform.deployment import PlatformDir
    from testbed.platform.link import BrokerAddress

console = Console()
platform_app = typer.Typer(help="Set up the trading platform's keys, passwords and certificates.")
app.add_typer(platform_app, name="platform")

ExitWithParent = Annotated[
    bool, typer.Option("--exit-with-parent", help="Stop when the starting process ends.")
]
ConfigOption = Annotated[
    Path, typer.Option("--config", help="Experiment TOML file (its peers and [platform]).")
]
DirOption = Annotated[
    Path | None,
    typer.Option("--dir", help="Platform folder (default: the configuration's platform.dir)."),
]


def _fail(message: str) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    return typer.Exit(code=2)


def _load(config_file: Path, folder: Path | None) -> tuple[TestbedConfig, PlatformDir]:
    from testbed.config import ConfigError, load_config
    from testbed.platform.deployment import PlatformDir

    try:
        config = load_config(config_file)
    except ConfigError as error:
        raise _fail(str(error)) from None
    return config, PlatformDir.for_config(folder or config.platform.dir, config)


def _address(platform_dir: PlatformDir, host: str | None, port: int | None) -> BrokerAddress:
    try:
        address = platform_dir.address()
    except (FileNotFoundError, ValueError) as error:
        raise _fail(str(error)) from None
    updates = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    return address.model_copy(update=updates) if updates else address


@platform_app.command("init")
def init_command(config_file: ConfigOption, folder: DirOption = None) -> None:
    """Make every peer's key pair and every user's broker password (kept once made)."""
    config, platform_dir = _load(config_file, folder)
    try:
        users = platform_dir.prepare(list(config.peers))
    except ValueError as error:
        raise _fail(str(error)) from None
    console.print(
        f"{platform_dir.root}: {len(config.peers)} peers with key pairs, {len(users)} broker "
        f"users; give each peer its folder {platform_dir.keys_dir}/peers/<peer>/ and broker.json"
    )


@platform_app.command("certs")
def certs_command(
    out: Annotated[Path, typer.Option("--out", help="Folder for ca.crt, server.crt, server.key.")],
    host: Annotated[
        list[str], typer.Option("--host", help="Name or IP address clients use for the broker.")
    ] = ["127.0.0.1", "localhost"],  # noqa: B006
) -> None:
    """A small CA and a broker certificate signed by it (the same as docs/platform.md's openssl)."""
    from testbed.platform.tls import make_certificates

    files = make_certificates(out, host)
    console.print(f"CA {files.ca_file}, broker certificate {files.cert_file}, key {files.key_file}")


@platform_app.command("page")
def page_command(
    folder: Annotated[
        Path, typer.Option("--dir", help="Platform folder: broker.json and keys/peers/<peer>/.")
    ] = Path("platform"),
    keys_dir: Annotated[
        Path | None, typer.Option("--keys-dir", help="The keys folder, when not <dir>/keys.")
    ] = None,
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port, 127.0.0.1.")] = 8502,
) -> None:
    """Serve the participants' page (sign in, place a bid or an ask, see orders, trades, wallet)."""
    import os
    import sys

    page = Path(__file__).resolve().parents[1] / "dashboards" / "participant.py"
    os.environ["TESTBED_PLATFORM_DIR"] = str(folder.resolve())
    if keys_dir is not None:
        os.environ["TESTBED_KEYS_DIR"] = str(keys_dir.resolve())
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(page),
        "--server.headless=true",
        "--server.address=127.0.0.1",
        f"--server.port={port}",
        "--browser.gatherUsageStats=false",
    ]
    console.print(f"participants' page: http://127.0.0.1:{port} (platform {folder.resolve()})")
    sys.stdout.flush()
    os.execv(command[0], command)  # the server replaces this process


@app.command("broker")
def broker_command(
    config_file: ConfigOption,
    folder: DirOption = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: platform.broker_port).")] = None,
) -> None:
    """Run the platform's mosquitto in the foreground (passwords, ACL, persistence, TLS from the
    configuration); writes the folder's broker.json."""
    import time

    from testbed.platform.broker import BrokerStartError, MosquittoBroker
    from testbed.platform.processes import tls_files

    config, platform_dir = _load(config_file, folder)
    try:
        users = platform_dir.prepare(list(config.peers))
        broker = MosquittoBroker(
            platform_dir.broker_dir,
            users,
            host=host or config.platform.broker_host,
            port=port or config.platform.broker_port or None,
            tls=tls_files(config),
        )
        broker.write_files()
        address = broker.start()
    except (BrokerStartError, FileNotFoundError, ValueError) as error:
        raise _fail(str(error)) from None
    platform_dir.write_address(address)
    console.print(f"mosquitto on {address.host}:{address.port} (tls {address.tls}); Ctrl-C stops")
    try:
        while broker.process is not None and broker.process.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        broker.stop()


@app.command("operator")
def operator_command(
    config_file: ConfigOption,
    folder: DirOption = None,
    gate_wait_s: Annotated[
        float | None, typer.Option(help="Wall seconds to wait for online agents at a gate.")
    ] = None,
    broker_host: Annotated[str | None, typer.Option(help="Override broker.json's host.")] = None,
    broker_port: Annotated[int | None, typer.Option(help="Override broker.json's port.")] = None,
    exit_with_parent: ExitWithParent = False,
) -> None:
    """Serve as the market operator: order intake, gate closure, clearing, settlement."""
    from testbed.platform.link import LinkRefused
    from testbed.platform.roles import serve_operator
    from testbed.platform.settings import gate_wait_for

    config, platform_dir = _load(config_file, folder)
    address = _address(platform_dir, broker_host, broker_port)
    try:
        asyncio.run(
            serve_operator(
                config,
                platform_dir,
                address,
                gate_wait_s or gate_wait_for(config.platform.gate_wait_s, config.clock.mode),
                exit_with_parent,
            )
        )
    except LinkRefused as error:
        raise _fail(str(error)) from None


@app.command("agent")
def agent_command(
    config_file: ConfigOption,
    peer: Annotated[
        list[str], typer.Option("--peer", help="Peer id; repeat for several agents per process.")
    ],
    folder: DirOption = None,
    stats: Annotated[
        Path | None, typer.Option(help="Write each agent's result latencies here at the end.")
    ] = None,
    broker_host: Annotated[str | None, typer.Option(help="Override broker.json's host.")] = None,
    broker_port: Annotated[int | None, typer.Option(help="Override broker.json's port.")] = None,
    exit_with_parent: ExitWithParent = False,
) -> None:
    """Run peers' smart agents, each with its own broker session, credentials and key."""
    from testbed.platform.link import LinkRefused
    from testbed.platform.roles import serve_agents

    config, platform_dir = _load(config_file, folder)
    unknown = [p for p in peer if p not in config.peers]
    if unknown:
        raise _fail(
            f"--peer {', '.join(unknown)}: not in {config_file} (peers: {', '.join(config.peers)})"
        )
    address = _address(platform_dir, broker_host, broker_port)
    try:
        asyncio.run(
            serve_agents(config, platform_dir, address, list(peer), stats, exit_with_parent)
        )
    except (LinkRefused, ValueError) as error:
        raise _fail(str(error)) from None
