"""The data one planning run works on: forecasts, prices, storage states and EV availability."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta, tzinfo

import numpy as np

from peers.assets import EvAsset, PeerAssets
from peers.interface import DeviceState, MarketContext


class PlanningError(ValueError):
    """The inputs admit no plan (e.g. the EV cannot reach its plug-out energy); says why."""


def _next_local(after: datetime, times: list[time], zone: tzinfo) -> datetime:
    """The first instant strictly after `after` whose local wall-clock time is one of `times`."""
    local = after.astimezone(zone)
    best: datetime | None = None
    for at in times:
        candidate = datetime.combine(local.date(), at, tzinfo=zone)
        while candidate <= local:
            candidate = datetime.combine(candidate.date() + timedelta(days=1), at, tzinfo=zone)
        best = candidate if best is None or candidate < best else best
    if best is None:
        raise ValueError("no local times of day given to find the next one")
    return best.astimezone(after.tzinfo)


@dataclass(frozen=True, slots=True)
class EvHorizon:
    """Per-step EV availability, energy targets and bounds over a horizon.

    `required_kwh[k]` is the energy the battery must hold at the end of step k (0 = no target);
    `drive_kwh[k]` is the energy drawn on the road in step k (unplugged steps). `floor_kwh[k]` is a
    lower bound on the energy at the end of step k that every valid schedule obeys (discharge
    stops at the reserve, driving only lowers it): the HEMS uses it to tighten its relaxation.
    """

    available: np.ndarray
    required_kwh: np.ndarray
    drive_kwh: np.ndarray
    floor_kwh: np.ndarray
    initial_kwh: float
    departures: tuple[datetime, ...]


def ev_horizon(
    ev: EvAsset, zone: tzinfo, starts: list[datetime], interval_s: float, state: DeviceState
) -> EvHorizon:
    """Where the vehicle is over the horizon, from the charger's state and the daily windows."""
    steps = len(starts)
    dt_h = interval_s / 3600.0
    step = timedelta(seconds=interval_s)
    start = starts[0]
    scheduled = np.array([ev.plugged_at(s.astimezone(zone).time()) for s in starts])
    plugged_now = bool(scheduled[0]) if state.ev_plugged is None else bool(state.ev_plugged)
    arrivals = [arrival for arrival, _ in ev.plug_windows_local]
    departures_local = [departure for _, departure in ev.plug_windows_local]
    available = scheduled.copy()
    if plugged_now:
        departure = state.ev_departure_time
        if departure is None or departure <= start:
            departure = _next_local(start, departures_local, zone)
        next_arrival = _next_local(departure - timedelta(seconds=1), arrivals, zone)
        for k, s in enumerate(starts):
            if s < departure:
                available[k] = s + step <= departure or k == 0
            else:
                available[k] = scheduled[k] and s >= next_arrival
    else:
        available[0] = False

    if state.ev_soc_pct is not None and np.isfinite(state.ev_soc_pct):
        initial_kwh = ev.energy_kwh(state.ev_soc_pct)
    else:
        initial_kwh = ev.departure_kwh  # away with no reading: assume it left as planned
    required = np.zeros(steps)
    drive = np.where(available, 0.0, ev.drive_kw * dt_h)
    departures = []
    for k in range(steps - 1):
        if available[k] and not available[k + 1]:
            required[k] = ev.departure_kwh
            departures.append(starts[k] + step)
    floor = np.empty(steps)
    level = initial_kwh
    for k in range(steps):
        if available[k]:
            level = min(level, ev.reserve_kwh)
        level -= drive[k]
        level = max(level, required[k])
        floor[k] = level
    return EvHorizon(available, required, drive, floor, initial_kwh, tuple(departures))


def check_ev_reachable(ev: EvAsset, horizon: EvHorizon, dt_h: float) -> None:
    """Raise PlanningError when even charging flat out cannot meet a plug-out target."""
    energy = horizon.initial_kwh
    departure_index = 0
    for k in range(len(horizon.available)):
        if horizon.available[k]:
            energy = min(
                max(ev.energy_max_kwh, horizon.initial_kwh),
                energy + ev.max_charge_kw * ev.charge_efficiency * dt_h,
            )
        energy -= horizon.drive_kwh[k]
        needed = horizon.required_kwh[k]
        if needed > 0:
            if energy + 1e-9 < needed:
                departure = horizon.departures[departure_index]
                raise PlanningError(
                    f"EV cannot reach its plug-out energy: needs {needed:.2f} kWh "
                    f"({ev.departure_soc_pct:g} %) at {departure.isoformat()}, "
                    f"at most {energy:.2f} kWh reachable from {horizon.initial_kwh:.2f} kWh "
                    f"at {ev.max_charge_kw:g} kW"
                )
            departure_index += 1


@dataclass(frozen=True, slots=True)
class HorizonInputs:
    """Everything a scheduler needs for one planning run (arrays have one value per step)."""

    starts: tuple[datetime, ...]
    dt_h: float
    load_kw: np.ndarray
    pv_kw: np.ndarray
    retail: np.ndarray
    feed_in: np.ndarray
    p2p_buy_price: np.ndarray  # what a planned P2P purchase is expected to cost per kWh
    p2p_sell_price: np.ndarray  # what a planned P2P sale is expected to earn per kWh
    battery_kwh: float | None
    ev: EvHorizon | None
    p2p_buy_cap_kw: np.ndarray | None = None  # P2P energy expected on offer per step (None: any)
    p2p_sell_cap_kw: np.ndarray | None = None  # P2P energy expected in demand per step

    @property
    def steps(self) -> int:
        return len(self.starts)


def horizon_inputs(
    assets: PeerAssets,
    ctx: MarketContext,
    state: DeviceState,
    load_kw: np.ndarray,
    pv_kw: np.ndarray,
) -> HorizonInputs:
    """Assemble and check the planning inputs; raise PlanningError naming what is missing."""
    starts = ctx.step_starts()
    for name, values in (("load_kw", load_kw), ("pv_kw", pv_kw)):
        if len(values) != ctx.horizon or not np.all(np.isfinite(values)):
            raise PlanningError(f"{name} forecast must have {ctx.horizon} finite values")
    battery_kwh = None
    if assets.battery is not None:
        if state.battery_soc_pct is None or not np.isfinite(state.battery_soc_pct):
            raise PlanningError("battery SoC unknown (DeviceState.battery_soc_pct is None)")
        battery_kwh = assets.battery.energy_kwh(state.battery_soc_pct)
    ev = None
    if assets.ev is not None:
        if state.ev_plugged and (state.ev_soc_pct is None or not np.isfinite(state.ev_soc_pct)):
            raise PlanningError("EV plugged but its SoC is unknown (DeviceState.ev_soc_pct)")
        ev = ev_horizon(assets.ev, assets.zone, starts, ctx.interval_s, state)
        check_ev_reachable(assets.ev, ev, ctx.dt_h)
    return HorizonInputs(
        starts=tuple(starts),
        dt_h=ctx.dt_h,
        load_kw=np.asarray(load_kw, dtype=float),
        pv_kw=np.asarray(pv_kw, dtype=float) if assets.pv is not None else np.zeros(ctx.horizon),
        retail=ctx.retail_per_step(),
        feed_in=ctx.feed_in_per_step(),
        p2p_buy_price=ctx.p2p_price_per_step() + ctx.network_charge,  # the buyer pays it
        p2p_sell_price=ctx.p2p_price_per_step(),
        battery_kwh=battery_kwh,
        ev=ev,
    )
