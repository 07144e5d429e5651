"""Benchmark: a demo day on the emulated plant through the real protocol stack.

    python benchmarks/demo_bench.py [--hours 24] [--seed 1] [--profile FILE] [--loop auto]

Starts `python -m hil_sim` (lockstep), runs `configs/emulated.toml` for the given hours with a 1 s
control step, and prints the wall time, the real-time factor and where a control step's time goes
(reading every device, recording, trading and settling, dispatching setpoints, advancing the plant).
With --profile the controller process is profiled with cProfile (the plant is not). The
controller's CPU is split into user and system (kernel: socket calls, loopback TCP) time. The
"step loop" lines leave out start-up and shutdown (connecting, scanning the SunSpec models, the
agents' first plans): they count from the end of the first control step to the end of the last.
`--loop` picks the controller's event loop (auto: uvloop when installed, else asyncio's own).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from instruments.event_loop import loop_factory  # noqa: E402
from testbed.config import load_config  # noqa: E402
from testbed.engine import Engine  # noqa: E402
from testbed.experiment import run_experiment, with_overrides, with_plant_endpoints  # noqa: E402
from testbed.plant_process import emulated_plant  # noqa: E402


def process_cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a process (Linux /proc), 0 when unknown."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class StepLoopMeter:
    """CPU of both processes and wall time between the first and the last control step (the
    engine's progress callback runs once per step, after dispatch)."""

    def __init__(self, plant_pid: int | None) -> None:
        self.plant_pid = plant_pid
        self.first: tuple[int, float, float, float, float] | None = None
        self.last: tuple[int, float, float, float, float] | None = None

    def sample(self, step: int) -> tuple[int, float, float, float, float]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        plant = process_cpu_s(self.plant_pid)
        return step, time.perf_counter(), usage.ru_utime, usage.ru_stime, plant

    def __call__(self, step: int, n_steps: int, _now) -> None:
        if self.first is None:
            self.first = self.sample(step)
        elif step == n_steps - 1:
            self.last = self.sample(step)

    def per_step_ms(self) -> tuple[float, float, float, float] | None:
        """(wall, controller user, controller system, plant CPU) in ms per step."""
        if self.first is None or self.last is None or self.last[0] <= self.first[0]:
            return None
        steps = self.last[0] - self.first[0]
        pairs = zip(self.first[1:], self.last[1:], strict=True)
        return tuple(1000 * (b - a) / steps for a, b in pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", type=Path, help="write a cProfile of the controller here")
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    args = parser.parse_args()

    config = with_overrides(load_config(REPO / "configs" / "emulated.toml"), args.hours, args.seed)
    out = Path(tempfile.mkdtemp(prefix="demo-bench-")) / "run"
    engines: list[Engine] = []
    load_before = os.getloadavg()
    with emulated_plant(config.experiment.seed) as endpoints:
        config = with_plant_endpoints(config, endpoints)
        profiler = cProfile.Profile() if args.profile else None
        plant_cpu_before = process_cpu_s(endpoints.pid)
        step_loop = StepLoopMeter(endpoints.pid)
        loop_name, new_loop = loop_factory(args.loop)
        usage_before = resource.getrusage(resource.RUSAGE_SELF)
        cpu_before = time.process_time()
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        with asyncio.Runner(loop_factory=new_loop) as runner:
            result = runner.run(
                run_experiment(config, out, progress=step_loop, on_engine=engines.append)
            )
        if profiler:
            profiler.disable()
            profiler.dump_stats(args.profile)
        wall_s = time.perf_counter() - started
        controller_cpu_s = time.process_time() - cpu_before
        usage = resource.getrusage(resource.RUSAGE_SELF)
        user_s = usage.ru_utime - usage_before.ru_utime
        system_s = usage.ru_stime - usage_before.ru_stime
        plant_cpu_s = process_cpu_s(endpoints.pid) - plant_cpu_before
    timings = engines[0].timings
    steps = int(timings["steps"])
    simulated_s = steps * config.control.step_s
    step_s = config.control.step_s
    print(f"hours simulated      {args.hours:g} h ({steps} control steps of {step_s:g} s)")
    print(f"wall time            {wall_s:.1f} s")
    print(f"real-time factor     {simulated_s / wall_s:.0f}x")
    print(f"per control step     {1000 * wall_s / max(steps, 1):.3f} ms")
    for key in ("read_s", "record_s", "trade_settle_s", "dispatch_s", "advance_s"):
        share = timings[key] / wall_s
        print(f"  {key[:-2]:<18} {1000 * timings[key] / max(steps, 1):.3f} ms/step  ({share:.0%})")
    print(
        f"CPU per step         controller {1000 * controller_cpu_s / max(steps, 1):.3f} ms, "
        f"plant {1000 * plant_cpu_s / max(steps, 1):.3f} ms"
    )
    print(
        f"  controller         user {1000 * user_s / max(steps, 1):.3f} ms, "
        f"system {1000 * system_s / max(steps, 1):.3f} ms ({loop_name} event loop)"
    )
    loop_figures = step_loop.per_step_ms()
    if loop_figures is not None:
        wall_ms, user_ms, system_ms, plant_ms = loop_figures
        print(
            f"step loop            wall {wall_ms:.3f} ms/step; CPU per step controller "
            f"{user_ms + system_ms:.3f} ms (user {user_ms:.3f}, system {system_ms:.3f}), "
            f"plant {plant_ms:.3f} ms"
        )
    summary = result.finished.summary
    print(f"status               {result.finished.status}")
    print(f"traded               {summary['market']['traded_kwh']:.3f} kWh")
    print(
        f"energy balance error {summary['energy_balance_error_kwh']:.6f} kWh of "
        f"{summary['energy_through_pcc_kwh']:.3f} kWh"
    )
    print(f"machine load         {load_before[0]:.2f} before the run, {os.cpu_count()} cores")
    shutil.rmtree(out.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
