"""The common shape of every driver, in the spirit of ophyd devices and PyMeasure instruments.

    await device.connect()
    snapshot = await device.read()             # frozen dataclass, units in names, UTC `time`
    confirmation = await device.apply(setpoint) # write, then read back and compare
    await device.safe_state()                   # what the device does when the controller gives up
    await device.close()

Power follows the generator convention everywhere: positive = delivered toward the grid.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, Never, Self, TypeVar

from instruments.errors import BadReading, ReadbackMismatch, SetpointRefused
from instruments.link import Link, LinkStatus, StatusListener

Clock = Callable[[], datetime]
SnapshotT = TypeVar("SnapshotT")
SetpointT = TypeVar("SetpointT")


def utc_now() -> datetime:
    """The wall clock as a timezone-aware UTC datetime (the default clock of every driver)."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Confirmation(Generic[SetpointT]):
    """A setpoint that the device was told and that its read-back confirmed."""

    device: str
    requested: SetpointT
    read_back: SetpointT
    time: datetime


class Instrument(ABC, Generic[SnapshotT]):
    """A device the controller reads; `link` carries the connection state and its reports."""

    name: str
    link: Link
    accepts_setpoints: ClassVar[bool] = False

    @abstractmethod
    async def connect(self) -> None:
        """Open the session and learn what the device reports about itself (limits, layout)."""

    @abstractmethod
    async def read(self) -> SnapshotT:
        """Read every measurement of one control step (as few requests as the protocol allows)."""

    async def apply(self, setpoint: Never) -> object:
        """A sensor takes no setpoint (an `Actuator` writes it and confirms it by read-back)."""
        raise SetpointRefused(self.name, "setpoint", setpoint, "none: this device only measures")

    async def operating_state(self) -> None:
        """Put the device into its known operating state at a run's start (nothing for a sensor)."""

    async def safe_state(self) -> Confirmation[Any] | None:
        """Put the device where it is harmless without the controller (nothing for a sensor)."""
        return None

    async def close(self) -> None:
        """Close the session (idempotent)."""
        await self.link.close()

    @property
    def status(self) -> LinkStatus:
        return self.link.status

    def subscribe_status(self, listener: StatusListener) -> None:
        """Call `listener(device, status, reason)` once per change of connection status."""
        self.link.subscribe(listener)

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class Actuator(Instrument[SnapshotT], Generic[SnapshotT, SetpointT]):
    """A device the controller also commands."""

    accepts_setpoints: ClassVar[bool] = True

    @abstractmethod
    async def apply(self, setpoint: SetpointT) -> Confirmation[SetpointT]:
        """Refuse the setpoint if outside the limits, write it, confirm it by read-back."""

    @abstractmethod
    async def safe_state(self) -> Confirmation[SetpointT]:
        """Write the device's safe state and confirm it."""


_NUMBER = (int, float)


def plausible(device: str, quantity: str, value: float | None, low: float, high: float) -> float:
    """`value` if it is a finite number within [low, high], else BadReading naming it."""
    if value is None or not isinstance(value, _NUMBER) or not math.isfinite(value):
        raise BadReading(device, quantity, value, f"a finite number in [{low:g}, {high:g}]")
    if not low <= value <= high:
        raise BadReading(device, quantity, value, f"[{low:g}, {high:g}]")
    return float(value)


def within(device: str, quantity: str, value: float, low: float, high: float, unit: str) -> float:
    """`value` if it is finite and within [low, high], else SetpointRefused naming the range."""
    allowed = f"{low:g} to {high:g} {unit}".rstrip()
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise SetpointRefused(device, quantity, value, f"a finite number, {allowed}")
    if not low <= value <= high:
        raise SetpointRefused(device, quantity, value, allowed)
    return float(value)


class FreezeGuard:
    """Rejects a frozen measurement: the energy register stands still although the measured
    power, integrated over the driver's clock, says it should have moved by `threshold_kwh`.

    Works with any clock that follows the plant (wall clock in the lab, the lockstep plant time in
    simulation): readings taken without the clock moving add nothing. A measurement frozen at zero
    power cannot be told from an idle device and is not flagged.
    """

    def __init__(self, device: str, quantity: str, threshold_kwh: float | None) -> None:
        self.device = device
        self.quantity = quantity
        self.threshold_kwh = threshold_kwh
        self._energy_kwh: float | None = None
        self._time: datetime | None = None
        self._expected_kwh = 0.0
        self._since: datetime | None = None

    def check(self, time: datetime, power_kw: float, energy_kwh: float) -> None:
        """Call once per reading (power and total energy register); BadReading if frozen."""
        if self.threshold_kwh is None:
            return
        if self._energy_kwh is None or energy_kwh != self._energy_kwh or self._time is None:
            self._energy_kwh, self._time, self._since = energy_kwh, time, time
            self._expected_kwh = 0.0
            return
        elapsed_s = (time - self._time).total_seconds()
        self._time = time
        if elapsed_s > 0:
            self._expected_kwh += abs(power_kw) * elapsed_s / 3600.0
        if self._expected_kwh > self.threshold_kwh:
            still_s = (time - self._since).total_seconds() if self._since else 0.0
            raise BadReading(
                self.device,
                self.quantity,
                energy_kwh,
                f"a register that moves: the measured power implies "
                f"{self._expected_kwh:.3f} kWh in {still_s:g} s (frozen measurement?)",
            )

    def reset(self) -> None:
        self._energy_kwh = self._time = self._since = None
        self._expected_kwh = 0.0


