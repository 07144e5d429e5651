"""The emulated plant: every device of a site (labspec.site), stepped by one clock.

Each peer of the site is composed from device models: inverters (hybrid: PV and battery; battery;
PV) with the peer's array and battery behind them, an EV charger with the peer's vehicle, a
programmable load that draws the peer's house load, the house load itself when no device draws it,
and the PCC meter that sees their sum. The feeder's power flow comes from the site's feeder.

This file fixes the interface the protocol servers use; the physics lives in `hil_sim.physics`.
Power is in kW with the generator convention (positive = delivered toward the grid), energy in kWh,
state of charge in %. Times are timezone-aware UTC.

Contract used by the servers (hil_sim/servers/*):
- `plant.now`, `plant.advance(dt_s)`.
- State snapshots, refreshed by every `advance`, by device id: `plant.inverters`, `plant.evs`,
  `plant.loads`; by peer: `plant.meters`, `plant.house_loads`; and `plant.feeder`. The first
  device of each kind is also `plant.inverter`, `plant.ev`, `plant.load_c` (the default site's
  inverter, EV charger and programmable load).
- Writes go through `plant.write_*(value, device=None)` (None = the first device of the kind);
  each checks the device's limits and raises `SetpointRejected` with a reason that names the
  quantity, the value and the allowed range, leaving the plant unchanged.
- `plant.state_dict()` gives the whole truth as JSON-able data for the simulation-control endpoint.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from numbers import Real
from typing import Any, TypeVar

from hil_sim.config import PlantConfig
from hil_sim.physics.battery import Storage
from hil_sim.physics.ev import PlugSchedule, charger_power_kw, drive
from hil_sim.physics.feeder import RadialFeeder
from hil_sim.physics.inverter import dispatch
from hil_sim.physics.profiles import STEP_S, DayProfiles, ProfileBook
from labspec.site import BatteryInverter, EvCharger, HybridInverter, Peer, PvInverter, Site

_T = TypeVar("_T")


class SetpointRejected(ValueError):
    """A write outside the device's limits; the device keeps its previous setpoint."""


@dataclass(slots=True)
class InverterState:
    """An inverter with what is behind it: a PV array and a battery (hybrid), a battery, or an
    array (a PV inverter has no battery: capacity, limits and SoC are 0)."""

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
    """A bidirectional charger and the vehicle's battery."""

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
    """A programmable AC electronic load (its LIST program is the peer's house load)."""

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
    """The low-voltage feeder from the transformer to every peer's PCC."""

    transformer_power_kw: float  # + = export to the MV grid
    losses_kw: float
    loss_kwh: float


MAX_SUBSTEP_S = 1.0
_EPS_S = 1e-9
LOAD_FUNCTIONS = ("POW", "LIST")
REVERT_TIMEOUT_MAX_S = 4294967295.0  # SunSpec uint32


def _number(quantity: str, value: object, low: float, high: float, unit: str) -> float:
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


def _positive_seconds(dt_s: object) -> float:
    """`dt_s` as a float, or ValueError when it is not a finite number of seconds > 0."""
    if isinstance(dt_s, bool) or not isinstance(dt_s, Real) or not math.isfinite(dt_s) or dt_s <= 0:
        raise ValueError(f"dt_s = {dt_s!r}: must be a finite number of seconds > 0")
    return float(dt_s)


def _flag(quantity: str, value: object) -> bool:
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    raise SetpointRejected(f"{quantity} = {value!r}: must be true or false")


class _Inverter:
    """An inverter's model: its state, the battery behind it (if any), its substep's powers."""

    __slots__ = ("ac", "battery_kw", "has_pv", "id", "pv", "state", "storage")

    def __init__(self, device_id: str, state: InverterState, storage: Storage | None, has_pv: bool):
        self.id = device_id
        self.state = state
        self.storage = storage
        self.has_pv = has_pv
        self.pv = self.battery_kw = self.ac = 0.0


