"""Steps 1-4 of a market interval: agents forecast, schedule and bid; the operator clears the book.

`TradingDesk.trade` runs at gate closure of an interval and returns the cleared positions that the
delivery step turns into setpoints.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from peers.interface import (
    Agent,
    AgentDecision,
    DeviceState,
    Fill,
    MarketContext,
    MarketOutcome,
    OrderSide,
)
from testbed.config import TestbedConfig
from testbed.documents import Clearing, OrderBook
from testbed.market import get_mechanism, validate_orders
from testbed.market.book import Order, Side, Trade

if TYPE_CHECKING:
    from testbed.ledger.orders import SignedOrder

NO_MARKET = "none"  # the mechanism name of a grid-only run: orders are recorded, nothing clears
NO_MARKET_REASON = "no P2P market in this run (grid only)"


class OrderLedger(Protocol):
    """Signs each order on its peer's side and admits it on the operator's (`testbed.ledger`)."""

    def sign(self, order: Order, signed_at: datetime) -> SignedOrder: ...

    def admit(
        self, time: datetime, candidates: Sequence[tuple[SignedOrder, str | None]]
    ) -> tuple[list[Order], list[tuple[Order, str]]]: ...


@dataclass(frozen=True, slots=True)
class IntervalMarket:
    """What one interval's trading produced."""

    interval_start: datetime
    decisions: Mapping[str, AgentDecision]
    book: OrderBook
    clearing: Clearing
    contracted_kwh: Mapping[str, float]  # per peer, + = sold

    def contracted_kw(self, peer: str, interval_s: float) -> float:
        return self.contracted_kwh.get(peer, 0.0) * 3600.0 / interval_s


def net_positions(trades: list[Trade] | tuple[Trade, ...], peers: list[str]) -> dict[str, float]:
    """Energy sold minus energy bought, per peer."""
    position = dict.fromkeys(peers, 0.0)
    for trade in trades:
        position[trade.seller] = position.get(trade.seller, 0.0) + trade.quantity_kwh
        position[trade.buyer] = position.get(trade.buyer, 0.0) - trade.quantity_kwh
    return position


class TradingDesk:
    """Collects the agents' orders for an interval and clears them with the configured mechanism.

    With a ledger, every order is signed by its peer and admitted by the operator's rules
    (registered and approved peer, valid signature, unused order id, inside its order window) as
    well as the market's, and recorded on the ledger accepted or rejected.
    """

    def __init__(
        self,
        config: TestbedConfig,
        agents: Mapping[str, Agent],
        ledger: OrderLedger | None = None,
    ) -> None:
        self._config = config
        self._agents = agents
        self._ledger = ledger
        self._mechanism = (
            None
            if config.market.mechanism == NO_MARKET
            else get_mechanism(config.market.mechanism, **config.market.params)
        )
        self._order_count = 0

    @property
    def mechanism_name(self) -> str:
        return self._config.market.mechanism

    def agent_kind(self, peer: str) -> str:
        return str(getattr(self._agents[peer], "kind", type(self._agents[peer]).__name__))

    def context(self, interval_start: datetime) -> MarketContext:
        prices = self._config.prices
        return MarketContext(
            interval_start=interval_start,
            retail_tariff=prices.retail_tariff,
            feed_in_tariff=prices.feed_in_tariff,
            interval_s=self._config.market.interval_s,
            network_charge=prices.network_charge,
            deviation_penalty=prices.deviation_penalty,
        )

    def trade(
        self,
        interval_start: datetime,
        states: Mapping[str, DeviceState],
        now: datetime | None = None,
    ) -> IntervalMarket:
        """Ask every agent for its orders, clear the book and tell the agents what they got.

        `now` is when the orders are placed (default: the interval's start)."""
        ctx = self.context(interval_start)
        decisions = {peer: agent.decide(ctx, states[peer]) for peer, agent in self._agents.items()}
        orders = []
        for peer, decision in decisions.items():
            for intent in decision.orders:
                self._order_count += 1
                orders.append(
                    Order(
                        order_id=f"{interval_start:%Y%m%dT%H%M}-{peer}-{self._order_count}",
                        peer=peer,
                        side=Side(intent.side.value),
                        quantity_kwh=intent.quantity_kwh,
                        price=intent.limit_price,
                        interval_start=interval_start,
                        time=float(self._order_count),
                    )
                )
        valid, rejected = validate_orders(orders, set(self._agents), interval_start)
        if self._mechanism is None:
            rejected = [*rejected, *((order, NO_MARKET_REASON) for order in valid)]
            valid = []
        if self._ledger is not None:
            valid, rejected = self._admit(orders, rejected, now or interval_start)
        if self._mechanism is None:
            trades, price, report = (), None, {"mechanism": NO_MARKET}
        else:
            result = self._mechanism.clear(valid)
            trades = tuple(
                trade if seller_price == trade.price else replace(trade, seller_price=seller_price)
                for trade, seller_price in zip(result.trades, result.seller_prices, strict=True)
            )
            price, report = result.clearing_price, dict(result.report)
        book = OrderBook(interval_start, tuple(valid), tuple(rejected))
        clearing = Clearing(
            interval_start=interval_start,
            mechanism=self.mechanism_name,
            clearing_price=price,
            volume_kwh=sum(t.quantity_kwh for t in trades),
            trades=trades,
            report=report,
        )
        self._tell_agents(interval_start, valid, trades, price)
        return IntervalMarket(
            interval_start=interval_start,
            decisions=decisions,
            book=book,
            clearing=clearing,
            contracted_kwh=net_positions(trades, list(self._agents)),
        )

    def _admit(
        self, orders: list[Order], rejected: list[tuple[Order, str]], now: datetime
    ) -> tuple[list[Order], list[tuple[Order, str]]]:
        assert self._ledger is not None
        objections = {id(order): reason for order, reason in rejected}
        candidates = [
            (self._ledger.sign(order, now), objections.get(id(order))) for order in orders
        ]
        return self._ledger.admit(now, candidates)

    def _tell_agents(
        self,
        interval_start: datetime,
        orders: list[Order],
        trades: tuple[Trade, ...],
        clearing_price: float | None,
    ) -> None:
        fills: dict[str, list[Fill]] = defaultdict(list)
        for trade in trades:
            fills[trade.buyer].append(Fill(OrderSide.BUY, trade.quantity_kwh, trade.price))
            fills[trade.seller].append(Fill(OrderSide.SELL, trade.quantity_kwh, trade.price))
        bids = [o.price for o in orders if o.side is Side.BUY]
        asks = [o.price for o in orders if o.side is Side.SELL]
        for peer, agent in self._agents.items():
            agent.learn(
                MarketOutcome(
                    interval_start=interval_start,
                    clearing_price=clearing_price,
                    fills=tuple(fills[peer]),
                    best_bid_price=max(bids) if bids else None,
                    best_ask_price=min(asks) if asks else None,
                )
            )
