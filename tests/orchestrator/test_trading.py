"""The trading desk: every mechanism clears through the orchestrator's interface, and settles."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from peers.interface import (
    AgentDecision,
    DeviceState,
    IntervalObservation,
    MarketContext,
    MarketOutcome,
    OrderIntent,
    OrderSide,
)
from testbed.config import parse_config
from testbed.settlement import settle_interval
from testbed.trading import TradingDesk

START = datetime(2026, 3, 21, 6, 30, tzinfo=UTC)


class FixedOrders:
    """An agent that always places the same orders (the desk's contract with any agent)."""

    kind = "fixed"

    def __init__(self, peer: str, orders: list[tuple[str, float, float]]) -> None:
        self.peer = peer
        self.orders = tuple(OrderIntent(OrderSide(s), q, p) for s, q, p in orders)
        self.outcomes: list[MarketOutcome] = []

    def observe(self, obs: IntervalObservation) -> None:
        pass

    def decide(self, ctx: MarketContext, state: DeviceState) -> AgentDecision:
        return AgentDecision(ctx.interval_start, (), (), self.orders)

    def learn(self, outcome: MarketOutcome) -> None:
        self.outcomes.append(outcome)


def desk(mechanism: str, **params: object) -> tuple[TradingDesk, dict[str, FixedOrders]]:
    config = parse_config(
        {
            "market": {"mechanism": mechanism, "params": params},
            "peers": {
                name: {
                    "role": "prosumer",
                    "meter": {},
                    "assets": {"typical_load_kw": 0.5, "peak_load_kw": 1.0},
                }
                for name in ("A", "B", "C", "D")
            },
        }
    )
    agents = {
        "A": FixedOrders("A", [("sell", 1.0, 3.5), ("sell", 0.5, 4.0)]),
        "B": FixedOrders("B", [("sell", 0.8, 5.0)]),
        "C": FixedOrders("C", [("buy", 1.2, 7.0)]),
        "D": FixedOrders("D", [("buy", 0.6, 6.0), ("buy", 0.4, 3.0)]),
    }
    return TradingDesk(config, agents), agents


@pytest.mark.parametrize(
    ("mechanism", "params"),
    [
        ("uniform", {"k": 0.5}),
        ("pay_as_bid", {}),
        ("mcafee", {}),
        ("huang", {}),
        ("vcg", {}),
        ("cda", {}),
        ("welfare", {}),
        ("welfare", {"bilateral": True, "feeder": "site", "charges": "distance"}),
        ("admm", {"feeder": "site"}),
        ("nash", {"powers": "A:2"}),
        ("stackelberg", {"max_spread": 1.0}),
    ],
)
def test_every_mechanism_clears_through_the_desk_and_money_balances(mechanism, params):
    trading, agents = desk(mechanism, **params)
    states = {peer: DeviceState(time=START) for peer in agents}
    market = trading.trade(START, states)

    assert market.clearing.mechanism == mechanism
    assert market.clearing.volume_kwh > 0
    assert len(market.book.orders) == 6
    # nobody trades beyond their orders, and contracts net to zero
    assert sum(market.contracted_kwh.values()) == pytest.approx(0.0, abs=1e-9)
    assert market.contracted_kwh["A"] <= 1.5 + 1e-9
    assert -market.contracted_kwh["C"] <= 1.2 + 1e-9
    # every agent heard what it got
    assert all(len(agent.outcomes) == 1 for agent in agents.values())
    # delivered exactly as contracted: the money balances, the operator keeps any surplus
    settlements = settle_interval(
        START, market.clearing.trades, dict(market.contracted_kwh), trading_prices()
    )
    paid = sum(s.p2p_paid for s in settlements)
    received = sum(s.p2p_received for s in settlements)
    surplus = float(market.clearing.report["operator_surplus"])
    assert paid - received == pytest.approx(surplus, abs=1e-6)
    for settlement in settlements:
        assert settlement.penalty == 0
        assert settlement.grid_import_kwh == pytest.approx(0.0, abs=1e-9)
    # network charges: each trade's own (by distance) where allocated, else the flat one
    flat = trading_prices().network_charge
    charges = sum(
        t.quantity_kwh * (flat if t.network_charge is None else t.network_charge)
        for t in market.clearing.trades
    )
    assert sum(s.network_charge for s in settlements) == pytest.approx(charges)
    if params.get("charges") == "distance":
        assert all(t.network_charge is not None for t in market.clearing.trades)


def trading_prices():
    from testbed.config import PricesConfig

    return PricesConfig()


def test_grid_only_run_records_orders_and_clears_nothing():
    trading, agents = desk("none")
    market = trading.trade(START, {peer: DeviceState(time=START) for peer in agents})
    assert market.clearing.trades == ()
    assert market.clearing.clearing_price is None
    assert len(market.book.rejected) == 6
    assert all("grid only" in reason for _, reason in market.book.rejected)
    assert set(market.contracted_kwh.values()) == {0.0}


@pytest.mark.parametrize(
    ("market", "message"),
    [
        ({"mechanism": "admm", "params": {"feeder": "nosuch.toml"}}, "feeder 'nosuch.toml' is"),
        ({"mechanism": "welfare", "params": {"rho": 1}}, "'welfare' has no parameter 'rho'"),
        ({"mechanism": "english"}, "unknown market mechanism 'english'"),
    ],
)
def test_a_bad_mechanism_or_parameter_is_named_when_the_config_is_read(market, message):
    from testbed.config import ConfigError

    with pytest.raises(ConfigError, match="market: mechanism = ") as error:
        parse_config({"market": market, "peers": {"A": {"role": "consumer", "meter": {}}}})
    assert message in str(error.value)


def test_the_run_tells_a_network_aware_mechanism_its_market_interval():
    from testbed.trading import configured_mechanism

    config = parse_config(
        {
            "market": {"mechanism": "admm", "interval_s": 300, "params": {"feeder": "site"}},
            "peers": {"A": {"role": "consumer", "meter": {}}},
        }
    )
    mechanism = configured_mechanism(config)
    assert mechanism.params["interval_s"] == 300
