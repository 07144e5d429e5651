"""The emulated plant: every device's physics, stepped by one clock.

This file fixes the interface the protocol servers use; the physics lives in `hil_sim.physics`.
Power is in kW with the generator convention (positive = delivered toward the grid), energy in kWh,
state of charge in %. Times are timezone-aware UTC.

Contract used by the servers (hil_sim/servers/*):
- `plant.now`, `plant.advance(dt_s)`.
- State snapshots as attributes, refreshed by every `advance`: `plant.inverter`, `plant.ev`,
  `plant.load_c`, `plant.house_loads`, `plant.meters`, `plant.feeder`.
- Writes go through `plant.write_*`; each checks the device's limits and raises `SetpointRejected`
  with a reason that names the quantity, the value and the allowed range, leaving the plant
  unchanged.
- `plant.state_dict()` gives the whole truth as JSON-able data for the simulation-control endpoint.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from numbers import Real
from typing import Any

from hil_sim.config import PlantConfig
from hil_sim.physics.battery import Storage
from hil_sim.physics.ev import PlugSchedule, charger_power_kw, drive
from hil_sim.physics.feeder import RadialFeeder
from hil_sim.physics.inverter import dispatch
from hil_sim.physics.profiles import STEP_S, DayProfiles, ProfileBook
from labspec.programmable_load import MAX_POWER_W


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


PEERS = ("A", "B", "C")
MAX_SUBSTEP_S = 1.0
_EPS_S = 1e-9
LOAD_FUNCTIONS = ("POW", "LIST")
REVERT_TIMEOUT_MAX_S = 4294967295.0  # SunSpec uint32


def _number(quantity: str, value: Any, low: float, high: float, unit: str) -> float:
    """`value` as a float in [low, high], or SetpointRejected naming quantity, value and range."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise SetpointRejected(
            f"{quantity} = {value!r}: must be a number in [{low:g}, {high:g}] {unit}"
        )
    number = float(value)
    if not math.isfinite(number):
        raise SetpointRejected(
            f"{quantity} = {value!r}: must be finite, in [{low:g}, {high:g}] {unit}"
        )
    if not low <= number <= high:
        raise SetpointRejected(
            f"{quantity} = {number:g} {unit}: must be within [{low:g}, {high:g}] {unit}"
        )
    return number


def _flag(quantity: str, value: Any) -> bool:
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    raise SetpointRejected(f"{quantity} = {value!r}: must be true or false")


