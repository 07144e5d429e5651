"""The experiment engine: the six steps of every market interval, driven by one clock.

Every control step: read every device and meter (a frozen process image), record it, then let the
dispatchers move the flexible devices so each PCC follows its contracted power, within the safety
limits. At gate closure of each interval the agents bid and the book is cleared; at each interval's
end the metered energy is settled against the trades. Everything goes out as documents to the sinks.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from peers.interface import Agent, DeviceState, IntervalObservation
from testbed.channels import Channel
from testbed.clock import Clock
from testbed.config import TestbedConfig
from testbed.devices import PeerDevices
from testbed.dispatch import StorageCommand
from testbed.documents import (
    AgentPlan,
    Interlock,
    RunFinished,
    RunStarted,
    Sample,
    Settlement,
    Sink,
)
from testbed.summary import RunTotals
from testbed.trading import InProcessMarket, IntervalMarket, MarketPort

if TYPE_CHECKING:
    from testbed.ledger.run_ledger import RunLedger

ProgressCallback = Callable[[int, int, datetime], None]


class StartupError(RuntimeError):
    """The run cannot start (a device unreachable, a clock that does not answer)."""


@dataclass(slots=True)
class _IntervalAccount:
    """What one peer's devices did during the current interval."""

    start_import_kwh: float | None = None
    start_export_kwh: float | None = None
    load_kwh: float = 0.0
    pv_kwh: float = 0.0


@dataclass(slots=True)
class _ActiveInterlocks:
    """Limits that bit, reported once when they start biting and once when they stop."""

    active: dict[tuple[str, str, str], str] = field(default_factory=dict)

    def update(
        self, peer: str, device: str, kinds: Mapping[str, str]
    ) -> list[tuple[str, str, str, str]]:
        """(kind, reason, action) changes for this device given the kinds biting now."""
        changes = []
        for kind, reason in kinds.items():
            key = (peer, device, kind)
            if key not in self.active:
                changes.append((kind, reason, "limited"))
            self.active[key] = reason
        for key in [k for k in self.active if k[0] == peer and k[1] == device]:
            if key[2] not in kinds and key[2] in _LIMIT_KINDS:
                del self.active[key]
                changes.append((key[2], "back within limits", "cleared"))
        return changes


_LIMIT_KINDS = {"soc_limit", "power_limit", "ramp_limit", "mobility", "invalid_request"}


