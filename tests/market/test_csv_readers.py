"""The pyarrow reader and the pandas reader give the same book, problems and trades."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from testbed.market import get_mechanism, read_order_columns, read_orders_csv, write_trades_csv
from testbed.market.columns import ArrowStrings
from testbed.market.csv_io import _parse, _parse_arrow

HEADER = "order_id,peer,side,quantity_kwh,price,time,interval_start\n"
START = "2026-06-01T06:00:00+00:00"

FILES = {
    "plain": HEADER
    + f"b1,A,buy,1.5,7.25,1,{START}\ns1,B,sell,0.3,4.1,2,{START}\nb2,C,BUY,2,6,3,{START}\n",
    "bad rows": HEADER
    + f"b1,A,buy,1.5,7.25,1,{START}\n,A,buy,1,1,1,{START}\n"  # empty order_id
    + f"x1,A,hold,1,1,1,{START}\n"  # unknown side
    + f"x2,A,buy,,1,1,{START}\n"  # blank quantity
    + f"x3,A,sell,nan,1,1,{START}\n"  # NaN parses; validation rejects it later
    + f"x4,B,sell,1,,1,{START}\n"  # blank price
    + "x5,B,sell,1,2,1,yesterday\n"  # bad interval_start
    + f"b1,B,sell,1,2,2,{START}\ns9,B,ask,-1,inf,,{START}\n",
    "padded numbers": HEADER + f"b1,A,buy, 1,2 ,0,{START}\na1,B,sell,1,1,0,{START}\n",
    "no optional columns": "order_id,peer,side,quantity_kwh,price\nb,A,bid,1,2\na,B,offer,1,1\n",
}


@pytest.mark.parametrize("name", list(FILES))
def test_both_readers_give_the_same_columns_and_problems(name, tmp_path: Path):
    path = tmp_path / "book.csv"
    path.write_text(FILES[name])
    fast = _parse_arrow(path, None, want_starts=True)
    assert fast is not None, "a plain file takes the pyarrow path"
    slow = _parse(path, None)
    for field in ("is_buy", "quantity_kwh", "price", "time"):
        np.testing.assert_array_equal(getattr(fast[0], field), getattr(slow[0], field))
    assert list(fast[0].order_id) == list(slow[0].order_id)
    assert list(fast[0].peer) == list(slow[0].peer)
    assert fast[0].interval_start == slow[0].interval_start
    assert fast[1] == slow[1]
    assert fast[2] == slow[2]


def test_bad_rows_are_named_by_line_in_the_pyarrow_path(tmp_path: Path):
    path = tmp_path / "book.csv"
    path.write_text(FILES["bad rows"])
    columns, problems = read_order_columns(path)
    assert isinstance(columns.order_id, ArrowStrings)
    assert [(p.line, p.reason) for p in problems] == [
        (3, "order_id is empty"),
        (4, "side 'hold' is not buy or sell"),
        (5, "quantity_kwh '' is not a number"),
        (7, "price '' is not a number"),
        (8, "interval_start 'yesterday' is not ISO-8601"),
    ]
    result = get_mechanism("uniform").clear(columns)
    reasons = {item["order_id"]: item["reason"] for item in result.report["rejected"]}
    assert reasons["x3"] == "quantity_kwh nan must be a finite number > 0"
    assert reasons["s9"].startswith("quantity_kwh -1.0 must be a finite number > 0")
    assert reasons["b1"].startswith("duplicate order_id 'b1'")


@pytest.mark.parametrize(
    "text",
    [
        HEADER + f" b1 ,A,buy,1,2,0,{START}\na1,B,sell,1,1,0,{START}\n",  # padded id
        HEADER + f"b1,A,buy,1,2,{START},{START}\na1,B,sell,1,1,0,{START}\n",  # ISO time
        "order_id, peer,side,quantity_kwh,price\nb1,A,buy,1,2\n",  # padded header
        HEADER + f"b1,A,buy,lots,2,0,{START}\n",  # a word for a number
    ],
)
def test_files_the_pyarrow_path_cannot_read_plainly_go_through_pandas(text, tmp_path: Path):
    path = tmp_path / "book.csv"
    path.write_text(text)
    assert _parse_arrow(path, None, want_starts=False) is None
    columns, problems = read_order_columns(path)
    orders, same_problems = read_orders_csv(io.StringIO(text))
    assert len(columns) == len(orders) and problems == same_problems


def test_trades_written_from_columns_read_back_as_the_objects(tmp_path: Path):
    rng = np.random.default_rng(3)
    count = 400
    lines = [
        f"o{i},{'ABC'[i % 3]}\u00e9,{'buy' if i % 2 else 'sell'},{rng.uniform(0.1, 2)!r},"
        f"{rng.uniform(1, 12)!r},{i},{START}"
        for i in range(count)
    ]
    lines.append(f'"o,quoted",A,buy,1,11.5,999,{START}')
    path = tmp_path / "book.csv"
    path.write_text(HEADER + "\n".join(lines) + "\n")
    result = get_mechanism("uniform").clear(read_order_columns(path)[0])
    out = tmp_path / "trades.csv"
    write_trades_csv(result, out)
    frame = pd.read_csv(out, dtype={"buyer": str, "seller": str}, float_precision="round_trip")
    assert len(frame) == len(result.trades) > 0
    for column in ("buy_order_id", "sell_order_id", "buyer", "seller"):
        assert frame[column].tolist() == [getattr(t, column) for t in result.trades]
    assert frame["quantity_kwh"].tolist() == [t.quantity_kwh for t in result.trades]
    assert frame["price"].tolist() == [t.price for t in result.trades]
    assert "o,quoted" in frame["buy_order_id"].tolist()
