"""A bidirectional EV charger and the cart's battery: plug windows, ramp, limits, reserve.

The charger's power (AC, + = V2G discharge) moves toward the setpoint at most `ramp_kw_per_s`.
Protective cut-offs act at once, as a contactor or the battery's BMS would: power transfer stops
immediately when the charger is disabled, the cart leaves, or the SoC reaches the window's top
(charging) or the reserve (discharging). The charger efficiency applies each way between AC power
and stored energy. While away the cart drives, drawing `drive_power_kw` from its battery down to
the window's bottom.
"""

from __future__ import annotations

from typing import Protocol

from hil_sim.physics.battery import Storage
from labspec.site import plug_seconds


class ChargerLimits(Protocol):
    """What `charger_power_kw` needs to know of the charger (an EvState has it)."""

    max_charge_kw: float
    max_discharge_kw: float
    ramp_kw_per_s: float


class PlugSchedule:
    """Local plug-in windows: is the cart plugged at a time of day (s after local midnight)?"""

    def __init__(self, plug_windows: tuple[tuple[str, str], ...]) -> None:
        self.windows = plug_seconds(plug_windows)

    def plugged(self, tod_s: float) -> bool:
        for arrive, leave in self.windows:
            if arrive < leave:
                if arrive <= tod_s < leave:
                    return True
            elif tod_s >= arrive or tod_s < leave:
                return True
        return False

    def seconds_to_next_boundary(self, tod_s: float) -> float:
        """Seconds from `tod_s` to the next arrival or departure (> 0; at most a day)."""
        gaps = [(edge - tod_s) % 86400.0 for window in self.windows for edge in window]
        return min((gap for gap in gaps if gap > 0.0), default=86400.0)

    def seconds_to_departure(self, tod_s: float) -> float:
        """Seconds from `tod_s` to the end of the window it lies in (call only when plugged)."""
        for arrive, leave in self.windows:
            inside = arrive <= tod_s < leave if arrive < leave else tod_s >= arrive or tod_s < leave
            if inside:
                return (leave - tod_s) % 86400.0
        raise ValueError(f"{tod_s} s after midnight is outside every plug window")


def charger_power_kw(
    power_kw: float,
    setpoint_kw: float,
    enabled: bool,
    plugged: bool,
    config: ChargerLimits,
    storage: Storage,
    reserve_kwh: float,
    h_s: float,
) -> float:
    """The charger's AC power for the next h seconds, from its present power and setpoint."""
    if not (enabled and plugged):
        return 0.0
    step = config.ramp_kw_per_s * h_s
    if setpoint_kw > power_kw + step:
        power_kw += step
    elif setpoint_kw < power_kw - step:
        power_kw -= step
    else:
        power_kw = setpoint_kw
    if power_kw > 0.0:
        floor = reserve_kwh if reserve_kwh > storage.energy_min_kwh else storage.energy_min_kwh
        limit = storage.discharge_limit_kw(h_s, floor)
        if limit > config.max_discharge_kw:
            limit = config.max_discharge_kw
        if power_kw > limit:
            power_kw = limit
    elif power_kw < 0.0:
        limit = storage.charge_limit_kw(h_s)
        if limit > config.max_charge_kw:
            limit = config.max_charge_kw
        if power_kw < -limit:
            power_kw = -limit
    return power_kw


def drive(storage: Storage, drive_power_kw: float, h_s: float) -> float:
    """Energy (kWh) the cart draws while away for h seconds, never below the SoC window."""
    energy = drive_power_kw * h_s / 3600.0
    room = storage.energy_kwh - storage.energy_min_kwh
    if energy > room:
        energy = room if room > 0.0 else 0.0
    storage.energy_kwh -= energy
    return energy