class _Charger:
    """An EV charger's model: state, the vehicle's battery, plug schedule, the substep's power."""

    __slots__ = ("battery", "drive_energy_kwh", "drive_kw", "id", "plug", "plug_check_local_s",
                 "power_kw", "reserve_kwh", "state")  # fmt: skip

    def __init__(self, device_id: str, state: EvState, battery: Storage, plug: PlugSchedule,
                 reserve_kwh: float, drive_kw: float):  # fmt: skip
        self.id = device_id
        self.state = state
        self.battery = battery
        self.plug = plug
        self.reserve_kwh = reserve_kwh
        self.drive_kw = drive_kw
        self.drive_energy_kwh = 0.0  # drawn from the vehicle's battery while away
        self.plug_check_local_s = -math.inf
        self.power_kw = 0.0


class _Load:
    """A programmable load's model: state, rating, the substep's power."""

    __slots__ = ("id", "max_power_w", "q_w", "state", "w")

    def __init__(self, device_id: str, state: ProgrammableLoadState, max_power_w: float):
        self.id = device_id
        self.state = state
        self.max_power_w = max_power_w
        self.w = self.q_w = 0.0


class _Peer:
    """A peer's composition: its devices behind the PCC, its house load and its meter."""

    __slots__ = ("charger", "id", "index", "inverters", "load", "meter", "p", "q", "tan_phi")

    def __init__(self, peer_id: str, index: int, tan_phi: float, meter: MeterState):
        self.id = peer_id
        self.index = index  # position in the feeder's load list
        self.tan_phi = tan_phi
        self.meter = meter
        self.inverters: list[_Inverter] = []
        self.charger: _Charger | None = None
        self.load: _Load | None = None
        self.p = self.q = 0.0


