"""Run one pymarket 0.7.6 mechanism on a book saved by market_bench.py (runs in pymarket's venv).

Usage: python market_pymarket_runner.py BOOK.npz MECHANISM [SEED]
Prints one JSON line: seconds (wall and CPU) spent in the mechanism and the traded volume.
It imports only pymarket, pandas and numpy (pandas<2, numpy<1.27), not the testbed package.
"""

import json
import sys
import time

import numpy as np
import pymarket as pm


def main() -> None:
    path, mechanism = sys.argv[1], sys.argv[2]
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    book = np.load(path)
    market = pm.Market()
    for user, (is_buy, quantity, price) in enumerate(
        zip(
            book["is_buy"].tolist(),
            book["quantity_kwh"].tolist(),
            book["price"].tolist(),
            strict=True,
        )
    ):
        market.accept_bid(quantity, price, user, is_buy)
    kwargs = {"r": np.random.RandomState(seed)} if mechanism == "muda" else {}
    wall, cpu = time.perf_counter(), time.process_time()
    transactions, _extra = market.run(mechanism, **kwargs)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    frame = transactions.get_df()
    bids = market.bm.get_df()
    if len(frame):
        buying = bids.loc[frame["bid"].to_numpy(dtype=int), "buying"].to_numpy(dtype=bool)
        volume = float(frame["quantity"].to_numpy(dtype=float)[buying].sum())
    else:
        volume = 0.0
    print(
        json.dumps(
            {
                "mechanism": mechanism,
                "wall_s": wall,
                "cpu_s": cpu,
                "volume_kwh": volume,
                "orders": len(bids),
            }
        )
    )


if __name__ == "__main__":
    main()
