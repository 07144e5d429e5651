"""`testbed clear` on a CSV, and the order/trade CSV helpers the run store uses."""

from __future__ import annotations

import io
import json
import re

import pandas as pd
import pytest
from typer.testing import CliRunner

from testbed.cli import app
from testbed.market import get_mechanism, read_orders_csv, write_orders_csv, write_trades_csv
from testbed.market.csv_io import read_trades_csv
from tests.market.books import INTERVAL, ask, bid, unit_book

BOOK_CSV = """order_id,peer,side,quantity_kwh,price,time
b0,A,buy,1,10,0
b1,B,buy,1,9,1
b2,C,buy,1,8,2
b3,C,buy,1,7,3
b4,C,buy,lots,7,4
a0,A,sell,1,3,0
a1,B,sell,1,4,1
a2,A,sell,1,5,2
a3,B,sell,1,8.5,3
a4,B,hold,1,8.5,3
a5,B,sell,-1,8.5,3
b0,A,buy,1,11,0
"""


def _plain(text: str) -> str:
    """Rich's error box without its frame and line wrapping."""
    return " ".join(re.sub("[│╭╮╰╯─]", " ", text).split())


@pytest.fixture
def book_csv(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text(BOOK_CSV)
    return path


def test_clear_writes_trades_and_report_and_names_bad_rows(book_csv, tmp_path):
    trades_path, report_path = tmp_path / "trades.csv", tmp_path / "report.json"
    args = ["--mechanism", "uniform", "--k", "0.5", "--out", str(trades_path)]
    result = CliRunner().invoke(app, ["clear", *args, "--report", str(report_path), str(book_csv)])
    assert result.exit_code == 0, result.output
    trades = pd.read_csv(trades_path)
    assert list(trades.columns) == [
        "buy_order_id", "sell_order_id", "buyer", "seller", "quantity_kwh", "price",
    ]  # fmt: skip
    assert trades[["buy_order_id", "sell_order_id"]].values.tolist() == [
        ["b0", "a0"],
        ["b1", "a1"],
        ["b2", "a2"],
    ]
    assert trades["price"].tolist() == [7.5, 7.5, 7.5]
    report = json.loads(report_path.read_text())
    assert report["clearing_price"] == 7.5
    assert report["volume_kwh"] == 3.0
    assert report["curves"]["clearing_point"] == {"kwh": 3.0, "price": 7.5}
    reasons = {item["order_id"]: item["reason"] for item in report["rejected"]}
    assert reasons == {
        "b4": "quantity_kwh 'lots' is not a number",
        "a4": "side 'hold' is not buy or sell",
        "a5": "quantity_kwh -1.0 must be a finite number > 0",
        "b0": "duplicate order_id 'b0' (the first order with it is kept)",
    }
    stderr = result.stderr
    assert "line 6 (order_id 'b4'): quantity_kwh 'lots' is not a number" in stderr
    assert "side 'hold' is not buy or sell" in stderr


def test_clear_prints_trades_to_stdout(book_csv):
    result = CliRunner().invoke(app, ["clear", "-m", "mcafee", str(book_csv)])
    assert result.exit_code == 0, result.output
    trades = pd.read_csv(io.StringIO(result.stdout))
    assert trades["price"].tolist() == [7.75, 7.75, 7.75]  # (7 + 8.5) / 2
    assert "mcafee: 8 orders cleared, 3 trades" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-m", "dutch"], "unknown market mechanism 'dutch'"),
        (["--k", "1.5"], "k = 1.5 is outside the allowed range [0, 1]"),
        (["-m", "vcg", "--k", "0.5"], "mechanism 'vcg' has no parameter 'k'"),
    ],
)
def test_clear_refuses_bad_options(book_csv, args, message):
    result = CliRunner().invoke(app, ["clear", *args, str(book_csv)])
    assert result.exit_code == 2
    assert message in _plain(result.output)


