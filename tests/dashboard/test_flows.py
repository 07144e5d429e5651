"""Money flows and order-book curves: the arithmetic behind the Settlement and Market pages."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pandas as pd
import pytest

from dashboards.flows import OPERATOR, money_flows, payment_matrix
from dashboards.market_curves import curves, from_report
from testbed.config import PricesConfig
from testbed.market.book import Order, Side, Trade
from testbed.market.registry import get_mechanism
from testbed.settlement import settle_interval

T0 = datetime(2024, 6, 1, 6, 0, tzinfo=UTC)


def _frames(trades: list[Trade], metered: dict[str, float]) -> tuple[pd.DataFrame, pd.DataFrame]:
    settlements = settle_interval(T0, trades, metered, PricesConfig())
    trade_rows = pd.DataFrame(
        [
            {
                "buyer": t.buyer,
                "seller": t.seller,
                "quantity_kwh": t.quantity_kwh,
                "price": t.price,
                "seller_price": t.seller_price,
            }
            for t in trades
        ]
    )
    trade_rows["seller_price"] = trade_rows["seller_price"].astype(float)
    return trade_rows, pd.DataFrame([_row(s) for s in settlements])


def _row(settlement: object) -> dict[str, object]:
    return {name: getattr(settlement, name) for name in settlement.__dataclass_fields__}


@pytest.mark.parametrize(
    "seller_prices", [(None, None), (5.0, 6.5)], ids=["budget balanced", "operator margin"]
)
def test_each_peers_money_out_minus_in_is_its_bill(seller_prices: tuple) -> None:
    trades = [
        Trade("b1", "s1", "C", "A", 0.4, 6.0, seller_prices[0]),
        Trade("b2", "s2", "C", "B", 0.2, 6.0, seller_prices[1]),
    ]
    # C used more than it bought, A delivered less than it sold, B exported more.
    metered = {"A": 0.3, "B": 0.35, "C": -0.9}
    trade_rows, settlements = _frames(trades, metered)
    flows = money_flows(trade_rows, settlements)
    bills = settlements.set_index("peer")["bill"]
    for peer in "ABC":
        out = flows.loc[flows["payer"] == peer, "amount"].sum()
        into = flows.loc[flows["payee"] == peer, "amount"].sum()
        assert out - into == pytest.approx(bills[peer])
    operator = flows[(flows["payer"] == OPERATOR) | (flows["payee"] == OPERATOR)]
    if seller_prices[0] is None:
        assert operator.empty
    else:
        # C pays 6.0 for A's 0.4 kWh, A gets 5.0: the operator keeps 0.4; B gets 6.5: it adds 0.1.
        margin = operator.set_index("kind")["amount"]
        assert margin["margin"] == pytest.approx(0.4)
        assert margin["deficit"] == pytest.approx(0.1)

    money, energy = payment_matrix(trade_rows, ["A", "B", "C"])
    assert money.loc["C", "A"] == pytest.approx(2.4)
    assert energy.loc["C", "B"] == pytest.approx(0.2)
    assert money.loc["A"].sum() == 0.0


def test_curves_from_orders_match_the_mechanisms_own_curves() -> None:
    orders = [
        Order("b1", "C", Side.BUY, 0.5, 7.0, T0, 0.0),
        Order("b2", "B", Side.BUY, 0.3, 6.0, T0, 1.0),
        Order("b3", "C", Side.BUY, 0.2, 3.5, T0, 2.0),
        Order("s1", "A", Side.SELL, 0.4, 4.0, T0, 3.0),
        Order("s2", "A", Side.SELL, 0.3, 5.5, T0, 4.0),
        Order("s3", "B", Side.SELL, 0.6, 6.5, T0, 5.0),
    ]
    clearing = get_mechanism("uniform").clear(orders).to_document(T0)
    stored = pd.DataFrame(
        [
            {
                "order_id": o.order_id,
                "peer": o.peer,
                "side": str(o.side),
                "quantity_kwh": o.quantity_kwh,
                "price": o.price,
                "time": o.time,
                "accepted": True,
            }
            for o in orders
        ]
    )
    book = curves(stored)
    assert book.demand["price"].tolist() == [7.0, 6.0, 3.5]  # highest bid first
    assert book.supply["price"].tolist() == [4.0, 5.5, 6.5]  # cheapest ask first
    assert book.demand["to_kwh"].tolist() == pytest.approx([0.5, 0.8, 1.0])

    reported = from_report(json.dumps(dict(clearing.report)))
    assert reported is not None
    assert reported.demand_kwh[-1] == pytest.approx(book.demand["to_kwh"].iloc[-1])
    assert reported.supply_kwh[-1] == pytest.approx(book.supply["to_kwh"].iloc[-1])
    assert reported.demand_price[:3] == [7.0, 6.0, 3.5]
    assert from_report('{"curves": {"demand": 3}}') is None  # another shape: orders are used
