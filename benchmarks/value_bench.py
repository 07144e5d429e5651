"""Benchmark: the share of the perfect-foresight value each set of agents captures, day by day.

    python benchmarks/value_bench.py [--sets baseline,optimising,improved] [--days all|1,4]
                                     [--hours 24] [--step-s 1] [--jobs 1]
                                     [--out runs/value-bench] [--json FILE]

Runs seeded days of different seasons and cloud cover on the emulated plant through the whole
controller (real protocols, lockstep), one run per day and agent set, then measures each finished
run with the yardstick (`testbed.value`): the community's bill under the baseline rules, at the
perfect-foresight optimum and in the run, and the value captured, (baseline - run) / (baseline -
optimum), for the community and per peer. Also checks the promise that no peer pays more than
grid-only (its settlement's `bill` against `bill_grid_only`). A run directory already finished
under `--out` is measured again, not re-run (delete it to run it again).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from instruments.event_loop import loop_factory  # noqa: E402
from labspec.site import default_site  # noqa: E402
from testbed.config import load_config, parse_config  # noqa: E402
from testbed.experiment import run_experiment, with_plant_endpoints  # noqa: E402
from testbed.plant_process import emulated_plant  # noqa: E402
from testbed.runstore import RunReader  # noqa: E402
from testbed.runstore.schema import RunDirError  # noqa: E402
from testbed.value import IncompleteRun, InfeasibleOptimum, value_report  # noqa: E402

# (label, plant seed, local start, share of daylight shaded by clouds)
DAYS = [
    ("winter", 11, "2026-01-15T00:00:00+05:30", 0.1),
    ("equinox", 1, "2026-03-21T00:00:00+05:30", 0.2),
    ("summer", 5, "2026-05-10T00:00:00+05:30", 0.15),
    ("monsoon", 7, "2026-07-20T00:00:00+05:30", 0.6),
    ("late-monsoon", 3, "2026-09-05T00:00:00+05:30", 0.45),
    ("autumn", 9, "2026-10-25T00:00:00+05:30", 0.2),
    ("early-winter", 13, "2026-12-10T00:00:00+05:30", 0.3),
]

# agent set -> what the configuration changes, and the mechanisms that apply
SETS: dict[str, dict[str, Any]] = {
    "baseline": {
        "agent": "baseline",
        "market": {"mechanism": "uniform", "params": {"k": 0.5}},
        "mechanisms": "uniform day-ahead (15 min, gate 60 s)",
    },
    "optimising": {
        "agent": "optimising",
        "market": {"mechanism": "uniform", "params": {"k": 0.5}},
        "mechanisms": "uniform day-ahead (15 min, gate 60 s)",
    },
    "improved": {
        "agent": "community",
        "market": {"mechanism": "uniform", "params": {"k": 0.5}, "balancing": "local"},
        "mechanisms": "uniform + local balancing; book-depth demand, clear-sky PV warm start; "
        "PCC held at the contract plus the plan's grid import",
    },
    "contract-dispatch": {
        "agent": "community",
        "market": {"mechanism": "uniform", "params": {"k": 0.5}, "balancing": "local"},
        "control": {"dispatch": "contract"},
        "mechanisms": "as improved, but the PCC held at the P2P contract alone (the old dispatch)",
    },
}


def previous_day(day: tuple) -> tuple:
    """The same plant seed and clouds, 24 h earlier: the warm start's history day."""
    label, seed, start, cloud_cover = day
    earlier = datetime.fromisoformat(start) - timedelta(days=1)
    return (f"{label}-history", seed, earlier.isoformat(), cloud_cover)


def run_day(
    set_name: str,
    day: tuple,
    hours: float,
    step_s: float,
    out: Path,
    extra: dict[str, Any],
    history: Path | None = None,
) -> None:
    label, seed, start, cloud_cover = day
    spec = SETS[set_name]
    data = load_config(REPO / "configs" / "emulated.toml").model_dump(mode="json")
    data["experiment"].update(hours=hours, seed=seed, name=f"value-{set_name}-{label}")
    data["experiment"]["agent_history"] = str(history) if history is not None else None
    data["control"]["step_s"] = step_s
    data["control"]["io_timeout_s"] = 5.0  # lockstep: a slow answer on a busy machine is no fault
    data["market"].update(spec["market"])
    data["control"].update(spec.get("control", {}))
    for peer in data["peers"].values():
        peer["agent"] = spec["agent"]
        peer["agent_params"] = {**spec.get("agent_params", {}), **extra}
    plant_toml = f"start = {start}\n"
    site = default_site().with_changes({"weather": {"cloud_cover": cloud_cover}})
    with emulated_plant(seed, plant_toml=plant_toml, site=site) as endpoints:
        config = with_plant_endpoints(parse_config(data), endpoints)
        _, new_loop = loop_factory("auto")
        with asyncio.Runner(loop_factory=new_loop) as runner:
            runner.run(run_experiment(config, out))


