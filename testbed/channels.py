"""One supervised channel per device: reads and writes that never stop the control loop.

A channel wraps a driver from `instruments`. A failed read or write is counted; after
`lost_after_failures` in a row the device is declared lost and reported as a `device_lost`
interlock; the engine asks for its safe state and the other devices go on. A reading older than
`stale_after_steps` steps is not used for control (`stale_measurement`), nor is a reading found
frozen (`frozen_measurement`, see `testbed.frozen`). When the device answers again the channel says
so (the `device_lost` interlock is cleared) and control resumes; a device that was sent to its
safe state is brought back to its operating state by its peer (`PeerDevices.recover`).
A connection that keeps failing and coming back, never `lost_after_failures` times in a row, is
reported once as `unstable_connection` (`lost_after_failures` failed calls within
`UNSTABLE_WINDOW_STEPS`), and cleared after as many steps without a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

from instruments.errors import BadReading, InstrumentError, ReadbackMismatch, SetpointRefused
from testbed.drivers import DeviceDriver, DeviceReading
from testbed.frozen import FreezeWatch

UNSTABLE_WINDOW_STEPS = 60

ReadingT = TypeVar("ReadingT", bound=DeviceReading)
SetpointT = TypeVar("SetpointT")


@dataclass(slots=True)
class ChannelEvent:
    """Something the engine turns into an `Interlock` document."""

    device: str
    kind: str
    reason: str
    action: str


@dataclass(slots=True)
class Channel(Generic[ReadingT, SetpointT]):
    """A device of one peer and what the controller knows about its health."""

    peer: str
    device: str
    driver: DeviceDriver[ReadingT, SetpointT]
    lost_after_failures: int
    stale_after_steps: int
    io_timeout_s: float
    snapshot: ReadingT | None = None
    snapshot_step: int = -1
    failures: int = 0
    lost: bool = False
    last_error: str = ""
    refusing: str = ""  # the kind of refusal reported and not yet cleared
    newly_lost: bool = False  # lost since the engine last looked: it asks for the safe state
    in_safe_state: bool = False  # sent to its safe state and not yet brought back
    watch: FreezeWatch = field(default_factory=FreezeWatch)
    events: list[ChannelEvent] = field(default_factory=list)
    failed_steps: deque[int] = field(default_factory=deque)  # recent failed calls, by step
    unstable: bool = False  # reported as an unstable connection and not yet cleared

    @property
    def is_actuator(self) -> bool:
        return self.driver.accepts_setpoints

    async def connect(self) -> None:
        await asyncio.wait_for(self.driver.connect(), timeout=max(self.io_timeout_s, 5.0))

    async def read(self, step: int) -> ReadingT | None:
        """Read the device; on failure keep the last snapshot and count the failure."""
        try:
            snapshot = await self.driver.read()  # every driver call has its own timeout
        except BadReading as error:
            self._failed(step, "bad_reading", str(error))
            return None
        except (InstrumentError, TimeoutError, OSError) as error:
            self._failed(step, "read_failed", _describe(error))
            return None
        self.snapshot = snapshot
        self.snapshot_step = step
        if self.lost:
            self.lost = False
            if not self.unstable:
                self.failed_steps.clear()  # the loss was reported; flapping counts afresh
            self.events.append(
                ChannelEvent(self.device, "device_lost", "device answers again", "cleared")
            )
        elif self.unstable and (
            not self.failed_steps or step - self.failed_steps[-1] >= UNSTABLE_WINDOW_STEPS
        ):
            self.unstable = False
            self.failed_steps.clear()
            self.events.append(
                ChannelEvent(
                    self.device,
                    "unstable_connection",
                    f"no failed call for {UNSTABLE_WINDOW_STEPS} steps",
                    "cleared",
                )
            )
        self.failures = 0
        return snapshot

    @property
    def frozen(self) -> bool:
        return bool(self.watch.frozen)

    def watch_freeze(self, step: int, neighbour_kw: float | None, step_s: float) -> None:
        """Check this step's reading against what drives it (see `testbed.frozen`)."""
        if self.snapshot_step != step or self.snapshot is None:
            return
        was_frozen = self.frozen
        reason = self.watch.observe(step, self.snapshot, neighbour_kw, step_s)
        if reason:
            self.events.append(ChannelEvent(self.device, "frozen_measurement", reason, "held"))
        elif was_frozen and not self.frozen:
            self.events.append(
                ChannelEvent(self.device, "frozen_measurement", "reading moves again", "cleared")
            )

    def fresh(self, step: int) -> ReadingT | None:
        """The latest snapshot if it is recent enough to control with, else None."""
        if self.snapshot is None or self.lost or self.watch.frozen:
            return None
        if step - self.snapshot_step >= self.stale_after_steps:
            return None
        return self.snapshot

    async def apply(self, setpoint: SetpointT, step: int) -> bool:
        """Send a setpoint; False (and an event when it matters) if the device did not take it."""
        if self.lost:
            return False
        try:
            await self.driver.apply(setpoint)
        except (SetpointRefused, ReadbackMismatch) as error:
            kind = "setpoint_refused" if isinstance(error, SetpointRefused) else "readback_mismatch"
            if self.refusing != kind:
                self.events.append(ChannelEvent(self.device, kind, str(error), "held"))
            self.refusing = kind
            return False
        except (InstrumentError, TimeoutError, OSError) as error:
            self._failed(step, "write_failed", _describe(error))
            return False
        if self.refusing:
            self.events.append(
                ChannelEvent(self.device, self.refusing, "setpoint accepted again", "cleared")
            )
            self.refusing = ""
        return True

    async def safe_state(self, reason: str) -> None:
        """Ask the device for its safe state; its own watchdog is the fallback if it cannot hear."""
        if not self.is_actuator:
            return
        self.in_safe_state = True
        try:
            await asyncio.wait_for(self.driver.safe_state(), timeout=self.io_timeout_s * 2)
            action = "safe_state"
        except Exception as error:  # the action stays one word (a tag); the reason says why
            action = "safe_state_unconfirmed"
            reason = (
                f"{reason}; unconfirmed: {_describe(error)}; the device's own fallback takes "
                "over (its watchdog, where it has one)"
            )
        self.events.append(ChannelEvent(self.device, "safe_state", reason, action))

    async def command(self, operation: Callable[[], Awaitable[object]], what: str) -> bool:
        """Run one driver operation (bringing the device back, or into its operating state);
        False, with a `recovery_failed` event, when the device does not take it."""
        try:
            await asyncio.wait_for(operation(), timeout=self.io_timeout_s * 2)
        except Exception as error:
            self.events.append(
                ChannelEvent(self.device, "recovery_failed", f"{what}: {_describe(error)}", "held")
            )
            return False
        return True

    async def close(self) -> None:
        with contextlib.suppress(Exception):  # closing a dead session cannot fail the run
            await asyncio.wait_for(self.driver.close(), timeout=self.io_timeout_s * 2)

    def _failed(self, step: int, kind: str, message: str) -> None:
        self.failures += 1
        self.last_error = message
        recent = self.failed_steps
        recent.append(step)
        while recent and recent[0] <= step - UNSTABLE_WINDOW_STEPS:
            recent.popleft()
        if not self.lost and self.failures >= self.lost_after_failures:
            self.lost = True
            self.newly_lost = True
            self.events.append(
                ChannelEvent(
                    self.device,
                    "device_lost",
                    f"{self.failures} failed calls in a row, last: {kind}: {message}",
                    "safe_state",
                )
            )
        elif not self.lost and not self.unstable and len(recent) >= self.lost_after_failures:
            self.unstable = True
            self.events.append(
                ChannelEvent(
                    self.device,
                    "unstable_connection",
                    f"{len(recent)} failed calls in {step - recent[0] + 1} steps, each time "
                    f"back before {self.lost_after_failures} in a row; last: {kind}: {message}",
                    "noticed",
                )
            )

    def take_events(self) -> list[ChannelEvent]:
        events, self.events = self.events, []
        return events


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def snapshot_time(snapshot: DeviceReading | None) -> datetime | None:
    return None if snapshot is None else snapshot.time
