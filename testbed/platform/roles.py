"""The roles' main loops, as `testbed operator`, `testbed agent` and the demo's controller run
them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable
from pathlib import Path

from testbed.config import TestbedConfig
from testbed.platform.agent_service import PeerAgentSession, run_sessions
from testbed.platform.controller_link import RemoteMarket
from testbed.platform.deployment import PlatformDir
from testbed.platform.link import BrokerAddress
from testbed.platform.operator import OperatorService
from testbed.trading import make_peer_agent


def _stop_on_signals(stop: asyncio.Event, exit_with_parent: bool = False) -> None:
    """SIGTERM or Ctrl-C sets `stop`; with `exit_with_parent`, so does the parent's end (a demo's
    children never outlive it)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if exit_with_parent:
        parent = os.getppid()

        async def watch() -> None:
            while os.getppid() == parent:
                await asyncio.sleep(1.0)
            stop.set()

        stop_watch = loop.create_task(watch())
        _background.add(stop_watch)


_background: set[asyncio.Task[None]] = set()


async def serve_operator(
    config: TestbedConfig,
    folder: PlatformDir,
    address: BrokerAddress,
    gate_wait_s: float,
    exit_with_parent: bool = False,
) -> None:
    """Serve as the market operator until SIGTERM or Ctrl-C."""
    operator = OperatorService(
        config,
        folder.registry(list(config.peers)),
        address,
        folder.password("operator"),
        folder.journal_path,
        gate_wait_s=gate_wait_s,
    )
    stop = asyncio.Event()
    _stop_on_signals(stop, exit_with_parent)
    stopper = asyncio.create_task(stop.wait())
    stopper.add_done_callback(lambda _: operator.stop())
    try:
        await operator.run()
    finally:
        stopper.cancel()


async def serve_agents(
    config: TestbedConfig,
    folder: PlatformDir,
    address: BrokerAddress,
    peers: list[str],
    stats_path: Path | None = None,
    exit_with_parent: bool = False,
) -> None:
    """Run these peers' agents, each with its own session, until SIGTERM or Ctrl-C."""
    sessions = [
        PeerAgentSession(
            peer,
            make_peer_agent(config, peer),
            folder.peer_key(peer),
            address,
            folder.password(peer),
        )
        for peer in peers
    ]
    stop = asyncio.Event()
    _stop_on_signals(stop, exit_with_parent)
    await run_sessions(sessions, stop, stats_path)


async def connect_controller(
    config: TestbedConfig,
    address: BrokerAddress,
    password: str,
    agents_timeout_s: float,
    on_online: Callable[[int, int], None] | None = None,
) -> RemoteMarket:
    """The controller's market port, once every configured agent is online (`on_online` hears
    how many are, as that changes)."""
    market = RemoteMarket(config, address, password)
    await market.start()
    try:
        await market.wait_for_agents(list(config.peers), agents_timeout_s, on_online)
    except BaseException:
        await market.close()
        raise
    return market
