"""Peers' smart agents as platform clients: one or several to a process, each with its own MQTT
session (client id `agent-<peer>-<tag>`, see `link.session_client_id`), its own broker
credentials and its own signing key.

For each interval the operator announces, an agent waits for its controller's measurements of the
same interval (its device state, and the metering of the intervals finished since), then runs the
peer's agent (`peers`, the same object the in-process mode uses: observe, decide, learn), signs its
orders and submits them, with its plan for the controller's records. It resends a submission that
has no acknowledgement yet after a reconnection (the operator answers a repeat from its journal).

The rule for a missing agent: while it is away it places no orders (its orders already accepted
stand: the controller delivers and settles them); it acts on no announcement whose gate has closed
(it learns that from the retained market status); it rejoins at the next announcement, having kept
the metering and results queued for it by its persistent session.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt

from peers.interface import Agent
from testbed.platform import topics
from testbed.platform.link import BrokerAddress, Credentials, Link
from testbed.platform.messages import (
    Ack,
    Announcement,
    BadMessage,
    Liveness,
    MarketStatus,
    Measurements,
    PeerResult,
    PlanMessage,
    Submission,
    parse,
)
from testbed.platform.signing import PeerKey
from testbed.trading import orders_from_intents

log = logging.getLogger(__name__)


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


@dataclass
class AgentStats:
    """What one agent saw, for benchmarks: gate closure to result (s) per interval."""

    result_latency_s: list[float] = field(default_factory=list)
    decisions: int = 0
    rejected_orders: int = 0


class PeerAgentSession:
    """One peer's agent on the broker (see the module docstring)."""

    def __init__(
        self,
        peer: str,
        agent: Agent,
        key: PeerKey,
        address: BrokerAddress,
        password: str,
    ) -> None:
        self.peer = peer
        self.agent = agent
        self.key = key
        self.stats = AgentStats()
        self._announcements: dict[datetime, Announcement] = {}
        self._measurements: dict[datetime, Measurements] = {}
        self._decided: set[datetime] = set()
        self._pending: dict[str, Submission] = {}  # message id -> submission not yet acknowledged
        self._last_closed: datetime | None = None
        self._observed_until: datetime | None = None
        self._learned: set[datetime] = set()
        self.acks: list[Ack] = []
        offline = Liveness(peer=peer, state="offline", agent=getattr(agent, "kind", ""))
        self.link = Link(
            address,
            Credentials(peer, password),
            f"agent-{peer}",
            [
                topics.MARKET_STATUS,
                topics.ANNOUNCEMENTS,
                topics.measurements(peer),
                topics.results(peer),
                topics.acks(peer),
            ],
            self._on_message,
            on_connect=self._on_connect,
            will=aiomqtt.Will(topics.status(peer), offline.payload(), qos=1, retain=True),
        )

    async def _on_connect(self) -> None:
        online = Liveness(peer=self.peer, state="online", agent=getattr(self.agent, "kind", ""))
        await self.link.publish(topics.status(self.peer), online, retain=True)
        for submission in list(self._pending.values()):
            await self.link.publish(topics.orders(self.peer), submission)

    async def go_offline(self) -> None:
        """Say goodbye (retained `offline`) and end the session."""
        offline = Liveness(peer=self.peer, state="offline", agent=getattr(self.agent, "kind", ""))
        if self.link.connected.is_set():
            await asyncio.wait_for(
                self.link.publish(topics.status(self.peer), offline, retain=True), 5
            )
        await self.link.close()

    async def _on_message(self, topic: str, payload: bytes) -> None:
        try:
            if topic == topics.MARKET_STATUS:
                self._on_market_status(parse(MarketStatus, payload))
            elif topic == topics.ANNOUNCEMENTS:
                announcement = parse(Announcement, payload)
                self._announcements[_utc(announcement.interval_start)] = announcement
                await self._try_decide(_utc(announcement.interval_start))
            elif topic.endswith("/measurements"):
                measurements = parse(Measurements, payload)
                self._observe(measurements)
                self._measurements[_utc(measurements.interval_start)] = measurements
                await self._try_decide(_utc(measurements.interval_start))
            elif topic.endswith("/results"):
                self._on_result(parse(PeerResult, payload))
            elif topic.endswith("/acks"):
                ack = parse(Ack, payload)
                self._pending.pop(ack.in_reply_to, None)
                self.acks.append(ack)
                self.stats.rejected_orders += sum(s.status == "rejected" for s in ack.statuses)
        except BadMessage as error:
            log.warning("%s: ignored a message on %s: %s", self.peer, topic, error)

    def _on_market_status(self, status: MarketStatus) -> None:
        if status.last_closed_interval is None:
            return
        self._last_closed = _utc(status.last_closed_interval)
        for stale in [i for i in self._announcements if i <= self._last_closed]:
            del self._announcements[stale]
        for stale in [i for i in self._measurements if i <= self._last_closed]:
            del self._measurements[stale]

    def _observe(self, measurements: Measurements) -> None:
        for observation in sorted(measurements.observations, key=lambda o: o.interval_start):
            start = _utc(observation.interval_start)
            if self._observed_until is None or start > self._observed_until:
                self.agent.observe(observation)
                self._observed_until = start

    def _on_result(self, result: PeerResult) -> None:
        start = _utc(result.interval_start)
        self.stats.result_latency_s.append(time.time() - result.gate_closed_wall)
        if start not in self._learned:
            self._learned.add(start)
            self.agent.learn(result.outcome)

    async def _try_decide(self, interval: datetime) -> None:
        announcement = self._announcements.get(interval)
        measurements = self._measurements.get(interval)
        if announcement is None or measurements is None or interval in self._decided:
            return
        if self._last_closed is not None and interval <= self._last_closed:
            return  # the gate has closed: this interval is missed
        self._decided.add(interval)
        self.stats.decisions += 1
        decision = self.agent.decide(announcement.context, measurements.state)
        signed_at = measurements.state.time
        orders = [
            self.key.sign(order, signed_at)
            for order in orders_from_intents(interval, self.peer, decision.orders)
        ]
        submission = Submission(
            message_id=f"{self.peer}-{interval:%Y%m%dT%H%M%S}",
            peer=self.peer,
            interval_start=interval,
            orders=orders,
            complete=True,
        )
        self._pending[submission.message_id] = submission
        plan = PlanMessage(
            peer=self.peer, agent=str(getattr(self.agent, "kind", "")), decision=decision
        )
        await self.link.publish(topics.plans(self.peer), plan)
        await self.link.publish(topics.orders(self.peer), submission)
        for old in [i for i in self._measurements if i < interval]:
            del self._measurements[old]


async def run_sessions(
    sessions: list[PeerAgentSession],
    stop: asyncio.Event,
    stats_path: Path | None = None,
) -> None:
    """Run the agents until `stop` is set (or a session's broker refuses it), then go offline."""
    tasks = [asyncio.create_task(session.link.run()) for session in sessions]
    stopper = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait({*tasks, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopper:
                task.result()
    finally:
        await asyncio.gather(
            *(session.go_offline() for session in sessions), return_exceptions=True
        )
        for task in [*tasks, stopper]:
            task.cancel()
        await asyncio.gather(*tasks, stopper, return_exceptions=True)
        if stats_path is not None:
            stats_path.write_text(
                json.dumps(
                    {
                        s.peer: {
                            "result_latency_s": s.stats.result_latency_s,
                            "decisions": s.stats.decisions,
                            "rejected_orders": s.stats.rejected_orders,
                        }
                        for s in sessions
                    }
                ),
                encoding="utf-8",
            )
