"""Benchmark: control-step time against the number of peers, over the real protocols.

    python benchmarks/site_scale_bench.py [--peers 3 12 50 100] [--minutes 10] [--seed 3]

For each size, a site (3: the IIT Gandhinagar default; otherwise `testbed site generate --peers N
--seed S`, baseline agents) is served by `python -m hil_sim` in lockstep and the controller runs
it for the given simulated minutes at a 1 s control step (5-min market intervals). Every device
is read and every flexible device dispatched each step over Modbus TCP (meters behind one
gateway), OPC UA and SCPI. Prints, per size, the devices, the wall time of the step loop (from
the end of the first step to the last, so start-up is left out), ms per step and per device, and
the real-time factor, the CPU per step of the controller and of the plant, and the controller's
full garbage collections during the step loop (count and CPU per step).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import tomli_w  # noqa: E402

from instruments.event_loop import loop_factory  # noqa: E402
from labspec.site import Site, default_site  # noqa: E402
from labspec.site_generate import generate_site  # noqa: E402
from testbed.config import load_config, parse_config  # noqa: E402
from testbed.experiment import run_experiment, with_plant_endpoints, with_site  # noqa: E402
from testbed.plant_process import emulated_plant  # noqa: E402


def process_cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a process (Linux /proc), 0 when unknown."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def site_of(peers: int, seed: int) -> Site:
    return default_site() if peers == 3 else generate_site(peers, seed, agent="baseline")


def run_size(peers: int, minutes: float, seed: int, folder: Path) -> dict[str, float]:
    site = site_of(peers, seed)
    site_file = folder / f"site{peers}.toml"

    site_file.write_text(tomli_w.dumps(site.to_toml_dict()), encoding="utf-8")
    config = with_site(load_config(REPO / "configs" / "emulated.toml"), site_file)
    data = config.model_dump(mode="json", exclude_none=True)
    data["experiment"]["hours"] = minutes / 60.0
    data["market"].update({"interval_s": 300.0, "gate_closure_s": 30.0})
    for peer in data["peers"].values():
        peer["agent"] = "baseline"
        peer["agent_params"] = {}
    config = parse_config(data)
    marks: dict[str, float] = {}

    plant_pid: list[int | None] = [None]
    full_gc = {"count": 0.0, "cpu_s": 0.0, "start": 0.0, "on": 0.0}

    def on_gc(phase: str, info: dict[str, int]) -> None:
        """Count the full (generation 2) collections of the step loop and their CPU."""
        if not full_gc["on"] or info["generation"] != 2:
            return
        if phase == "start":
            full_gc["start"] = time.process_time()
        else:
            full_gc["count"] += 1
            full_gc["cpu_s"] += time.process_time() - full_gc["start"]

    def progress(step: int, total: int, now: datetime) -> None:
        if step == 1:
            marks["first"] = time.perf_counter()
            marks["plant_cpu0"] = process_cpu_s(plant_pid[0])
            marks["cpu0"] = time.process_time()
            full_gc["on"] = 1.0
        marks["last"], marks["steps"] = time.perf_counter(), float(step)
        marks["plant_cpu1"] = process_cpu_s(plant_pid[0])
        marks["cpu1"] = time.process_time()

    started = time.perf_counter()
    with emulated_plant(seed, site=site, timeout_s=300.0) as endpoints:
        up = time.perf_counter()
        plant_pid[0] = endpoints.pid
        config = with_plant_endpoints(config, endpoints)
        _, new_loop = loop_factory("auto")
        gc.callbacks.append(on_gc)
        try:
            with asyncio.Runner(loop_factory=new_loop) as runner:
                runner.run(run_experiment(config, folder / f"run{peers}", progress=progress))
        finally:
            gc.callbacks.remove(on_gc)
    steps = marks["steps"] - 1
    loop_s = marks["last"] - marks["first"]
    devices = len(site.devices)
    return {
        "peers": peers,
        "devices": devices,
        "plant_start_s": up - started,
        "loop_s": loop_s,
        "ms_per_step": 1000 * loop_s / steps,
        "ms_per_step_per_device": 1000 * loop_s / steps / devices,
        "realtime_factor": steps / loop_s,
        "controller_cpu_ms": 1000 * (marks["cpu1"] - marks["cpu0"]) / steps,
        "plant_cpu_ms": 1000 * (marks["plant_cpu1"] - marks["plant_cpu0"]) / steps,
        "full_gc": full_gc["count"],
        "full_gc_ms": 1000 * full_gc["cpu_s"] / steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, nargs="+", default=[3, 12, 50, 100])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    print(f"{args.minutes:g} simulated minutes per size, 1 s control step, baseline agents")
    print(
        "| peers | devices | plant start, s | step loop, s | ms per step "
        "| ms per step per device | real-time factor | CPU per step: controller / plant, ms "
        "| controller CPU per step per device, ms | full GCs (their CPU per step, ms) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="site-bench-") as folder:
        for peers in args.peers:
            r = run_size(peers, args.minutes, args.seed, Path(folder))
            print(
                f"| {r['peers']} | {r['devices']} | {r['plant_start_s']:.1f} | {r['loop_s']:.1f} "
                f"| {r['ms_per_step']:.2f} | {r['ms_per_step_per_device']:.3f} "
                f"| {r['realtime_factor']:.0f}x "
                f"| {r['controller_cpu_ms']:.1f} / {r['plant_cpu_ms']:.1f} "
                f"| {r['controller_cpu_ms'] / r['devices']:.3f} "
                f"| {r['full_gc']:.0f} ({r['full_gc_ms']:.2f}) |",
                flush=True,
            )


if __name__ == "__main__":
    main()