class Engine:
    """Runs one experiment; see the module docstring."""

    def __init__(
        self,
        config: TestbedConfig,
        run_id: str,
        clock: Clock,
        peers: Mapping[str, PeerDevices],
        agents: Mapping[str, Agent],
        sinks: Sequence[Sink],
        progress: ProgressCallback | None = None,
        market: MarketPort | None = None,
        ledger: RunLedger | None = None,
    ) -> None:
        self.config = config
        self.run_id = run_id
        self.clock = clock
        self.peers = dict(peers)
        self.agents = dict(agents)
        self.sinks = list(sinks)
        self.progress = progress
        self.ledger = ledger
        # Where orders clear and intervals settle: the agents in this process by default, or the
        # trading platform's operator and agent processes (testbed.platform).
        self.market = (
            market if market is not None else InProcessMarket(config, self.agents, ledger=ledger)
        )
        self.dt_s = config.control.step_s
        self.steps_per_interval = round(config.market.interval_s / self.dt_s)
        self.gate_closure_steps = math.ceil(config.market.gate_closure_s / self.dt_s)
        self.totals = RunTotals(list(self.peers))
        self.stop_requested = False
        self.now: datetime | None = None
        self._interlocks = _ActiveInterlocks()
        self._accounts = {peer: _IntervalAccount() for peer in self.peers}
        self._markets: dict[int, IntervalMarket] = {}
        self.timings: dict[str, float] = dict.fromkeys(
            ("read_s", "record_s", "trade_settle_s", "dispatch_s", "advance_s", "steps"), 0.0
        )

    # -- documents ----------------------------------------------------------------------------

    def _emit(self, doc: Any) -> None:
        for sink in self.sinks:
            sink.emit(doc)

    def _interlock(self, peer: str, device: str, kind: str, reason: str, action: str) -> None:
        assert self.now is not None
        self.totals.count_interlock(kind, action)
        self._emit(Interlock(self.now, peer, device, kind, reason, action))

    # -- the run ------------------------------------------------------------------------------

    async def run(self, hours: float) -> RunFinished:
        """Run `hours` of experiment (whole intervals); returns the final document."""
        n_intervals = max(1, round(hours * 3600.0 / self.config.market.interval_s))
        n_steps = n_intervals * self.steps_per_interval
        start = await self._start()
        status = "finished"
        try:
            last_interval = await self._loop(start, n_intervals, n_steps)
            if self.stop_requested and last_interval < n_intervals:
                status = "interrupted"
        except BaseException:
            status = "failed"
            raise
        finally:
            finished = await self._finish(status)
        return finished

    async def _start(self) -> datetime:
        try:
            start = await self.clock.start()
        except (OSError, TimeoutError) as error:
            raise StartupError(f"the clock does not answer: {error}") from error
        self.now = start
        failures = []
        for peer in self.peers.values():
            for channel in peer.channels:
                try:
                    await channel.connect()
                except Exception as error:
                    failures.append(f"{channel.peer}/{channel.device}: {error}")
        if failures:
            await self._close_all()
            raise StartupError("cannot reach " + "; ".join(failures))
        self._emit(RunStarted(self.run_id, start, self.config.to_toml_dict()))
        if self.ledger is not None:
            for peer, reason in self.ledger.start(start).items():
                self._interlock(peer, "registry", "registration_refused", reason, "no_trade")
        return start

    async def _loop(self, start: datetime, n_intervals: int, n_steps: int) -> int:
        spi = self.steps_per_interval
        interval = 0
        timings = self.timings
        clock = time.perf_counter
        for step in range(n_steps + 1):
            self.now = start + timedelta(seconds=step * self.dt_s)
            t0 = clock()
            await self._read_all(step)
            t1 = clock()
            self._record(step)
            t2 = clock()
            if step % spi == 0:
                if step > 0:
                    await self._settle(interval, start)
                    interval += 1
                if step == n_steps or self.stop_requested:
                    return interval
                if interval not in self._markets:
                    await self._trade(interval, start, step)
                self._open_interval()
            following = interval + 1
            if following < n_intervals and step == following * spi - self.gate_closure_steps:
                await self._trade(following, start, step)
            t3 = clock()
            await self._dispatch(step, interval)
            self._report_channel_events()
            if self.progress is not None:
                self.progress(step, n_steps, self.now)
            t4 = clock()
            self.now = await self.clock.advance(self.dt_s)
            t5 = clock()
            timings["read_s"] += t1 - t0
            timings["record_s"] += t2 - t1
            timings["trade_settle_s"] += t3 - t2
            timings["dispatch_s"] += t4 - t3
            timings["advance_s"] += t5 - t4
            timings["steps"] += 1
        return interval

    async def _finish(self, status: str) -> RunFinished:
        for peer in self.peers.values():
            for channel in peer.channels:
                if channel.is_actuator and not channel.lost:
                    await channel.safe_state("end of the run")
        self._report_channel_events()
        await self._close_all()
        with_suppressed = self.now or datetime.now().astimezone()
        if self.ledger is not None:
            self.ledger.close(self.now, status)
        finished = RunFinished(
            run_id=self.run_id,
            time=with_suppressed,
            status=status,
            summary=self.totals.summary(self.config.market.mechanism, self.config.prices.currency),
        )
        self._emit(finished)
        return finished

    async def _close_all(self) -> None:
        for peer in self.peers.values():
            for channel in peer.channels:
                await channel.close()
        await self.clock.close()

    # -- steps --------------------------------------------------------------------------------

    async def _read_all(self, step: int) -> None:
        channels: list[Channel] = [c for p in self.peers.values() for c in p.channels]
        await asyncio.gather(*(channel.read(step) for channel in channels))
        for channel in channels:
            if channel.newly_lost:
                channel.newly_lost = False
                await channel.safe_state("device lost")

    def _record(self, step: int) -> None:
        assert self.now is not None
        for peer in self.peers.values():
            for channel in peer.channels:
                if channel.snapshot_step == step:
                    self._emit(Sample(self.now, channel.peer, channel.device, peer.values(channel)))
            if step > 0:
                image = peer.image(step)
                account = self._accounts[peer.peer]
                if image.house_load_kw is not None:
                    account.load_kwh += image.house_load_kw * self.dt_s / 3600.0
                if image.pv_kw is not None:
                    account.pv_kwh += image.pv_kw * self.dt_s / 3600.0
                self.totals.integrate(peer.peer, image, self.dt_s)
            self.totals.observe_counters(peer.peer, peer.image(step))

    async def _trade(self, interval: int, start: datetime, step: int) -> None:
        interval_start = start + timedelta(seconds=interval * self.config.market.interval_s)
        states = {
            name: peer.device_state(step, self.now or interval_start)
            for name, peer in self.peers.items()
        }
        states = {
            name: state if state is not None else DeviceState(time=self.now or interval_start)
            for name, state in states.items()
        }
        market = await self.market.trade(interval_start, states)
        self._markets[interval] = market
        self._emit(market.book)
        self._emit(market.clearing)
        if self.ledger is not None:
            self.ledger.operator.record_clearing(self.now or interval_start, market.clearing)
        self.totals.count_clearing(market.clearing)
        for peer, decision in market.decisions.items():
            self._emit(AgentPlan(interval_start, peer, self.market.agent_kind(peer), decision))
            if decision.fallback_reason:
                self._interlock(
                    peer, "agent", "agent_fallback", decision.fallback_reason, "no_trade"
                )

    def _open_interval(self) -> None:
        for name, peer in self.peers.items():
            image = peer.image(None)
            self._accounts[name] = _IntervalAccount(image.import_kwh, image.export_kwh)

    async def _settle(self, interval: int, start: datetime) -> None:
        interval_start = start + timedelta(seconds=interval * self.config.market.interval_s)
        metered: dict[str, float] = {}
        observations: dict[str, IntervalObservation] = {}
        for name, peer in self.peers.items():
            image = peer.image(None)
            account = self._accounts[name]
            if None in (
                image.import_kwh,
                image.export_kwh,
                account.start_import_kwh,
                account.start_export_kwh,
            ):
                self._interlock(
                    name,
                    "meter",
                    "unmetered_interval",
                    "no meter reading at an interval end",
                    "settled_as_zero",
                )
                metered[name] = 0.0
                continue
            metered[name] = (image.export_kwh - account.start_export_kwh) - (
                image.import_kwh - account.start_import_kwh
            )
            observations[name] = IntervalObservation(
                interval_start=interval_start,
                interval_s=self.config.market.interval_s,
                load_kwh=max(account.load_kwh, 0.0),
                pv_kwh=max(account.pv_kwh, 0.0),
                net_kwh=metered[name],
                soc_pct=image.battery_soc_pct,
                ev_soc_pct=image.ev_soc_pct,
                ev_plugged=image.ev_plugged,
            )
        market = self._markets.pop(interval)
        settlements: list[Settlement] = await self.market.settle(
            interval_start, market.clearing.trades, metered, observations
        )
        for settlement in settlements:
            self._emit(settlement)
            self.totals.add_settlement(settlement)
        if self.ledger is not None:
            self.ledger.operator.record_settlement(
                self.now or interval_start, interval_start, settlements
            )

    async def _dispatch(self, step: int, interval: int) -> None:
        market = self._markets.get(interval)
        commands = []
        for name, peer in self.peers.items():
            contract_kw = (
                market.contracted_kw(name, self.config.market.interval_s) if market else 0.0
            )
            commands.append(peer.dispatch(step, contract_kw, self.now))
        results = await asyncio.gather(*commands)
        for peer, result in zip(self.peers.values(), results, strict=True):
            if result is None:
                continue
            device, command = result
            self._report_limits(peer.peer, device, command)

    def _report_limits(self, peer: str, device: str, command: StorageCommand) -> None:
        kinds = {hit.kind: hit.reason for hit in command.hits}
        for kind, reason, action in self._interlocks.update(peer, device, kinds):
            self._interlock(peer, device, kind, reason, action)

    def _report_channel_events(self) -> None:
        for peer in self.peers.values():
            for channel in peer.channels:
                for event in channel.take_events():
                    self._interlock(
                        channel.peer, event.device, event.kind, event.reason, event.action
                    )
            for device, kind, reason, action in peer.take_events():
                self._interlock(peer.peer, device, kind, reason, action)
