"""The fault campaign: every fault kind on every device kind, at three phases of an interval.

One lockstep run on the emulated plant carries the whole matrix. Each peer gets its own sequence of
faults (its PCC meter's and its device's), one at a time, in three windows per market interval:
mid-interval, across the gate closure of the next interval's orders, and across the interval
boundary. The three peers' sequences run side by side. Every fault lasts `FAULT_STEPS` control
steps, then clears; the next one on the same peer starts at least `RECOVERY_STEPS` later.

While the run goes, the plant's own state is read at every step (what the devices did, not what
the controller believes). After it, every fault is judged:
- **limits**: the battery's and the EV's power, state of charge and ramp never left the peer's
  limits (checked on the plant, at every step of the run);
- **response**: the response documented in docs/faults.md, within a bound: the peer's flexible
  device in its safe state on the plant (`safe_state`), the load left playing its program while a
  frozen reading is held (`hold`), the fault noticed where nothing has to move (`noticed`), or
  nothing at all for a refused new connection while the open session goes on (`none`);
- **recovery**: after clearing, every interlock the fault raised cleared and the device operating
  again on the plant;
- **money and energy**: every interval settled, no kWh lost or invented against the plant's meter
  registers, every bill equal to its parts and the P2P money equal to the trades.

`python -m tests.faults.campaign` runs it on a plant of its own and prints the report.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from labspec.endpoints import PlantEndpoints
from labspec.plant_control import SyncPlantControl
from testbed.frozen import MOVED_KW
from tests.faults.harness import FaultRun, experiment_config, run_with_faults

# The plant at 16:00 local time: PV still charges the battery, and the cart (25 % full, leaving at
# 17:30) must charge at full power to be 80 % full by then, so both flexible devices are at work.
# The charger's watchdog is 10 s, so that a charger the controller cannot reach reaches its safe
# state by itself within a fault's window.
CAMPAIGN_PLANT_TOML = """
[plant]
seed = 5
start = 2026-03-21T16:00:00+05:30
site = "site.toml"
"""
CAMPAIGN_SITE_CHANGES = {
    "peers": {"A": {"battery": {"initial_soc_pct": 60.0}}, "B": {"ev": {"initial_soc_pct": 25.0}}},
    "devices": {"ev_charger": {"watchdog_timeout_s": 10.0}},
}


def write_campaign_plant(folder: Path) -> Path:
    """The campaign plant's configuration and site file in `folder`; returns the configuration."""
    from tests.fixtures.sites import write_site

    folder.mkdir(parents=True, exist_ok=True)
    write_site(folder / "site.toml", CAMPAIGN_SITE_CHANGES)
    config = folder / "plant.toml"
    config.write_text(CAMPAIGN_PLANT_TOML)
    return config


INTERVAL_S = 180
GATE_CLOSURE_S = 60  # the next interval's orders close 120 s into an interval
PHASES = {  # window start, seconds into an interval
    "mid_interval": 40,
    "gate_closure": 110,  # 110-130: across the gate closure at 120
    "interval_boundary": 170,  # 170-190: across the end of the interval
}
FAULT_STEPS = 20
RECOVERY_STEPS = 30  # the shortest gap between two faults on one peer (190 -> 220)
DELAY_MS = 1000.0  # beyond every driver's timeout in the campaign (0.4 s)
DRIVER_TIMEOUT_S = 0.4
REVERT_TIMEOUT_S = 10  # the inverter's WSetRvrtTms, written by the controller
REFRESH_S = 3.0  # unchanged setpoints re-sent this often, well inside both watchdogs

LAST_REPORT: list[str] = []  # the report of the campaign run in this session, for the summary

KINDS = ("refuse", "drop", "delay", "freeze", "exception", "out_of_range")
DEVICE_KINDS = ("meter", "inverter", "ev_charger", "load")
ACTUATORS = {"A": "inverter", "B": "ev_charger", "C": "load"}
PLANT_DEVICE = {"inverter": "inverter", "ev_charger": "ev_charger", "load": "load"}
MODBUS_KINDS = ("meter", "inverter")  # the `exception` fault needs a Modbus device

