"""Benchmark: what the agents are worth to each peer, through the whole controller.

    python benchmarks/agents_market_value.py [--hours 24] [--seed 1]

Runs the same seeded day on the emulated plant three times through `testbed` (real protocols,
lockstep): optimising agents with the P2P market (uniform k-double auction), baseline agents with
the same market, and optimising agents with no market at all (`mechanism = "none"`: every peer
settles with the grid alone). Prints each peer's bill per run, and the saving of the optimising
agents against the baseline and against the grid-only day (positive = the peer pays less), and
against the optimising run's own metering settled with the grid alone (`bill_grid_only`: the same
physical day without the market's trades). A bill leaves out what a day leaves in storage, so
each run also prints the battery's (A) and the cart's (B) stored energy at the end of the day
minus the start (kWh, from the first and last state of charge in the run store).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from instruments.event_loop import loop_factory  # noqa: E402
from testbed.config import load_config, parse_config  # noqa: E402
from testbed.experiment import run_experiment, with_plant_endpoints  # noqa: E402
from testbed.plant_process import emulated_plant  # noqa: E402
from testbed.runstore import RunReader  # noqa: E402

RUNS = {
    "optimising + market": ("optimising", "uniform"),
    "baseline + market": ("baseline", "uniform"),
    "optimising, grid only": ("optimising", "none"),
}


STORES = {"A": ("inverter", "battery"), "B": ("ev_charger", "ev")}


def stored_change_kwh(run_dir: Path, config: dict) -> dict[str, float]:
    """Energy left in each peer's battery or cart at the end minus the start (kWh)."""
    reader = RunReader(run_dir)
    change = {}
    for peer, (device, asset) in STORES.items():
        soc = reader.samples(peer=peer, device=device, fields=["soc_pct"])["soc_pct"].dropna()
        capacity = config["peers"][peer]["assets"][asset]["capacity_kwh"]
        change[peer] = (soc.iloc[-1] - soc.iloc[0]) / 100.0 * capacity if len(soc) else float("nan")
    return change


def run_day(agent: str, mechanism: str, hours: float, seed: int, out: Path) -> dict:
    data = load_config(REPO / "configs" / "emulated.toml").model_dump(mode="json")
    data["experiment"].update(hours=hours, seed=seed)
    data["market"]["mechanism"] = mechanism
    data["market"]["params"] = {"k": 0.5} if mechanism == "uniform" else {}
    data["market"]["balancing"] = "none"  # as measured in docs/bench-agents.md
    for peer in data["peers"].values():
        peer["agent"] = agent
    with emulated_plant(seed) as endpoints:
        config = with_plant_endpoints(parse_config(data), endpoints)
        _, new_loop = loop_factory("auto")
        with asyncio.Runner(loop_factory=new_loop) as runner:
            result = runner.run(run_experiment(config, out))
    summary = dict(result.finished.summary)
    summary["stored_change_kwh"] = stored_change_kwh(out, data)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="agents-value-"))
    summaries = {}
    try:
        for index, (name, (agent, mechanism)) in enumerate(RUNS.items()):
            started = time.perf_counter()
            summaries[name] = run_day(
                agent, mechanism, args.hours, args.seed, folder / f"run{index}"
            )
            print(f"{name}: {time.perf_counter() - started:.0f} s", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    currency = summaries["optimising + market"]["currency"]
    peers = sorted(summaries["optimising + market"]["peers"])
    print(f"\nBills over {args.hours:g} h, seed {args.seed} ({currency}; negative = earned)")
    print(
        f"{'peer':<6}" + "".join(f"{name:>24}" for name in RUNS) + f"{'vs baseline':>14}"
        f"{'vs grid only':>14}{'vs own metering, grid only':>28}"
    )
    for peer in peers:
        bills = {name: summaries[name]["peers"][peer]["bill"] for name in RUNS}
        best = bills["optimising + market"]
        print(
            f"{peer:<6}"
            + "".join(f"{bills[name]:>24.2f}" for name in RUNS)
            + f"{bills['baseline + market'] - best:>14.2f}"
            + f"{bills['optimising, grid only'] - best:>14.2f}"
            + f"{summaries['optimising + market']['peers'][peer]['bill_grid_only'] - best:>28.2f}"
        )
    print("\nStored energy, end of the day minus the start (kWh; not in the bills)")
    print(f"{'peer':<6}" + "".join(f"{name:>24}" for name in RUNS))
    for peer in STORES:
        print(
            f"{peer:<6}"
            + "".join(f"{summaries[name]['stored_change_kwh'][peer]:>24.3f}" for name in RUNS)
        )
    for name in RUNS:
        market = summaries[name]["market"]
        print(
            f"{name}: traded {market['traded_kwh']:.3f} kWh, mean price "
            f"{market['mean_clearing_price']}, energy balance error "
            f"{summaries[name]['energy_balance_error_kwh']:.6f} kWh"
        )


if __name__ == "__main__":
    main()
