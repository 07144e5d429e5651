"""Faults on the running platform: an agent process killed and restarted, and the broker
restarted, with the operator and the agents as real processes and this test as the controller
(synthetic device states and metering instead of a plant)."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from peers.interface import DeviceState, IntervalObservation
from testbed.config import TestbedConfig, load_config, parse_config
from testbed.documents import Settlement
from testbed.platform.controller_link import RemoteMarket
from testbed.platform.processes import PlatformProcesses, platform_processes
from testbed.trading import IntervalMarket

REPO = Path(__file__).resolve().parents[2]
START = datetime(2026, 3, 21, 6, 0, tzinfo=UTC)


def three_peers() -> TestbedConfig:
    data = load_config(REPO / "configs" / "emulated.toml").model_dump(mode="json")
    for peer in data["peers"].values():
        peer["agent"] = "baseline"
        peer.pop("agent_params", None)
    data["market"].update({"interval_s": 900.0, "gate_closure_s": 60.0})
    return parse_config(data)


class Controller:
    """Trades and settles interval after interval through the platform."""

    def __init__(self, config: TestbedConfig, market: RemoteMarket) -> None:
        self.config = config
        self.market = market
        self.interval = 0

    async def trade_and_settle(self) -> tuple[IntervalMarket, list[Settlement]]:
        start = START + timedelta(seconds=self.interval * self.config.market.interval_s)
        self.interval += 1
        gate = start - timedelta(seconds=self.config.market.gate_closure_s)
        states = {peer: DeviceState(time=gate, battery_soc_pct=60.0) for peer in self.config.peers}
        traded = await self.market.trade(start, states)
        metered = {peer: 0.1 for peer in self.config.peers}
        observations = {
            peer: IntervalObservation(start, self.config.market.interval_s, 0.3, net_kwh=0.1)
            for peer in self.config.peers
        }
        return traded, await self.market.settle(start, (), metered, observations)


async def until(condition, what: str, timeout_s: float = 60.0) -> None:
    """Wait for `condition()` (a guard against hanging, not a speed assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        assert loop.time() < deadline, f"{what} did not happen within {timeout_s} s"
        await asyncio.sleep(0.1)


async def scenario(config: TestbedConfig, platform: PlatformProcesses) -> None:
    market = RemoteMarket(config, platform.address, platform.controller_password())
    await market.start()
    try:
        await market.wait_for_agents(list(config.peers), 120.0)
        controller = Controller(config, market)
        first, _ = await controller.trade_and_settle()
        assert set(first.decisions) == {"A", "B", "C"}

        # C's agent dies without a goodbye: the broker publishes its last will, the run goes on
        platform.kill_agent(("C",))
        await until(lambda: "C" not in market.online, "C's last will")
        missed, settled = await controller.trade_and_settle()
        assert set(missed.decisions) == {"A", "B"}, "an interval without C's agent"
        assert {s.peer for s in settled} == {"A", "B", "C"}, "C is still metered and settled"

        # restarted, it rejoins at the next interval
        platform.start_agents(["C"])
        await market.wait_for_agents(["C"], 120.0)
        rejoined, _ = await controller.trade_and_settle()
        assert set(rejoined.decisions) == {"A", "B", "C"}, "C's agent back at the next interval"
        assert platform.exited() == []

        # the broker restarts between a clearing and its settlement: the settlement still comes
        # (sessions persist; the operator answers the repeated metering from its journal)
        start = START + timedelta(seconds=controller.interval * config.market.interval_s)
        before = await market.trade(
            start,
            {
                p: DeviceState(time=start - timedelta(seconds=60), battery_soc_pct=60.0)
                for p in config.peers
            },
        )
        controller.interval += 1
        await asyncio.to_thread(platform.broker.restart)
        settled = await market.settle(
            start,
            before.clearing.trades,
            {p: 0.1 for p in config.peers},
            {
                p: IntervalObservation(start, config.market.interval_s, 0.3, net_kwh=0.1)
                for p in config.peers
            },
        )
        assert {s.peer for s in settled} == {"A", "B", "C"}
        # each agent reconnects in its own time (slower on a loaded machine; until then its
        # status may be its last will): once every one says it is online, all trade again
        await market.wait_for_agents(list(config.peers), 120.0)
        after, _ = await controller.trade_and_settle()
        assert set(after.decisions) == {"A", "B", "C"}, "every agent back after the restart"
        assert platform.exited() == []

        # the operator dies before a gate and comes back: its gate still waits for the agents
        # online (the controller tells it who they are before it hears their status again), so
        # their orders are booked, not refused as late
        assert platform.operator is not None
        platform.operator.kill()
        platform.operator.wait(timeout=10)
        restart = asyncio.get_running_loop().call_later(3.0, platform.start_operator, 60.0)
        back, _ = await controller.trade_and_settle()
        restart.cancel()
        assert set(back.decisions) == {"A", "B", "C"}, "every agent's orders after the restart"
        assert {o.peer for o in back.book.orders} == {o.peer for o in after.book.orders}
        assert platform.exited() == []
    finally:
        await market.close()


def test_agent_killed_and_restarted_and_broker_restarted_mid_run(tmp_path: Path) -> None:
    config = three_peers()
    with platform_processes(config, tmp_path / "platform", gate_wait_s=60.0) as platform:
        asyncio.run(scenario(config, platform))
        journal = platform.folder.journal_path
    with sqlite3.connect(journal) as db:
        settled = db.execute("SELECT COUNT(*) FROM settlements").fetchone()[0]
    assert settled == 6, "every interval settled once in the operator's journal"