# Bounds the campaign asserts (steps of 1 s); docs/faults.md states them.
BOUND_SAFE_STEPS = 7  # to the safe state on the plant, the controller reaching the device
BOUND_WATCHDOG_STEPS = REVERT_TIMEOUT_S + 4  # when it cannot: the device's own watchdog
BOUND_NOTICED_STEPS = 7  # a fault that needs no device to move, noticed
BOUND_RECOVERY_STEPS = 14  # backoff capped at 10 s, then the ramp back
RAMP_TOLERANCE_KW = 0.05  # the plant's battery follows PV within a step
STEADY_KW = 0.1  # a device whose frozen reading went unnoticed stayed this close to it


@dataclass(frozen=True)
class PlannedFault:
    peer: str
    device_kind: str  # meter, inverter, ev_charger, load
    kind: str
    phase: str
    start: int  # step the fault is set (seen by the readings of the next step)
    end: int  # step it is cleared

    @property
    def plant_device(self) -> str:
        return f"meter_{self.peer}" if self.device_kind == "meter" else self.device_kind

    @property
    def expected(self) -> str:
        """The documented response: safe_state, hold, noticed or none."""
        if self.kind == "refuse":
            return "none"  # the open session goes on; only new connections are refused
        if self.device_kind == "load" and self.kind == "freeze":
            return "hold"
        if self.device_kind in ("inverter", "ev_charger") and self.kind == "freeze":
            return "safe_state_or_steady"  # a frozen reading that never departs is harmless
        if self.device_kind == "meter" and self.peer == "C":
            return "noticed"  # peer C has nothing to dispatch from its meter
        return "safe_state"

    @property
    def actuator_reachable(self) -> bool:
        """Can the controller command the peer's device while the fault is on?"""
        return self.device_kind == "meter" or self.kind in ("freeze", "out_of_range", "refuse")


@dataclass
class FaultOutcome:
    fault: PlannedFault
    noticed_steps: int | None = None
    safe_steps: int | None = None  # to the safe state on the plant
    recovery_steps: int | None = None
    problems: list[str] = field(default_factory=list)


@dataclass
class CampaignReport:
    faults_injected: int
    limit_violations: int
    steps_to_safe_state_max: int
    steps_to_safe_state_by_watchdog_max: int
    steps_to_notice_max: int
    steps_to_recovery_max: int
    kwh_unaccounted: float
    inr_unaccounted: float
    intervals_settled: int
    intervals: int
    violations: list[str]
    problems: list[str]

    def lines(self) -> list[str]:
        return [
            f"faults injected           {self.faults_injected} "
            f"({len(KINDS)} kinds x {len(DEVICE_KINDS)} device kinds x {len(PHASES)} phases, "
            "no Modbus exception on the charger and the load)",
            f"limit violations          {self.limit_violations}",
            f"steps to safe state (max) {self.steps_to_safe_state_max} "
            f"(bound {BOUND_SAFE_STEPS}); by the device's own watchdog when unreachable "
            f"{self.steps_to_safe_state_by_watchdog_max} (bound {BOUND_WATCHDOG_STEPS})",
            f"steps to notice (max)     {self.steps_to_notice_max} (bound {BOUND_NOTICED_STEPS})",
            f"steps to recovery (max)   {self.steps_to_recovery_max} "
            f"(bound {BOUND_RECOVERY_STEPS})",
            f"kWh unaccounted           {self.kwh_unaccounted:.6f}",
            f"INR unaccounted           {self.inr_unaccounted:.6f}",
            f"intervals settled         {self.intervals_settled} of {self.intervals}",
            f"problems                  {len(self.problems)}",
            *(f"  {p}" for p in self.problems[:20]),
            *(f"  {v}" for v in self.violations[:20]),
        ]


