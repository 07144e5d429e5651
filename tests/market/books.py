"""Order books for the market tests: builders, hypothesis strategies and a brute-force optimum."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
from hypothesis import strategies as st
from scipy.optimize import linprog

from testbed.market import ClearingResult, Order, Side

INTERVAL = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
EPS = 1e-7


def bid(order_id: str, quantity_kwh: float, price: float, time: float = 0.0, peer=None) -> Order:
    return Order(order_id, peer or order_id, Side.BUY, quantity_kwh, price, INTERVAL, time)


def ask(order_id: str, quantity_kwh: float, price: float, time: float = 0.0, peer=None) -> Order:
    return Order(order_id, peer or order_id, Side.SELL, quantity_kwh, price, INTERVAL, time)


def unit_book(bid_prices, ask_prices) -> list[Order]:
    """One 1 kWh order per price, bids b0.. and asks a0.."""
    return [bid(f"b{i}", 1.0, p) for i, p in enumerate(bid_prices)] + [
        ask(f"a{i}", 1.0, p) for i, p in enumerate(ask_prices)
    ]


# Integer draws scaled down: fast to generate, many equal prices (ties), and quantities such as
# 0.3 kWh that binary floating point cannot hold exactly.
_price = st.integers(0, 40).map(lambda n: n / 4)
_quantity = st.integers(1, 50).map(lambda n: n / 10)


def books(max_orders: int = 14, unit: bool = False) -> st.SearchStrategy[list[Order]]:
    """Random books of up to `max_orders` orders; `unit` makes every order 1 kWh."""
    row = st.tuples(st.booleans(), st.just(1.0) if unit else _quantity, _price, st.integers(0, 3))
    return st.lists(row, max_size=max_orders).map(_to_orders)


def _to_orders(rows) -> list[Order]:
    orders = []
    for i, (is_buy, quantity, price, time) in enumerate(rows):
        order_id = f"{'b' if is_buy else 'a'}{i}"
        side = Side.BUY if is_buy else Side.SELL
        orders.append(Order(order_id, order_id, side, quantity, price, INTERVAL, float(time)))
    return orders


def best_welfare(orders: list[Order]) -> float:
    """Maximal gains from trade by linear programming (divisible quantities)."""
    bids = [o for o in orders if o.side is Side.BUY]
    asks = [o for o in orders if o.side is Side.SELL]
    if not bids or not asks:
        return 0.0
    cost = np.array([-o.price for o in bids] + [o.price for o in asks])
    balance = np.array([[1.0] * len(bids) + [-1.0] * len(asks)])
    bounds = [(0.0, o.quantity_kwh) for o in bids + asks]
    solution = linprog(cost, A_eq=balance, b_eq=[0.0], bounds=bounds, method="highs")
    assert solution.status == 0
    return float(-solution.fun)


def filled(result: ClearingResult) -> dict[str, float]:
    out: dict[str, float] = {}
    for trade in result.trades:
        out[trade.buy_order_id] = out.get(trade.buy_order_id, 0.0) + trade.quantity_kwh
        out[trade.sell_order_id] = out.get(trade.sell_order_id, 0.0) + trade.quantity_kwh
    return out


def utility(result: ClearingResult, order_id: str, true_price: float, side: Side) -> float:
    """Quasi-linear utility of one order at its true value (bid) or cost (ask)."""
    total = 0.0
    for trade, seller_price in zip(result.trades, result.seller_prices, strict=True):
        if side is Side.BUY and trade.buy_order_id == order_id:
            total += trade.quantity_kwh * (true_price - trade.price)
        if side is Side.SELL and trade.sell_order_id == order_id:
            total += trade.quantity_kwh * (seller_price - true_price)
    return total
