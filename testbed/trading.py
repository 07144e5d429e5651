"""Steps 1-4 of a market interval: agents forecast, schedule and bid; the operator clears the book.

`TradingDesk.trade` runs at gate closure of an interval and returns the cleared positions that the
delivery step turns into setpoints.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from peers.interface import (
    Agent,
    AgentDecision,
    DeviceState,
    Fill,
    IntervalObservation,
    MarketContext,
    MarketOutcome,
    OrderIntent,
    OrderSide,
)
from testbed.config import TestbedConfig
from testbed.documents import Clearing, OrderBook, Settlement
from testbed.market import Mechanism, get_mechanism, validate_orders
from testbed.market.book import Order, Side, Trade
from testbed.market.registry import mechanism_parameters
from testbed.market.validation import order_problem
from testbed.settlement import settle_interval

if TYPE_CHECKING:
    from testbed.ledger.orders import SignedOrder
    from testbed.ledger.run_ledger import RunLedger

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

    def planned_net_kw(self, peer: str) -> float | None:
        """The peer's planned PCC power for this interval (its plan's first step), if any."""
        decision = self.decisions.get(peer)
        if decision is None or not decision.plan:
            return None
        step = decision.plan[0]
        return step.net_kw if step.start == self.interval_start else None


def net_positions(trades: list[Trade] | tuple[Trade, ...], peers: list[str]) -> dict[str, float]:
    """Energy sold minus energy bought, per peer."""
    position = dict.fromkeys(peers, 0.0)
    for trade in trades:
        position[trade.seller] = position.get(trade.seller, 0.0) + trade.quantity_kwh
        position[trade.buyer] = position.get(trade.buyer, 0.0) - trade.quantity_kwh
    return position


# In lockstep the clock waits for the agents, so a planner's wall-time limit is only a backstop:
# at 1 s (the default, for wall-clock runs) a busy machine cut some solves short and a seeded day's
# plans depended on the machine's speed.
LOCKSTEP_SOLVER_TIME_LIMIT_S = 60.0


def agent_params_for_run(config: TestbedConfig, peer: str) -> dict[str, Any]:
    """The peer's agent parameters as the run uses them: the configuration's, and in lockstep a
    solver time limit long enough that no seeded solve depends on the machine's speed (unless the
    configuration sets `solver_time_limit_s` itself)."""
    from peers.agents import agent_param_names

    section = config.peers[peer]
    params = dict(section.agent_params)
    if (
        config.clock.mode == "lockstep"
        and "solver_time_limit_s" in agent_param_names(section.agent)
        and "solver_time_limit_s" not in params
    ):
        params["solver_time_limit_s"] = LOCKSTEP_SOLVER_TIME_LIMIT_S
    return params


def make_peer_agent(config: TestbedConfig, peer: str) -> Agent:
    """The peer's agent as the configuration says, seeded from the run's seed and the peer's place
    in the sorted peer list (the same agent in the engine's process or in its own)."""
    from peers import make_agent

    section = config.peers[peer]
    index = sorted(config.peers).index(peer)
    agent = make_agent(
        section.agent,
        peer,
        section.peer_assets(peer),
        agent_params_for_run(config, peer),
        seed=config.experiment.seed * 1000 + index,
    )
    if config.experiment.agent_history is not None:
        from testbed.agent_history import warm_start

        warm_start(agent, peer, config.experiment.agent_history)
    return agent


def market_context(config: TestbedConfig, interval_start: datetime) -> MarketContext:
    """The tariffs and interval an agent plans with (in-process and in the operator's
    announcement alike)."""
    prices = config.prices
    return MarketContext(
        interval_start=interval_start,
        retail_tariff=prices.retail_tariff,
        feed_in_tariff=prices.feed_in_tariff,
        interval_s=config.market.interval_s,
        network_charge=prices.network_charge,
        deviation_penalty=prices.deviation_penalty,
    )


def order_id(interval_start: datetime, peer: str, index: int) -> str:
    """The id of a peer's `index`-th order (from 1) for an interval: unique per interval and peer,
    so an agent in its own process names (and signs) it exactly as the in-process desk does."""
    return f"{interval_start:%Y%m%dT%H%M}-{peer}-{index}"


def orders_from_intents(
    interval_start: datetime, peer: str, intents: tuple[OrderIntent, ...] | list[OrderIntent]
) -> list[Order]:
    """A decision's order intents as book orders (submission time 0: the book sets it)."""
    return [
        Order(
            order_id=order_id(interval_start, peer, index),
            peer=peer,
            side=Side(intent.side.value),
            quantity_kwh=intent.quantity_kwh,
            price=intent.limit_price,
            interval_start=interval_start,
        )
        for index, intent in enumerate(intents, start=1)
    ]


def configured_mechanism(config: TestbedConfig) -> Mechanism:
    """The run's mechanism with its parameters; a mechanism that works per interval of energy
    (the network-aware ones) is told the run's market interval unless its params set one."""
    params = dict(config.market.params)
    if "interval_s" in mechanism_parameters(config.market.mechanism):
        params.setdefault("interval_s", config.market.interval_s)
    return get_mechanism(config.market.mechanism, **params)


class BookClearer:
    """Clears one interval's book with the configured mechanism (the operator's job, in-process
    or as its own service).

    Submission times are set here, from a run-wide counter in the order the orders come (peers in
    the configuration's order, each peer's orders in its own order): ties at one price go by that
    order, never by network arrival, so both modes clear the same book the same way.
    """

    def __init__(self, config: TestbedConfig) -> None:
        self._config = config
        self._mechanism = (
            None if config.market.mechanism == NO_MARKET else configured_mechanism(config)
        )
        self.order_count = 0

    @property
    def mechanism_name(self) -> str:
        return self._config.market.mechanism

    def clear(
        self,
        interval_start: datetime,
        orders: list[Order],
        peers: list[str],
        rejected_before: list[tuple[Order, str]] | None = None,
    ) -> tuple[OrderBook, Clearing]:
        """The book (valid and rejected orders) and its clearing; `rejected_before` are orders
        refused earlier (bad signature, gate closed) that the book records too."""
        timed = []
        for order in orders:
            self.order_count += 1
            timed.append(replace(order, time=float(self.order_count)))
        valid, rejected = validate_orders(timed, set(peers), interval_start)
        rejected = [*(rejected_before or []), *rejected]
        trades: tuple[Trade, ...]
        if self._mechanism is None:
            rejected = [
                *rejected,
                *((order, NO_MARKET_REASON) for order in valid),
            ]
            valid, trades, price, report = [], (), None, {"mechanism": NO_MARKET}
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
        return book, clearing


def market_outcomes(
    book: OrderBook, clearing: Clearing, peers: list[str]
) -> dict[str, MarketOutcome]:
    """What each peer learns from a cleared interval: its own fills, the public prices and the
    book's depth (the accepted quantity on each side)."""
    fills: dict[str, list[Fill]] = defaultdict(list)
    for trade in clearing.trades:
        fills[trade.buyer].append(Fill(OrderSide.BUY, trade.quantity_kwh, trade.price))
        fills[trade.seller].append(Fill(OrderSide.SELL, trade.quantity_kwh, trade.price))
    bids = [o.price for o in book.orders if o.side is Side.BUY]
    asks = [o.price for o in book.orders if o.side is Side.SELL]
    best_bid_price = max(bids) if bids else None
    best_ask_price = min(asks) if asks else None
    # the book's depth once, not once per peer (1,000 peers x their orders otherwise)
    bid_volume_kwh = sum(o.quantity_kwh for o in book.orders if o.side is Side.BUY)
    ask_volume_kwh = sum(o.quantity_kwh for o in book.orders if o.side is Side.SELL)
    return {
        peer: MarketOutcome(
            interval_start=book.interval_start,
            clearing_price=clearing.clearing_price,
            fills=tuple(fills[peer]),
            best_bid_price=best_bid_price,
            best_ask_price=best_ask_price,
            bid_volume_kwh=bid_volume_kwh,
            ask_volume_kwh=ask_volume_kwh,
        )
        for peer in peers
    }


class TradingDesk:
    """Collects the agents' orders for an interval and clears them with the configured mechanism.

    With a ledger, each order is signed by its peer (at the time of the peer's device state) and
    admitted by the operator's rules (registered and approved peer, valid signature, unused order
    id, inside the order window) besides the market's, and recorded on the ledger accepted or
    rejected with the reason; only admitted orders reach the book.
    """

    def __init__(
        self,
        config: TestbedConfig,
        agents: Mapping[str, Agent],
        ledger: OrderLedger | None = None,
    ) -> None:
        self._config = config
        self._agents = agents
        self._clearer = BookClearer(config)
        self._ledger = ledger

    @property
    def mechanism_name(self) -> str:
        return self._config.market.mechanism

    def agent_kind(self, peer: str) -> str:
        return str(getattr(self._agents[peer], "kind", type(self._agents[peer]).__name__))

    def context(self, interval_start: datetime) -> MarketContext:
        return market_context(self._config, interval_start)

    def trade(self, interval_start: datetime, states: Mapping[str, DeviceState]) -> IntervalMarket:
        """Ask every agent for its orders, clear the book and tell the agents what they got."""
        ctx = self.context(interval_start)
        decisions = {peer: agent.decide(ctx, states[peer]) for peer, agent in self._agents.items()}
        orders = [
            order
            for peer, decision in decisions.items()
            for order in orders_from_intents(interval_start, peer, decision.orders)
        ]
        peers = list(self._agents)
        refused: list[tuple[Order, str]] = []
        if self._ledger is not None:
            orders, refused = self._admit(interval_start, orders, peers, states)
        book, clearing = self._clearer.clear(interval_start, orders, peers, refused)
        for peer, outcome in market_outcomes(book, clearing, peers).items():
            self._agents[peer].learn(outcome)
        return IntervalMarket(
            interval_start=interval_start,
            decisions=decisions,
            book=book,
            clearing=clearing,
            contracted_kwh=net_positions(clearing.trades, peers),
        )

    def _admit(
        self,
        interval_start: datetime,
        orders: list[Order],
        peers: list[str],
        states: Mapping[str, DeviceState],
    ) -> tuple[list[Order], list[tuple[Order, str]]]:
        assert self._ledger is not None
        no_market = self._config.market.mechanism == NO_MARKET
        candidates = [
            (
                self._ledger.sign(order, states[order.peer].time),
                order_problem(order, peers, interval_start)
                or (NO_MARKET_REASON if no_market else None),
            )
            for order in orders
        ]
        at = max((signed.signed_at for signed, _ in candidates), default=interval_start)
        return self._ledger.admit(at, candidates)


class MarketPort(Protocol):
    """How the engine trades and settles an interval: with agents in its own process
    (`InProcessMarket`) or through the trading platform (`testbed.platform.controller_link`)."""

    def agent_kind(self, peer: str) -> str: ...

    async def trade(
        self, interval_start: datetime, states: Mapping[str, DeviceState]
    ) -> IntervalMarket:
        """Orders, clearing and the agents' decisions for the interval starting then."""
        ...

    async def settle(
        self,
        interval_start: datetime,
        trades: tuple[Trade, ...],
        metered_kwh: Mapping[str, float],
        observations: Mapping[str, IntervalObservation],
    ) -> list[Settlement]:
        """Give the agents their metering and settle the interval."""
        ...


@runtime_checkable
class LedgerAttachable(Protocol):
    """A market port that records its orders on the run's ledger once the run opens it."""

    def attach_ledger(self, ledger: RunLedger) -> None: ...


class InProcessMarket:
    """Agents are objects in the engine's process; the engine's desk clears and settles."""

    def __init__(
        self,
        config: TestbedConfig,
        agents: Mapping[str, Agent],
        ledger: OrderLedger | None = None,
    ) -> None:
        self._config = config
        self._agents = agents
        self.desk = TradingDesk(config, agents, ledger)

    def agent_kind(self, peer: str) -> str:
        return self.desk.agent_kind(peer)

    async def trade(
        self, interval_start: datetime, states: Mapping[str, DeviceState]
    ) -> IntervalMarket:
        return self.desk.trade(interval_start, states)

    async def settle(
        self,
        interval_start: datetime,
        trades: tuple[Trade, ...],
        metered_kwh: Mapping[str, float],
        observations: Mapping[str, IntervalObservation],
    ) -> list[Settlement]:
        for peer, observation in observations.items():
            self._agents[peer].observe(observation)
        return settle_interval(
            interval_start,
            trades,
            dict(metered_kwh),
            self._config.prices,
            balancing=self._config.market.balancing,
        )
