"""The baseline agent's rule-based schedule (no optimisation).

Battery: charges from PV surplus and discharges into the house deficit, within its power limits and
SoC window. EV: while plugged it charges at full power to its plug-out energy, except during the
evening peak, when it discharges into the house deficit while above its reserve SoC, as long as it
can still reach its plug-out energy afterwards. Powers below the charger's deadband are dropped.
"""

from __future__ import annotations

from datetime import time

import numpy as np

from peers.assets import EvAsset, PeerAssets
from peers.horizon import EvHorizon, HorizonInputs
from peers.schedule import Schedule


def _in_peak(local_time: time, peak_start: time, peak_end: time) -> bool:
    return peak_start <= local_time < peak_end


def rule_based_schedule(
    inputs: HorizonInputs,
    assets: PeerAssets,
    evening_peak: tuple[time, time] = (time(18, 0), time(22, 0)),
) -> Schedule:
    steps = inputs.steps
    dt = inputs.dt_h
    pv = inputs.pv_kw.copy()
    load = inputs.load_kw
    battery_kw = np.zeros(steps)
    ev_kw = np.zeros(steps)
    battery_kwh = None
    ev_kwh = None

    battery = assets.battery
    if battery is not None and inputs.battery_kwh is not None:
        battery_kwh = np.empty(steps + 1)
        energy = inputs.battery_kwh
        battery_kwh[0] = energy
        for k in range(steps):
            surplus = pv[k] - load[k]
            if surplus > 0:
                room = max(battery.energy_max_kwh - energy, 0.0)
                charge = min(
                    surplus, battery.max_charge_kw, room / (battery.charge_efficiency * dt)
                )
                battery_kw[k] = -charge
                energy += battery.charge_efficiency * charge * dt
            else:
                stored = max(energy - battery.energy_min_kwh, 0.0)
                discharge = min(
                    -surplus, battery.max_discharge_kw, stored * battery.discharge_efficiency / dt
                )
                battery_kw[k] = discharge
                energy -= discharge / battery.discharge_efficiency * dt
            battery_kwh[k + 1] = energy

    ev = assets.ev
    horizon = inputs.ev
    if ev is not None and horizon is not None:
        ev_kwh = np.empty(steps + 1)
        energy = horizon.initial_kwh
        ev_kwh[0] = energy
        full_step_kwh = ev.max_charge_kw * ev.charge_efficiency * dt
        default_target = min(ev.energy_kwh(ev.departure_soc_pct), ev.energy_max_kwh)
        reserve_kwh = ev.energy_kwh(ev.reserve_soc_pct)
        # for each step: the target energy and the plugged steps left up to the next plug-out
        target = np.full(steps, default_target)
        steps_left = np.full(steps, np.inf)
        next_required = None
        for k in range(steps - 1, -1, -1):
            if horizon.required_kwh[k] > 0:
                next_required = k
            if next_required is not None and horizon.available[k]:
                target[k] = horizon.required_kwh[next_required]
                steps_left[k] = np.count_nonzero(horizon.available[k : next_required + 1])
        for k in range(steps):
            energy -= horizon.drive_kwh[k]
            if horizon.available[k]:
                local = inputs.starts[k].astimezone(assets.zone).time()
                deficit = load[k] - pv[k] - battery_kw[k]
                shortfall = target[k] - energy
                must_charge = shortfall > (steps_left[k] - 1) * full_step_kwh - 1e-9
                power = 0.0
                if _in_peak(local, *evening_peak) and not must_charge and deficit > 0:
                    above_reserve = max(energy - reserve_kwh, 0.0) * ev.discharge_efficiency / dt
                    recharge_kwh = (steps_left[k] - 1) * full_step_kwh
                    spare = max(energy - (target[k] - recharge_kwh), 0.0) * ev.discharge_efficiency
                    power = min(deficit, ev.max_discharge_kw, above_reserve, spare / dt)
                elif shortfall > 0:
                    room = ev.energy_max_kwh - energy
                    power = -min(ev.max_charge_kw, shortfall / (ev.charge_efficiency * dt))
                    if -power < ev.min_power_kw:
                        power = -min(ev.min_power_kw, room / (ev.charge_efficiency * dt))
                if abs(power) < ev.min_power_kw:
                    power = 0.0
                ev_kw[k] = power
                if power < 0:
                    energy += -power * ev.charge_efficiency * dt
                else:
                    energy -= power / ev.discharge_efficiency * dt
            ev_kwh[k + 1] = energy

    net = pv - load + battery_kw + ev_kw
    return Schedule(
        pv_used_kw=pv,
        battery_kw=battery_kw,
        ev_kw=ev_kw,
        net_kw=net,
        battery_kwh=battery_kwh,
        ev_kwh=ev_kwh,
        info={"planner": "rules"},
    )


def mobility_first_ev(
    ev: EvAsset, horizon: EvHorizon, dt_h: float
) -> tuple[np.ndarray, np.ndarray]:
    """EV power and energy when the vehicle just charges flat out toward its plug-out energy.

    The EV part of the safe plan: no trading, but a vehicle that needs energy is not left idle.
    """
    steps = len(horizon.available)
    power = np.zeros(steps)
    energy = np.empty(steps + 1)
    energy[0] = level = horizon.initial_kwh
    for k in range(steps):
        level -= horizon.drive_kwh[k]
        room = ev.departure_kwh - level
        if horizon.available[k] and room > 0:
            charge = min(ev.max_charge_kw, room / (ev.charge_efficiency * dt_h))
            charge = max(charge, ev.min_power_kw)
            power[k] = -charge
            level += charge * ev.charge_efficiency * dt_h
        energy[k + 1] = level
    return power, energy
