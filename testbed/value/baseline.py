"""The baseline: the metered day without a market, storage on plain rules (a loop, no optimiser).

- Battery (self-consumption): each interval it charges from the house's surplus (PV above the
  house load) and discharges into its deficit, within its power limits, the inverter's AC rating
  and its state-of-charge window; what it cannot take or give goes to or comes from the grid.
- EV (charge on arrival): while plugged, the cart charges at its full power until it holds the
  energy its next plug-out needs (`departure_soc_pct`), then idles; no V2G. It drives the metered
  energy of every interval it was away for (never below its window's bottom), the plug-in
  interval's before it charges.
- Every interval's net position is settled with the grid alone (import at retail, export at
  feed-in) by the settlement kernel.
Start energies are the run's; the end energies are valued like every other bill's
(`testbed.value.storage_value`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from peers.settlement_kernel import grid_only_bill
from testbed.value.metered_day import MeteredDay, PeerDay


@dataclass(frozen=True, slots=True)
class PeerSchedule:
    """A peer's schedule over the day (energies per interval, kWh; + = toward the grid)."""

    net_kwh: np.ndarray
    battery_kwh: np.ndarray  # battery terminal energy, + = discharge
    ev_kwh: np.ndarray  # charger AC energy, + = V2G
    battery_energy_kwh: np.ndarray | None  # stored, at each boundary (n + 1)
    ev_energy_kwh: np.ndarray | None
    p2p_bought_kwh: np.ndarray
    p2p_sold_kwh: np.ndarray


def _battery_rule(peer: PeerDay, dt_h: float) -> tuple[np.ndarray, np.ndarray]:
    bat = peer.battery
    assert bat is not None
    asset = bat.asset
    n = len(peer.load_kwh)
    energy = np.empty(n + 1)
    energy[0] = bat.energy_kwh[0]
    terminal = np.zeros(n)
    rated = bat.rated_power_kw * dt_h
    for k in range(n):
        surplus = peer.pv_kwh[k] - peer.load_kwh[k]
        e = energy[k]
        if surplus > 0:
            room = max(asset.energy_max_kwh - e, 0.0) / asset.charge_efficiency
            ac_floor = peer.pv_kwh[k] - rated  # the AC output may not exceed the rating
            charge = min(surplus, asset.max_charge_kw * dt_h, room)
            charge = max(charge, min(ac_floor, asset.max_charge_kw * dt_h, room))
            terminal[k] = -charge
            e += charge * asset.charge_efficiency
        else:
            available = max(e - asset.energy_min_kwh, 0.0) * asset.discharge_efficiency
            discharge = min(-surplus, asset.max_discharge_kw * dt_h, available)
            discharge = min(discharge, max(rated - peer.pv_kwh[k], 0.0))
            terminal[k] = discharge
            e -= discharge / asset.discharge_efficiency
        energy[k + 1] = e
    return terminal, energy


def _ev_rule(peer: PeerDay, dt_h: float) -> tuple[np.ndarray, np.ndarray]:
    ev = peer.ev
    assert ev is not None
    asset = ev.asset
    n = len(ev.plugged)
    energy = np.empty(n + 1)
    energy[0] = ev.energy_kwh[0]
    terminal = np.zeros(n)
    need = min(asset.departure_kwh, asset.energy_max_kwh)
    for k in range(n):
        e = energy[k] - min(ev.drive_kwh[k], max(energy[k] - asset.energy_min_kwh, 0.0))
        if ev.plugged[k]:
            room = max(need - e, 0.0) / asset.charge_efficiency
            charge = min(asset.max_charge_kw * dt_h, room)
            terminal[k] = -charge
            e += charge * asset.charge_efficiency
        energy[k + 1] = e
    return terminal, energy


def baseline_schedules(day: MeteredDay) -> dict[str, PeerSchedule]:
    """Every peer's schedule under the baseline rules."""
    schedules = {}
    for name, peer in day.peers.items():
        n = len(peer.load_kwh)
        battery = np.zeros(n)
        ev = np.zeros(n)
        battery_energy = ev_energy = None
        if peer.battery is not None:
            battery, battery_energy = _battery_rule(peer, day.dt_h)
        if peer.ev is not None:
            ev, ev_energy = _ev_rule(peer, day.dt_h)
        net = peer.pv_kwh - peer.load_kwh + battery + ev
        schedules[name] = PeerSchedule(
            net, battery, ev, battery_energy, ev_energy, np.zeros(n), np.zeros(n)
        )
    return schedules


def grid_only_cash(day: MeteredDay, schedule: PeerSchedule) -> float:
    """The cash bill of a schedule settled with the grid alone."""
    return float(np.sum(grid_only_bill(schedule.net_kwh, day.retail_tariff, day.feed_in_tariff)))
