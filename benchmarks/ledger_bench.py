"""The ledger: entries appended and signed per second, `verify` time, and gas on the chain.

Run from the repository root (prints Markdown):

    python3 benchmarks/ledger_bench.py                   # 10^5 entries, a day on anvil: minutes
    python3 benchmarks/ledger_bench.py --entries 20000   # smaller
    python3 benchmarks/ledger_bench.py --only chain      # one part (append, verify, chain)

Parts:
- append: a community of `--peers` peers trades every 15-min interval (half sell, half buy, each
  seller matched with a buyer; metering deviates from the trades) until the ledger holds
  `--entries` entries, through the operator's own API (`LedgerOperator`): every entry checked
  against the rules, hashed, signed with Ed25519 and written to SQLite in one transaction per
  call. The peers' own order signing is timed apart (it happens on the peers' side).
- verify: `verify_run` of that ledger (every link, hash, signature, rule and wallet).
- chain: a day (96 intervals) of the same community on a local anvil node (started on a free
  loopback port and stopped at the end): gas and wall time per call, per interval and per peer.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from testbed.ledger.chain.mirror import ChainMirror
from testbed.ledger.chain.node import start_node
from testbed.ledger.verify import verify_run
from testbed.market.book import Order, Side, Trade
from tests.ledger.builder import Lab, interval_start, open_lab

PARTS = ("append", "verify", "chain")


class Community:
    """A lab whose peers trade every interval; times the operator's and the peers' work."""

    def __init__(self, root: Path, n_peers: int, seed: int = 1) -> None:
        self.peers = tuple(f"P{i:02d}" for i in range(n_peers))
        started, cpu = time.perf_counter(), time.process_time()
        self.lab: Lab = open_lab(root, peers=self.peers, peer_opening=1000.0)
        self.operator_s = time.perf_counter() - started  # registration (key generation included)
        self.operator_cpu_s = time.process_time() - cpu
        self.peer_sign_s = 0.0
        self.rng = random.Random(seed)
        self.interval = 0

    def entries(self) -> int:
        return self.lab.writer.next_seq

    def trade_interval(self) -> None:
        self.interval += 1
        interval, rng, lab = self.interval, self.rng, self.lab
        half = len(self.peers) // 2
        orders: list[Order] = []
        for index, peer in enumerate(self.peers):
            lab.n_orders += 1
            orders.append(
                Order(
                    order_id=f"o{lab.n_orders}",
                    peer=peer,
                    side=Side.SELL if index < half else Side.BUY,
                    quantity_kwh=round(rng.uniform(0.2, 1.5), 3),
                    price=4.0 if index < half else 7.0,
                    interval_start=interval_start(interval),
                    time=float(lab.n_orders),
                )
            )
        at = interval_start(interval) - timedelta(seconds=60)  # at gate closure
        started = time.perf_counter()
        signed = [lab.peers[o.peer].sign_order(o, at) for o in orders]
        self.peer_sign_s += time.perf_counter() - started
        started, cpu = time.perf_counter(), time.process_time()
        accepted, _ = lab.operator.admit(at, [(s, None) for s in signed])
        ok = {o.order_id for o in accepted}
        trades = tuple(
            Trade(buy.order_id, sell.order_id, buy.peer, sell.peer, q, 5.5)
            for sell, buy in zip(orders[:half], orders[half:], strict=False)
            if sell.order_id in ok
            and buy.order_id in ok
            and (q := min(sell.quantity_kwh, buy.quantity_kwh)) > 0
        )
        sold: dict[str, float] = {}
        for trade in trades:
            sold[trade.seller] = sold.get(trade.seller, 0.0) + trade.quantity_kwh
            sold[trade.buyer] = sold.get(trade.buyer, 0.0) - trade.quantity_kwh
        metered = {p: sold.get(p, 0.0) + rng.uniform(-0.3, 0.3) for p in self.peers}
        lab.settle(interval, trades, metered)
        self.operator_s += time.perf_counter() - started
        self.operator_cpu_s += time.process_time() - cpu

    def close(self) -> None:
        started, cpu = time.perf_counter(), time.process_time()
        self.lab.operator.close(interval_start(self.interval + 1), "finished")
        self.lab.writer.close()
        self.operator_s += time.perf_counter() - started
        self.operator_cpu_s += time.process_time() - cpu


def load_line() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cores"


def bench_append(root: Path, n_entries: int, n_peers: int) -> Community:
    community = Community(root / "append", n_peers)
    wall = time.perf_counter()
    cpu = time.process_time()
    while community.entries() < n_entries:
        community.trade_interval()
    community.close()
    wall = time.perf_counter() - wall
    cpu = time.process_time() - cpu
    n = community.entries()
    size_mb = (community.lab.run_dir / "run.sqlite").stat().st_size / 1e6
    print(f"### Append ({n_peers} peers, {community.interval} intervals, {n:,} entries)\n")
    print("| what | figure |\n|---|---|")
    print(
        "| entries appended and signed per second (operator), by wall / CPU time | "
        f"{n / community.operator_s:,.0f} / {n / community.operator_cpu_s:,.0f} |"
    )
    print(
        "| µs per entry (operator: rules, SHA-256, Ed25519, SQLite), wall / CPU | "
        f"{1e6 * community.operator_s / n:,.0f} / {1e6 * community.operator_cpu_s / n:,.0f} |"
    )
    print(f"| peers' order signing (their side), total wall | {community.peer_sign_s:.1f} s |")
    print(f"| whole build, wall / CPU | {wall:.1f} s / {cpu:.1f} s |")
    print(f"| entries per interval | {n / community.interval:.1f} |")
    print(f"| run.sqlite size | {size_mb:.1f} MB ({1e6 * size_mb / n:.0f} bytes per entry) |\n")
    return community


def bench_verify(run_dir: Path) -> None:
    wall = time.perf_counter()
    cpu = time.process_time()
    report = verify_run(run_dir)
    wall = time.perf_counter() - wall
    cpu = time.process_time() - cpu
    assert report.ok, report.describe()
    print(f"### Verify ({report.n_entries:,} entries)\n")
    print("| what | figure |\n|---|---|")
    print(f"| `verify_run`, wall / CPU | {wall:.1f} s / {cpu:.1f} s |")
    print(
        f"| entries verified per second, by wall / CPU time | {report.n_entries / wall:,.0f} / "
        f"{report.n_entries / cpu:,.0f} |\n"
    )


def bench_chain(root: Path, n_peers: int, n_intervals: int) -> None:
    community = Community(root / "chain", n_peers)
    for _ in range(n_intervals):
        community.trade_interval()
    community.close()
    db = community.lab.run_dir / "run.sqlite"
    with start_node(log_path=root / "anvil.log") as node:
        mirror = ChainMirror(db, node.url, timeout_s=30.0)
        mirror.connect("bench")
        wall = time.perf_counter()
        sent = mirror.sync()
        wall = time.perf_counter() - wall
        report = verify_run(community.lab.run_dir)
        assert mirror.balances(sorted(report.wallets)) == report.wallets
        mirror.close()
    with sqlite3.connect(db) as conn:
        deploy_gas = conn.execute("SELECT gas_used FROM chain_contract").fetchone()[0]
        rows = conn.execute("SELECT function, gas_used, n_moves FROM chain_tx").fetchall()
    by_function: dict[str, list[int]] = {}
    moves: list[int] = []
    for function, gas, n_moves in rows:
        by_function.setdefault(function, []).append(gas)
        if function == "settleInterval":
            moves.append(n_moves)
    per_interval = [
        c + s
        for c, s in zip(
            by_function["storeClearingResults"], by_function["settleInterval"], strict=True
        )
    ]
    print(f"### Chain ({n_peers} peers, {n_intervals} intervals on anvil)\n")
    print(
        f"{sent} transactions in {wall:.1f} s ({1000 * wall / sent:.0f} ms each: estimate, "
        f"send, receipt); contract deployment {deploy_gas:,} gas; balances read back equal "
        "the ledger's.\n"
    )
    print("| call | count | gas mean | gas max |\n|---|---|---|---|")
    for function, gases in sorted(by_function.items()):
        print(f"| `{function}` | {len(gases)} | {statistics.mean(gases):,.0f} | {max(gases):,} |")
    mean_interval = statistics.mean(per_interval)
    print(
        f"\nPer interval (clearing + settlement, {statistics.mean(moves):.1f} wallet moves): "
        f"{mean_interval:,.0f} gas mean, {max(per_interval):,} max; per peer "
        f"{mean_interval / n_peers:,.0f} gas; a day {sum(per_interval):,} gas.\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--peers", type=int, default=10)
    parser.add_argument("--chain-peers", type=int, nargs="+", default=[3, 10])
    parser.add_argument("--intervals", type=int, default=96)
    parser.add_argument("--only", action="append", choices=PARTS)
    args = parser.parse_args()
    parts = args.only or list(PARTS)
    print(f"## Ledger benchmark\n\n{load_line()}\n")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        if "append" in parts or "verify" in parts:
            community = bench_append(root, args.entries, args.peers)
            if "verify" in parts:
                bench_verify(community.lab.run_dir)
        if "chain" in parts:
            for n_peers in args.chain_peers:
                bench_chain(root / f"chain{n_peers}", n_peers, args.intervals)
    print(load_line())


if __name__ == "__main__":
    main()