@dataclass(frozen=True, slots=True)
class RegisterBreak:
    """The energy registers restarted: the reading at `time` begins a new series, behind the
    last reading accepted before it (at `before_time`). Energy between the two is unknown."""

    time: datetime
    before_time: datetime
    before_kwh: dict[str, float]
    after_kwh: dict[str, float]

    def describe(self) -> str:
        values = ", ".join(
            f"{q} {self.before_kwh[q]:.3f} -> {self.after_kwh[q]:.3f} kWh" for q in self.after_kwh
        )
        return f"registers restarted ({values}; last accepted reading {self.before_time:%H:%M:%S})"


class RegisterGuard:
    """Rejects energy registers that cannot be true: one that went back, or one that ran ahead of
    what `max_kw` allows since the last reading accepted (a glitch a range check lets through,
    such as an import register a million kWh ahead for one reading, which settlement would bill).
    `slack_kwh` is the register's resolution. A rejected reading leaves the last accepted one as
    the reference, so the registers are accepted again as soon as they are consistent with it.

    Registers that stay behind the reference (a meter reset or replaced, or a reference that was
    itself a glitch ahead) for `restart_after` readings in a row, each consistent with the one
    before, are a new series: the last of them is accepted and `check` returns the break, once.
    A series ahead of the reference is never taken (a register cannot run ahead of its rating),
    except the series left at the last break, when the registers come back to it (the break was
    a glitch behind the true registers)."""

    def __init__(
        self,
        device: str,
        max_kw: float,
        slack_kwh: float | None,
        restart_after: int | None = None,
    ) -> None:
        self.device = device
        self.max_kw = max_kw
        self.slack_kwh = slack_kwh
        self.restart_after = restart_after
        self._time: datetime | None = None
        self._registers: dict[str, float] = {}
        self._behind: list[tuple[datetime, dict[str, float]]] = []  # rejected, behind, in a row
        self._left: tuple[datetime, dict[str, float]] | None = None  # the reference before a break

    def _false(
        self,
        slack_kwh: float,
        time0: datetime,
        before: dict[str, float],
        time: datetime,
        registers: dict[str, float],
    ) -> BadReading | None:
        """Why `registers` at `time` cannot follow `before` at `time0`, or None if they can."""
        elapsed_s = max(0.0, (time - time0).total_seconds())
        most_kwh = self.max_kw * elapsed_s / 3600.0 + slack_kwh
        for quantity, value in registers.items():
            last = before.get(quantity)
            if last is not None and not -slack_kwh <= value - last <= most_kwh:
                return BadReading(
                    self.device,
                    quantity,
                    value,
                    f"{last:.3f} to {last + most_kwh:.3f} kWh: the register read {last:.3f} "
                    f"kWh {elapsed_s:g} s earlier and counts at most {self.max_kw:g} kW",
                )
        return None

    def check(self, time: datetime, registers: dict[str, float]) -> RegisterBreak | None:
        """Call once per reading with its energy registers (kWh); BadReading if one is false;
        the break when this reading begins a new series."""
        slack_kwh = self.slack_kwh
        if slack_kwh is None:
            return None
        if self._time is None:
            self._accept(time, registers)
            return None
        error = self._false(slack_kwh, self._time, self._registers, time, registers)
        if error is None:
            self._behind.clear()
            self._accept(time, registers)
            return None
        if self.restart_after is None or not (
            self._is_behind(slack_kwh, time, registers)
            or self._continues_left(slack_kwh, time, registers)
        ):
            self._behind.clear()
            raise error
        if self._behind and self._false(slack_kwh, *self._behind[-1], time, registers):
            self._behind.clear()
        self._behind.append((time, dict(registers)))
        if len(self._behind) < self.restart_after:
            raise error
        found = RegisterBreak(time, self._time, dict(self._registers), dict(registers))
        self._left = (self._time, dict(self._registers))
        self._behind.clear()
        self._accept(time, registers)
        return found

    def _is_behind(self, slack_kwh: float, time: datetime, registers: dict[str, float]) -> bool:
        """Some register went back, and none ran ahead beyond what the rating allows."""
        assert self._time is not None
        elapsed_s = max(0.0, (time - self._time).total_seconds())
        most_kwh = self.max_kw * elapsed_s / 3600.0 + slack_kwh
        deltas = [value - self._registers.get(q, value) for q, value in registers.items()]
        return any(d < -slack_kwh for d in deltas) and all(d <= most_kwh for d in deltas)

    def _continues_left(
        self, slack_kwh: float, time: datetime, registers: dict[str, float]
    ) -> bool:
        """The registers continue the series left at the last break (the break was a glitch
        behind it: its registers came back, counted on within the rating)."""
        return self._left is not None and not self._false(slack_kwh, *self._left, time, registers)

    def _accept(self, time: datetime, registers: dict[str, float]) -> None:
        self._time = time
        self._registers = dict(registers)


def confirm(
    device: str, quantity: str, written: float | bool, read_back: float | bool, tolerance: float = 0
) -> None:
    """Raise ReadbackMismatch unless the read-back equals the written value within `tolerance`."""
    if isinstance(written, bool) or isinstance(read_back, bool):
        same = bool(written) == bool(read_back)
    else:
        same = read_back is not None and abs(float(read_back) - float(written)) <= tolerance
    if not same:
        raise ReadbackMismatch(device, quantity, written, read_back)