def plan() -> list[PlannedFault]:
    """The matrix, placed: each peer's faults in its windows, interval after interval."""
    queues: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for phase_index, phase in enumerate(PHASES):
        for peer, actuator in ACTUATORS.items():
            queues[(peer, phase)] = [
                (actuator, kind)
                for kind in KINDS
                if kind != "exception" or actuator in MODBUS_KINDS
            ]
        # the meters' six kinds, two to each peer, rotated so every meter meets several kinds
        for kind_index, kind in enumerate(KINDS):
            peer = "ABC"[(kind_index + phase_index) % 3]
            queues[(peer, phase)].append(("meter", kind))
    faults = []
    for (peer, phase), queue in queues.items():
        for interval, (device_kind, kind) in enumerate(queue):
            start = interval * INTERVAL_S + PHASES[phase]
            faults.append(PlannedFault(peer, device_kind, kind, phase, start, start + FAULT_STEPS))
    return sorted(faults, key=lambda f: (f.start, f.peer))


def intervals_needed(faults: list[PlannedFault]) -> int:
    last_end = max(f.end for f in faults)
    return math.ceil((last_end + RECOVERY_STEPS) / INTERVAL_S)


def campaign_config(endpoints: PlantEndpoints, faults: list[PlannedFault]) -> Any:
    timeouts = {"timeout_s": DRIVER_TIMEOUT_S}
    return experiment_config(
        endpoints,
        hours=intervals_needed(faults) * INTERVAL_S / 3600.0,
        interval_s=INTERVAL_S,
        gate_closure_s=GATE_CLOSURE_S,
        control={"refresh_s": REFRESH_S},
        peers={
            "A": {
                "meter": timeouts,
                "inverter": {**timeouts, "revert_timeout_s": REVERT_TIMEOUT_S},
            },
            "B": {"meter": timeouts, "ev_charger": timeouts},
            "C": {"meter": timeouts, "load": timeouts},
        },
    )


def _set(fault: PlannedFault) -> Any:
    params: dict[str, Any] = {"delay_ms": DELAY_MS} if fault.kind == "delay" else {}
    return lambda control: control.set_fault(fault.plant_device, kind=fault.kind, **params)


def _clear(fault: PlannedFault) -> Any:
    return lambda control: control.clear_faults(fault.plant_device)


class PlantLog:
    """The plant's own state at every control step (read through its control endpoint)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def __call__(self, control: SyncPlantControl) -> None:
        state = control.state()
        inverter, ev, load = state["inverter"], state["ev"], state["load_c"]
        self.rows.append(
            {
                "battery_kw": inverter["battery_power_kw"],
                "battery_soc_pct": inverter["soc_pct"],
                "wset_enabled": inverter["wset_enabled"],
                "ev_kw": ev["power_kw"],
                "ev_setpoint_kw": ev["setpoint_kw"] if ev["enabled"] else 0.0,
                "ev_enabled": ev["enabled"],
                "ev_soc_pct": ev["soc_pct"],
                "ev_plugged": ev["plugged"],
                "load_on": load["input_on"],
                "load_kw": load["power_w"] / 1000.0,
            }
        )

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)  # row i: the plant at step i, after that step's commands


def run_campaign(endpoints: PlantEndpoints, run_dir: Path) -> tuple[FaultRun, pd.DataFrame]:
    """Run the whole matrix on the plant at `endpoints`; the run and the plant's log."""
    faults = plan()
    config = campaign_config(endpoints, faults)
    plant_log = PlantLog()
    steps = round(config.experiment.hours * 3600 / config.control.step_s)
    schedule: dict[int, list[Any]] = {step: [plant_log] for step in range(steps)}
    for fault in faults:
        schedule[fault.end].insert(0, _clear(fault))
        schedule[fault.start].insert(0, _set(fault))
    run = run_with_faults(endpoints, run_dir, config, schedule)
    run.actions = [(f.start, f"{f.plant_device}:{f.kind}") for f in faults]
    return run, plant_log.frame()


# -- judging ------------------------------------------------------------------------------------


