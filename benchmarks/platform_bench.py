"""Benchmark: the trading platform with 10, 100 and 1,000 agents on this machine.

    python benchmarks/platform_bench.py [--agents 10,100,1000] [--intervals 5]
        [--per-process 250] [--agent baseline] [--json FILE]

For each size: the platform's own mosquitto on a free loopback port, the market operator
(`testbed operator`) and the agents (`testbed agent`, up to `--per-process` agents to a process,
each with its own MQTT session, credentials and signing key), all as in `testbed demo`; this
process is the controller (the engine's market port over the broker, `RemoteMarket`) with
synthetic device states and metering instead of a plant. Peers are copies of the three
configured peers (prosumer, prosumer, consumer) with the `baseline` agent (rules: the platform's
cost, not an optimiser's, is what is measured). One warm-up interval, then `--intervals` measured.

Printed per size:
- gate closure to result: wall seconds from the operator closing the gate (its clock) to each
  agent holding its own result (the agent's clock; the same machine), p50, p99 and max over every
  agent and measured interval, and the median over intervals of the slowest agent;
- controller's gate request to clearing report, and metering to settlement report (median);
- messages through the broker: PUBLISH messages received and sent by mosquitto per measured
  interval and per second of the measured window (`$SYS/broker/publish/messages/*`);
- memory: resident memory (RSS) of the agent processes per agent, of the operator and of the
  broker.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
)

import aiomqtt  # noqa: E402

from peers.interface import DeviceState, IntervalObservation  # noqa: E402
from testbed.config import TestbedConfig, load_config, parse_config  # noqa: E402
from testbed.platform.controller_link import RemoteMarket  # noqa: E402
from testbed.platform.processes import groups, platform_processes  # noqa: E402

START = datetime(2026, 3, 21, 6, 0, tzinfo=UTC)  # 11:30 IST: PV up, trades clear


def many_peers(n: int, agent: str, per_process: int) -> TestbedConfig:
    """The emulated configuration with `n` peers, copies of A, B and C in turn."""
    data = load_config(REPO / "configs" / "emulated.toml").model_dump(
        mode="json", exclude_none=True
    )
    base = data["peers"]
    names = list(base)
    peers = {}
    for i in range(n):
        peer = copy.deepcopy(base[names[i % len(names)]])
        peer["agent"] = agent
        peer.pop("agent_params", None)
        peers[f"p{i:04d}"] = peer
    data["peers"] = peers
    data["market"].update({"interval_s": 900.0, "gate_closure_s": 60.0})
    data["platform"] = {
        "gate_wait_s": 120.0,
        "agents_per_process": per_process,
        "start_timeout_s": 600.0,
    }
    return parse_config(data)


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class BrokerCounters:
    """mosquitto's PUBLISH counters from `$SYS` (updated every second: sys_interval 1)."""

    TOPICS = ("$SYS/broker/publish/messages/received", "$SYS/broker/publish/messages/sent")

    def __init__(self, host: str, port: int, password: str) -> None:
        self.client = aiomqtt.Client(host, port, username="monitor", password=password)
        self.values: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> BrokerCounters:
        await self.client.__aenter__()
        for topic in self.TOPICS:
            await self.client.subscribe(topic)
        self._task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        async for message in self.client.messages:
            self.values[str(message.topic)] = int(bytes(message.payload or b"0"))

    async def snapshot(self) -> tuple[int, int]:
        await asyncio.sleep(2.2)  # two $SYS periods: the counters include what just happened
        received, sent = (self.values.get(topic, 0) for topic in self.TOPICS)
        return received, sent

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.client.__aexit__(None, None, None)


def states_at(config: TestbedConfig, moment: datetime) -> dict[str, DeviceState]:
    return {peer: DeviceState(time=moment, battery_soc_pct=60.0) for peer in config.peers}


