"""Forecast accuracy of the agents' forecasters on the emulated plant's load and PV.

Run: python3 benchmarks/agents_forecast_backtest.py [--days 7] [--seed 1] [--origin-every 4]
     [--source plant|synthetic]

Steps `hil_sim.plant.Plant` for `--days` simulated days (sampling house loads and available PV
every 10 s, averaged per 15-min interval), then backtests every method with rolling origins
(fit on the data before the origin, predict the next 96 intervals) after two days of history.
Prints MAE / RMSE (kW) per series, method and lead time (1 = the coming interval, 4 = one hour,
24 = six hours, 96 = a day ahead, "all leads" = the mean over 1..96), and the time each method
took. `--source synthetic` uses `peers.synthetic` instead of the plant.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from peers.assets import default_assets
from peers.backtest import backtest, scores_table
from peers.forecast import make_forecaster
from peers.synthetic import synthetic_load_kw, synthetic_pv_kw

INTERVAL_S = 900.0
SAMPLE_S = 10.0


def plant_series(days: float, seed: int) -> dict[str, pd.Series]:
    """Mean house load of A, B, C and available PV of A per 15 min, from the emulated plant."""
    from hil_sim.config import PlantConfig
    from hil_sim.plant import Plant

    plant = Plant(PlantConfig(seed=seed))
    per_interval = int(INTERVAL_S / SAMPLE_S)
    intervals = int(days * 86400 / INTERVAL_S)
    starts, sums = [], {"A load": [], "A pv": [], "B load": [], "C load": []}
    for _ in range(intervals):
        starts.append(plant.now)
        acc = dict.fromkeys(sums, 0.0)
        for _ in range(per_interval):
            plant.advance(SAMPLE_S)
            loads = plant.house_load_profiles_kw  # generator convention: consumption < 0
            acc["A load"] += -loads["A"]
            acc["B load"] += -loads["B"]
            acc["C load"] += -loads["C"]
            acc["A pv"] += plant.inverter.pv_available_kw
        for name, total in acc.items():
            sums[name].append(total / per_interval)
    index = pd.DatetimeIndex(starts)
    return {name: pd.Series(values, index=index) for name, values in sums.items()}


def synthetic_series(days: float, seed: int) -> dict[str, pd.Series]:
    start = pd.Timestamp("2026-03-20T18:30:00Z").to_pydatetime()
    series = {}
    for peer in "ABC":
        assets = default_assets(peer)
        series[f"{peer} load"] = synthetic_load_kw(
            start, days, INTERVAL_S, assets.typical_load_kw, assets.peak_load_kw, seed + ord(peer)
        )
    series["A pv"] = synthetic_pv_kw(start, days, INTERVAL_S, 3.5, seed)
    return dict(sorted(series.items()))


def factory(method: str):
    def build(name: str):
        peer, quantity = name.split()
        assets = default_assets(peer)
        if quantity == "pv":
            fallback, cap = 0.0, assets.pv.peak_power_kw
        else:
            fallback, cap = assets.typical_load_kw, 1.5 * assets.peak_load_kw
        return make_forecaster(
            method, fallback_kw=fallback, max_kw=cap, timezone=assets.timezone, seed=0
        )

    return build


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--origin-every", type=int, default=4, help="intervals between origins")
    parser.add_argument("--source", choices=["plant", "synthetic"], default="plant")
    parser.add_argument("--methods", default="persistence,ewma,gbm")
    args = parser.parse_args()

    started = time.perf_counter()
    if args.source == "plant":
        series = plant_series(args.days, args.seed)
    else:
        series = synthetic_series(args.days, args.seed)
    first = next(iter(series.values())).index[0]
    print(
        f"{args.source}: {args.days:g} days (seed {args.seed}) generated in "
        f"{time.perf_counter() - started:.1f} s; first interval {first}"
    )
    for name, values in series.items():
        print(f"  {name}: mean {values.mean():.3f} kW, max {values.max():.3f} kW")

    scores = []
    for method in args.methods.split(","):
        t0 = time.perf_counter()
        scores += backtest(
            series, {method: factory(method)}, origin_every=args.origin_every, min_history_days=2
        )
        origins = scores[-1].origins
        print(f"{method}: {time.perf_counter() - t0:.1f} s for {len(series)} series")
    print()
    print(
        f"MAE / RMSE in kW ({origins} origins, every {args.origin_every} intervals, "
        "after two days of history)"
    )
    ordered = sorted(scores, key=lambda s: (s.series, args.methods.split(",").index(s.method)))
    print(scores_table(ordered))
    day_ahead = [s for s in scores if s.lead_steps == 0]
    best = {}
    for s in day_ahead:
        if s.series not in best or s.mae_kw < best[s.series].mae_kw:
            best[s.series] = s
    print()
    print(
        "lowest mean MAE over all leads: "
        + ", ".join(f"{name} {s.method} ({s.mae_kw:.3f} kW)" for name, s in sorted(best.items()))
    )


if __name__ == "__main__":
    main()