def test_clear_refuses_a_csv_without_the_required_columns(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text("order_id,peer,side,price\nb0,A,buy,5\n")
    result = CliRunner().invoke(app, ["clear", str(path)])
    assert result.exit_code == 2
    assert "lacks column(s) quantity_kwh" in _plain(result.output)


def test_clear_rejects_unknown_peers(book_csv):
    result = CliRunner().invoke(app, ["clear", "--peers", "A,B", str(book_csv)])
    assert result.exit_code == 0
    assert "unknown peer 'C' (known peers: A, B)" in result.stderr
    trades = pd.read_csv(io.StringIO(result.stdout))
    assert "C" not in set(trades["buyer"])


def test_orders_round_trip_through_csv(tmp_path):
    orders = [bid("b0", 1.25, 9.5, time=3.0, peer="A"), ask("a0", 0.1, -2.0, peer="B")]
    path = tmp_path / "book.csv"
    write_orders_csv(orders, path)
    again, problems = read_orders_csv(path)
    assert problems == []
    assert again == orders
    assert again[0].interval_start == INTERVAL


def test_order_csv_accepts_iso_times_and_reports_bad_rows_by_line():
    text = (
        "order_id,peer,side,quantity_kwh,price,time\n"
        "b0,A,BUY,1,5,2025-06-01T11:50:00Z\n"
        "b1,A,buy,1,5,yesterday\n"
        ",A,sell,1,5,0\n"
    )
    orders, problems = read_orders_csv(io.StringIO(text))
    assert [o.order_id for o in orders] == ["b0"]
    assert orders[0].time == INTERVAL.timestamp() - 600
    assert [(p.line, p.order_id) for p in problems] == [(3, "b1"), (4, "")]
    assert "time 'yesterday' is neither seconds nor an ISO-8601 timestamp" in problems[0].reason


def test_trades_round_trip_through_csv(tmp_path):
    result = get_mechanism("uniform").clear(unit_book([10, 9], [1, 2]))
    path = tmp_path / "trades.csv"
    write_trades_csv(result, path)
    assert read_trades_csv(path) == result.trades
    write_trades_csv(result.trades, path)
    assert read_trades_csv(path) == result.trades


@pytest.mark.parametrize("name", ["welfare", "admm", "nash", "stackelberg"])
def test_clear_runs_the_optimisation_and_game_methods_on_the_site_feeder(book_csv, tmp_path, name):
    report_path = tmp_path / "report.json"
    args = ["clear", "-m", name, "-p", "feeder=site", "--report", str(report_path), str(book_csv)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    trades = pd.read_csv(io.StringIO(result.stdout))  # stdout is the trades CSV and nothing else
    report = json.loads(report_path.read_text())
    assert trades["quantity_kwh"].sum() == pytest.approx(report["volume_kwh"], abs=1e-6)
    assert report["network"]["check"]["ok"] is True
    assert "feeder ok" in result.stderr
    if name != "stackelberg":  # the welfare optimum: 10-3 + 9-4 + 8-5 = 15
        assert report["welfare"] == pytest.approx(15.0, abs=1e-4)
    if name == "admm":
        assert report["iterations"] >= 1 and report["primal_residual"] < 1e-5
        assert f"{report['iterations']} iterations; residuals" in result.stderr


def test_clear_writes_each_trades_network_charge_when_charged_by_distance(book_csv, tmp_path):
    trades_path, report_path = tmp_path / "trades.csv", tmp_path / "report.json"
    args = ["clear", "-m", "welfare", "-p", "feeder=site", "-p", "charges=distance"]
    args += ["--out", str(trades_path), "--report", str(report_path), str(book_csv)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    trades = read_trades_csv(trades_path)
    report = json.loads(report_path.read_text())
    assert all(t.network_charge is not None and t.network_charge >= 0 for t in trades)
    assert any(t.network_charge > 0 for t in trades)  # none between a peer and itself
    total = sum(t.network_charge * t.quantity_kwh for t in trades)
    assert total == pytest.approx(report["network"]["network_charges"])
