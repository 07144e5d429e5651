"""`testbed clear` on order files a user gets wrong: every problem is named by its file line,
structural errors stop with one message (no traceback), and one file is one market interval."""

from __future__ import annotations

import dataclasses
import io
import json
import re

import pandas as pd
import pytest
from typer.testing import CliRunner

from testbed.cli import app
from testbed.market import validate_orders
from tests.market.books import bid

HEADER = "order_id,peer,side,quantity_kwh,price"


def _plain(text: str) -> str:
    """Rich's error box without its frame and line wrapping."""
    return " ".join(re.sub("[│╭╮╰╯─]", " ", text).split())


def _clear(tmp_path, content: str | bytes, *args: str):
    path = tmp_path / "orders.csv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, newline="")
    report = tmp_path / "report.json"
    result = CliRunner().invoke(app, ["clear", *args, str(path), "--report", str(report)])
    return result, report


@pytest.mark.parametrize("name", ["uniform", "welfare"])
def test_every_rejection_names_its_line_even_after_blank_lines_and_quoted_breaks(tmp_path, name):
    text = (
        f"{HEADER}\n"
        '"b\n0",A,buy,1,6\n'  # line 2-3: a quoted line break inside an id
        "\n"  # line 4: blank
        "b1,B,buy,1,7\n"  # line 5
        "b1,C,buy,1,8\n"  # line 6: a duplicate id (which one? the line says)
        "a0,D,sell,nan,4\n"  # line 7
        "a1,,sell,1,3\n"  # line 8: no peer
        "a2,E,sell,x,3\n"  # line 9: not a number
        "a3,F,sell,1,4\n"  # line 10: a good ask
    )
    result, report = _clear(tmp_path, text, "-m", name)
    assert result.exit_code == 0, result.output
    assert "rejected line 6 (order_id 'b1'): duplicate order_id 'b1'" in result.stderr
    assert "rejected line 7 (order_id 'a0'): quantity_kwh nan must be" in result.stderr
    assert "rejected line 8 (order_id 'a1'): peer is empty" in result.stderr
    assert "rejected line 9 (order_id 'a2'): quantity_kwh 'x' is not a number" in result.stderr
    lines = {item["order_id"]: item["line"] for item in json.loads(report.read_text())["rejected"]}
    assert lines == {"b1": 6, "a0": 7, "a1": 8, "a2": 9}
    trades = pd.read_csv(io.StringIO(result.stdout))
    assert set(trades["buy_order_id"]) <= {"b\n0", "b1"} and set(trades["buyer"]) <= {"A", "B"}


def test_a_time_that_is_not_finite_is_named_plainly(tmp_path):
    result, _ = _clear(tmp_path, f"{HEADER},time\nb0,A,buy,1,6,inf\na0,B,sell,1,4,0\n")
    assert "rejected line 2 (order_id 'b0'): time inf must be a finite number" in result.stderr


def test_orders_of_another_interval_are_rejected_not_traded_across_intervals(tmp_path):
    first, second = "2026-01-01T00:00:00Z", "2026-01-01T00:15:00Z"
    text = (
        f"{HEADER},interval_start\n"
        f"b0,A,buy,1,6,{first}\n"
        f"a0,B,sell,1,4,{second}\n"
        f"b1,C,buy,1,7,{second}\n"
        f"a1,D,sell,1,3,{first}\n"
    )
    for name in ("uniform", "admm"):
        result, _ = _clear(tmp_path, text, "-m", name)
        assert result.exit_code == 0, result.output
        trades = pd.read_csv(io.StringIO(result.stdout))
        assert trades[["buy_order_id", "sell_order_id"]].values.tolist() == [["b0", "a1"]]
        assert "rejected line 3 (order_id 'a0'): interval_start '2026-01-01T00:15:00Z'" in (
            result.stderr
        )
        assert "line 4 (order_id 'b1')" in result.stderr
        assert "clear one interval per file" in result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (f"{HEADER},price\nb0,A,buy,1,6,7\n", "the header names column 'price' more than once"),
        (
            "order_id,peer,side,quantity_kw,price\nb0,A,buy,1,6\n",
            "lacks column(s) quantity_kwh (required: order_id, peer, side, quantity_kwh, price; "
            "optional: time, interval_start; the header has 'order_id', 'peer', 'side', "
            "'quantity_kw', 'price')",
        ),
        (
            f"{HEADER}\nb0,A,buy,1,6\n\nb1,A,buy,1,6,9\n",
            "line 4 has 6 values but the header names 5 columns: 'b1,A,buy,1,6,9'",
        ),
        (
            f"{HEADER}\nb0,A,buy,1,6,9\na0,B,sell,1,4\n",
            "line 2 has 6 values but the header names 5 columns",
        ),
        (
            f"{HEADER}\nb0,A,buy,1,6\n".encode() + "a0,Jörg,sell,1,4\n".encode("latin-1"),
            "line 3 is not UTF-8 text (byte 0xf6); save the file as UTF-8",
        ),
        (
            f"{HEADER}\nb0,A,buy,1,6\n".encode("utf-16"),
            "the file is UTF-16 text; save it as UTF-8",
        ),
    ],
)
def test_files_that_cannot_be_read_stop_with_one_message(tmp_path, content, message):
    result, _ = _clear(tmp_path, content)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert message in _plain(result.output)


def test_an_order_without_a_peer_is_rejected():
    order = dataclasses.replace(bid("b0", 1.0, 5.0), peer="")
    assert validate_orders([order])[1] == [(order, "peer '' must be a non-empty string")]


@pytest.mark.parametrize(
    ("content", "line"),
    [
        (f"{HEADER}\nb0,A,buy,1,6\n   \n\nb1,B,buy,x,6\n", 5),  # a line of spaces, a blank one
        (f"{HEADER}\rb0,A,buy,1,6\r\rb1,B,buy,x,6\r", 4),  # old Mac line ends, a blank line
        (f"{HEADER}\r\nb0,A,buy,1,6\r\n\r\nb1,B,buy,x,6\r\n", 4),  # CRLF, a blank line
        (f"\ufeff{HEADER}\nb0,A,buy,1,6\nb1,B,buy,x,6\n", 3),  # a UTF-8 byte-order mark
    ],
)
def test_the_line_of_a_bad_row_counts_every_line_of_the_file(tmp_path, content, line):
    result, _ = _clear(tmp_path, content.encode())
    assert result.exit_code == 0, result.output
    assert f"rejected line {line} (order_id 'b1'): quantity_kwh 'x' is not a number" in (
        result.stderr
    )


def test_a_peer_off_the_feeder_is_named_by_its_line(tmp_path):
    feeder = tmp_path / "feeder.toml"
    feeder.write_text(
        "[feeder]\nlv_bus_voltage_v = 232.0\n"
        '[[feeder.lines]]\nfrom_bus = "LV"\nto_bus = "A"\nlength_m = 30\n'
        "r_ohm_per_km = 2.3\nx_ohm_per_km = 0.18\nmax_current_a = 80\n"
    )
    text = f"{HEADER}\nb1,A,buy,1,10\n\na1,Z,sell,1,2\n"
    result, _ = _clear(tmp_path, text, "-m", "welfare", "-p", f"feeder={feeder}")
    assert result.exit_code == 0, result.output
    assert "rejected line 4 (order_id 'a1'): peer 'Z' has no bus on the feeder" in result.stderr