def limit_violations(run: FaultRun, plant: pd.DataFrame) -> list[str]:
    """Every step where the plant's battery or EV left the peer's limits."""
    peers = run.config.peers
    battery = peers["A"].peer_assets("A").battery
    ev = peers["B"].peer_assets("B").ev
    assert battery is not None and ev is not None
    ramp_a = peers["A"].ramp_kw_per_s * run.config.control.step_s
    ev_ramp = min(peers["B"].ramp_kw_per_s, float(run.truth_end["ev"]["ramp_kw_per_s"]))
    ramp_b = ev_ramp * run.config.control.step_s
    eps = 1e-6
    found: list[str] = []

    def report(mask: pd.Series, what: str) -> None:
        for step in plant.index[mask.fillna(False).astype(bool)][:5]:
            found.append(f"step {step}: {what}")
        if mask.sum() > 5:
            found.append(f"... {int(mask.sum()) - 5} more steps: {what}")

    report(plant["battery_kw"] > battery.max_discharge_kw + eps, "battery discharge above limit")
    report(plant["battery_kw"] < -battery.max_charge_kw - eps, "battery charge above limit")
    report(plant["battery_soc_pct"] > battery.soc_max_pct + eps, "battery SoC above its window")
    report(plant["battery_soc_pct"] < battery.soc_min_pct - eps, "battery SoC below its window")
    # the battery's ramp, while it is under WSet control on both steps (leaving for its safe
    # state, where it idles, is the one jump allowed)
    controlled = plant["wset_enabled"] & plant["wset_enabled"].shift(1, fill_value=False)
    jump = plant["battery_kw"].diff().abs()
    report(controlled & (jump > ramp_a + RAMP_TOLERANCE_KW), "battery ramp above limit")
    report(plant["ev_kw"] > ev.max_discharge_kw + eps, "EV discharge above limit")
    report(plant["ev_kw"] < -ev.max_charge_kw - eps, "EV charge above limit")
    report(plant["ev_soc_pct"] > ev.soc_max_pct + eps, "EV SoC above its window")
    report(plant["ev_soc_pct"] < ev.soc_min_pct - eps, "EV SoC below its window")
    report(
        (plant["ev_setpoint_kw"] > 0) & (plant["ev_soc_pct"] <= ev.reserve_soc_pct),
        "EV discharged at or below its reserve",
    )
    setpoint = plant["ev_setpoint_kw"]
    ev_jump = setpoint.diff().abs()
    report((ev_jump > ramp_b + eps) & (setpoint != 0.0), "EV setpoint ramp above limit")
    return found


def _safe_on_plant(peer: str, plant: pd.DataFrame) -> pd.Series:
    """The peer's flexible device in its safe state: the battery idle (WSetEna off), the charger
    at 0 kW (disabled, or its watchdog's 0), the load's input off."""
    if peer == "A":
        return ~plant["wset_enabled"].astype(bool)
    if peer == "B":
        return plant["ev_setpoint_kw"] == 0.0
    return ~plant["load_on"].astype(bool)


def _operating_on_plant(peer: str, plant: pd.DataFrame) -> pd.Series:
    if peer == "A":
        return plant["wset_enabled"].astype(bool)
    if peer == "B":
        return plant["ev_enabled"].astype(bool)
    return plant["load_on"].astype(bool)


def _power_on_plant(peer: str, plant: pd.DataFrame) -> pd.Series:
    return plant[{"A": "battery_kw", "B": "ev_kw", "C": "load_kw"}[peer]]


def _first(mask: pd.Series, start: int, end: int) -> int | None:
    window = mask.loc[start:end]
    hits = window.index[window.astype(bool)]
    return int(hits[0]) if len(hits) else None


def reachable(fault: PlannedFault) -> bool:
    """False when only the device's own watchdog can take it to its safe state."""
    return fault.actuator_reachable or fault.device_kind == "load"