class Plant:
    """The three-peer testbed stepped by one clock; see the module docstring for the contract.

    `advance(dt_s)` integrates in equal substeps of at most one second. In each substep every input
    (PV, house loads, frequency, plug state) is sampled at the substep's end, every device's power
    is held for the substep, and every energy (battery, EV, meters, losses) is integrated with that
    same dt, so the balances close exactly. State attributes are the state at `now`: the powers of
    the substep that just ended and the totals up to `now`. Writes take effect from the next
    substep; counters (WSet revert, EV watchdog) run on plant time.
    """

    def __init__(self, config: PlantConfig | None = None) -> None:
        self.config = config = config if config is not None else PlantConfig()
        self.start = config.start
        self.elapsed_s = 0.0
        self._elapsed_error_s = 0.0  # compensated summation: 10 x advance(0.1) is exactly 1 s
        offset_s = config.site.utc_offset_minutes * 60.0
        local_start = config.start + timedelta(seconds=offset_s)
        self._day0 = local_start.date()
        self._t0_local_s = (
            local_start.hour * 3600.0
            + local_start.minute * 60.0
            + local_start.second
            + local_start.microsecond / 1e6
        )
        self._profiles = ProfileBook(config)
        self._day_index = 0
        self._today: DayProfiles = self._profiles.day(self._day0)
        self._profiles.day(self._day0 + timedelta(days=1))  # a day's run crosses midnight

        bat, inv, evc = config.battery, config.inverter, config.ev
        self._battery = Storage(
            bat.capacity_kwh,
            bat.initial_soc_pct,
            bat.soc_min_pct,
            bat.soc_max_pct,
            bat.charge_efficiency,
            bat.discharge_efficiency,
        )
        self._ev_battery = Storage(
            evc.capacity_kwh,
            evc.initial_soc_pct,
            evc.soc_min_pct,
            evc.soc_max_pct,
            evc.charger_efficiency,
            evc.charger_efficiency,
        )
        self._ev_reserve_kwh = evc.capacity_kwh * evc.reserve_soc_pct / 100.0
        self._plug = PlugSchedule(evc)
        self.ev_drive_energy_kwh = 0.0  # drawn from the cart's battery while away
        self._feeder = RadialFeeder(config.feeder.lines, config.feeder.lv_bus_voltage_v, PEERS)
        self._tan_phi_a, self._tan_phi_b, self._tan_phi_c = (
            math.tan(math.acos(getattr(config.house_loads, peer).power_factor)) for peer in PEERS
        )
        self._ev_config = evc
        self._plug_check_local_s = -math.inf
        v0 = config.feeder.lv_bus_voltage_v
        f0 = config.feeder.nominal_frequency_hz
        self.inverter = InverterState(
            rated_power_kw=inv.rated_power_kw,
            pv_available_kw=0.0,
            pv_power_kw=0.0,
            battery_power_kw=0.0,
            ac_power_kw=0.0,
            soc_pct=self._battery.soc_pct,
            battery_capacity_kwh=bat.capacity_kwh,
            battery_max_charge_kw=bat.max_charge_kw,
            battery_max_discharge_kw=bat.max_discharge_kw,
            soc_min_pct=bat.soc_min_pct,
            soc_max_pct=bat.soc_max_pct,
            wset_kw=0.0,
            wset_enabled=False,
            wset_revert_timeout_s=inv.wset_revert_timeout_s,
            wset_revert_remaining_s=0.0,
            ac_injected_kwh=0.0,
            ac_absorbed_kwh=0.0,
            pv_energy_kwh=0.0,
            battery_charged_kwh=0.0,
            battery_discharged_kwh=0.0,
            voltage_v=v0,
            frequency_hz=f0,
        )
        self.ev = EvState(
            plugged=False,
            departure_time=None,
            soc_pct=self._ev_battery.soc_pct,
            capacity_kwh=evc.capacity_kwh,
            power_kw=0.0,
            setpoint_kw=0.0,
            enabled=True,
            status="unplugged",
            max_charge_kw=evc.max_charge_kw,
            max_discharge_kw=evc.max_discharge_kw,
            min_power_kw=evc.min_power_kw,
            ramp_kw_per_s=evc.ramp_kw_per_s,
            reserve_soc_pct=evc.reserve_soc_pct,
            soc_min_pct=evc.soc_min_pct,
            soc_max_pct=evc.soc_max_pct,
            watchdog_timeout_s=evc.watchdog_timeout_s,
            seconds_since_setpoint=0.0,
            energy_charged_kwh=0.0,
            energy_discharged_kwh=0.0,
        )
        lc = config.load_c
        self.load_c = ProgrammableLoadState(
            input_on=lc.input_on,
            function=lc.function,
            power_setpoint_w=lc.power_setpoint_w,
            power_w=0.0,
            voltage_v=v0,
            current_a=0.0,
            energy_wh=0.0,
        )
        self.house_loads: dict[str, float] = dict.fromkeys(PEERS, 0.0)
        self.house_load_profiles_kw: dict[str, float] = dict.fromkeys(PEERS, 0.0)
        self.meters: dict[str, MeterState] = {
            peer: MeterState(
                power_kw=0.0,
                voltage_v=v0,
                current_a=0.0,
                frequency_hz=f0,
                import_kwh=0.0,
                export_kwh=0.0,
            )
            for peer in PEERS
        }
        self.feeder = FeederState(transformer_power_kw=0.0, losses_kw=0.0, loss_kwh=0.0)
        self._update_plug(self._t0_local_s)
        self._substep(0.0, 0.0, record=False)  # the state at `start`, nothing integrated

    # -- time -------------------------------------------------------------------------------------

    @property
    def now(self) -> datetime:
        """Plant time (UTC)."""
        return self.start + timedelta(seconds=self.elapsed_s)

    def advance(self, dt_s: float) -> None:
        """Step the plant by dt_s seconds of plant time (substeps of at most one second)."""
        if (
            isinstance(dt_s, bool)
            or not isinstance(dt_s, Real)
            or not math.isfinite(dt_s)
            or dt_s <= 0
        ):
            raise ValueError(f"dt_s = {dt_s!r}: must be a finite number of seconds > 0")
        count = math.ceil(dt_s / MAX_SUBSTEP_S - 1e-12)
        h = dt_s / count
        base = self.elapsed_s
        step = dt_s - self._elapsed_error_s
        end = base + step
        self._elapsed_error_s = (end - base) - step
        for i in range(1, count):
            self._substep(h, base + i * h, record=True)
        self._substep(h, end, record=True)

    # -- one substep ------------------------------------------------------------------------------

    def _update_plug(self, local_s: float) -> None:
        tod = local_s % 86400.0
        plugged = self._plug.plugged(tod)
        self._plug_check_local_s = local_s + self._plug.seconds_to_next_boundary(tod)
        ev = self.ev
        if plugged != ev.plugged or (plugged and ev.departure_time is None):
            ev.plugged = plugged
            if plugged:
                departure = self.now + timedelta(seconds=self._plug.seconds_to_departure(tod))
                ev.departure_time = departure.replace(microsecond=0)
            else:
                ev.departure_time = None

    def _substep(self, h: float, elapsed_end_s: float, record: bool) -> None:
        # Inputs are sampled at the substep's end, so the published state is the state at `now`.
        self.elapsed_s = elapsed_end_s
        local_s = self._t0_local_s + self.elapsed_s
        day_index = int(local_s // 86400.0)
        if day_index != self._day_index:
            self._day_index = day_index
            self._today = self._profiles.day(self._day0 + timedelta(days=day_index))
        tod = local_s - day_index * 86400.0
        position = tod / STEP_S
        k = int(position)
        frac = position - k
        today = self._today
        pv_list = today.pv_kw
        pv_available = pv_list[k] + frac * (pv_list[k + 1] - pv_list[k])
        loads = today.house_load_kw
        la, lb, lc = loads["A"], loads["B"], loads["C"]
        load_a = la[k] + frac * (la[k + 1] - la[k])
        load_b = lb[k] + frac * (lb[k + 1] - lb[k])
        load_c_profile = lc[k] + frac * (lc[k + 1] - lc[k])
        fl = today.frequency_hz
        frequency = fl[k] + frac * (fl[k + 1] - fl[k])
        if local_s >= self._plug_check_local_s:
            self._update_plug(local_s)

        # Peer A: hybrid inverter.
        inv = self.inverter
        battery = self._battery
        pv, battery_kw = dispatch(
            pv_available,
            inv.wset_enabled,
            inv.wset_kw,
            inv.rated_power_kw,
            battery,
            inv.battery_max_charge_kw,
            inv.battery_max_discharge_kw,
            h if h > 0.0 else 1.0,
        )
        ac = pv + battery_kw

        # Peer B: EV charger.
        ev = self.ev
        ev_battery = self._ev_battery
        ev_kw = charger_power_kw(
            ev.power_kw,
            ev.setpoint_kw,
            ev.enabled,
            ev.plugged,
            self._ev_config,
            ev_battery,
            self._ev_reserve_kwh,
            h if h > 0.0 else 1.0,
        )

        # Peer C: programmable load.
        lcs = self.load_c
        if not lcs.input_on:
            load_c_w = 0.0
        elif lcs.function == "LIST":
            load_c_w = load_c_profile * 1000.0
        else:
            load_c_w = lcs.power_setpoint_w
        load_c_q_w = load_c_w * self._tan_phi_c if lcs.function == "LIST" else 0.0

        # PCC powers (generator convention) and the feeder.
        p_a = ac - load_a
        p_b = ev_kw - load_b
        p_c = -load_c_w / 1000.0
        q_a = -load_a * self._tan_phi_a
        q_b = -load_b * self._tan_phi_b
        q_c = -load_c_q_w / 1000.0
        feeder = self._feeder
        feeder.solve(
            (
                complex(-p_a * 1000.0, -q_a * 1000.0),
                complex(-p_b * 1000.0, -q_b * 1000.0),
                complex(-p_c * 1000.0, -q_c * 1000.0),
            )
        )
        voltage = feeder.load_voltage
        v_a, v_b, v_c = abs(voltage[0]), abs(voltage[1]), abs(voltage[2])
        losses = feeder.losses_kw

        # Integrate every energy with the same h.
        if record:
            battery.apply(battery_kw, h)
            ev_battery.apply(ev_kw, h)
            if not ev.plugged:
                self.ev_drive_energy_kwh += drive(ev_battery, self._ev_config.drive_power_kw, h)
            hours = h / 3600.0
            if ac >= 0.0:
                inv.ac_injected_kwh += ac * hours
            else:
                inv.ac_absorbed_kwh -= ac * hours
            inv.pv_energy_kwh += pv * hours
            if ev_kw >= 0.0:
                ev.energy_discharged_kwh += ev_kw * hours
            else:
                ev.energy_charged_kwh -= ev_kw * hours
            lcs.energy_wh += load_c_w * hours
            self.feeder.loss_kwh += losses * hours
            for meter, p in (
                (self.meters["A"], p_a),
                (self.meters["B"], p_b),
                (self.meters["C"], p_c),
            ):
                if p >= 0.0:
                    meter.export_kwh += p * hours
                else:
                    meter.import_kwh -= p * hours

        # Publish the substep's state.
        inv.pv_available_kw = pv_available
        inv.pv_power_kw = pv
        inv.battery_power_kw = battery_kw
        inv.ac_power_kw = ac
        inv.soc_pct = battery.soc_pct
        inv.battery_charged_kwh = battery.charged_kwh
        inv.battery_discharged_kwh = battery.discharged_kwh
        inv.voltage_v = v_a
        inv.frequency_hz = frequency
        ev.power_kw = ev_kw
        ev.soc_pct = ev_battery.soc_pct
        if not ev.plugged:
            ev.status = "unplugged"
        elif ev_kw > 0.0:
            ev.status = "discharging"
        elif ev_kw < 0.0:
            ev.status = "charging"
        else:
            ev.status = "idle"
        lcs.power_w = load_c_w
        lcs.voltage_v = v_c
        lcs.current_a = math.hypot(load_c_w, load_c_q_w) / v_c
        house = self.house_loads
        house["A"] = -load_a
        house["B"] = -load_b
        house["C"] = p_c
        profiles = self.house_load_profiles_kw
        profiles["A"] = -load_a
        profiles["B"] = -load_b
        profiles["C"] = -load_c_profile
        for meter, p, q, v in (
            (self.meters["A"], p_a, q_a, v_a),
            (self.meters["B"], p_b, q_b, v_b),
            (self.meters["C"], p_c, q_c, v_c),
        ):
            meter.power_kw = p
            meter.voltage_v = v
            meter.current_a = math.hypot(p, q) * 1000.0 / v
            meter.frequency_hz = frequency
        fs = self.feeder
        fs.losses_kw = losses
        fs.transformer_power_kw = p_a + p_b + p_c - losses

        # Plant-time counters, after the substep: a write's effect lasts exactly its timeout.
        if record:
            self.run_watchdogs(h)

    def run_watchdogs(self, dt_s: float) -> None:
        """Count the devices' watchdogs down by dt_s: the inverter's WSet revert timer and the EV
        charger's setpoint watchdog. Every substep does it on plant time; a lockstep plant whose
        controller is gone does it on wall time (the physics stays where it is)."""
        inv, ev = self.inverter, self.ev
        if inv.wset_enabled and inv.wset_revert_timeout_s > 0.0:
            inv.wset_revert_remaining_s -= dt_s
            if inv.wset_revert_remaining_s <= _EPS_S:
                inv.wset_revert_remaining_s = 0.0
                inv.wset_enabled = False
        ev.seconds_since_setpoint += dt_s
        timeout = ev.watchdog_timeout_s
        expired = timeout > 0.0 and ev.seconds_since_setpoint >= timeout - _EPS_S
        if expired and ev.setpoint_kw != 0.0:
            ev.setpoint_kw = 0.0

    # -- writes -----------------------------------------------------------------------------------

    def write_inverter_wset(self, power_kw: float) -> None:
        """Model 704 WSet: the signed AC active-power target (kW, + = injected)."""
        rated = self.inverter.rated_power_kw
        value = _number("inverter WSet power_kw", power_kw, -rated, rated, "kW")
        inv = self.inverter
        inv.wset_kw = value
        if inv.wset_enabled:
            inv.wset_revert_remaining_s = inv.wset_revert_timeout_s

    def write_inverter_wset_enabled(self, enabled: bool) -> None:
        """Model 704 WSetEna; enabling (re)starts the revert timer."""
        value = _flag("inverter WSetEna enabled", enabled)
        inv = self.inverter
        inv.wset_enabled = value
        inv.wset_revert_remaining_s = inv.wset_revert_timeout_s if value else 0.0

    def write_inverter_revert_timeout(self, seconds: float) -> None:
        """Model 704 WSetRvrtTms (s of plant time, 0 = never revert); restarts a running timer."""
        value = _number("inverter WSetRvrtTms seconds", seconds, 0.0, REVERT_TIMEOUT_MAX_S, "s")
        inv = self.inverter
        inv.wset_revert_timeout_s = value
        inv.wset_revert_remaining_s = value if inv.wset_enabled else 0.0

    def write_ev_setpoint(self, power_kw: float) -> None:
        """Charger AC power setpoint (kW, + = V2G); resets the watchdog."""
        ev = self.ev
        value = _number(
            "EV power setpoint_kw", power_kw, -ev.max_charge_kw, ev.max_discharge_kw, "kW"
        )
        if 0.0 < abs(value) < ev.min_power_kw:
            raise SetpointRejected(
                f"EV power setpoint_kw = {value:g} kW: inside the deadband; must be 0 or "
                f"{ev.min_power_kw:g} <= |p| (allowed: -{ev.max_charge_kw:g} to "
                f"-{ev.min_power_kw:g}, 0, or {ev.min_power_kw:g} to {ev.max_discharge_kw:g} kW)"
            )
        ev.setpoint_kw = value
        ev.seconds_since_setpoint = 0.0

    def write_ev_enabled(self, enabled: bool) -> None:
        """Charger power transfer on or off."""
        self.ev.enabled = _flag("EV enabled", enabled)

    def write_load_input(self, on: bool) -> None:
        """Programmable load input on or off (INP)."""
        self.load_c.input_on = _flag("load input on", on)

    def write_load_function(self, function: str) -> None:
        """Programmable load function (FUNC): POW (constant power) or LIST (house-load program)."""
        if not isinstance(function, str) or function.upper() not in LOAD_FUNCTIONS:
            raise SetpointRejected(f"load function = {function!r}: must be one of POW, LIST")
        self.load_c.function = function.upper()

    def write_load_power(self, power_w: float) -> None:
        """Programmable load constant-power setpoint (POW, W consumed)."""
        self.load_c.power_setpoint_w = _number("load power_w", power_w, 0.0, MAX_POWER_W, "W")

    def reset_load(self) -> None:
        """The load's *RST state: input off, POW mode, 0 W."""
        lc = self.load_c
        lc.input_on = False
        lc.function = "POW"
        lc.power_setpoint_w = 0.0

    # -- read-out ---------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The whole truth as JSON-able data (ISO 8601 times)."""
        ev = asdict(self.ev)
        ev["departure_time"] = ev["departure_time"].isoformat() if ev["departure_time"] else None
        ev["drive_energy_kwh"] = self.ev_drive_energy_kwh
        feeder = asdict(self.feeder)
        feeder["bus_voltage_v"] = self._feeder.voltage_magnitudes()
        feeder["lv_bus_voltage_v"] = self.config.feeder.lv_bus_voltage_v
        return {
            "now": self.now.isoformat(),
            "start": self.start.isoformat(),
            "elapsed_s": self.elapsed_s,
            "seed": self.config.seed,
            "inverter": asdict(self.inverter),
            "ev": ev,
            "load_c": asdict(self.load_c),
            "house_loads": dict(self.house_loads),
            "house_load_profiles_kw": dict(self.house_load_profiles_kw),
            "meters": {peer: asdict(meter) for peer, meter in self.meters.items()},
            "feeder": feeder,
        }
