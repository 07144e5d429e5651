"""A schedule over the horizon (what the rule-based and the optimising planners both return)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from peers.assets import PeerAssets
from peers.horizon import HorizonInputs
from peers.interface import PlanStep


@dataclass(frozen=True, slots=True)
class Schedule:
    """Mean kW per step (generator convention) and stored energy at each step boundary.

    `battery_kwh` and `ev_kwh` have one more value than the steps (index 0 = now). `p2p_kw` is the
    part of the PCC power the plan expects to trade peer to peer (+ = sell), when the planner models
    it. `value_per_kwh` is the marginal value of energy at the PCC per step, when known.
    """

    pv_used_kw: np.ndarray
    battery_kw: np.ndarray
    ev_kw: np.ndarray
    net_kw: np.ndarray
    battery_kwh: np.ndarray | None = None
    ev_kwh: np.ndarray | None = None
    p2p_kw: np.ndarray | None = None
    value_per_kwh: np.ndarray | None = None
    objective: float | None = None
    info: dict[str, float | str] = field(default_factory=dict)
    detail: dict[str, np.ndarray] = field(default_factory=dict)  # the planner's own variables


def idle_schedule(inputs: HorizonInputs, assets: PeerAssets) -> Schedule:
    """The safe plan: battery and EV idle, all PV used, the PCC takes the rest."""
    steps = inputs.steps
    zeros = np.zeros(steps)
    pv = inputs.pv_kw if assets.pv is not None else zeros
    battery = None
    if inputs.battery_kwh is not None:
        battery = np.full(steps + 1, inputs.battery_kwh)
    ev = None
    if inputs.ev is not None:
        ev = np.full(steps + 1, inputs.ev.initial_kwh)
    return Schedule(
        pv_used_kw=pv.copy(),
        battery_kw=zeros.copy(),
        ev_kw=zeros.copy(),
        net_kw=pv - inputs.load_kw,
        battery_kwh=battery,
        ev_kwh=ev,
    )


def plan_steps(
    inputs: HorizonInputs, schedule: Schedule, assets: PeerAssets
) -> tuple[PlanStep, ...]:
    """The schedule as the interface's PlanStep records (SoC at each step's end)."""
    steps = []
    for k, start in enumerate(inputs.starts):
        soc = None
        if schedule.battery_kwh is not None and assets.battery is not None:
            soc = float(assets.battery.soc_pct(schedule.battery_kwh[k + 1]))
        ev_soc = None
        plugged = False
        if schedule.ev_kwh is not None and assets.ev is not None and inputs.ev is not None:
            ev_soc = float(assets.ev.soc_pct(schedule.ev_kwh[k + 1]))
            plugged = bool(inputs.ev.available[k])
        value = None
        if schedule.value_per_kwh is not None:
            value = float(schedule.value_per_kwh[k])
        steps.append(
            PlanStep(
                start=start,
                load_kw=float(inputs.load_kw[k]),
                pv_kw=float(schedule.pv_used_kw[k]),
                battery_kw=float(schedule.battery_kw[k]),
                ev_kw=float(schedule.ev_kw[k]),
                net_kw=float(schedule.net_kw[k]),
                soc_pct=soc,
                ev_soc_pct=ev_soc,
                ev_plugged=plugged,
                value_per_kwh=value,
            )
        )
    return tuple(steps)
