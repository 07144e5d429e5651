"""Benchmark: a soak of several days on the emulated plant: are memory and step time flat?

    python benchmarks/soak_bench.py [--days 7] [--seed 1] [--step-s 1] [--out FILE]

Starts `python -m hil_sim` (lockstep) and runs `configs/emulated.toml` (optimising agents, uniform
k-double auction, 15 min intervals) for the given days through the real protocol stack. At the end
of every simulated day it prints one line: the controller's and the plant's resident memory (RSS,
MB), the wall time per control step over that day (mean, and the 99th percentile of the day's
steps), the run store's size and the energy still to be settled. Flat memory and step time from day
1 to the last day say that nothing grows with the run's length (no list of samples kept in memory,
no per-interval state left behind). `--out` also writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from instruments.event_loop import loop_factory  # noqa: E402
from testbed.config import load_config, parse_config  # noqa: E402
from testbed.experiment import run_experiment, with_overrides, with_plant_endpoints  # noqa: E402
from testbed.plant_process import emulated_plant  # noqa: E402

DAY_S = 86_400.0


def rss_mb(pid: int | str) -> float:
    """Resident memory of a process in MB (Linux /proc), NaN when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


@dataclass
class DayFigures:
    day: int
    controller_rss_mb: float
    plant_rss_mb: float
    step_ms_mean: float
    step_ms_p99: float
    run_store_mb: float
    wall_s: float
    load_1min: float


class DayMeter:
    """The engine's progress callback: times every step, reports at the end of every day."""

    def __init__(self, steps_per_day: int, plant_pid: int | None, run_dir: Path) -> None:
        self.steps_per_day = steps_per_day
        self.plant_pid = plant_pid
        self.run_dir = run_dir
        self.days: list[DayFigures] = []
        self._step_ms: list[float] = []
        self._last = time.perf_counter()
        self._started = self._last

    def __call__(self, step: int, n_steps: int, _now: Any) -> None:
        now = time.perf_counter()
        if step > 0:
            self._step_ms.append(1000.0 * (now - self._last))
        self._last = now
        if (step + 1) % self.steps_per_day == 0:
            self._report(len(self.days) + 1)

    def _report(self, day: int) -> None:
        times = sorted(self._step_ms)
        self._step_ms = []
        store = sum(f.stat().st_size for f in self.run_dir.glob("*") if f.is_file())
        figures = DayFigures(
            day=day,
            controller_rss_mb=rss_mb("self"),
            plant_rss_mb=rss_mb(self.plant_pid) if self.plant_pid else float("nan"),
            step_ms_mean=sum(times) / max(len(times), 1),
            step_ms_p99=times[int(0.99 * (len(times) - 1))] if times else float("nan"),
            run_store_mb=store / 1e6,
            wall_s=time.perf_counter() - self._started,
            load_1min=os.getloadavg()[0],
        )
        self.days.append(figures)
        print(
            f"day {day:>2}  controller {figures.controller_rss_mb:7.1f} MB  "
            f"plant {figures.plant_rss_mb:7.1f} MB  step {figures.step_ms_mean:6.3f} ms "
            f"(p99 {figures.step_ms_p99:6.3f})  run store {figures.run_store_mb:7.1f} MB  "
            f"wall {figures.wall_s:7.0f} s  load {figures.load_1min:.1f}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--step-s", type=float, default=1.0, help="control step, seconds")
    parser.add_argument("--out", type=Path, help="also write the figures here (JSON)")
    args = parser.parse_args()

    config = with_overrides(
        load_config(REPO / "configs" / "emulated.toml"), 24.0 * args.days, args.seed
    )
    data = config.model_dump(mode="json", exclude_none=True)
    data["control"]["step_s"] = args.step_s
    config = parse_config(data, "the soak's configuration")
    folder = Path(tempfile.mkdtemp(prefix="soak-bench-"))
    run_dir = folder / "run"
    try:
        with emulated_plant(config.experiment.seed) as endpoints:
            config = with_plant_endpoints(config, endpoints)
            meter = DayMeter(round(DAY_S / args.step_s), endpoints.pid, run_dir)
            print(
                f"soak: {args.days} days of {config.control.step_s:g} s control steps, "
                f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at the start",
                flush=True,
            )
            _name, new_loop = loop_factory("auto")
            with asyncio.Runner(loop_factory=new_loop) as runner:
                result = runner.run(run_experiment(config, run_dir, progress=meter))
        summary = result.finished.summary
        print(f"status               {result.finished.status}")
        print(f"traded               {summary['market']['traded_kwh']:.3f} kWh")
        print(
            f"energy balance error {summary['energy_balance_error_kwh']:.6f} kWh of "
            f"{summary['energy_through_pcc_kwh']:.3f} kWh"
        )
        if meter.days:
            first, last = meter.days[0], meter.days[-1]
            print(
                f"day {first.day} -> day {last.day}: controller RSS "
                f"{last.controller_rss_mb - first.controller_rss_mb:+.1f} MB, plant RSS "
                f"{last.plant_rss_mb - first.plant_rss_mb:+.1f} MB, step time "
                f"{last.step_ms_mean - first.step_ms_mean:+.3f} ms"
            )
        if args.out:
            figures = {
                "days": [asdict(day) for day in meter.days],
                "status": result.finished.status,
                "step_s": config.control.step_s,
                "traded_kwh": summary["market"]["traded_kwh"],
                "energy_balance_error_kwh": summary["energy_balance_error_kwh"],
            }
            args.out.write_text(json.dumps(figures, indent=1), encoding="utf-8")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