def judge(fault: PlannedFault, interlocks: pd.DataFrame, plant: pd.DataFrame) -> FaultOutcome:
    """The response to one fault and its recovery, against the documented response."""
    outcome = FaultOutcome(fault)
    actuator = ACTUATORS[fault.peer]
    horizon = fault.end + RECOVERY_STEPS
    mine = interlocks[
        (interlocks["peer"] == fault.peer)
        & (interlocks["step"] > fault.start)
        & (interlocks["step"] < horizon)
        & interlocks["kind"].isin(
            ["device_lost", "stale_measurement", "frozen_measurement", "safe_state"]
        )
    ]
    during = mine[mine["step"] <= fault.end]
    safe = _safe_on_plant(fault.peer, plant)
    stopped = ~_operating_on_plant(fault.peer, plant)
    expected = fault.expected
    clock = fault.start  # steps are counted from here
    if expected == "safe_state_or_steady":
        # a frozen device reading can only be told once the device departs from it: harmless
        # while it does not, and counted from the step it does
        power = _power_on_plant(fault.peer, plant).loc[fault.start : fault.end]
        departure = (power - power.iloc[0]).abs()
        if during.empty:
            if departure.max() > STEADY_KW:
                outcome.problems.append(
                    f"unnoticed while {actuator} moved {departure.max():.3f} kW"
                )
            expected = "none"
        else:  # counted from the step before the device departed, if it did before the verdict
            noticed_at = int(during["step"].iloc[0])
            departed_at = _first(departure > MOVED_KW, fault.start, noticed_at - 1)
            clock = fault.start if departed_at is None else max(fault.start, departed_at - 1)
    if expected == "none":
        if not during.empty:
            outcome.problems.append(f"{len(during)} interlocks where none was due")
        if _first(stopped, fault.start + 1, fault.end) is not None:
            outcome.problems.append(f"{actuator} left its operating state")
        outcome.recovery_steps = 0
        return outcome
    if during.empty:
        outcome.problems.append("not noticed")
        return outcome
    outcome.noticed_steps = int(during["step"].iloc[0]) - clock
    if expected in ("hold", "noticed"):
        if outcome.noticed_steps > BOUND_NOTICED_STEPS:
            outcome.problems.append(f"noticed after {outcome.noticed_steps} steps")
        if _first(stopped, fault.start + 1, fault.end) is not None:
            outcome.problems.append(f"{actuator} left its operating state; it should go on")
    elif fault.device_kind == "load" and not fault.actuator_reachable:
        # the load has no watchdog: out of reach it goes on playing its program (harmless); its
        # safe state is what the controller commanded (marked unconfirmed)
        commanded = during[during["kind"] == "safe_state"]
        if commanded.empty:
            outcome.problems.append("no safe state commanded")
        else:
            outcome.safe_steps = int(commanded["step"].iloc[0]) - clock
    else:
        safe_at = _first(safe, fault.start + 1, fault.end)
        if safe_at is None:
            outcome.problems.append(f"{actuator} not in its safe state on the plant")
        else:
            outcome.safe_steps = safe_at - clock
    if outcome.safe_steps is not None:
        bound = BOUND_SAFE_STEPS if reachable(fault) else BOUND_WATCHDOG_STEPS
        if outcome.safe_steps > bound:
            outcome.problems.append(f"safe state after {outcome.safe_steps} steps > {bound}")
    # recovery: every interlock raised is cleared, and the device operates again on the plant
    raised = mine[mine["action"] != "cleared"]
    cleared = mine[(mine["action"] == "cleared") & (mine["step"] > fault.end)]
    open_kinds = {
        (row.device, row.kind)
        for row in raised.itertuples()
        if not ((cleared["device"] == row.device) & (cleared["kind"] == row.kind)).any()
    }
    if open_kinds:
        outcome.problems.append(f"not cleared before the next fault: {sorted(open_kinds)}")
        return outcome
    back = int(cleared["step"].max()) if not cleared.empty else fault.end
    running_at = _first(~stopped, back, horizon)
    if running_at is None:
        outcome.problems.append(f"{actuator} not operating again on the plant")
        return outcome
    outcome.recovery_steps = max(back, running_at) - fault.end
    if outcome.recovery_steps > BOUND_RECOVERY_STEPS:
        outcome.problems.append(f"recovery after {outcome.recovery_steps} steps")
    return outcome


