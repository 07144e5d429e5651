"""The data one planning run works on: forecasts, prices, storage states and EV availability."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta

import numpy as np

from peers.assets import EvAsset, PeerAssets
from peers.interface import DeviceState, MarketContext


class PlanningError(ValueError):
    """The inputs admit no plan (e.g. the EV cannot reach its plug-out energy); says why."""


def _in_window(local_time: time, plug_in: time, plug_out: time) -> bool:
    if plug_in < plug_out:
        return plug_in <= local_time < plug_out
    return local_time >= plug_in or local_time < plug_out  # window crosses midnight


def _next_local(after: datetime, at: time, zone) -> datetime:
    """The first instant strictly after `after` whose local wall-clock time is `at` (as UTC)."""
    local = after.astimezone(zone)
    candidate = datetime.combine(local.date(), at, tzinfo=zone)
    while candidate <= local:
        candidate = datetime.combine(candidate.date() + timedelta(days=1), at, tzinfo=zone)
    return candidate.astimezone(after.tzinfo)


@dataclass(frozen=True, slots=True)
class EvHorizon:
    """Per-step EV availability and energy targets over a horizon.

    `required_kwh[k]` is the energy the battery must hold at the end of step k (0 = no target);
    `drive_kwh[k]` is the energy used on the road, taken off at the first unplugged step after a
    plug-out (departure energy minus expected arrival energy).
    """

    available: np.ndarray
    required_kwh: np.ndarray
    drive_kwh: np.ndarray
    initial_kwh: float
    departures: tuple[datetime, ...]


def ev_horizon(
    ev: EvAsset, zone, starts: list[datetime], interval_s: float, state: DeviceState
) -> EvHorizon:
    """Where the vehicle is over the horizon, from the charger's state and the daily window."""
    steps = len(starts)
    step = timedelta(seconds=interval_s)
    start = starts[0]
    scheduled = np.array(
        [_in_window(s.astimezone(zone).time(), ev.plug_in_local, ev.plug_out_local) for s in starts]
    )
    plugged_now = bool(scheduled[0]) if state.ev_plugged is None else bool(state.ev_plugged)
    available = scheduled.copy()
    if plugged_now:
        departure = state.ev_departure_time
        if departure is None or departure <= start:
            departure = _next_local(start, ev.plug_out_local, zone)
        next_plug_in = _next_local(departure, ev.plug_in_local, zone)
        for k, s in enumerate(starts):
            if s < departure:
                available[k] = s + step <= departure or s == start
            else:
                available[k] = scheduled[k] and s >= next_plug_in
    else:
        available[0] = False

    arrival_kwh = ev.energy_kwh(ev.arrival_soc_pct)
    departure_kwh = min(ev.energy_kwh(ev.departure_soc_pct), ev.energy_max_kwh)
    if plugged_now and state.ev_soc_pct is not None:
        initial_kwh = ev.energy_kwh(state.ev_soc_pct)
    else:
        initial_kwh = arrival_kwh  # the vehicle's energy matters from its arrival on
    required = np.zeros(steps)
    drive = np.zeros(steps)
    departures = []
    for k in range(steps - 1):
        if available[k] and not available[k + 1]:
            required[k] = departure_kwh
            drive[k + 1] = max(departure_kwh - arrival_kwh, 0.0)
            departures.append(starts[k] + step)
    return EvHorizon(available, required, drive, initial_kwh, tuple(departures))


def check_ev_reachable(ev: EvAsset, horizon: EvHorizon, dt_h: float) -> None:
    """Raise PlanningError when even charging flat out cannot meet a plug-out target."""
    energy = horizon.initial_kwh
    for k in range(len(horizon.available)):
        if horizon.available[k]:
            energy = min(ev.energy_max_kwh, energy + ev.max_charge_kw * ev.charge_efficiency * dt_h)
        energy -= horizon.drive_kwh[k]
        needed = horizon.required_kwh[k]
        if needed > 0 and energy + 1e-9 < needed:
            departure = horizon.departures[int(np.count_nonzero(horizon.required_kwh[:k]))]
            raise PlanningError(
                f"EV cannot reach its plug-out energy: needs {needed:.2f} kWh "
                f"({ev.departure_soc_pct:.0f} %) at {departure.isoformat()}, "
                f"at most {energy:.2f} kWh reachable from {horizon.initial_kwh:.2f} kWh "
                f"at {ev.max_charge_kw} kW"
            )


@dataclass(frozen=True, slots=True)
class HorizonInputs:
    """Everything a scheduler needs for one planning run (arrays have one value per step)."""

    starts: tuple[datetime, ...]
    dt_h: float
    load_kw: np.ndarray
    pv_kw: np.ndarray
    retail: np.ndarray
    feed_in: np.ndarray
    p2p_price: np.ndarray
    network_charge: float
    battery_kwh: float | None
    ev: EvHorizon | None

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
        if state.ev_plugged and state.ev_soc_pct is None:
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
        p2p_price=ctx.p2p_price_per_step(),
        network_charge=ctx.network_charge,
        battery_kwh=battery_kwh,
        ev=ev,
    )
