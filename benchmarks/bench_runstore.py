"""Run store figures: the cost of `emit` for a day of 1 s samples, and reading that day back.

    python3 benchmarks/bench_runstore.py [--hours 24] [--out DIR]

Emits 6 Samples per control step (3 meters, inverter, EV charger, load) as the control loop does,
plus one order book, clearing and three settlements per 15-minute interval, and prints the time
per emit (mean and the slowest, which includes a batch write), the file size, and the reader's
times for the queries the dashboard makes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from testbed.documents import Clearing, RunFinished, RunStarted, Sample, Settlement
from testbed.runstore import RunReader, RunStore

START = datetime(2024, 6, 1, tzinfo=UTC)
DEVICES = (
    ("A", "meter", ("power_kw", "voltage_v", "current_a", "frequency_hz", "contract_kw")),
    ("B", "meter", ("power_kw", "voltage_v", "current_a", "frequency_hz", "contract_kw")),
    ("C", "meter", ("power_kw", "voltage_v", "current_a", "frequency_hz", "contract_kw")),
    ("A", "inverter", ("ac_power_kw", "wset_kw", "pv_power_kw", "battery_power_kw", "soc_pct")),
    ("B", "ev_charger", ("power_kw", "setpoint_kw", "soc_pct", "plugged")),
    ("C", "load", ("power_kw", "power_setpoint_kw", "voltage_v", "current_a")),
)


def settlement(interval_start: datetime, peer: str) -> Settlement:
    return Settlement(interval_start, peer, *([0.1] * 15))


def write_day(run_dir: Path, hours: float) -> tuple[list[float], float]:
    store = RunStore(run_dir)
    store.emit(RunStarted("bench", START, {"experiment": {"hours": hours, "seed": 1}}))
    steps = round(hours * 3600)
    samples = []
    for step in range(steps):
        now = START + timedelta(seconds=step)
        for peer, device, fields in DEVICES:
            samples.append(Sample(now, peer, device, dict.fromkeys(fields, step * 1e-3)))
    emit_ns: list[float] = []
    wall = time.perf_counter()
    for index, doc in enumerate(samples):
        began = time.perf_counter_ns()
        store.emit(doc)
        emit_ns.append(time.perf_counter_ns() - began)
        if index % (900 * len(DEVICES)) == 0:
            interval = START + timedelta(seconds=index // len(DEVICES))
            store.emit(Clearing(interval, "uniform", 5.0, 1.0, ()))
            for peer in "ABC":
                store.emit(settlement(interval, peer))
    store.emit(RunFinished("bench", START + timedelta(hours=hours), "finished"))
    store.close()
    return emit_ns, time.perf_counter() - wall


def timed(what: str, call) -> None:
    began = time.perf_counter()
    result = call()
    print(f"  {what}: {(time.perf_counter() - began) * 1e3:.0f} ms ({len(result)} rows)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = (args.out or Path(tmp)) / "bench-run"
        emit_ns, wall_s = write_day(run_dir, args.hours)
        size_mb = (run_dir / "run.sqlite").stat().st_size / 1e6
        print(f"run store, {args.hours} h at a 1 s step: {len(emit_ns):,} samples")
        print(
            f"  emit: mean {statistics.fmean(emit_ns) / 1e3:.2f} µs, median "
            f"{statistics.median(emit_ns) / 1e3:.2f} µs, slowest {max(emit_ns) / 1e6:.1f} ms "
            f"(a batch write); {wall_s:.1f} s for the whole run, close included"
        )
        print(f"  run.sqlite: {size_mb:.1f} MB")
        reader = RunReader(run_dir)
        last = START + timedelta(hours=args.hours)
        timed("latest_samples()", reader.latest_samples)
        timed(
            "samples(last 15 min)",
            lambda: reader.samples(start=last - timedelta(minutes=15)),
        )
        timed(
            "samples(whole run, every 60 s)",
            lambda: reader.samples(fields=["power_kw", "soc_pct"], every_s=60.0),
        )
        timed("samples(A meter, whole run)", lambda: reader.samples(peer="A", device="meter"))


if __name__ == "__main__":
    main()
