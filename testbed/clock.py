"""Two clocks behind one interface: lockstep with the emulated plant, or the wall clock of the lab.

The control loop calls `start()` once and `advance(dt_s)` after every control step. The lockstep
clock moves the emulated plant by `dt_s` through its simulation-control endpoint and returns at
once, so a run is deterministic and as fast as the protocols allow; the wall clock sleeps until the
next step is due (and counts the steps that overran).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

from labspec.plant_control import PlantControl


class Clock(Protocol):
    now: datetime  # the latest time start() or advance() returned

    async def start(self) -> datetime: ...

    async def advance(self, dt_s: float) -> datetime: ...

    async def close(self) -> None: ...


class LockstepClock:
    """Time is the emulated plant's; each step advances the plant by exactly `dt_s`."""

    def __init__(self, host: str, port: int, timeout_s: float = 5.0) -> None:
        self._control = PlantControl(host, port, timeout_s=timeout_s)
        self.now = datetime.now(UTC)

    async def start(self) -> datetime:
        await self._control.open()
        self.now = (await self._control.time()).time
        return self.now

    async def advance(self, dt_s: float) -> datetime:
        self.now = (await self._control.advance(dt_s)).time
        return self.now

    async def close(self) -> None:
        await self._control.close()


class WallClock:
    """Real time for the lab: `advance` waits until the next step boundary."""

    def __init__(self, start: datetime | None = None) -> None:
        self._start = start
        self._origin_monotonic = 0.0
        self._origin: datetime | None = None
        self._elapsed_s = 0.0
        self.overruns = 0
        self.now = datetime.now(UTC)

    async def start(self) -> datetime:
        now = datetime.now(UTC)
        if self._start is not None and self._start > now:
            await asyncio.sleep((self._start - now).total_seconds())
            now = self._start
        self._origin = now
        self._origin_monotonic = time.monotonic()
        self.now = now
        return now

    async def advance(self, dt_s: float) -> datetime:
        assert self._origin is not None, "start() first"
        self._elapsed_s += dt_s
        delay = self._origin_monotonic + self._elapsed_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            self.overruns += 1
        self.now = self._origin + timedelta(seconds=self._elapsed_s)
        return self.now

    async def close(self) -> None:
        return None