def bill_parts(s: pd.DataFrame) -> pd.Series:
    """Each settlement's bill from its parts (what every bill must equal, to the paisa)."""
    return (
        s.p2p_paid
        - s.p2p_received
        + s.network_charge
        + s.grid_cost
        - s.grid_revenue
        + s.penalty
        + s.balancing_paid  # local balancing (market.balancing = "local")
        - s.balancing_received
    )


def money_and_energy(run: FaultRun) -> tuple[float, float, int, int]:
    """(kWh unaccounted, INR unaccounted, intervals settled, intervals of the run)."""
    reader = run.reader
    settlements = reader.settlements()
    kwh = 0.0
    for peer, meter in run.truth_end["meters"].items():
        registers = meter["export_kwh"] - meter["import_kwh"]
        settled = settlements.loc[settlements["peer"] == peer, "metered_kwh"].sum()
        kwh += abs(settled - registers)
    s = settlements
    inr = float((bill_parts(s) - s.bill).abs().sum())
    trades = reader.trades()
    if not trades.empty:
        settled_starts = set(s["interval_start"])
        trades = trades[trades["interval_start"].isin(settled_starts)]
        paid = float((trades["quantity_kwh"] * trades["price"]).sum())
        inr += abs(paid - float(s["p2p_paid"].sum()))
        sold = float(trades["quantity_kwh"].sum())
        kwh += abs(sold - float(s["p2p_sold_kwh"].sum()))
    intervals = round(run.config.experiment.hours * 3600 / run.config.market.interval_s)
    return kwh, inr, int(s["interval_start"].nunique()), intervals


def report(run: FaultRun, plant: pd.DataFrame) -> tuple[CampaignReport, list[FaultOutcome]]:
    faults = plan()
    interlocks = run.interlocks()
    outcomes = [judge(fault, interlocks, plant) for fault in faults]
    violations = limit_violations(run, plant)
    kwh, inr, settled, intervals = money_and_energy(run)

    def most(values: Iterator[int | None]) -> int:
        return max((v for v in values if v is not None), default=0)

    by_controller = [o for o in outcomes if reachable(o.fault)]
    by_watchdog = [o for o in outcomes if not reachable(o.fault)]
    return (
        CampaignReport(
            faults_injected=len(faults),
            limit_violations=len(violations),
            steps_to_safe_state_max=most(o.safe_steps for o in by_controller),
            steps_to_safe_state_by_watchdog_max=most(o.safe_steps for o in by_watchdog),
            steps_to_notice_max=most(o.noticed_steps for o in outcomes),
            steps_to_recovery_max=most(o.recovery_steps for o in outcomes),
            kwh_unaccounted=kwh,
            inr_unaccounted=inr,
            intervals_settled=settled,
            intervals=intervals,
            violations=violations,
            problems=[
                f"{o.fault.plant_device} {o.fault.kind} at step {o.fault.start} "
                f"({o.fault.phase}): {problem}"
                for o in outcomes
                for problem in o.problems
            ],
        ),
        outcomes,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the fault campaign and print its report.")
    parser.add_argument("--out", type=Path, help="also write the report and every fault (JSON)")
    args = parser.parse_args()
    from tests.fixtures.plant import start_plant_process
    from tests.fixtures.ports import stop_process

    with tempfile.TemporaryDirectory(prefix="fault-campaign-") as folder:
        plant_toml = write_campaign_plant(Path(folder))
        plant = start_plant_process(Path(folder) / "plant", "--config", str(plant_toml))
        try:
            run, plant_log = run_campaign(plant.endpoints, Path(folder) / "run")
        finally:
            stop_process(plant.proc)
        summary, outcomes = report(run, plant_log)
    print("\n".join(summary.lines()))
    if args.out:
        rows = [{**asdict(o.fault), **asdict(o), "fault": None} for o in outcomes]
        args.out.write_text(json.dumps({"report": asdict(summary), "faults": rows}, indent=1))
    sys.exit(0 if summary.limit_violations == 0 and not summary.problems else 1)


if __name__ == "__main__":
    main()