def timed_run(
    set_name: str,
    day: tuple,
    hours: float,
    step_s: float,
    run_dir: Path,
    extra: dict[str, Any],
    warm: bool = False,
) -> str:
    """Run one day afresh (in a worker process) and say how long it took; `warm`: first the
    previous day with the same agents, whose run then seeds the day's agents."""
    history = run_dir.with_name(run_dir.name + "-history") if warm else None
    said = []
    for target, what, seeded in (
        ((history, previous_day(day), None),) if history is not None else ()
    ) + ((run_dir, day, history),):
        if target.exists():
            shutil.rmtree(target)
        t0 = time.perf_counter()
        try:
            run_day(set_name, what, hours, step_s, target, extra, seeded)
        except (Exception, asyncio.CancelledError) as error:  # the table shows the missing figure
            return f"{set_name} {what[0]}: failed: {error!r}"
        said.append(f"{set_name} {what[0]}: ran in {time.perf_counter() - t0:.0f} s")
    return "; ".join(said)


def finished(run_dir: Path) -> bool:
    try:
        return RunReader(run_dir).meta.status == "finished"
    except Exception:
        return False


def measure(run_dir: Path) -> dict[str, Any]:
    try:
        report = value_report(run_dir).as_dict()
    except (IncompleteRun, InfeasibleOptimum, RunDirError) as error:
        return {"error": str(error)}
    summary = RunReader(run_dir).summary() or {}
    report["worse_than_grid_only"] = {
        peer: round(totals["bill"] - totals["bill_grid_only"], 4)
        for peer, totals in summary.get("peers", {}).items()
        if totals["bill"] > totals["bill_grid_only"] + 1e-6
    }
    report["p2p_traded_kwh"] = summary.get("market", {}).get("traded_kwh")
    return report


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def print_table(results: dict[str, dict[str, dict[str, Any]]], warm: bool = False) -> None:
    for set_name, days in results.items():
        print(f"\n### {set_name}: {SETS[set_name]['mechanisms']}\n")
        print(
            "agents' history: "
            + (
                "each day's agents first learned the previous day (same plant seed and clouds, "
                "24 h earlier, run with the same agents; `[experiment] agent_history`)\n"
                if warm
                else "none (each day's agents start with no metered or market history)\n"
            )
        )
        print(
            "| day | baseline | optimum | run | captured % | A % | B % | C % | P2P kWh "
            "| worse than grid-only |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        captured = []
        for label, r in days.items():
            if "error" in r:
                print(f"| {label} | {r['error']} |||||||||")
                continue
            peers = r["peers"]
            captured.append(r["captured_pct"])
            worse = ", ".join(f"{p} +{v:.2f}" for p, v in r["worse_than_grid_only"].items())
            print(
                f"| {label} | {r['baseline_bill']:.2f} | {r['optimum_bill']:.2f} "
                f"| {r['actual_bill']:.2f} | {pct(r['captured_pct'])} "
                + " ".join(f"| {pct(peers[p]['captured_pct'])}" for p in ("A", "B", "C"))
                + f" | {r['p2p_traded_kwh'] or 0:.2f} | {worse or 'none'} |"
            )
        valid = [c for c in captured if c is not None]
        if valid:
            print(f"\nmean captured: {sum(valid) / len(valid):.1f} % over {len(valid)} days")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--days", default="all", help="all, or 1-based day numbers: 1,4")
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument(
        "--step-s", type=float, default=1.0, help="control step (1 s as the demo; 5 s is faster)"
    )
    parser.add_argument(
        "--measure-only", action="store_true", help="measure the finished runs, run nothing"
    )
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (each with its plant)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "value-bench")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here too")
    parser.add_argument(
        "--agent-param",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="an agent parameter for every peer on top of the set's (repeatable), e.g. "
        "p2p_sales_first=true; use another --out for each variant",
    )
    parser.add_argument(
        "--history",
        choices=["none", "previous-day"],
        default="none",
        help="previous-day: run each day's previous day first (same agents, seed and clouds) "
        "and seed the day's agents from it (runs named <set>-<day>-warm)",
    )
    args = parser.parse_args()
    extra: dict[str, Any] = {}
    for item in args.agent_param:
        key, sep, value = item.partition("=")
        try:
            extra[key] = json.loads(value)
        except json.JSONDecodeError:
            sep = ""
        if not sep or not key:
            parser.error(f"--agent-param {item!r}: give KEY=JSON, e.g. p2p_sales_first=true")
    days = DAYS if args.days == "all" else [DAYS[int(i) - 1] for i in args.days.split(",")]
    warm = args.history == "previous-day"
    suffix = "-warm" if warm else ""
    sets = args.sets.split(",")
    for set_name in sets:
        if set_name not in SETS:
            parser.error(f"--sets: unknown set {set_name!r}; choose from {', '.join(SETS)}")
    todo = [
        (set_name, day, args.out / f"{set_name}-{day[0]}{suffix}")
        for set_name in sets
        for day in days
        if not finished(args.out / f"{set_name}-{day[0]}{suffix}") and not args.measure_only
    ]
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [
            pool.submit(timed_run, set_name, day, args.hours, args.step_s, run_dir, extra, warm)
            for set_name, day, run_dir in todo
        ]
        for future in futures:
            print(future.result(), flush=True)
    results: dict[str, dict[str, dict[str, Any]]] = {
        set_name: {day[0]: measure(args.out / f"{set_name}-{day[0]}{suffix}") for day in days}
        for set_name in sets
    }
    print_table(results, warm)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float), encoding="utf-8")


if __name__ == "__main__":
    main()
