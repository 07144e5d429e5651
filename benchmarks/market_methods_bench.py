"""Benchmark: the optimisation and game methods against the auctions (docs/bench-market-methods.md).

    python benchmarks/market_methods_bench.py [--sizes 10,100,1000] [--days 3] [--seed 1]

Part 1, scaling: communities of N peers (seeded), each with one to three step orders (prosumers
with a surplus ask between the feed-in and the retail tariff, the others bid), cleared by the
centralised welfare optimum (cvxpy/HiGHS: first solve with compilation, then a re-solve of the
same shape) and by ADMM (each peer's exact proximal step, a coordinator's projection). Prints the
wall time, ADMM's iterations and residuals, and the welfare gap relative to the centralised one.

Part 2, the same seeded days for every method: a 20-peer community (8 with PV, 4 of those with a
battery-like flexible ask), 96 quarter-hours per day from a PV bell and evening-peaked loads with
seeded noise; each peer bids its deficit at a limit between the tariffs and asks its surplus
likewise. For every mechanism: the welfare (gains from trade at the peers' limits), the P2P
volume, the peers' savings against settling everything with the grid (buyers save retail minus
their price, sellers earn their price minus feed-in) and what the operator keeps or funds.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from testbed.config import PricesConfig  # noqa: E402
from testbed.market import Order, Side, get_mechanism  # noqa: E402
from testbed.market.mechanism import prepare_book  # noqa: E402
from testbed.market.optimisation.admm import run_admm  # noqa: E402
from testbed.market.optimisation.community import Community  # noqa: E402
from testbed.market.optimisation.welfare import solve_welfare  # noqa: E402

START = datetime(2026, 3, 21, tzinfo=UTC)
PRICES = PricesConfig()
METHODS = ["uniform", "pay_as_bid", "mcafee", "huang", "vcg", "cda"]
METHODS += ["welfare", "admm", "nash", "stackelberg"]


def community_book(n_peers: int, rng: np.random.Generator) -> list[Order]:
    orders = []
    low, high = PRICES.feed_in_tariff, PRICES.retail_tariff
    for peer in range(n_peers):
        selling = rng.random() < 0.4
        for k in range(int(rng.integers(1, 4))):
            side = Side.SELL if selling else Side.BUY
            price = float(np.round(rng.uniform(low, high), 2))
            quantity = float(np.round(rng.uniform(0.05, 1.5), 3))
            order_id = f"P{peer}-{k}"
            orders.append(Order(order_id, f"P{peer}", side, quantity, price, START, len(orders)))
    return orders


def scaling(sizes: list[int], seed: int) -> None:
    print("## Scaling: centralised welfare (cvxpy/HiGHS) against ADMM\n")
    print(
        "| peers | orders | welfare first solve s | welfare re-solve s | ADMM s | ADMM iterations "
        "| primal residual kWh | dual residual | welfare gap (relative) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in sizes:
        rng = np.random.default_rng(seed + n)
        book, _ = prepare_book(community_book(n, rng))
        community = Community.from_book(book)
        t0 = time.perf_counter()
        central = solve_welfare(community)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        central = solve_welfare(community)
        again = time.perf_counter() - t0
        t0 = time.perf_counter()
        distributed = run_admm(Community.from_book(book, pad=False))
        admm_s = time.perf_counter() - t0
        gap = abs(distributed.welfare - central.objective) / max(abs(central.objective), 1e-12)
        print(
            f"| {n:,} | {len(book):,} | {first:.3f} | {again:.3f} | {admm_s:.3f} | "
            f"{distributed.iterations} | {distributed.primal_residual:.1e} | "
            f"{distributed.dual_residual:.1e} | {gap:.1e} |",
            flush=True,
        )
    print()


def day_books(day: int, seed: int, n_peers: int = 20) -> list[list[Order]]:
    """96 quarter-hour books of one seeded day."""
    rng = np.random.default_rng(seed * 1000 + day)
    pv_kwp = np.where(np.arange(n_peers) < 8, rng.uniform(2.0, 5.0, n_peers), 0.0)
    flexible = np.arange(n_peers) < 4
    base_kw = rng.uniform(0.2, 0.5, n_peers)
    peak_kw = rng.uniform(1.0, 2.5, n_peers)
    cloud = rng.uniform(0.6, 1.0)
    books = []
    low, high = PRICES.feed_in_tariff, PRICES.retail_tariff
    for q in range(96):
        hour = (q + 0.5) / 4
        start = START + timedelta(days=day, minutes=15 * q)
        sun = max(0.0, np.sin(np.pi * (hour - 6) / 12)) * cloud
        evening = np.exp(-(((hour - 20) / 2.0) ** 2))
        morning = 0.5 * np.exp(-(((hour - 8) / 1.5) ** 2))
        noise = rng.normal(1.0, 0.1, n_peers)
        load_kw = (base_kw + (peak_kw - base_kw) * (evening + morning)) * noise
        net_kwh = (pv_kwp * sun * rng.normal(1.0, 0.05, n_peers) - load_kw) / 4
        orders = []
        for peer in range(n_peers):
            kwh = float(net_kwh[peer])
            if abs(kwh) < 1e-3:
                continue
            side = Side.SELL if kwh > 0 else Side.BUY
            limit = float(np.round(rng.uniform(low + 0.5, high - 0.5), 2))
            orders.append(Order(f"q{q}-P{peer}", f"P{peer}", side, abs(kwh), limit, start, peer))
            if flexible[peer] and side is Side.SELL:  # a battery's extra offer, dearer
                extra = float(np.round(rng.uniform(0.1, 0.4), 3))
                orders.append(
                    Order(f"q{q}-P{peer}-b", f"P{peer}", side, extra, limit + 1.0, start, peer)
                )
        books.append(orders)
    return books


def side_by_side(days: int, seed: int) -> None:
    print(f"## Every method on the same {days} seeded days (20 peers, 96 intervals a day)\n")
    print(
        "| method | welfare INR | P2P kWh | peers' savings INR | operator keeps INR "
        "| intervals fallen back | clearing s (total) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    all_books = [book for day in range(days) for book in day_books(day, seed)]
    for name in METHODS:
        mechanism = get_mechanism(name)
        welfare = volume = savings = kept = 0.0
        fallbacks = 0
        t0 = time.perf_counter()
        for orders in all_books:
            result = mechanism.clear(orders)
            report = result.report
            welfare += float(report["welfare"])
            volume += result.volume_kwh
            kept += float(report["operator_surplus"])
            if report.get("fallback") and report["fallback"] != "no welfare-improving trade":
                fallbacks += 1
            for trade, seller_price in zip(result.trades, result.seller_prices, strict=True):
                q = trade.quantity_kwh
                savings += q * (PRICES.retail_tariff - trade.price)
                savings += q * (seller_price - PRICES.feed_in_tariff)
        elapsed = time.perf_counter() - t0
        print(
            f"| {name} | {welfare:.2f} | {volume:.2f} | {savings:.2f} | {kept:.2f} | "
            f"{fallbacks} | {elapsed:.2f} |",
            flush=True,
        )
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    scaling([int(size) for size in args.sizes.split(",")], args.seed)
    side_by_side(args.days, args.seed)


if __name__ == "__main__":
    main()
