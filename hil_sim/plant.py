"""The emulated plant: every device's physics, stepped by one clock.

This file fixes the interface the protocol servers use; the physics lives in small modules beside it.
Power is in kW with the generator convention (positive = delivered toward the grid), energy in kWh,
state of charge in %. Times are timezone-aware UTC.

Contract used by the servers (hil_sim/servers/*):
- `plant.now`, `plant.advance(dt_s)`.
- State snapshots as attributes, refreshed by every `advance`: `plant.inverter`, `plant.ev`,
  `plant.load_c`, `plant.house_loads`, `plant.meters`, `plant.feeder`.
- Writes go through `plant.write_*`; each checks the device's limits and raises `SetpointRejected`
  with a reason that names the quantity, the value and the allowed range, leaving the plant unchanged.
- `plant.state_dict()` gives the whole truth as JSON-able data for the simulation-control endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


class SetpointRejected(ValueError):
    """A write outside the device's limits; the device keeps its previous setpoint."""


@dataclass(slots=True)
class InverterState:
    """Peer A's hybrid inverter with its PV array and battery."""

    rated_power_kw: float  # AC rating (magnitude)
    pv_available_kw: float  # what the array could give now
    pv_power_kw: float  # what it gives (after curtailment), >= 0
    battery_power_kw: float  # DC, + = discharging
    ac_power_kw: float  # + = injected into the house/grid side
    soc_pct: float
    battery_capacity_kwh: float
    battery_max_charge_kw: float
    battery_max_discharge_kw: float
    soc_min_pct: float
    soc_max_pct: float
    wset_kw: float  # model 704 WSet: AC active-power target
    wset_enabled: bool
    wset_revert_timeout_s: float  # 0 = no revert
    wset_revert_remaining_s: float
    ac_injected_kwh: float  # totals since start
    ac_absorbed_kwh: float
    pv_energy_kwh: float
    battery_charged_kwh: float  # DC energy into the battery
    battery_discharged_kwh: float
    voltage_v: float
    frequency_hz: float


@dataclass(slots=True)
class EvState:
    """Peer B's bidirectional charger and the campus cart's LFP battery."""

    plugged: bool
    departure_time: datetime | None
    soc_pct: float
    capacity_kwh: float
    power_kw: float  # AC at the charger, + = V2G discharge
    setpoint_kw: float
    enabled: bool
    status: str  # idle, charging, discharging, unplugged, fault
    max_charge_kw: float
    max_discharge_kw: float
    min_power_kw: float
    ramp_kw_per_s: float
    reserve_soc_pct: float
    soc_min_pct: float
    soc_max_pct: float
    watchdog_timeout_s: float
    seconds_since_setpoint: float
    energy_charged_kwh: float  # AC totals since start
    energy_discharged_kwh: float


@dataclass(slots=True)
class ProgrammableLoadState:
    """Peer C's programmable AC electronic load."""

    input_on: bool
    function: str  # "POW" (constant power) or "LIST" (plays the house-load program)
    power_setpoint_w: float
    power_w: float  # consumed, >= 0
    voltage_v: float
    current_a: float
    energy_wh: float


@dataclass(slots=True)
class MeterState:
    """A peer's PCC meter."""

    power_kw: float  # generator convention: + = export
    voltage_v: float
    current_a: float
    frequency_hz: float
    import_kwh: float
    export_kwh: float


@dataclass(slots=True)
class FeederState:
    """The low-voltage feeder from the transformer to the three PCCs."""

    transformer_power_kw: float  # + = export to the MV grid
    losses_kw: float
    loss_kwh: float
