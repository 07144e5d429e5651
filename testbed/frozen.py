"""Frozen measurements, recognised from what the physics allows.

A device that stops updating its measurements still answers, with plausible values: the driver
cannot tell. The controller can, from two physical facts:

- **Neighbours.** A reading that stays bit-for-bit the same while something that must move it has
  moved is frozen. A PCC meter must follow the devices behind it (PCC = devices + house load); a
  device must follow its setpoint; the programmable load and its PCC meter must move together.
  When the neighbour has moved by more than `MOVED_KW` since the reading last changed (a move
  counts even if it went back since: a setpoint oscillating around a frozen reading), and the
  reading still has not changed `RESPONSE_STEPS` steps later, the reading is frozen. This works
  near zero too: a meter frozen at 0 kW is caught as soon as the battery behind it moves. A device
  whose power already is its new setpoint had nothing to follow: a cart that stopped charging at
  its SoC limit reads 0 kW, still, when the controller then sets 0 kW, and is not frozen.
- **Energy registers.** A register that stands still while the measured power says energy flows
  is frozen: when the energy implied since the register last moved exceeds `REGISTER_STEPS`
  times its largest recent increment (so a coarse register, 1 Wh, gets its time to tick).
- **Sensors never repeat.** A PCC meter's or the programmable load's reading (power, voltage,
  current, frequency, energy, all in full floating-point resolution) follows the grid and the
  house, which never stand still to the last digit: the same reading `REPEATS` steps in a row is
  stale. This is what catches a meter frozen near 0 kW while nothing behind it moves. (A device
  reporting integers with scale factors, like a SunSpec inverter at rest, may well repeat: for
  it only the rules above apply, so an idle device is never held for being idle. So for a sensor
  whose power readings have all been whole watts: a coarse meter repeats while live.)

A reading that never departs from what the physics allows cannot be told from a steady one, and
is harmless while it does not. The verdict clears as soon as any measured quantity changes.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from testbed.drivers import DeviceReading, field_names

MOVED_KW = 0.02  # a neighbour's change that must show in the reading (kW)
RESPONSE_STEPS = 2  # steps a reading has to show it
REPEATS = 3  # identical sensor readings in a row that make a reading stale
REGISTER_STEPS = 3.0  # register increments the measured power must have made
WHOLE_WATT_TOLERANCE = 1e-6  # W: a reading this close to a whole number of watts is coarse
_INCREMENTS_KEPT = 8

# Quantities a device measures (settings, limits and read-backs are not measurements).
MEASURED = (
    "power_kw",
    "ac_power_kw",
    "pv_power_kw",
    "battery_power_kw",
    "soc_pct",
    "voltage_v",
    "current_a",
    "frequency_hz",
    "import_kwh",
    "export_kwh",
    "ac_injected_kwh",
    "ac_absorbed_kwh",
    "energy_charged_kwh",
    "energy_discharged_kwh",
    "energy_kwh",
)


Measured = tuple[float | bool | None, ...]
_MEASURED_FIELDS: dict[type, tuple[str, ...]] = {}


def measured(snapshot: DeviceReading) -> Measured:
    """The measured quantities of a driver snapshot, for comparing one reading with the next."""
    kind = type(snapshot)
    names = _MEASURED_FIELDS.get(kind)
    if names is None:
        fields = set(field_names(snapshot))
        names = tuple(name for name in MEASURED if name in fields)
        _MEASURED_FIELDS[kind] = names
    values: list[float | bool | None] = [getattr(snapshot, name) for name in names]
    return tuple(values)


@dataclass(slots=True)
class FreezeWatch:
    """One channel's readings, watched for a freeze (see the module docstring)."""

    values: Measured | None = None
    changed_step: int = -1  # step of the latest reading that differed from the one before
    neighbour_at_change: float | None = None
    moved_step: int | None = None  # first step the neighbour was MOVED_KW away
    moved_kw: float = 0.0  # the farthest it went since the reading last changed
    last_step: int | None = None  # step of the previous reading
    register_kwh: float | None = None
    register_step: int = -1
    implied_kwh: float = 0.0  # energy the measured power implies since the register moved
    increments: deque[float] = field(default_factory=lambda: deque(maxlen=_INCREMENTS_KEPT))
    frozen: str = ""  # why the reading is frozen; "" while it is not
    sensor: bool = False  # a meter or the load: its readings never repeat when live
    first_repeat_step: int | None = None  # the first reading that repeated the one before
    whole_watts: bool = True  # every power reading so far a whole number of watts (coarse)
    follows_setpoint: bool = False  # a flexible device: its power is its neighbour when live

    def observe(
        self, step: int, snapshot: DeviceReading, neighbour_kw: float | None, step_s: float
    ) -> str | None:
        """Take this step's reading; returns the reason when it is newly found frozen."""
        dt_s = 0.0 if self.last_step is None else (step - self.last_step) * step_s
        self.last_step = step
        values = measured(snapshot)
        if self.whole_watts:
            watts = snapshot.ac_power_kw * 1000.0
            self.whole_watts = abs(watts - round(watts)) < WHOLE_WATT_TOLERANCE
        if values != self.values:
            self.values = values
            self.changed_step = step
            self.neighbour_at_change = neighbour_kw
            self.moved_step = None
            self.moved_kw = 0.0
            self.frozen = ""
        else:
            if self.first_repeat_step is None:
                self.first_repeat_step = step
            if self.neighbour_at_change is None:
                self.neighbour_at_change = neighbour_kw
        self._register(step, snapshot, dt_s)
        if self.frozen:
            return None
        reason = (
            self._repeat_verdict(step)
            or self._neighbour_verdict(step, neighbour_kw, snapshot)
            or self._register_verdict(step)
        )
        if reason:
            self.frozen = reason
            return reason
        return None

    def _repeat_verdict(self, step: int) -> str:
        if not self.sensor or self.whole_watts or step - self.changed_step < REPEATS - 1:
            return ""
        return f"the same reading {step - self.changed_step + 1} steps in a row"

    def _neighbour_verdict(
        self, step: int, neighbour_kw: float | None, snapshot: DeviceReading
    ) -> str:
        """Frozen when what drives the reading moved more than MOVED_KW away from where it was
        when the reading last changed, and RESPONSE_STEPS later the reading is still the same.
        A move counts even when it comes back (a setpoint oscillating around a frozen reading,
        the dispatcher chasing it); a device whose power is its setpoint right now is not held."""
        if neighbour_kw is None or self.neighbour_at_change is None:
            return ""
        moved = abs(neighbour_kw - self.neighbour_at_change)
        arrived = self.follows_setpoint and abs(snapshot.ac_power_kw - neighbour_kw) <= MOVED_KW
        if moved > MOVED_KW and not arrived:
            self.moved_kw = max(self.moved_kw, moved)
            if self.moved_step is None:
                self.moved_step = step
        if arrived or self.moved_step is None or step - self.moved_step < RESPONSE_STEPS:
            return ""
        return (
            f"reading unchanged for {step - self.changed_step} steps while what drives it moved "
            f"{self.moved_kw:.3f} kW"
        )

    def _register(self, step: int, snapshot: DeviceReading, dt_s: float) -> None:
        register = snapshot.throughput_kwh
        if register is None:
            return
        if self.register_kwh is None or register != self.register_kwh:
            if self.register_kwh is not None and register > self.register_kwh:
                self.increments.append(register - self.register_kwh)
            self.register_kwh = register
            self.register_step = step
            self.implied_kwh = 0.0
            return
        self.implied_kwh += abs(snapshot.ac_power_kw) * dt_s / 3600.0

    def _register_verdict(self, step: int) -> str:
        if not self.increments:  # a register never seen moving: its resolution is unknown
            return ""
        needed = REGISTER_STEPS * max(self.increments)
        if self.implied_kwh <= needed:
            return ""
        return (
            f"energy register still for {step - self.register_step} steps while the measured "
            f"power implies {self.implied_kwh * 1000:.2f} Wh"
        )
