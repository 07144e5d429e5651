"""The controller's side of the platform: the engine's market port over the broker.

Before each gate the controller (which meters and dispatches) sends each peer its own
measurements (device state, and the metering of intervals finished since) and asks the operator to
close the gate; it waits for the operator's clearing report, and for the plans of the agents that
submitted, and turns them into the same `IntervalMarket` the in-process desk gives. At each
interval's end it sends the metering and waits for the operator's settlements. Requests are
repeated every `retry_s` until answered (the operator answers a repeat from its journal), so a
broker restart in between loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from peers.interface import AgentDecision, DeviceState, IntervalObservation
from testbed.config import TestbedConfig
from testbed.documents import Clearing, OrderBook, Settlement
from testbed.market.book import Trade
from testbed.market.validation import order_problem
from testbed.platform import topics
from testbed.platform.link import BrokerAddress, Credentials, Link
from testbed.platform.messages import (
    BadMessage,
    ClearingReport,
    GateRequest,
    Liveness,
    Measurements,
    MeteringReport,
    PlanMessage,
    RejectedMessage,
    SettlementReport,
    SignedCandidate,
    parse,
)
from testbed.platform.signing import to_ledger
from testbed.trading import NO_MARKET, NO_MARKET_REASON, IntervalMarket, net_positions

if TYPE_CHECKING:
    from testbed.ledger.run_ledger import RunLedger

log = logging.getLogger(__name__)


class PlatformTimeout(RuntimeError):
    """The operator or the agents did not answer in time."""


class PlatformMismatch(RuntimeError):
    """The operator's book and the run's ledger disagree."""


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


class RemoteMarket:
    """`testbed.trading.MarketPort` through the operator and the agents' processes."""

    def __init__(
        self,
        config: TestbedConfig,
        address: BrokerAddress,
        password: str,
        *,
        retry_s: float = 2.0,
        plan_wait_s: float = 5.0,
        answer_timeout_s: float = 900.0,  # beyond the operator's longest gate wait,
    ) -> None:
        self.config = config
        self.peers = list(config.peers)
        self.retry_s = retry_s
        self.plan_wait_s = plan_wait_s
        self.answer_timeout_s = answer_timeout_s
        self.online: set[str] = set()
        self._kinds: dict[str, str] = {}
        self._clearings: dict[datetime, ClearingReport] = {}
        self._settlements: dict[datetime, SettlementReport] = {}
        self._plans: dict[datetime, dict[str, PlanMessage]] = defaultdict(dict)
        self._pending_observations: dict[str, list[IntervalObservation]] = defaultdict(list)
        self._changed = asyncio.Event()
        self._ledger: RunLedger | None = None
        self.link = Link(
            address,
            Credentials("controller", password),
            "controller",
            [
                topics.CLEARING_REPORTS,
                topics.SETTLEMENT_REPORTS,
                f"{topics.PEERS}/+/plans",
                f"{topics.PEERS}/+/status",
            ],
            self._on_message,
        )
        self._task: asyncio.Task[None] | None = None

    # -- the session --------------------------------------------------------------------------

    async def start(self, timeout_s: float = 30.0) -> None:
        self._task = asyncio.create_task(self.link.run())
        waiter = asyncio.create_task(self.link.wait_connected())
        done, _ = await asyncio.wait(
            {self._task, waiter}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        if self._task in done:
            waiter.cancel()
            self._task.result()
        if waiter not in done:
            waiter.cancel()
            raise PlatformTimeout(f"no broker session within {timeout_s:.0f} s")

    async def close(self) -> None:
        await self.link.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def wait_for_agents(
        self,
        peers: list[str],
        timeout_s: float,
        on_online: Callable[[int, int], None] | None = None,
    ) -> None:
        """Until every peer in `peers` says it is online; `on_online(online, wanted)` hears each
        change in how many are."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        reported = -1
        while True:
            online = len(set(peers) & self.online)
            if on_online is not None and online != reported:
                on_online(online, len(set(peers)))
                reported = online
            if set(peers) <= self.online:
                return
            left = deadline - loop.time()
            if left <= 0:
                missing = ", ".join(sorted(set(peers) - self.online))
                raise PlatformTimeout(f"agents not online after {timeout_s:.0f} s: {missing}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                continue

    def _on_message(self, topic: str, payload: bytes) -> None:
        try:
            if topic == topics.CLEARING_REPORTS:
                report = parse(ClearingReport, payload)
                self._clearings[_utc(report.interval_start)] = report
            elif topic == topics.SETTLEMENT_REPORTS:
                settlement = parse(SettlementReport, payload)
                self._settlements[_utc(settlement.interval_start)] = settlement
            elif topic.endswith("/plans"):
                peer = topics.peer_of(topic)
                plan = parse(PlanMessage, payload)
                if peer == plan.peer:
                    self._plans[_utc(plan.decision.interval_start)][peer] = plan
                    self._kinds[peer] = plan.agent
            elif topic.endswith("/status"):
                peer = topics.peer_of(topic)
                status = parse(Liveness, payload)
                if peer == status.peer:
                    (self.online.add if status.state == "online" else self.online.discard)(peer)
        except BadMessage as error:
            log.warning("controller ignored a message on %s: %s", topic, error)
        self._changed.set()

    async def _ask(
        self, publish: Callable[[], Awaitable[None]], answered: Callable[[], bool], what: str
    ) -> None:
        """Publish a request and repeat it every `retry_s` until `answered()`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.answer_timeout_s
        while not answered():
            await publish()
            retry_at = loop.time() + self.retry_s
            while not answered() and loop.time() < retry_at:
                self._changed.clear()
                try:
                    await asyncio.wait_for(self._changed.wait(), retry_at - loop.time())
                except TimeoutError:
                    break
            if loop.time() > deadline and not answered():
                raise PlatformTimeout(f"no answer from the operator to {what}")

    # -- the run's ledger ---------------------------------------------------------------------

    def attach_ledger(self, ledger: RunLedger) -> None:
        """Record every order the operator received on the run's ledger (accepted or rejected,
        in time or late, and its peers' unreadable submissions), and tell the operator which
        peers the ledger restricts (not approved; in debt: sell only)."""
        self._ledger = ledger

    def _ledger_standing(self) -> tuple[dict[str, str], dict[str, str]]:
        if self._ledger is None:
            return {}, {}
        state = self._ledger.operator.state
        refused = {p: r for p in self.peers if (r := state.peer_problem(p)) is not None}
        sell_only = {
            p: r for p in self.peers if p not in refused and (r := state.buy_problem(p)) is not None
        }
        return refused, sell_only

    def _record_orders(self, interval_start: datetime, report: ClearingReport) -> None:
        """The operator's signed orders on the ledger, each with the market's objection as the
        in-process desk gives it; an order the operator booked but the ledger refuses stops the
        run (the two disagree on the rules)."""
        assert self._ledger is not None
        no_market = self.config.market.mechanism == NO_MARKET
        candidates = [
            (
                to_ledger(candidate.order),
                candidate.reason
                or order_problem(candidate.order.as_order(), self.peers, interval_start)
                or (NO_MARKET_REASON if no_market else None),
            )
            for candidate in report.signed
        ]
        if not candidates:
            return
        at = max(signed.signed_at for signed, _ in candidates)
        _, refused = self._ledger.admit(at, candidates)
        # booked: the operator accepted it (no reason) and it is in the book; an order it
        # rejected may carry the same peer and id (a reuse), so the ids alone do not say
        booked_ids = {(order.peer, order.order_id) for order in report.orders}
        booked = {
            id(signed.order)
            for (signed, _), candidate in zip(candidates, report.signed, strict=True)
            if candidate.reason is None and (signed.order.peer, signed.order.order_id) in booked_ids
        }
        disputed = [(order, why) for order, why in refused if id(order) in booked]
        if disputed:
            order, why = disputed[0]
            raise PlatformMismatch(
                f"the operator booked order {order.order_id!r} of peer {order.peer!r} that the "
                f"run's ledger refuses: {why}"
            )

    def _record_unbooked(
        self,
        at: datetime,
        unbooked: list[SignedCandidate],
        rejected_messages: list[RejectedMessage],
    ) -> None:
        """The rejections a report carries from outside any book: late orders (or for another
        interval than their submission's), each rejected with the operator's reason unless the
        ledger's own rules object first, and unreadable submissions."""
        assert self._ledger is not None
        if unbooked:
            self._ledger.admit(
                at, [(to_ledger(c.order), c.reason or "rejected by the operator") for c in unbooked]
            )
        for message in rejected_messages:
            self._ledger.operator.record_rejected_message(
                at,
                message.peer,
                topic=message.topic,
                received_at=message.received_at,
                reason=message.reason,
                payload_sha256=message.payload_sha256,
                payload_bytes=message.payload_bytes,
            )

    # -- MarketPort ---------------------------------------------------------------------------

    def agent_kind(self, peer: str) -> str:
        return self._kinds.get(peer) or self.config.peers[peer].agent

    async def trade(
        self, interval_start: datetime, states: Mapping[str, DeviceState]
    ) -> IntervalMarket:
        interval = _utc(interval_start)
        gate_closes_at = interval - timedelta(seconds=self.config.market.gate_closure_s)
        measurements = {
            peer: Measurements(
                peer=peer,
                interval_start=interval,
                state=states[peer],
                observations=list(self._pending_observations.get(peer, [])),
            )
            for peer in self.peers
        }
        await asyncio.gather(
            *(self.link.publish(topics.measurements(p), m) for p, m in measurements.items())
        )
        self._pending_observations.clear()
        refused, sell_only = self._ledger_standing()
        request = GateRequest(
            interval_start=interval,
            gate_closes_at=gate_closes_at,
            refused_peers=refused,
            sell_only_peers=sell_only,
            online_peers=sorted(self.online),
        )
        await self._ask(
            lambda: self.link.publish(topics.GATE_REQUESTS, request),
            lambda: interval in self._clearings,
            f"the gate request for {interval.isoformat()}",
        )
        report = self._clearings.pop(interval)
        if self._ledger is not None:
            now = max((state.time for state in states.values()), default=gate_closes_at)
            # the book's orders first: an order rejected outside the book (late) may carry the id
            # of one the operator booked before it arrived, and only the first use is not a replay
            self._record_orders(interval_start, report)
            self._record_unbooked(now, report.unbooked, report.rejected_messages)
        decisions = await self._plans_of(interval, report.submitted)
        book = OrderBook(
            interval_start,
            tuple(report.orders),
            tuple((r.order, r.reason) for r in report.rejected),
        )
        trades: tuple[Trade, ...] = tuple(report.trades)
        clearing = Clearing(
            interval_start=interval_start,
            mechanism=report.mechanism,
            clearing_price=report.clearing_price,
            volume_kwh=sum(t.quantity_kwh for t in trades),
            trades=trades,
            report=report.report,
        )
        return IntervalMarket(
            interval_start=interval_start,
            decisions=decisions,
            book=book,
            clearing=clearing,
            contracted_kwh=net_positions(trades, self.peers),
        )

    async def _plans_of(self, interval: datetime, peers: list[str]) -> dict[str, AgentDecision]:
        """The decisions of the agents that submitted (each sends its plan before its orders)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.plan_wait_s
        while not set(peers) <= set(self._plans.get(interval, {})) and loop.time() < deadline:
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), deadline - loop.time())
            except TimeoutError:
                break
        plans = self._plans.pop(interval, {})
        return {peer: plans[peer].decision for peer in self.peers if peer in plans}

    async def settle(
        self,
        interval_start: datetime,
        trades: tuple[Trade, ...],
        metered_kwh: Mapping[str, float],
        observations: Mapping[str, IntervalObservation],
    ) -> list[Settlement]:
        interval = _utc(interval_start)
        for peer, observation in observations.items():
            self._pending_observations[peer].append(observation)
        report = MeteringReport(interval_start=interval, metered_kwh=dict(metered_kwh))
        await self._ask(
            lambda: self.link.publish(topics.METERING, report),
            lambda: interval in self._settlements,
            f"the metering of {interval.isoformat()}",
        )
        answer = self._settlements.pop(interval)
        if self._ledger is not None:
            interval_end = interval + timedelta(seconds=self.config.market.interval_s)
            self._record_unbooked(interval_end, answer.unbooked, answer.rejected_messages)
        return list(answer.settlements)
