"""The perfect-foresight optimum: the community's cheapest day on the same metering (one LP).

Decision variables per interval: every battery's and cart's charge and discharge energy, each
peer's P2P purchases and sales, and what each peer imports from and exports to the grid. Fixed:
the metered house load and PV of every peer. Constraints, as the plant enforces them:
- power balance at each PCC: pv - load + discharge - charge = export - import + sold - bought;
- P2P energy sold = P2P energy bought, every interval;
- stored energy: e[k+1] = e[k] + eta_c x charge - discharge / eta_d (- driving, for the cart);
  each storage starts with the run's energy and stays within its state-of-charge window;
- power limits (charge, discharge) and the inverter's AC rating (|pv + battery| <= rating);
- the cart charges and discharges only while plugged, drives the metered energy while away, and
  holds its plug-out energy (`departure_soc_pct`) at every plug-out, or what the run's cart held
  there when that was less (a run that could not reach it stays feasible).
The plant's other rules (ramp rates, the charger's minimum-power deadband, the cart's V2G reserve,
no simultaneous charge and discharge) are left out: they only bind at a finer time scale or make
the problem non-convex, and leaving a rule out can only lower the optimum, so it stays a true
lower bound of every run's bill on the same day.

Objective: the community's bill, what leaves the community: grid imports at retail - exports at
feed-in + the network charge on every P2P kWh (P2P payments are transfers between peers), minus
the value of the energy left in storage at the end (`testbed.value.storage_value`), so a schedule
cannot look cheap by emptying the batteries.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import cvxpy as cp
import numpy as np

from testbed.value.baseline import PeerSchedule
from testbed.value.metered_day import MeteredDay, PeerDay


class InfeasibleOptimum(ValueError):
    """The day's constraints cannot all hold: names the peer and the constraint."""


@dataclass(frozen=True, slots=True)
class Optimum:
    objective: float  # community bill net of stored-energy value
    schedules: dict[str, PeerSchedule]
    grid_import_kwh: dict[str, np.ndarray]
    grid_export_kwh: dict[str, np.ndarray]


def storage_value(day: MeteredDay) -> dict[tuple[str, str], float]:
    """Value per kWh left stored at the day's end: the retail energy it displaces.

    A battery kWh delivers eta_d kWh to the house (retail x eta_d); a cart kWh saves the 1 / eta_c
    kWh it would otherwise be charged with (retail / eta_c).
    """
    retail = float(day.retail_tariff[-1])
    values = {}
    for name, peer in day.peers.items():
        if peer.battery is not None:
            values[(name, "battery")] = retail * peer.battery.asset.discharge_efficiency
        if peer.ev is not None:
            values[(name, "ev")] = retail / peer.ev.asset.charge_efficiency
    return values


