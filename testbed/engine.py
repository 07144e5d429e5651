"""The experiment engine: the six steps of every market interval, driven by one clock.

Every control step: read every device and meter (a frozen process image), let the dispatchers
move the flexible devices so each PCC follows its position (the contract plus the grid import its
agent's plan accepted, `testbed.dispatch.pcc_target_kw`), within the safety limits, and advance
the clock; the step's samples are recorded while the plant advances (at an interval's boundary,
before the next interval opens). At gate closure of each interval the agents bid and the book is
cleared; at each interval's end the metered energy is settled against the trades, from the
meters' energy registers at the boundaries (`testbed.metering`: a boundary a meter missed is
filled from its registers once it reads again, so a peer's settlement can come a few steps or
intervals late, never as zero). The summary counts the intervals that were delivered and the
settlements that were made. Everything goes out as documents to the sinks.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from instruments.device import RegisterBreak
from peers.interface import Agent, DeviceState, IntervalObservation
from testbed.clock import Clock
from testbed.config import TestbedConfig
from testbed.devices import AnyChannel, PeerDevices, PeerImage
from testbed.dispatch import StorageCommand, pcc_target_kw
from testbed.documents import (
    AgentPlan,
    Document,
    Interlock,
    RunFinished,
    RunStarted,
    Sample,
    Settlement,
    Sink,
)
from testbed.frozen import RESPONSE_STEPS
from testbed.metering import BoundaryReading, RegisterLog
from testbed.summary import RunTotals
from testbed.trading import InProcessMarket, IntervalMarket, MarketPort

if TYPE_CHECKING:
    from testbed.ledger.run_ledger import RunLedger

ProgressCallback = Callable[[int, int, datetime], None]


class StartupError(RuntimeError):
    """The run cannot start (a device unreachable, a clock that does not answer)."""


# An interval is settled this many steps after its end, so that a reading found frozen in the
# meantime is not taken for the boundary (unless the run ends first).
SETTLE_AFTER_STEPS = RESPONSE_STEPS + 1


@dataclass(slots=True)
class _IntervalAccount:
    """What one peer's devices did during one interval."""

    load_kwh: float = 0.0
    pv_kwh: float = 0.0
    end_image: PeerImage | None = None  # the process image at the interval's end


