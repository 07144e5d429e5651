"""How long one `Plant.advance(1.0)` takes: a simulated day of one-second steps, timed.

Run: python3 benchmarks/plant_step.py [--days N]
Prints the median and 99th-percentile time per step over blocks of steps, the whole day's wall
time, the construction time (the day's profiles via pvlib) and the feeder sweeps per step.
"""

from __future__ import annotations

import argparse
import statistics
import time

from hil_sim.config import PlantConfig
from hil_sim.plant import Plant


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=1.0, help="simulated days to step")
    parser.add_argument("--block", type=int, default=1000, help="steps per timed block")
    args = parser.parse_args()

    started = time.perf_counter()
    plant = Plant(PlantConfig(seed=1))
    built_s = time.perf_counter() - started

    # Some activity so every branch of the step runs.
    plant.write_inverter_wset(-1.0)
    plant.write_inverter_wset_enabled(True)
    plant.write_ev_setpoint(-1.5)
    steps = int(args.days * 86400)
    per_step_us = []
    sweeps = 0
    advance = plant.advance
    day_started = time.perf_counter()
    for first in range(0, steps, args.block):
        count = min(args.block, steps - first)
        if first % 1800 == 0:
            plant.write_ev_setpoint(-1.5 if (first // 1800) % 2 else 1.0)
            plant.write_inverter_wset(-2.0 if (first // 1800) % 2 else 2.5)
        t0 = time.perf_counter()
        for _ in range(count):
            advance(1.0)
        per_step_us.append((time.perf_counter() - t0) / count * 1e6)
        sweeps += plant._feeder.iterations
    day_s = time.perf_counter() - day_started
    per_step_us.sort()
    p99 = per_step_us[min(len(per_step_us) - 1, int(0.99 * len(per_step_us)))]
    print(f"plant construction (profiles for two days): {built_s * 1000:.0f} ms")
    print(
        f"advance(1.0): median {statistics.median(per_step_us):.1f} us, p99 {p99:.1f} us "
        f"(per-step mean of {args.block}-step blocks)"
    )
    print(f"{steps} steps ({args.days:g} simulated day(s)) in {day_s:.2f} s wall")
    print(
        f"feeder sweeps in the last step of each block: {sweeps / len(per_step_us):.2f} on average"
    )


if __name__ == "__main__":
    main()