async def drive(config: TestbedConfig, platform: Any, intervals: int) -> dict[str, Any]:
    """Trade and settle warm-up + `intervals` intervals as the controller."""
    market = RemoteMarket(config, platform.address, platform.controller_password())
    await market.start()
    started = time.monotonic()
    await market.wait_for_agents(list(config.peers), config.platform.start_timeout_s or 600.0)
    online_s = time.monotonic() - started
    gate_s: list[float] = []
    settle_s: list[float] = []
    trades = 0
    async with BrokerCounters(
        platform.address.host, platform.address.port, platform.folder.password("monitor")
    ) as counters:
        before: tuple[int, int] | None = None
        window_start = 0.0
        for k in range(intervals + 1):
            if k == 1:
                before = await counters.snapshot()
                window_start = time.monotonic()
            interval_start = START + timedelta(seconds=k * config.market.interval_s)
            gate = interval_start - timedelta(seconds=config.market.gate_closure_s)
            t0 = time.monotonic()
            traded = await market.trade(interval_start, states_at(config, gate))
            t1 = time.monotonic()
            trades += len(traded.clearing.trades)
            metered = {peer: kwh for peer, kwh in traded.contracted_kwh.items()}
            observations = {
                peer: IntervalObservation(
                    interval_start=interval_start,
                    interval_s=config.market.interval_s,
                    load_kwh=0.3,
                    net_kwh=metered[peer],
                )
                for peer in config.peers
            }
            await market.settle(interval_start, traded.clearing.trades, metered, observations)
            t2 = time.monotonic()
            if k >= 1:
                gate_s.append(t1 - t0)
                settle_s.append(t2 - t1)
        window_s = time.monotonic() - window_start
        after = await counters.snapshot()
    await market.close()
    assert before is not None
    received = after[0] - before[0]
    sent = after[1] - before[1]
    return {
        "online_s": online_s,
        "gate_to_report_s": statistics.median(gate_s),
        "metering_to_settlement_s": statistics.median(settle_s),
        "trades": trades,
        "publish_received_per_interval": received / intervals,
        "publish_sent_per_interval": sent / intervals,
        "publish_per_s": (received + sent) / window_s,
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def run_size(
    n: int, intervals: int, per_process: int, agent: str, keep: Path | None
) -> dict[str, Any]:
    config = many_peers(n, agent, per_process)
    with tempfile.TemporaryDirectory(prefix=f"platform-bench-{n}-") as folder:
        root = Path(keep / f"agents-{n}") if keep is not None else Path(folder)
        stats_dir = root / "stats"
        stats_dir.mkdir(parents=True)
        t0 = time.monotonic()
        with platform_processes(config, root, start_agents=False) as platform:
            for group in groups(list(config.peers), per_process):
                platform.start_agents(group, stats_dir)
            result = asyncio.run(drive(config, platform, intervals))
            agent_pids = [p.pid for p in platform.agents.values()]
            agent_rss = sum(rss_kib(pid) for pid in agent_pids)
            operator_rss = rss_kib(platform.operator.pid) if platform.operator else 0
            broker = platform.broker.process
            broker_rss = rss_kib(broker.pid) if broker is not None else 0
            processes = len(agent_pids)
        total_s = time.monotonic() - t0
        latencies: list[float] = []
        slowest: dict[int, float] = {}
        for path in stats_dir.glob("*.json"):
            for stats in json.loads(path.read_text()).values():
                measured = stats["result_latency_s"][1:]  # the warm-up interval left out
                latencies.extend(measured)
                for k, value in enumerate(measured):
                    slowest[k] = max(slowest.get(k, 0.0), value)
    return {
        "agents": n,
        "agent_processes": processes,
        "results": len(latencies),
        "p50_s": percentile(latencies, 0.50),
        "p99_s": percentile(latencies, 0.99),
        "max_s": max(latencies),
        "all_agents_median_s": statistics.median(slowest.values()),
        "agent_rss_per_agent_mib": agent_rss / n / 1024,
        "agent_rss_per_process_mib": agent_rss / max(processes, 1) / 1024,
        "operator_rss_mib": operator_rss / 1024,
        "broker_rss_mib": broker_rss / 1024,
        "total_s": total_s,
        **result,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", default="10,100,1000")
    parser.add_argument("--intervals", type=int, default=5)
    parser.add_argument("--per-process", type=int, default=250)
    parser.add_argument("--agent", default="baseline")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", type=Path, help="Keep the platform folders (logs) here.")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    rows = []
    for n in (int(x) for x in args.agents.split(",")):
        row = run_size(n, args.intervals, args.per_process, args.agent, args.keep)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"load average after: {os.getloadavg()}")
    print()
    print(
        "| agents | processes | gate→result p50 s | p99 s | max s | slowest agent (median) s "
        "| gate request→report s | metering→settlement s | PUBLISH in/out per interval "
        "| PUBLISH/s | RSS per agent MiB | operator MiB | broker MiB |"
    )
    print("|" + "---:|" * 13)
    for r in rows:
        print(
            f"| {r['agents']:,} | {r['agent_processes']} | {r['p50_s']:.3f} | {r['p99_s']:.3f} "
            f"| {r['max_s']:.3f} | {r['all_agents_median_s']:.3f} | {r['gate_to_report_s']:.3f} "
            f"| {r['metering_to_settlement_s']:.3f} | {r['publish_received_per_interval']:,.0f} / "
            f"{r['publish_sent_per_interval']:,.0f} | {r['publish_per_s']:,.0f} "
            f"| {r['agent_rss_per_agent_mib']:.2f} | {r['operator_rss_mib']:.0f} "
            f"| {r['broker_rss_mib']:.0f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
