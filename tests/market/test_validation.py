"""Bad orders are rejected one by one with a reason; the rest of the book still clears."""

from __future__ import annotations

import dataclasses
import math
from datetime import timedelta

import pytest

from testbed.market import OrderColumns, get_mechanism, validate_orders
from tests.market.books import INTERVAL, ask, bid

GOOD = [bid("b0", 1.0, 10.0, peer="A"), ask("a0", 1.0, 4.0, peer="B")]


def _bad(order_id, **changes):
    return dataclasses.replace(bid(order_id, 1.0, 9.0, peer="C"), **changes)


BAD = [
    (_bad("nan_qty", quantity_kwh=math.nan), "quantity_kwh nan must be a finite number > 0"),
    (_bad("inf_qty", quantity_kwh=math.inf), "quantity_kwh inf must be a finite number > 0"),
    (_bad("neg_qty", quantity_kwh=-2.0), "quantity_kwh -2.0 must be a finite number > 0"),
    (_bad("zero_qty", quantity_kwh=0.0), "quantity_kwh 0.0 must be a finite number > 0"),
    (_bad("nan_price", price=math.nan), "price nan must be a finite number"),
    (_bad("inf_price", price=-math.inf), "price -inf must be a finite number"),
    (_bad("text_qty", quantity_kwh="2"), "quantity_kwh '2' must be a finite number > 0"),
    (_bad("bad_side", side="hold"), "side 'hold' is not 'buy' or 'sell'"),
    (_bad("nan_time", time=math.nan), "time nan must be a finite number"),
]


@pytest.mark.parametrize(("order", "reason"), BAD, ids=[o.order_id for o, _ in BAD])
def test_each_bad_order_is_rejected_with_its_reason(order, reason):
    valid, rejected = validate_orders([*GOOD, order])
    assert valid == GOOD
    assert len(rejected) == 1
    assert rejected[0][0] is order
    assert reason in rejected[0][1]


def test_unknown_peer_and_wrong_interval_are_rejected_when_checked():
    stranger = bid("s0", 1.0, 9.0, peer="Z")
    late = dataclasses.replace(
        bid("l0", 1.0, 9.0, peer="A"), interval_start=INTERVAL + timedelta(minutes=15)
    )
    valid, rejected = validate_orders([*GOOD, stranger, late], {"A", "B", "C"}, INTERVAL)
    assert valid == GOOD
    reasons = {order.order_id: why for order, why in rejected}
    assert reasons["s0"] == "unknown peer 'Z' (known peers: A, B, C)"
    assert "is not the market interval 2025-06-01T12:00:00+00:00" in reasons["l0"]
    # without the checks both are fine
    assert len(validate_orders([stranger, late])[0]) == 2


def test_duplicate_order_id_keeps_the_first():
    again = bid("b0", 5.0, 1.0, peer="A")
    valid, rejected = validate_orders([*GOOD, again])
    assert valid == GOOD
    assert rejected == [(again, "duplicate order_id 'b0' (the first order with it is kept)")]


@pytest.mark.parametrize("name", ["uniform", "pay_as_bid", "mcafee", "huang", "vcg", "cda"])
def test_mechanisms_reject_bad_orders_and_clear_the_rest(name):
    book = [bid("b1", 2.0, 9.0, peer="A"), ask("a1", 2.0, 3.0, peer="B"), *GOOD]
    bad = [order for order, _ in BAD]
    mechanism = get_mechanism(name)
    clean = mechanism.clear(book)
    mixed = mechanism.clear(bad[:4] + book + bad[4:])
    assert mixed.trades == clean.trades
    assert clean.volume_kwh > 0
    rejected = {item["order_id"]: item["reason"] for item in mixed.report["rejected"]}
    assert set(rejected) == {order.order_id for order in bad}
    assert mixed.report["orders"]["rejected"] == len(bad)


def test_columns_reject_the_same_rows():
    orders = [order for order, _ in BAD if isinstance(order.quantity_kwh, float)]
    orders = [o for o in orders if o.side in ("buy", "sell")]
    columns = OrderColumns.from_orders([*GOOD, *orders, bid("b0", 1.0, 1.0)])
    ok, problems = columns.problems()
    assert ok.tolist() == [True, True] + [False] * (len(orders) + 1)
    assert [why for _, why in problems][-1].startswith("duplicate order_id 'b0'")
    result = get_mechanism("uniform").clear(columns)
    assert result.volume_kwh == pytest.approx(1.0)
    assert len(result.report["rejected"]) == len(orders) + 1