class Plant:
    """Every device of a site stepped by one clock; see the module docstring for the contract.

    `advance(dt_s)` integrates in equal substeps of at most one second. In each substep every input
    (PV, house loads, frequency, plug state) is sampled at the substep's end, every device's power
    is held for the substep, and every energy (batteries, EVs, meters, losses) is integrated with
    that same dt, so the balances close exactly. State attributes are the state at `now`: the
    powers of the substep that just ended and the totals up to `now`. Writes take effect from the
    next substep; counters (WSet revert, EV watchdog) run on plant time.
    """

    def __init__(self, config: PlantConfig | None = None) -> None:
        self.config = config = config if config is not None else PlantConfig()
        self.site: Site = config.site
        site = self.site
        self.start = config.start_utc
        self.elapsed_s = 0.0
        self._elapsed_error_s = 0.0  # compensated summation: 10 x advance(0.1) is exactly 1 s
        offset = self.start.astimezone(site.site.zone).utcoffset()
        offset_s = offset.total_seconds() if offset is not None else 0.0
        local_start = self.start + timedelta(seconds=offset_s)
        self._day0 = local_start.date()
        self._t0_local_s = (
            local_start.hour * 3600.0
            + local_start.minute * 60.0
            + local_start.second
            + local_start.microsecond / 1e6
        )
        self._profiles = ProfileBook(config, offset_s)
        self._day_index = 0
        self._today: DayProfiles = self._profiles.day(self._day0)
        self._profiles.day(self._day0 + timedelta(days=1))  # a day's run crosses midnight

        feeder = site.feeder
        v0 = feeder.transformer.lv_voltage_v
        f0 = feeder.nominal_frequency_hz
        self._feeder = RadialFeeder(
            feeder.resolved_lines(),
            v0,
            [peer.bus for peer in site.peers.values()],
            slack_bus=feeder.slack_bus,
        )
        self.meters: dict[str, MeterState] = {}
        self._peers: list[_Peer] = []
        for index, (peer_id, spec) in enumerate(site.peers.items()):
            meter = MeterState(
                power_kw=0.0, voltage_v=v0, current_a=0.0, frequency_hz=f0,
                import_kwh=0.0, export_kwh=0.0,
            )  # fmt: skip
            self.meters[peer_id] = meter
            tan_phi = math.tan(math.acos(spec.load.power_factor))
            self._peers.append(_Peer(peer_id, index, tan_phi, meter))
        by_id = {peer.id: peer for peer in self._peers}
        self.inverters: dict[str, InverterState] = {}
        self.evs: dict[str, EvState] = {}
        self.loads: dict[str, ProgrammableLoadState] = {}
        self.meter_peers: dict[str, str] = {}  # meter device id -> peer
        self._inverters: dict[str, _Inverter] = {}
        self._chargers: dict[str, _Charger] = {}
        self._loads: dict[str, _Load] = {}
        for device_id, device in site.devices.items():
            peer = by_id[device.peer]
            spec = site.peers[device.peer]
            if isinstance(device, HybridInverter | BatteryInverter | PvInverter):
                inverter = self._make_inverter(device_id, device, spec, v0, f0)
                peer.inverters.append(inverter)
                self._inverters[device_id] = inverter
                self.inverters[device_id] = inverter.state
            elif device.kind == "ev_charger":
                charger = self._make_charger(device_id, device, spec)
                peer.charger = charger
                self._chargers[device_id] = charger
                self.evs[device_id] = charger.state
            elif device.kind == "programmable_load":
                load = _Load(
                    device_id,
                    ProgrammableLoadState(
                        input_on=device.power_on_input_on,
                        function=device.power_on_function,
                        power_setpoint_w=device.power_on_power_w,
                        power_w=0.0,
                        voltage_v=v0,
                        current_a=0.0,
                        energy_wh=0.0,
                    ),
                    device.max_power_kw * 1000.0,
                )
                peer.load = load
                self._loads[device_id] = load
                self.loads[device_id] = load.state
            else:
                self.meter_peers[device_id] = device.peer
        self.house_loads: dict[str, float] = dict.fromkeys(site.peers, 0.0)
        self.house_load_profiles_kw: dict[str, float] = dict.fromkeys(site.peers, 0.0)
        self.feeder = FeederState(transformer_power_kw=0.0, losses_kw=0.0, loss_kwh=0.0)
        for charger in self._chargers.values():
            self._update_plug(charger, self._t0_local_s)
        self._substep(0.0, 0.0, record=False)  # the state at `start`, nothing integrated

    def _make_inverter(
        self, device_id: str, device: HybridInverter | BatteryInverter | PvInverter, spec: Peer,
        v0: float, f0: float,
    ) -> _Inverter:  # fmt: skip
        battery = spec.battery if not isinstance(device, PvInverter) else None
        storage = None
        max_charge = max_discharge = 0.0
        if battery is not None and not isinstance(device, PvInverter):
            storage = Storage(
                battery.capacity_kwh,
                battery.initial_soc_pct,
                battery.soc_min_pct,
                battery.soc_max_pct,
                battery.charge_efficiency,
                battery.discharge_efficiency,
            )
            max_charge, max_discharge = battery.max_charge_kw, battery.max_discharge_kw
            if device.max_charge_kw is not None:
                max_charge = min(max_charge, device.max_charge_kw)
            if device.max_discharge_kw is not None:
                max_discharge = min(max_discharge, device.max_discharge_kw)
        revert_s = 0.0 if isinstance(device, PvInverter) else device.power_on_revert_timeout_s
        state = InverterState(
            rated_power_kw=device.rated_power_kw,
            pv_available_kw=0.0,
            pv_power_kw=0.0,
            battery_power_kw=0.0,
            ac_power_kw=0.0,
            soc_pct=storage.soc_pct if storage is not None else 0.0,
            battery_capacity_kwh=battery.capacity_kwh if battery is not None else 0.0,
            battery_max_charge_kw=max_charge,
            battery_max_discharge_kw=max_discharge,
            soc_min_pct=battery.soc_min_pct if battery is not None else 0.0,
            soc_max_pct=battery.soc_max_pct if battery is not None else 0.0,
            wset_kw=0.0,
            wset_enabled=False,
            wset_revert_timeout_s=revert_s,
            wset_revert_remaining_s=0.0,
            ac_injected_kwh=0.0,
            ac_absorbed_kwh=0.0,
            pv_energy_kwh=0.0,
            battery_charged_kwh=0.0,
            battery_discharged_kwh=0.0,
            voltage_v=v0,
            frequency_hz=f0,
        )
        has_pv = not isinstance(device, BatteryInverter) and spec.pv is not None
        return _Inverter(device_id, state, storage, has_pv)

    def _make_charger(self, device_id: str, device: EvCharger, spec: Peer) -> _Charger:
        ev = spec.ev
        if ev is None:  # the site checks that a charger's peer has a vehicle
            raise ValueError(f"EV charger {device_id}: peer {device.peer} has no [ev]")
        battery = Storage(
            ev.capacity_kwh,
            ev.initial_soc_pct,
            ev.soc_min_pct,
            ev.soc_max_pct,
            ev.charge_efficiency,
            ev.discharge_efficiency,
        )
        max_charge, max_discharge = ev.max_charge_kw, ev.max_discharge_kw
        if device.max_charge_kw is not None:
            max_charge = min(max_charge, device.max_charge_kw)
        if device.max_discharge_kw is not None:
            max_discharge = min(max_discharge, device.max_discharge_kw)
        state = EvState(
            plugged=False,
            departure_time=None,
            soc_pct=battery.soc_pct,
            capacity_kwh=ev.capacity_kwh,
            power_kw=0.0,
            setpoint_kw=0.0,
            enabled=True,
            status="unplugged",
            max_charge_kw=max_charge,
            max_discharge_kw=max_discharge,
            min_power_kw=ev.min_power_kw,
            ramp_kw_per_s=ev.ramp_kw_per_s,
            reserve_soc_pct=ev.reserve_soc_pct,
            soc_min_pct=ev.soc_min_pct,
            soc_max_pct=ev.soc_max_pct,
            watchdog_timeout_s=device.watchdog_timeout_s,
            seconds_since_setpoint=0.0,
            energy_charged_kwh=0.0,
            energy_discharged_kwh=0.0,
        )
        reserve_kwh = ev.capacity_kwh * ev.reserve_soc_pct / 100.0
        return _Charger(
            device_id, state, battery, PlugSchedule(ev.plug_windows), reserve_kwh, ev.drive_kw
        )

    # -- the first device of each kind (the default site's inverter, EV charger and load) --------

    @property
    def inverter(self) -> InverterState:
        return next(iter(self.inverters.values()))

    @property
    def ev(self) -> EvState:
        return next(iter(self.evs.values()))

    @property
    def load_c(self) -> ProgrammableLoadState:
        return next(iter(self.loads.values()))

    @property
    def ev_drive_energy_kwh(self) -> float:
        """Energy the first EV drew from its battery while away (kWh)."""
        return next(iter(self._chargers.values())).drive_energy_kwh

    # -- time -------------------------------------------------------------------------------------

    @property
    def now(self) -> datetime:
        """Plant time (UTC)."""
        return self.start + timedelta(seconds=self.elapsed_s)

    def advance(self, dt_s: float) -> None:
        """Step the plant by dt_s seconds of plant time (substeps of at most one second)."""
        dt_s = _positive_seconds(dt_s)
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

    def _update_plug(self, charger: _Charger, local_s: float) -> None:
        tod = local_s % 86400.0
        plugged = charger.plug.plugged(tod)
        charger.plug_check_local_s = local_s + charger.plug.seconds_to_next_boundary(tod)
        ev = charger.state
        if plugged != ev.plugged or (plugged and ev.departure_time is None):
            ev.plugged = plugged
            if plugged:
                departure = self.now + timedelta(seconds=charger.plug.seconds_to_departure(tod))
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
        pv_profiles = today.pv_kw
        load_profiles = today.house_load_kw
        fl = today.frequency_hz
        frequency = fl[k] + frac * (fl[k + 1] - fl[k])
        dt = h if h > 0.0 else 1.0
        house = self.house_loads
        profiles = self.house_load_profiles_kw

        # Every device's power for the substep, and each peer's PCC power (P and Q).
        load_va = []
        for peer in self._peers:
            pv_list = pv_profiles.get(peer.id)
            pv_available = (
                pv_list[k] + frac * (pv_list[k + 1] - pv_list[k]) if pv_list is not None else 0.0
            )
            ll = load_profiles[peer.id]
            house_load = ll[k] + frac * (ll[k + 1] - ll[k])
            device_p = 0.0
            device_q = 0.0
            for inverter in peer.inverters:
                inv = inverter.state
                available = pv_available if inverter.has_pv else 0.0
                if inverter.storage is None:  # a PV inverter: the array, up to the AC rating
                    pv = available if available < inv.rated_power_kw else inv.rated_power_kw
                    battery_kw = 0.0
                else:
                    pv, battery_kw = dispatch(
                        available,
                        inv.wset_enabled,
                        inv.wset_kw,
                        inv.rated_power_kw,
                        inverter.storage,
                        inv.battery_max_charge_kw,
                        inv.battery_max_discharge_kw,
                        dt,
                    )
                inverter.pv = pv
                inverter.battery_kw = battery_kw
                inverter.ac = pv + battery_kw
                inv.pv_available_kw = available
                device_p += inverter.ac
            charger = peer.charger
            if charger is not None:
                if local_s >= charger.plug_check_local_s:
                    self._update_plug(charger, local_s)
                ev = charger.state
                charger.power_kw = charger_power_kw(
                    ev.power_kw, ev.setpoint_kw, ev.enabled, ev.plugged, ev, charger.battery,
                    charger.reserve_kwh, dt,
                )  # fmt: skip
                device_p += charger.power_kw
            load = peer.load
            unmetered = house_load
            if load is not None:
                lcs = load.state
                if not lcs.input_on:
                    load_w = 0.0
                elif lcs.function == "LIST":
                    load_w = house_load * 1000.0
                else:
                    load_w = lcs.power_setpoint_w
                load.w = load_w
                load.q_w = load_w * peer.tan_phi if lcs.function == "LIST" else 0.0
                device_p += -load_w / 1000.0
                device_q += -load.q_w / 1000.0
                unmetered = 0.0  # the load draws the house load: nothing else behind the PCC
            peer.p = p = device_p - unmetered
            peer.q = q = device_q - unmetered * peer.tan_phi
            house[peer.id] = -unmetered if load is None else -load.w / 1000.0
            profiles[peer.id] = -house_load
            load_va.append(complex(-p * 1000.0, -q * 1000.0))

        feeder = self._feeder
        feeder.solve(load_va)
        voltage = feeder.load_voltage
        losses = feeder.losses_kw

        # Integrate every energy with the same h, then publish the substep's state.
        hours = h / 3600.0
        total_p = 0.0
        for peer in self._peers:
            v = abs(voltage[peer.index])
            for inverter in peer.inverters:
                inv = inverter.state
                storage = inverter.storage
                ac = inverter.ac
                if record:
                    if storage is not None:
                        storage.apply(inverter.battery_kw, h)
                    if ac >= 0.0:
                        inv.ac_injected_kwh += ac * hours
                    else:
                        inv.ac_absorbed_kwh -= ac * hours
                    inv.pv_energy_kwh += inverter.pv * hours
                inv.pv_power_kw = inverter.pv
                inv.battery_power_kw = inverter.battery_kw
                inv.ac_power_kw = ac
                if storage is not None:
                    inv.soc_pct = storage.soc_pct
                    inv.battery_charged_kwh = storage.charged_kwh
                    inv.battery_discharged_kwh = storage.discharged_kwh
                inv.voltage_v = v
                inv.frequency_hz = frequency
            charger = peer.charger
            if charger is not None:
                ev = charger.state
                ev_kw = charger.power_kw
                if record:
                    charger.battery.apply(ev_kw, h)
                    if not ev.plugged:
                        charger.drive_energy_kwh += drive(charger.battery, charger.drive_kw, h)
                    if ev_kw >= 0.0:
                        ev.energy_discharged_kwh += ev_kw * hours
                    else:
                        ev.energy_charged_kwh -= ev_kw * hours
                ev.power_kw = ev_kw
                ev.soc_pct = charger.battery.soc_pct
                if not ev.plugged:
                    ev.status = "unplugged"
                elif ev_kw > 0.0:
                    ev.status = "discharging"
                elif ev_kw < 0.0:
                    ev.status = "charging"
                else:
                    ev.status = "idle"
            load = peer.load
            if load is not None:
                lcs = load.state
                if record:
                    lcs.energy_wh += load.w * hours
                lcs.power_w = load.w
                lcs.voltage_v = v
                lcs.current_a = math.hypot(load.w, load.q_w) / v
            meter = peer.meter
            p = peer.p
            if record:
                if p >= 0.0:
                    meter.export_kwh += p * hours
                else:
                    meter.import_kwh -= p * hours
            meter.power_kw = p
            meter.voltage_v = v
            meter.current_a = math.hypot(p, peer.q) * 1000.0 / v
            meter.frequency_hz = frequency
            total_p += p
        fs = self.feeder
        if record:
            fs.loss_kwh += losses * hours
        fs.losses_kw = losses
        fs.transformer_power_kw = total_p - losses

        # Plant-time counters, after the substep: a write's effect lasts exactly its timeout.
        if record:
            self.run_watchdogs(h)

    def run_watchdogs(self, dt_s: float) -> None:
        """Count the devices' watchdogs down by dt_s: every inverter's WSet revert timer and every
        EV charger's setpoint watchdog. Every substep does it on plant time; a lockstep plant whose
        controller is gone does it on wall time (the physics stays where it is)."""
        for inverter in self._inverters.values():
            inv = inverter.state
            if inv.wset_enabled and inv.wset_revert_timeout_s > 0.0:
                inv.wset_revert_remaining_s -= dt_s
                if inv.wset_revert_remaining_s <= _EPS_S:
                    inv.wset_revert_remaining_s = 0.0
                    inv.wset_enabled = False
        for charger in self._chargers.values():
            ev = charger.state
            ev.seconds_since_setpoint += dt_s
            timeout = ev.watchdog_timeout_s
            expired = timeout > 0.0 and ev.seconds_since_setpoint >= timeout - _EPS_S
            if expired and ev.setpoint_kw != 0.0:
                ev.setpoint_kw = 0.0

    # -- writes -----------------------------------------------------------------------------------

    def _inverter(self, device: str | None) -> InverterState:
        return self._one(self.inverters, device, "inverter")

    def _one(self, table: dict[str, _T], device: str | None, what: str) -> _T:
        if device is None:
            if not table:
                raise SetpointRejected(f"the site has no {what}")
            return next(iter(table.values()))
        try:
            return table[device]
        except KeyError:
            raise SetpointRejected(
                f"no {what} {device!r}; the site's: {', '.join(table) or 'none'}"
            ) from None

    def write_inverter_wset(self, power_kw: float, device: str | None = None) -> None:
        """Model 704 WSet: the signed AC active-power target (kW, + = injected)."""
        inv = self._inverter(device)
        rated = inv.rated_power_kw
        value = _number("inverter WSet power_kw", power_kw, -rated, rated, "kW")
        inv.wset_kw = value
        if inv.wset_enabled:
            inv.wset_revert_remaining_s = inv.wset_revert_timeout_s

    def write_inverter_wset_enabled(self, enabled: bool, device: str | None = None) -> None:
        """Model 704 WSetEna; enabling (re)starts the revert timer."""
        inv = self._inverter(device)
        value = _flag("inverter WSetEna enabled", enabled)
        inv.wset_enabled = value
        inv.wset_revert_remaining_s = inv.wset_revert_timeout_s if value else 0.0

    def write_inverter_revert_timeout(self, seconds: float, device: str | None = None) -> None:
        """Model 704 WSetRvrtTms (s of plant time, 0 = never revert); restarts a running timer."""
        inv = self._inverter(device)
        value = _number("inverter WSetRvrtTms seconds", seconds, 0.0, REVERT_TIMEOUT_MAX_S, "s")
        inv.wset_revert_timeout_s = value
        inv.wset_revert_remaining_s = value if inv.wset_enabled else 0.0

    def write_ev_setpoint(self, power_kw: float, device: str | None = None) -> None:
        """Charger AC power setpoint (kW, + = V2G); resets the watchdog."""
        ev: EvState = self._one(self.evs, device, "EV charger")
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

    def write_ev_enabled(self, enabled: bool, device: str | None = None) -> None:
        """Charger power transfer on or off."""
        ev: EvState = self._one(self.evs, device, "EV charger")
        ev.enabled = _flag("EV enabled", enabled)

    def write_load_input(self, on: bool, device: str | None = None) -> None:
        """Programmable load input on or off (INP)."""
        load: ProgrammableLoadState = self._one(self.loads, device, "programmable load")
        load.input_on = _flag("load input on", on)

    def write_load_function(self, function: str, device: str | None = None) -> None:
        """Programmable load function (FUNC): POW (constant power) or LIST (house-load program)."""
        load: ProgrammableLoadState = self._one(self.loads, device, "programmable load")
        if not isinstance(function, str) or function.upper() not in LOAD_FUNCTIONS:
            raise SetpointRejected(f"load function = {function!r}: must be one of POW, LIST")
        load.function = function.upper()

    def write_load_power(self, power_w: float, device: str | None = None) -> None:
        """Programmable load constant-power setpoint (POW, W consumed)."""
        model: _Load = self._one(self._loads, device, "programmable load")
        model.state.power_setpoint_w = _number("load power_w", power_w, 0.0, model.max_power_w, "W")

    def load_max_power_w(self, device: str | None = None) -> float:
        """The programmable load's rating (W)."""
        model: _Load = self._one(self._loads, device, "programmable load")
        return model.max_power_w

    def reset_load(self, device: str | None = None) -> None:
        """The load's *RST state: input off, POW mode, 0 W."""
        lc: ProgrammableLoadState = self._one(self.loads, device, "programmable load")
        lc.input_on = False
        lc.function = "POW"
        lc.power_setpoint_w = 0.0

    # -- read-out ---------------------------------------------------------------------------------

    def _ev_dict(self, charger: _Charger) -> dict[str, Any]:
        ev = asdict(charger.state)
        ev["departure_time"] = ev["departure_time"].isoformat() if ev["departure_time"] else None
        ev["drive_energy_kwh"] = charger.drive_energy_kwh
        return ev

    def state_dict(self) -> dict[str, Any]:
        """The whole truth as JSON-able data (ISO 8601 times)."""
        feeder = asdict(self.feeder)
        feeder["bus_voltage_v"] = self._feeder.voltage_magnitudes()
        feeder["lv_bus_voltage_v"] = self.site.feeder.transformer.lv_voltage_v
        feeder["transformer_rated_kva"] = self.site.feeder.transformer.rated_kva
        chargers = {d: self._ev_dict(c) for d, c in self._chargers.items()}
        state: dict[str, Any] = {
            "now": self.now.isoformat(),
            "start": self.start.isoformat(),
            "elapsed_s": self.elapsed_s,
            "seed": self.config.seed,
            "inverters": {d: asdict(s) for d, s in self.inverters.items()},
            "evs": chargers,
            "loads": {d: asdict(s) for d, s in self.loads.items()},
            "house_loads": dict(self.house_loads),
            "house_load_profiles_kw": dict(self.house_load_profiles_kw),
            "meters": {peer: asdict(meter) for peer, meter in self.meters.items()},
            "feeder": feeder,
        }
        # the first device of each kind under its old name (the default site's devices)
        if self.inverters:
            state["inverter"] = asdict(self.inverter)
        if chargers:
            state["ev"] = next(iter(chargers.values()))
        if self.loads:
            state["load_c"] = asdict(self.load_c)
        return state