class _PeerModel:
    """One peer's variables and labelled constraints."""

    def __init__(self, peer: PeerDay, dt_h: float, n: int) -> None:
        self.peer = peer
        self.n = n
        self.constraints: list[tuple[str, cp.Constraint]] = []
        self.bat_ch = self.bat_dis = self.bat_e = None
        self.ev_ch = self.ev_dis = self.ev_e = None
        terminal = 0
        bat = peer.battery
        if bat is not None:
            a = bat.asset
            self.bat_ch, self.bat_dis = cp.Variable(n, nonneg=True), cp.Variable(n, nonneg=True)
            self.bat_e = cp.Variable(n + 1)
            e0 = float(bat.energy_kwh[0])
            self._add("battery starting energy", self.bat_e[0] == e0)
            self._add(
                "battery stored energy dynamics",
                self.bat_e[1:]
                == self.bat_e[:-1]
                + a.charge_efficiency * self.bat_ch
                - self.bat_dis / a.discharge_efficiency,
            )
            low, high = min(a.energy_min_kwh, e0), max(a.energy_max_kwh, e0)
            self._add(
                f"battery SoC window {a.soc_min_pct:g}-{a.soc_max_pct:g} %",
                self.bat_e[1:] >= low,
            )
            self._add(
                f"battery SoC window {a.soc_min_pct:g}-{a.soc_max_pct:g} %",
                self.bat_e[1:] <= high,
            )
            self._add(
                f"battery charge limit {a.max_charge_kw:g} kW",
                self.bat_ch <= a.max_charge_kw * dt_h,
            )
            self._add(
                f"battery discharge limit {a.max_discharge_kw:g} kW",
                self.bat_dis <= a.max_discharge_kw * dt_h,
            )
            if np.isfinite(bat.rated_power_kw):
                ac = peer.pv_kwh + self.bat_dis - self.bat_ch
                rating = bat.rated_power_kw * dt_h
                self._add(f"inverter AC rating {bat.rated_power_kw:g} kW", ac <= rating)
                self._add(f"inverter AC rating {bat.rated_power_kw:g} kW", ac >= -rating)
            terminal = terminal + self.bat_dis - self.bat_ch
        ev = peer.ev
        if ev is not None:
            car = ev.asset
            plugged = ev.plugged.astype(float)
            self.ev_ch, self.ev_dis = cp.Variable(n, nonneg=True), cp.Variable(n, nonneg=True)
            self.ev_e = cp.Variable(n + 1)
            e0 = float(ev.energy_kwh[0])
            self._add("EV starting energy", self.ev_e[0] == e0)
            self._add(
                "EV stored energy dynamics (with the metered driving)",
                self.ev_e[1:]
                == self.ev_e[:-1]
                + car.charge_efficiency * self.ev_ch
                - self.ev_dis / car.discharge_efficiency
                - ev.drive_kwh,
            )
            low, high = min(car.energy_min_kwh, e0), max(car.energy_max_kwh, e0)
            self._add(
                f"EV SoC window {car.soc_min_pct:g}-{car.soc_max_pct:g} %", self.ev_e[1:] >= low
            )
            self._add(
                f"EV SoC window {car.soc_min_pct:g}-{car.soc_max_pct:g} %", self.ev_e[1:] <= high
            )
            self._add(
                f"EV charge limit {car.max_charge_kw:g} kW while plugged",
                self.ev_ch <= car.max_charge_kw * dt_h * plugged,
            )
            self._add(
                f"EV discharge limit {car.max_discharge_kw:g} kW while plugged",
                self.ev_dis <= car.max_discharge_kw * dt_h * plugged,
            )
            for k in ev.plug_outs():
                need = min(car.departure_kwh, float(ev.energy_kwh[k]))
                self._add(
                    f"EV plug-out energy {car.departure_soc_pct:g} % at interval boundary {k}",
                    self.ev_e[k] >= need - 1e-9,
                )
            terminal = terminal + self.ev_dis - self.ev_ch
        self.net = peer.pv_kwh - peer.load_kwh + terminal
        self.bought, self.sold = cp.Variable(n, nonneg=True), cp.Variable(n, nonneg=True)
        self.imported, self.exported = cp.Variable(n, nonneg=True), cp.Variable(n, nonneg=True)
        self._add(
            "power balance at the PCC",
            self.net == self.exported - self.imported + self.sold - self.bought,
        )

    def _add(self, label: str, constraint: cp.Constraint) -> None:
        self.constraints.append((label, constraint))

    def schedule(self) -> PeerSchedule:
        def val(x: Any) -> np.ndarray:  # a cvxpy Variable, or None
            return np.zeros(self.n) if x is None else np.asarray(x.value, dtype=float)

        battery = val(self.bat_dis) - val(self.bat_ch)
        ev = val(self.ev_dis) - val(self.ev_ch)
        return PeerSchedule(
            net_kwh=self.peer.pv_kwh - self.peer.load_kwh + battery + ev,
            battery_kwh=battery,
            ev_kwh=ev,
            battery_energy_kwh=None if self.bat_e is None else np.asarray(self.bat_e.value),
            ev_energy_kwh=None if self.ev_e is None else np.asarray(self.ev_e.value),
            p2p_bought_kwh=val(self.bought),
            p2p_sold_kwh=val(self.sold),
        )


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """HiGHS prints a banner on the process's stdout at its first use: keep `--json` clean."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _solve(problem: cp.Problem) -> str:
    with _quiet_stdout():
        try:
            problem.solve(solver=cp.HIGHS)
        except cp.SolverError:
            problem.solve(solver=cp.CLARABEL)
    status: str = problem.status
    return status


def _diagnose(model: _PeerModel) -> str:
    """The first of a peer's constraints, in order, after which its own problem is infeasible."""
    kept: list[cp.Constraint] = []
    labels: list[str] = []
    for label, constraint in model.constraints:
        kept.append(constraint)
        if _solve(cp.Problem(cp.Minimize(0), kept)) in (cp.INFEASIBLE, cp.INFEASIBLE_INACCURATE):
            earlier = ", ".join(dict.fromkeys(x for x in labels if x != label))
            return f"{label} cannot hold together with the {earlier}"
        labels.append(label)
    return "the community's P2P balance"


def optimum(day: MeteredDay) -> Optimum:
    """Solve the community's perfect-foresight day; `InfeasibleOptimum` names what cannot hold."""
    n = day.n
    models = {name: _PeerModel(peer, day.dt_h, n) for name, peer in day.peers.items()}
    values = storage_value(day)
    cost = 0
    constraints = []
    bought_total = 0
    sold_total = 0
    for name, m in models.items():
        constraints += [c for _, c in m.constraints]
        cost += day.retail_tariff @ m.imported - day.feed_in_tariff @ m.exported
        cost += day.network_charge * cp.sum(m.bought)
        bought_total = bought_total + m.bought
        sold_total = sold_total + m.sold
        if m.bat_e is not None:
            cost -= values[(name, "battery")] * (m.bat_e[n] - m.bat_e[0])
        if m.ev_e is not None:
            cost -= values[(name, "ev")] * (m.ev_e[n] - m.ev_e[0])
    constraints.append(bought_total == sold_total)
    problem = cp.Problem(cp.Minimize(cost), constraints)
    status = _solve(problem)
    if status in (cp.INFEASIBLE, cp.INFEASIBLE_INACCURATE):
        for name, m in models.items():
            label = _diagnose(m)
            if label != "the community's P2P balance":
                raise InfeasibleOptimum(
                    f"{day.run_dir}: the optimum is infeasible: peer {name}: {label}"
                )
        raise InfeasibleOptimum(f"{day.run_dir}: the optimum is infeasible: the P2P balance")
    if status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
        raise InfeasibleOptimum(f"{day.run_dir}: the optimum's solver ended {status}")
    return Optimum(
        objective=float(problem.value),
        schedules={name: m.schedule() for name, m in models.items()},
        grid_import_kwh={name: np.asarray(m.imported.value) for name, m in models.items()},
        grid_export_kwh={name: np.asarray(m.exported.value) for name, m in models.items()},
    )