@dataclass(slots=True)
class _ActiveInterlocks:
    """Limits that bit, reported once when they start biting and once when they stop."""

    active: dict[tuple[str, str, str], str] = field(default_factory=dict)

    def update(
        self, peer: str, device: str, kinds: Mapping[str, str]
    ) -> list[tuple[str, str, str]]:
        """(kind, reason, action) changes for this device given the kinds biting now."""
        changes: list[tuple[str, str, str]] = []
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
        self._accounts: dict[tuple[str, int], _IntervalAccount] = {}
        self._current_interval = 0
        self._markets: dict[int, IntervalMarket] = {}
        self._start_time: datetime | None = None
        self._registers = {peer: RegisterLog() for peer in self.peers}
        # what each meter's current register series is shifted by in the log (after a break)
        self._register_offsets: dict[str, tuple[float, float]] = {}
        self._unsettled: list[int] = []  # delivered intervals not yet settled
        self._waiting: set[tuple[str, int]] = set()  # (peer, interval) reported as waiting
        self._last_step = 0
        self.timings: dict[str, float] = dict.fromkeys(
            ("read_s", "record_s", "trade_settle_s", "dispatch_s", "advance_s", "steps"), 0.0
        )

    # -- documents ----------------------------------------------------------------------------

    def _emit(self, doc: Document) -> None:
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
        for name, peer in self.peers.items():  # every device in its known operating state
            refused = await peer.prepare()
            if refused:
                await self._close_all()
                raise StartupError(
                    f"peer {name}: cannot put into its operating state: " + "; ".join(refused)
                )
        self._start_time = start
        self._emit(RunStarted(self.run_id, start, self.config.to_toml_dict()))
        if self.ledger is not None:
            for peer_name, reason in self.ledger.start(start).items():
                self._interlock(peer_name, "registry", "registration_refused", reason, "no_trade")
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
            boundary = step % spi == 0
            if boundary:  # the interval's last sample counts before the next interval opens
                self._record(step)
            t2 = clock()
            record_s = t2 - t1
            if boundary:
                if step > 0:
                    self._delivered(interval)
                    interval += 1
                if step == n_steps or self.stop_requested:
                    await self._settle_ready(step)
                    return interval
                if interval not in self._markets:
                    await self._trade(interval, start, step)
                self._open_interval(interval)
            await self._settle_ready(step)
            following = interval + 1
            if following < n_intervals and step == following * spi - self.gate_closure_steps:
                await self._trade(following, start, step)
            t3 = clock()
            await self._dispatch(step, interval)
            self._report_channel_events()
            t4 = clock()
            # The plant steps in its own process while this one records the step's samples.
            advance = asyncio.ensure_future(self.clock.advance(self.dt_s))
            await asyncio.sleep(0)  # the advance request leaves now
            try:
                t5 = clock()
                if not boundary:
                    self._record(step)
                if self.progress is not None:
                    self.progress(step, n_steps, self.now)
                t6 = clock()
                record_s += t6 - t5
                self.now = await advance
            except BaseException:
                advance.cancel()
                raise
            timings["read_s"] += t1 - t0
            timings["record_s"] += record_s
            timings["trade_settle_s"] += t3 - t2
            timings["dispatch_s"] += t4 - t3
            timings["advance_s"] += clock() - t4 - (t6 - t5)
            timings["steps"] += 1
        return interval

    async def _finish(self, status: str) -> RunFinished:
        if status != "failed":
            await self._settle_at_end()
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
        self._last_step = step
        channels: list[AnyChannel] = [c for p in self.peers.values() for c in p.channels]
        await asyncio.gather(*(channel.read(step) for channel in channels))
        for name, peer in self.peers.items():
            peer.watch_freezes(step)
            self._log_registers(name, peer, step)
        for channel in channels:
            if channel.newly_lost:
                channel.newly_lost = False
                await channel.safe_state("device lost")
        for peer in self.peers.values():
            await peer.recover(step)

    def _log_registers(self, name: str, peer: PeerDevices, step: int) -> None:
        """Keep the meter's trusted register readings (for the boundaries of settlement)."""
        meter = peer.meter
        log = self._registers[name]
        if meter.frozen:
            log.drop_after(meter.watch.changed_step)
            self.totals.drop_registers_after(name, meter.watch.changed_step)
        elif meter.snapshot is not None and meter.snapshot_step == step and not meter.lost:
            snapshot = meter.snapshot
            restart: RegisterBreak | None = getattr(snapshot, "register_break", None)
            last = log.last()
            if restart is not None:
                since = "the energy between is not settled"
                if last is not None:  # the new series goes on from the last trusted reading
                    (last_step, (last_import, last_export)) = last
                    self._register_offsets[name] = (
                        last_import - snapshot.import_kwh,
                        last_export - snapshot.export_kwh,
                    )
                    log.add_break(step)
                    self.totals.register_break(name, step, last_step, restart)
                    since = f"the energy since step {last_step} is not settled"
                self._interlock(
                    name,
                    "meter",
                    "register_break",
                    f"meter {meter.driver.name}: {restart.describe()}; a new register series "
                    f"from step {step}, {since}",
                    "new_series",
                )
            import_offset, export_offset = self._register_offsets.get(name, (0.0, 0.0))
            import_kwh = snapshot.import_kwh + import_offset
            export_kwh = snapshot.export_kwh + export_offset
            log.add(step, import_kwh, export_kwh)
            self.totals.observe_registers(name, step, import_kwh, export_kwh)

    def _record(self, step: int) -> None:
        assert self.now is not None
        for peer in self.peers.values():
            for channel in peer.channels:
                if channel.snapshot_step == step:
                    self._emit(Sample(self.now, channel.peer, channel.device, peer.values(channel)))
            if step > 0:
                image = peer.image(step)
                account = self._account(peer.peer, self._current_interval)
                if image.house_load_kw is not None:
                    account.load_kwh += image.house_load_kw * self.dt_s / 3600.0
                if image.pv_kw is not None:
                    account.pv_kwh += image.pv_kw * self.dt_s / 3600.0

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
        for peer, decision in market.decisions.items():
            self._emit(AgentPlan(interval_start, peer, self.market.agent_kind(peer), decision))
            if decision.fallback_reason:
                self._interlock(
                    peer, "agent", "agent_fallback", decision.fallback_reason, "no_trade"
                )

    def _account(self, peer: str, interval: int) -> _IntervalAccount:
        return self._accounts.setdefault((peer, interval), _IntervalAccount())

    def _open_interval(self, interval: int) -> None:
        self._current_interval = interval
        for name in self.peers:
            self._account(name, interval)

    def _interval_start(self, interval: int) -> datetime:
        assert self._start_time is not None
        return self._start_time + timedelta(seconds=interval * self.config.market.interval_s)

    def _delivered(self, interval: int) -> None:
        """The interval's end is reached: it counts in the market's totals, and its settlement
        is due (as soon as every meter's registers at both boundaries are known)."""
        self.totals.count_clearing(self._markets[interval].clearing)
        for name, peer in self.peers.items():
            self._account(name, interval).end_image = peer.image(None)
        self._unsettled.append(interval)

    async def _settle_ready(self, step: int, final: bool = False) -> None:
        """Settle every delivered interval whose boundary registers are known for every peer
        (at the end of the run: for the peers whose are)."""
        spi = self.steps_per_interval
        queue = self._unsettled
        while queue:
            interval = queue[0]
            first, last = interval * spi, (interval + 1) * spi
            if not final and step < last + SETTLE_AFTER_STEPS:
                break
            bounds = {
                name: (log.boundary(first), log.boundary(last))
                for name, log in self._registers.items()
            }
            missing = {
                name: first if begin is None else last
                for name, (begin, end) in bounds.items()
                if begin is None or end is None
            }
            if missing and not final:
                for name, boundary in missing.items():
                    self._report_waiting(name, interval, boundary, final=False)
                break
            for name, boundary in missing.items():
                self._report_waiting(name, interval, boundary, final=True)
            ready = {
                name: (begin, end)
                for name, (begin, end) in bounds.items()
                if begin is not None and end is not None
            }
            for name, (begin, end) in list(ready.items()):
                if begin.across_break and end.across_break:  # no register counted in it
                    del ready[name]
                    self._interlock(
                        name,
                        "meter",
                        "register_break",
                        f"interval {self._interval_start(interval):%H:%M}: inside the break of "
                        f"the meter's registers (steps {begin.gap_steps[0]}-"
                        f"{begin.gap_steps[1]}); not settled",
                        "unsettled",
                    )
            for name, (begin, end) in ready.items():
                self._registers[name].fix(first, begin)
                self._registers[name].fix(last, end)
                self.totals.settled_boundaries(name, first, begin, last, end)
            await self._settle_interval(interval, ready)
            queue.pop(0)
            for log in self._registers.values():
                log.forget_before(last)
            del self._markets[interval]

    def _report_waiting(self, peer: str, interval: int, boundary: int, final: bool) -> None:
        key = (peer, interval)
        if final:
            self._interlock(
                peer,
                "meter",
                "unmetered_interval",
                f"interval {self._interval_start(interval):%H:%M}: no meter reading at or after "
                f"its boundary at step {boundary} before the run ended; not settled",
                "unsettled",
            )
        elif key not in self._waiting:
            self._waiting.add(key)
            self._interlock(
                peer,
                "meter",
                "unmetered_interval",
                f"interval {self._interval_start(interval):%H:%M}: no trusted meter reading at "
                f"its boundary (step {boundary}); settled from the registers once the meter "
                "reads again",
                "pending",
            )

    async def _settle_interval(
        self, interval: int, bounds: Mapping[str, tuple[BoundaryReading, BoundaryReading]]
    ) -> None:
        interval_start = self._interval_start(interval)
        metered: dict[str, float] = {}
        observations: dict[str, IntervalObservation] = {}
        for peer, (begin, end) in bounds.items():
            metered[peer] = (end.export_kwh - begin.export_kwh) - (
                end.import_kwh - begin.import_kwh
            )
            filled = [b for b in (begin, end) if b.filled]
            if filled:
                gaps = ", ".join(f"steps {b.gap_steps[0]}-{b.gap_steps[1]}" for b in filled)
                self._interlock(
                    peer,
                    "meter",
                    "unmetered_interval",
                    f"interval {interval_start:%H:%M}: boundary registers interpolated across "
                    f"the meter's gap ({gaps}); {metered[peer]:.4f} kWh settled",
                    "filled",
                )
            spi = self.steps_per_interval
            breaks = self._registers[peer].breaks_in(interval * spi, (interval + 1) * spi)
            for gap in breaks:
                self._interlock(
                    peer,
                    "meter",
                    "register_break",
                    f"interval {interval_start:%H:%M}: settled from the registers on each side "
                    f"of their break (up to step {gap[0]}, from step {gap[1]}; the energy "
                    f"between is not known); {metered[peer]:.4f} kWh settled",
                    "settled",
                )
            self._waiting.discard((peer, interval))
            account = self._accounts.pop((peer, interval), _IntervalAccount())
            image = account.end_image or self.peers[peer].image(None)
            observations[peer] = IntervalObservation(
                interval_start=interval_start,
                interval_s=self.config.market.interval_s,
                load_kwh=max(account.load_kwh, 0.0),
                pv_kwh=max(account.pv_kwh, 0.0),
                net_kwh=metered[peer],
                soc_pct=image.battery_soc_pct,
                ev_soc_pct=image.ev_soc_pct,
                ev_plugged=image.ev_plugged,
            )
        for peer in self.peers:
            self._accounts.pop((peer, interval), None)
        market = self._markets[interval]
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

    async def _settle_at_end(self) -> None:
        """The run ends: settle what can be. A meter whose last reading repeats the one before
        may have frozen too late to tell: it is read on for a step or two (`_read_past_the_end`).
        A meter that missed the last boundary is read once more (the plant has not moved in
        lockstep), bypassing its reconnect backoff."""
        boundary = self._last_step
        step = await self._read_past_the_end(boundary)
        for name, peer in self.peers.items():
            if not self._unsettled or self._registers[name].boundary(boundary) is not None:
                continue
            meter = peer.meter
            with contextlib.suppress(Exception):
                await asyncio.wait_for(meter.driver.link.connect(), meter.io_timeout_s * 2)
            if await meter.read(step) is not None:
                meter.watch_freeze(step, None, self.dt_s)
                self._log_registers(name, peer, step)
        await self._settle_ready(step, final=True)
        self._report_channel_events()

    async def _read_past_the_end(self, boundary: int) -> int:
        """A meter's reading at the last boundary that repeats the one before may be frozen: a
        freeze that began a step or two before the end is told only by later readings. For a
        meter whose readings never repeated before in the run (full resolution: see
        `testbed.frozen`; a coarse meter repeats when live and is left as it is), the repeated
        readings are set aside and the meter is read on, the clock advancing, until its reading
        moves (the boundary is then filled from the registers around it, as in a gap); one that
        does not move within `SETTLE_AFTER_STEPS` is frozen (the interval stays unsettled).
        Returns the last step read."""
        suspects = {
            name: peer
            for name, peer in self.peers.items()
            if self._unsettled and _repeats_for_the_first_time(peer.meter, boundary)
        }
        for name, peer in suspects.items():
            self._registers[name].drop_after(peer.meter.watch.changed_step)
            self.totals.drop_registers_after(name, peer.meter.watch.changed_step)
        step = boundary
        while suspects and step < boundary + SETTLE_AFTER_STEPS:
            try:
                self.now = await self.clock.advance(self.dt_s)
            except (OSError, TimeoutError):  # the clock is gone: settle from what was read
                break
            step += 1
            self._last_step = step
            for name, peer in list(suspects.items()):
                meter = peer.meter
                if await meter.read(step) is None:
                    continue
                meter.watch_freeze(step, None, self.dt_s)
                self._log_registers(name, peer, step)
                if not meter.frozen and meter.watch.changed_step == step:
                    del suspects[name]  # it moves: the boundary is filled from this reading
        return step

    async def _dispatch(self, step: int, interval: int) -> None:
        market = self._markets.get(interval)
        now = self.now
        assert now is not None  # set by start()
        commands = []
        for name, peer in self.peers.items():
            contract_kw = (
                market.contracted_kw(name, self.config.market.interval_s) if market else 0.0
            )
            plan_kw = market.planned_net_kw(name) if market else None
            target_kw = pcc_target_kw(contract_kw, plan_kw, self.config.control.dispatch)
            commands.append(peer.dispatch(step, contract_kw, now, target_kw))
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


def _repeats_for_the_first_time(meter: AnyChannel, step: int) -> bool:
    """The meter's reading at `step` repeats the one before, and no reading of this meter
    repeated before (a meter of full resolution, which never repeats while live)."""
    watch = meter.watch
    return (
        watch.sensor
        and meter.snapshot_step == step
        and not meter.lost
        and not meter.frozen
        and watch.changed_step < step
        and watch.first_repeat_step is not None
        and watch.first_repeat_step > watch.changed_step
    )
