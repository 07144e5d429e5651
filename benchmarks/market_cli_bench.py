"""`testbed clear` on a large order book through the command line, start-up included.

    python3 benchmarks/market_cli_bench.py [--orders 1000000] [--runs 5] [--mechanism uniform]

Writes a seeded book (the books of market_bench.py: half bids at 2-12, half asks at 1-11 per kWh,
0.1-2 kWh, string ids) to a temporary CSV, then runs
`python -m testbed clear --mechanism M BOOK.csv --out TRADES.csv --report REPORT.json` as a
child process several times and prints the best and median wall time and the CPU time of the best
run (user + system of the child). It also times `python -m testbed clear --help` (start-up alone)
and checks that the trades are those of the in-process path (OrderColumns cleared by the same
mechanism, written by pandas' `to_csv`): same rows, same ids, same numbers.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from market_bench import make_book  # noqa: E402


def timed_child(args: list[str]) -> tuple[float, float]:
    """(wall s, CPU s) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        args, check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=10**6)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--mechanism", default="uniform")
    args = parser.parse_args()

    import pandas as pd

    from testbed.market import get_mechanism, read_order_columns, write_orders_csv

    with tempfile.TemporaryDirectory() as folder:
        book_csv = Path(folder) / "book.csv"
        trades_csv = Path(folder) / "trades.csv"
        report_json = Path(folder) / "report.json"
        write_orders_csv(make_book(args.orders, seed=1), book_csv)
        size_mb = book_csv.stat().st_size / 1e6
        command = [sys.executable, "-m", "testbed", "clear", "--mechanism", args.mechanism]
        startup = [timed_child([*command, "--help"]) for _ in range(args.runs)]
        runs = [
            timed_child(
                [*command, str(book_csv), "--out", str(trades_csv), "--report", str(report_json)]
            )
            for _ in range(args.runs)
        ]
        # The same book cleared in-process and written by pandas: the reference trades.
        book, _ = read_order_columns(book_csv)
        result = get_mechanism(args.mechanism).clear(book)
        reference = result.trades_frame()
        written = pd.read_csv(trades_csv, float_precision="round_trip", dtype=str)
        same = len(written) == len(reference) and all(
            written[c].tolist() == reference[c].astype(str).tolist()
            for c in ("buy_order_id", "sell_order_id", "buyer", "seller")
        )
        for column in ("quantity_kwh", "price"):
            same = same and written[column].astype(float).tolist() == reference[column].tolist()
        load = os.getloadavg()

    walls = [wall for wall, _ in runs]
    best = min(runs)
    print(f"book: {args.orders:,} orders, {size_mb:.1f} MB CSV; {len(reference):,} trades")
    print(f"load average before/after: {load[0]:.2f} (1 min), {load[1]:.2f} (5 min)")
    print("| what | best wall s | median wall s | CPU s of the best run |")
    print("|---|---:|---:|---:|")
    print(
        f"| `testbed clear --help` (start-up) | {min(w for w, _ in startup):.3f} | "
        f"{statistics.median(w for w, _ in startup):.3f} | {min(startup)[1]:.3f} |"
    )
    print(
        f"| `testbed clear -m {args.mechanism}` {args.orders:,} orders, --out and --report | "
        f"{best[0]:.3f} | {statistics.median(walls):.3f} | {best[1]:.3f} |"
    )
    print(f"same trades as the in-process path written by pandas: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
