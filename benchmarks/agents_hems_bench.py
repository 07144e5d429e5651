"""Speed of the HEMS: compile once, then re-solve every interval (24 h horizon, 15-min steps).

Run: python3 benchmarks/agents_hems_bench.py [--intervals 96] [--peers A,B,C]

For each peer: the time to build the cvxpy problems and compile them (first solve), then a
rolling day of re-solves (the horizon start moves 15 min at a time, forecasts move with it, the
battery and EV state follow the plan's first step, the EV comes and goes with its plug windows).
Three figures per peer, p50 / p99 / max in ms:
- `solve`: `Hems.solve` as the agent calls it (LP relaxation first; branch and bound only when the
  relaxation is not integral; then the LP with the modes fixed that prices energy),
- `milp`: the mixed-integer model alone, re-solved by HiGHS every interval (no shortcut),
- `decide`: the optimising agent's whole `decide` (forecast fit and predict, plan, orders).
Also prints the machine's load and a reference loop so figures from busy moments can be scaled.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import timeit
import warnings
from datetime import UTC, datetime, timedelta

import numpy as np

from peers import DeviceState, IntervalObservation, MarketContext, default_assets, make_agent
from peers.hems import Hems, HemsSettings
from peers.horizon import horizon_inputs
from peers.synthetic import synthetic_load_kw, synthetic_pv_kw

START = datetime(2026, 3, 21, 0, 0, tzinfo=UTC)


def percentiles(samples: list[float]) -> str:
    ms = sorted(1000 * s for s in samples)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    return f"{statistics.median(ms):7.1f} {p99:7.1f} {ms[-1]:7.1f}"


class Stopwatch:
    """Wall and process CPU time of a block (CPU time is less disturbed by other jobs)."""

    def __enter__(self) -> Stopwatch:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def run_peer(peer: str, intervals: int, ev_integer_steps: int | None) -> dict[str, object]:
    assets = default_assets(peer)
    days = intervals / 96 + 2
    load = synthetic_load_kw(START, days, 900, assets.typical_load_kw, assets.peak_load_kw, 3)
    pv = synthetic_pv_kw(START, days, 900, 3.5, 3)
    if assets.pv is None:
        pv = pv * 0.0

    t0 = time.perf_counter()
    hems = Hems(assets, 96, 0.25, HemsSettings(ev_integer_steps=ev_integer_steps))
    milp_only = Hems(
        assets, 96, 0.25, HemsSettings(relaxation_first=False, ev_integer_steps=ev_integer_steps)
    )
    build_s = (time.perf_counter() - t0) / 2

    soc, ev_soc = 50.0, 60.0
    solve_s, milp_s, methods = [], [], {}
    solve_cpu, milp_cpu = [], []
    first_solve_s = None
    for k in range(intervals):
        start = START + timedelta(minutes=15 * k)
        ctx = MarketContext(start, retail_tariff=8.0, feed_in_tariff=3.0, network_charge=0.5)
        plugged = None
        if assets.ev is not None:
            plugged = assets.ev.plugged_at(start.astimezone(assets.zone).time())
        state = DeviceState(
            time=start,
            battery_soc_pct=soc if assets.battery else None,
            ev_soc_pct=ev_soc if assets.ev else None,
            ev_plugged=plugged,
        )
        inputs = horizon_inputs(
            assets, ctx, state, load.to_numpy()[k : k + 96], pv.to_numpy()[k : k + 96]
        )
        with Stopwatch() as solve:
            plan = hems.solve(inputs)
        with Stopwatch() as milp:
            milp_only.solve(inputs, with_values=False)
        if first_solve_s is None:  # the first solves compile the problems (DPP)
            first_solve_s, first_milp_s = solve.wall, milp.wall
        else:
            solve_s.append(solve.wall)
            solve_cpu.append(solve.cpu)
            milp_s.append(milp.wall)
            milp_cpu.append(milp.cpu)
        method = str(plan.info.get("method"))
        methods[method] = methods.get(method, 0) + 1
        if assets.battery is not None:
            soc = float(assets.battery.soc_pct(plan.battery_kwh[1]))
        if assets.ev is not None:
            ev_soc = float(assets.ev.soc_pct(plan.ev_kwh[1]))

    agent = make_agent(
        "optimising", peer, assets, params={"ev_integer_steps": ev_integer_steps}, seed=1
    )
    for k in range(2 * 96):
        t = START - timedelta(days=2) + timedelta(minutes=15 * k)
        agent.observe(
            IntervalObservation(
                t, 900.0, float(load.iloc[k % 96]) * 0.25, float(pv.iloc[k % 96]) * 0.25
            )
        )
    decide_s, decide_cpu = [], []
    soc, ev_soc = 50.0, 60.0
    for k in range(intervals):
        start = START + timedelta(minutes=15 * k)
        ctx = MarketContext(start, retail_tariff=8.0, feed_in_tariff=3.0, network_charge=0.5)
        plugged = assets.ev.plugged_at(start.astimezone(assets.zone).time()) if assets.ev else None
        state = DeviceState(
            time=start,
            battery_soc_pct=soc if assets.battery else None,
            ev_soc_pct=ev_soc if assets.ev else None,
            ev_plugged=plugged,
        )
        with Stopwatch() as decide:
            decision = agent.decide(ctx, state)
        decide_s.append(decide.wall)
        decide_cpu.append(decide.cpu)
        step = decision.plan[0]
        soc = step.soc_pct if step.soc_pct is not None else soc
        ev_soc = step.ev_soc_pct if step.ev_soc_pct is not None else ev_soc
        agent.observe(
            IntervalObservation(start, 900.0, float(load.iloc[k]) * 0.25, float(pv.iloc[k]) * 0.25)
        )
    return {
        "build_s": build_s,
        "first_solve_s": first_solve_s,
        "first_milp_s": first_milp_s,
        "solve": solve_s,
        "milp": milp_s,
        "decide": decide_s[1:],
        "solve cpu": solve_cpu,
        "milp cpu": milp_cpu,
        "decide cpu": decide_cpu[1:],
        "methods": methods,
        "binaries": sum(
            v.size for v in hems.milp.problem.variables() if v.attributes.get("boolean")
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intervals", type=int, default=96, help="re-solves per peer")
    parser.add_argument("--peers", default="A,B,C")
    parser.add_argument(
        "--ev-integer-steps",
        default="48",
        help="steps with EV mode binaries ('all' = the whole horizon)",
    )
    args = parser.parse_args()
    ev_integer_steps = None if args.ev_integer_steps == "all" else int(args.ev_integer_steps)
    warnings.simplefilter("ignore")  # cvxpy's "solution may be inaccurate" on time-limited MILPs

    reference_us = min(timeit.repeat("x=0\nfor i in range(10): x+=i", number=100000, repeat=5))
    reference_us = reference_us / 100000 * 1e6
    print(
        f"load average {os.getloadavg()[0]:.1f}; reference loop {reference_us:.2f} us (~0.3 idle)"
    )
    print("peer  binaries  build  compile+first solve (solve / milp)")
    print("      figure       wall ms: p50     p99     max   cpu ms: p50     p99     max")
    for peer in args.peers.split(","):
        r = run_peer(peer, args.intervals, ev_integer_steps)
        print(
            f"{peer:4} {r['binaries']:9d} {1000 * r['build_s']:6.0f} ms "
            f"{1000 * r['first_solve_s']:8.0f} ms / {1000 * r['first_milp_s']:5.0f} ms   "
            f"methods {r['methods']}"
        )
        for name in ("solve", "milp", "decide"):
            print(
                f"      {name:7}  {percentiles(r[name])}        {percentiles(r[name + ' cpu'])}"
                f"  (n={len(r[name])})"
            )
        print(f"      solve under 50 ms: {np.mean(np.array(r['solve']) < 0.05):.0%}")


if __name__ == "__main__":
    main()
