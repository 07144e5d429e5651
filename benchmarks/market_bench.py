"""Clearing speed of the market mechanisms, side by side with pymarket 0.7.6 on the same books.

    python3 benchmarks/market_bench.py [--sizes 1000,10000,100000,1000000] [--no-pymarket]

Books: half bids, half asks, prices uniform (bids 2-12, asks 1-11 per kWh, so about half the
volume crosses), quantities uniform 0.1-2 kWh, string order ids. Each figure is the best of a few
runs (wall and CPU seconds), because the machine is shared. "columns" clears an OrderColumns
book (validation, priority sort, crossing, pairing, report, curves); "orders" starts from Order
objects and ends with Trade objects (the orchestrator's path).

pymarket needs pandas<2 and numpy<1.27, so it runs in its own virtual environment
(benchmarks/.venv-pymarket, created on first use with pip) through market_pymarket_runner.py;
only its mechanism call is timed, and its traded volume is compared with ours for Huang.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from testbed.market import OrderColumns, get_mechanism  # noqa: E402

VENV = Path(__file__).resolve().parent / ".venv-pymarket"
RUNNER = Path(__file__).resolve().parent / "market_pymarket_runner.py"
PYMARKET_PINS = ["pymarket==0.7.6", "pandas<2", "numpy<1.27"]

# Largest book each mechanism is run on (its cost grows faster, or it is a Python loop).
LIMITS = {
    "uniform": 10**6,
    "pay_as_bid": 10**6,
    "mcafee": 10**6,
    "huang": 10**6,
    "vcg": 10**5,
    "cda": 10**5,
}
PYMARKET_LIMIT = 10**4  # pymarket's Huang grows about quadratically
PYMARKET_TIMEOUT_S = 900


def make_book(size: int, seed: int) -> OrderColumns:
    rng = np.random.default_rng(seed)
    is_buy = rng.random(size) < 0.5
    price = np.where(is_buy, rng.uniform(2.0, 12.0, size), rng.uniform(1.0, 11.0, size))
    ids = np.array([f"o{i}" for i in range(size)], dtype=object)
    return OrderColumns.from_arrays(
        order_id=ids,
        peer=ids,
        is_buy=is_buy,
        quantity_kwh=rng.uniform(0.1, 2.0, size),
        price=price,
        time=np.zeros(size),
    )


def best_of(run: Callable[[], object], repeats: int) -> tuple[float, float, float, object]:
    """(best wall s, median wall s, best CPU s, last result)."""
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), statistics.median(walls), min(cpus), result


def reference_loop_us() -> float:
    """Best time of a tiny pure-Python loop: about 0.3 us on this machine when idle."""
    return 1e6 * min(timeit.repeat("x=0\nfor i in range(10): x+=i", number=20000, repeat=5)) / 20000


def repeats_for(size: int) -> int:
    return 5 if size <= 10**4 else 3


def ensure_pymarket() -> Path | None:
    python = VENV / "bin" / "python"
    if python.exists():
        return python
    print(f"creating {VENV} with {' '.join(PYMARKET_PINS)} ...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=300)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *PYMARKET_PINS], check=True, timeout=900
        )
    except (subprocess.SubprocessError, OSError) as error:
        print(f"pymarket environment not available: {error}", flush=True)
        return None
    return python


def run_pymarket(python: Path, book: OrderColumns, mechanism: str) -> dict | None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "book.npz"
        np.savez(path, is_buy=book.is_buy, quantity_kwh=book.quantity_kwh, price=book.price)
        try:
            done = subprocess.run(
                [str(python), "-W", "ignore", str(RUNNER), str(path), mechanism],
                capture_output=True,
                text=True,
                timeout=PYMARKET_TIMEOUT_S,
                check=True,
            )
        except subprocess.TimeoutExpired:
            return {"timeout_s": PYMARKET_TIMEOUT_S}
        except subprocess.CalledProcessError as error:
            print(error.stderr[-2000:], file=sys.stderr)
            return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--no-pymarket", action="store_true")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    load_before = os.getloadavg()
    print(
        f"# market clearing benchmark: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}"
    )
    print(f"# load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}")
    print(f"# reference loop before: {reference_loop_us():.2f} us")
    rows: list[dict] = []
    python = None if args.no_pymarket else ensure_pymarket()
    for size in sizes:
        book = make_book(size, args.seed)
        orders = book.to_orders() if size <= 10**6 else None
        for name, limit in LIMITS.items():
            if size > limit:
                continue
            mechanism = get_mechanism(name)
            wall, median, cpu, result = best_of(
                lambda m=mechanism, b=book: m.clear(b), repeats_for(size)
            )
            row = {
                "size": size,
                "mechanism": name,
                "path": "columns",
                "wall_s": wall,
                "median_wall_s": median,
                "cpu_s": cpu,
                "volume_kwh": result.volume_kwh,
                "trades": len(result.table),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
            if name == "uniform" and orders is not None:
                wall, median, cpu, result = best_of(
                    lambda m=mechanism, o=orders: m.clear(o).trades, repeats_for(size)
                )
                row = {**row, "path": "orders", "wall_s": wall, "median_wall_s": median}
                row["cpu_s"] = cpu
                rows.append(row)
                print(json.dumps(row), flush=True)
        if python is not None and size <= PYMARKET_LIMIT:
            for name in ("huang", "muda"):
                figures = run_pymarket(python, book, name)
                if figures is None:
                    continue
                figures.pop("mechanism", None)
                row = {"size": size, "mechanism": f"pymarket:{name}", "path": "pymarket"}
                row.update(figures)
                rows.append(row)
                print(json.dumps(row), flush=True)
    load_after = os.getloadavg()
    print(f"# load average after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    print(f"# reference loop after: {reference_loop_us():.2f} us")
    print()
    print(render_table(rows))
    if args.json:
        payload = {"load_before": load_before, "load_after": load_after, "rows": rows}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")


def render_table(rows: list[dict]) -> str:
    lines = [
        "| orders | mechanism | path | best wall s | median wall s | best CPU s | volume kWh |",
        "|---:|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        if "timeout_s" in row:
            lines.append(
                f"| {row['size']:,} | {row['mechanism']} | {row['path']} | "
                f"> {row['timeout_s']} (stopped) | | | |"
            )
            continue
        median = row.get("median_wall_s", row["wall_s"])
        lines.append(
            f"| {row['size']:,} | {row['mechanism']} | {row['path']} | {row['wall_s']:.4f} | "
            f"{median:.4f} | {row['cpu_s']:.4f} | {row['volume_kwh']:.6f} |"
        )
    comparisons = []
    for row in rows:
        if row["mechanism"] != "pymarket:huang" or "timeout_s" in row:
            continue
        ours = next(r for r in rows if r["size"] == row["size"] and r["mechanism"] == "huang")
        same = abs(ours["volume_kwh"] - row["volume_kwh"]) <= 1e-6 * max(1.0, row["volume_kwh"])
        comparisons.append(
            f"| {row['size']:,} | {row['cpu_s'] / ours['cpu_s']:.0f}x | "
            f"{row['volume_kwh']:.6f} | {ours['volume_kwh']:.6f} | {'yes' if same else 'NO'} |"
        )
    if comparisons:
        lines += [
            "",
            "| orders | pymarket Huang CPU / ours | pymarket volume kWh | our volume kWh | same |",
            "|---:|---:|---:|---:|---|",
            *comparisons,
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
