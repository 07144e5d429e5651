"""Run an experiment on the emulated plant with faults injected at chosen control steps.

Faults go in through the plant's simulation-control endpoint from the engine's progress callback,
which runs once per control step just before the plant is advanced: a fault set at step `s` is
seen by the readings of step `s + 1` on (a frozen device keeps the values of step `s`).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from labspec.endpoints import PlantEndpoints
from labspec.plant_control import SyncPlantControl
from testbed.config import TestbedConfig, load_config, parse_config
from testbed.engine import Engine
from testbed.experiment import RunResult, run_experiment, with_plant_endpoints
from testbed.runstore import RunReader

REPO = Path(__file__).resolve().parents[2]

# A plant that starts at 11:00 local time with the battery half full: PV, battery, EV and the
# market all move, so every fault meets a device at work.
WORKING_PLANT_TOML = """
[plant]
seed = 5
start = 2026-03-21T11:00:00+05:30
site = "site.toml"
"""
WORKING_SITE_CHANGES = {"peers": {"A": {"battery": {"initial_soc_pct": 60.0}}}}

Action = Callable[[SyncPlantControl], Any]


def experiment_config(
    endpoints: PlantEndpoints,
    hours: float,
    interval_s: float = 300.0,
    gate_closure_s: float = 30.0,
    control: dict[str, Any] | None = None,
    peers: dict[str, dict[str, Any]] | None = None,
) -> TestbedConfig:
    """configs/emulated.toml with short intervals, on the plant at `endpoints`."""
    data = load_config(REPO / "configs" / "emulated.toml").model_dump(mode="json")
    data["experiment"]["hours"] = hours
    data["market"].update({"interval_s": interval_s, "gate_closure_s": gate_closure_s})
    data["control"].update(control or {})
    for name, devices in (peers or {}).items():
        for device, settings in devices.items():
            if isinstance(settings, dict):  # a device's driver settings
                data["peers"][name]["devices"][device]["config"].update(settings)
            else:
                data["peers"][name][device] = settings
    return with_plant_endpoints(parse_config(data), endpoints)


@dataclass
class FaultRun:
    """A finished run, what the plant says about itself, and helpers to read both."""

    result: RunResult
    config: TestbedConfig
    start_s: float  # plant time of step 0 (Unix seconds)
    truth_end: dict[str, Any]  # the plant's state after the run
    actions: list[tuple[int, str]] = field(default_factory=list)

    @property
    def reader(self) -> RunReader:
        return RunReader(self.result.run_dir)

    def step(self, time_s: float) -> int:
        return round((time_s - self.start_s) / self.config.control.step_s)

    def samples(self, peer: str, device: str) -> pd.DataFrame:
        frame = self.reader.samples(peer=peer, device=device)
        frame["step"] = ((frame["time_s"] - self.start_s) / self.config.control.step_s).round()
        return frame.astype({"step": int})

    def interlocks(self) -> pd.DataFrame:
        frame = self.reader.interlocks()
        frame["step"] = [self.step(t.timestamp()) for t in frame["time"]]
        return frame


def run_with_faults(
    endpoints: PlantEndpoints,
    run_dir: Path,
    config: TestbedConfig,
    schedule: dict[int, list[Action]] | None = None,
    on_engine: Callable[[Engine], None] | None = None,
    reset: bool = True,
) -> FaultRun:
    """Run `config` on the plant (reset first), carrying out `schedule[step]` at each step."""
    schedule = schedule or {}
    control = SyncPlantControl.from_endpoints(endpoints)
    try:
        if reset:
            control.reset()
        start_s = control.time().time.timestamp()

        def progress(step: int, total: int, now: Any) -> None:
            for action in schedule.get(step, ()):
                action(control)

        result = asyncio.run(
            run_experiment(config, run_dir, progress=progress, on_engine=on_engine)
        )
        truth = control.state()
    finally:
        try:
            control.clear_faults()
        finally:
            control.close()
    return FaultRun(result, config, start_s, truth)


def fault(device: str, kind: str, **params: Any) -> Action:
    return lambda control: control.set_fault(device, kind=kind, **params)


def clear(device: str, kind: str | None = None) -> Action:
    return lambda control: control.clear_faults(device, kind)


def settled_net_kwh(run: FaultRun) -> dict[str, float]:
    """Each peer's metered position summed over its settlements (export - import, kWh)."""
    settlements = run.reader.settlements()
    return settlements.groupby("peer")["metered_kwh"].sum().to_dict()


def metered_net_kwh(run: FaultRun) -> dict[str, float]:
    """Each peer's net energy by the plant's own meters over the run (export - import, kWh)."""
    return {
        peer: meter["export_kwh"] - meter["import_kwh"]
        for peer, meter in run.truth_end["meters"].items()
    }


def finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
