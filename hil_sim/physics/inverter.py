"""Peer A's hybrid inverter: PV and battery on one DC bus behind one AC rating (SunSpec model 704).

With WSet enabled, the battery covers the AC target minus the available PV, within its DC limits
and SoC window; when it cannot absorb the rest, PV is curtailed. With WSet disabled the battery
idles and AC = PV (curtailed only to the AC rating). The DC/AC stage itself is taken as lossless;
the battery's charge and discharge efficiencies carry the losses.
"""

from __future__ import annotations

from hil_sim.physics.battery import Storage


def dispatch(
    pv_available_kw: float,
    wset_enabled: bool,
    wset_kw: float,
    rated_power_kw: float,
    storage: Storage,
    max_charge_kw: float,
    max_discharge_kw: float,
    h_s: float,
) -> tuple[float, float]:
    """PV output and battery DC power (+ = discharge) for the next h seconds; AC = their sum."""
    if not wset_enabled:
        return (pv_available_kw if pv_available_kw < rated_power_kw else rated_power_kw), 0.0
    target = wset_kw
    if target > rated_power_kw:
        target = rated_power_kw
    elif target < -rated_power_kw:
        target = -rated_power_kw
    lower = -storage.charge_limit_kw(h_s)
    if lower < -max_charge_kw:
        lower = -max_charge_kw
    upper = storage.discharge_limit_kw(h_s, storage.energy_min_kwh)
    if upper > max_discharge_kw:
        upper = max_discharge_kw
    battery = target - pv_available_kw
    if battery < lower:
        battery = lower
    elif battery > upper:
        battery = upper
    pv = pv_available_kw
    if pv + battery > target:  # the battery cannot take the surplus: curtail PV
        pv = target - battery
        if pv < 0.0:
            pv = 0.0
    return pv, battery
