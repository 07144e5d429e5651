"""The market operator as a service: order intake, gate closure, clearing, settlement, journal.

It listens on the broker for orders (`peers/+/orders`), the peers' liveness (`peers/+/status`) and
the controller's gate requests and metering; it answers every submission with an acknowledgement
that accepts or rejects each order with a reason, closes each interval's gate when every online
agent has submitted (or after `gate_wait_s`), clears the book with the configured mechanism
(`testbed.trading.BookClearer`, the in-process desk's own), and publishes the clearing (to the
controller in full, to everyone as price and volume, to each peer its own result), then each
interval's settlements. Everything is journalled before it is published; a repeated request gets
the journal's answer, so duplicates change nothing.

Rules an order must pass (else `rejected` with the reason, journalled, and left out of the book):
the submission parses (schema), it came on its own peer's topic, the peer is registered with a
public key, the signature verifies, the interval's gate is still open, and its id is new.

Every order received goes to the controller for the run's ledger: those of an interval's book
(accepted or rejected) in its clearing report; the rejections outside any book (after the gate, or
for another interval than their submission's) and the unreadable submissions on a peer's topic in
the next clearing or settlement report (`unbooked`, `rejected_messages`), each in exactly one.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import defaultdict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from testbed.config import TestbedConfig
from testbed.documents import OrderBook
from testbed.ledger.orders import order_window
from testbed.market.book import Order, Trade
from testbed.platform import topics
from testbed.platform.journal import Journal
from testbed.platform.link import BrokerAddress, Credentials, Link
from testbed.platform.messages import (
    Account,
    AccountOrder,
    Ack,
    Announcement,
    BadMessage,
    ClearingReport,
    GateRequest,
    Liveness,
    MarketStatus,
    MeteringReport,
    OrderStatus,
    PeerResult,
    PeerSettlement,
    PublicClearing,
    RejectedMessage,
    RejectedOrder,
    SettlementReport,
    SignedCandidate,
    SignedOrder,
    Submission,
    parse,
)
from testbed.platform.registry import Registry
from testbed.platform.signing import signature_valid
from testbed.settlement import settle_interval
from testbed.trading import BookClearer, market_context, market_outcomes

log = logging.getLogger(__name__)

ACCOUNT_ORDERS = 100  # orders kept in a peer's account view
REANNOUNCE_S = 10.0  # an open interval is announced again at most this often (repeated requests)


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


@dataclass
class _Interval:
    """One interval's book while its gate is open."""

    accepted: dict[str, list[tuple[int, SignedOrder]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    rejected: list[tuple[Order, str]] = field(default_factory=list)
    rejected_signed: list[SignedCandidate] = field(default_factory=list)
    complete: set[str] = field(default_factory=set)
    refused_peers: dict[str, str] = field(default_factory=dict)
    sell_only_peers: dict[str, str] = field(default_factory=dict)
    controller_online: set[str] = field(default_factory=set)  # the gate request's online agents
    changed: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _Unbooked:
    """Journalled rejections outside any book, for the next report to carry."""

    seqs: list[int] = field(default_factory=list)
    orders: list[SignedCandidate] = field(default_factory=list)
    messages: list[RejectedMessage] = field(default_factory=list)


@dataclass
class _AccountView:
    orders: deque[AccountOrder] = field(default_factory=lambda: deque(maxlen=ACCOUNT_ORDERS))
    trades: deque[Trade] = field(default_factory=lambda: deque(maxlen=ACCOUNT_ORDERS))
    bill_total: float = 0.0
    settled_intervals: int = 0


class OperatorService:
    """See the module docstring. `run()` serves until `stop()`."""

    def __init__(
        self,
        config: TestbedConfig,
        registry: Registry,
        address: BrokerAddress,
        password: str,
        journal_path: Path,
        *,
        gate_wait_s: float = 30.0,
    ) -> None:
        self.config = config
        self.registry = registry
        self.peers = list(registry.peers)
        self._peer_rank = {peer: rank for rank, peer in enumerate(self.peers)}
        self.gate_wait_s = gate_wait_s
        self.journal = Journal(journal_path)
        self.clearer = BookClearer(config)
        self.clearer.order_count = self.journal.counter("order_count")
        self._seq = self.journal.max_seq()
        self.online: set[str] = set()
        self._status_heard: set[str] = set()  # peers whose liveness this process has heard
        self._intervals: dict[datetime, _Interval] = {}
        self._closed: dict[datetime, ClearingReport] = {}
        self._gate_tasks: dict[datetime, asyncio.Task[None]] = {}
        self._announced: dict[datetime, float] = {}  # monotonic time of the last announcement
        self._accounts: dict[str, _AccountView] = defaultdict(_AccountView)
        # the peers with accepted orders of an interval still to clear in their account views
        self._accounts_open: dict[datetime, set[str]] = defaultdict(set)
        self._settled: set[datetime] = set()
        # the id of every order received with its own peer's valid signature (accepted or
        # rejected, in a book or outside): the run's ledger counts each as used, whoever sent it,
        # so a later order with the same id is refused here too, never booked
        self._used_ids: dict[str, str] = {}
        self._stopped = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()
        self._restore()
        self.link = Link(
            address,
            Credentials("operator", password),
            "operator",
            [
                f"{topics.PEERS}/+/orders",
                f"{topics.PEERS}/+/status",
                topics.GATE_REQUESTS,
                topics.METERING,
            ],
            self._on_message,
            will=None,
        )

    # -- state from the journal ---------------------------------------------------------------

    def _restore(self) -> None:
        for text in self.journal.clearings():
            report = parse(ClearingReport, text)
            self._closed[_utc(report.interval_start)] = report
        for text in self.journal.settlements():
            settled = parse(SettlementReport, text)
            self._settled.add(_utc(settled.interval_start))
            for settlement in settled.settlements:  # the account views' bills
                account = self._accounts[settlement.peer]
                account.bill_total += settlement.bill
                account.settled_intervals += 1
        for status, reason, signed_json in self.journal.received_orders():
            self._note_used(SignedOrder.model_validate_json(signed_json), status, reason)
        for interval_text, peer, seq, signed_json in self.journal.accepted_orders():
            interval = _utc(datetime.fromisoformat(interval_text))
            if interval in self._closed:
                continue
            book = self._intervals.setdefault(interval, _Interval())
            book.accepted[peer].append((seq, SignedOrder.model_validate_json(signed_json)))
        outside = {
            SignedCandidate.model_validate_json(item).order
            for item in self.journal.unbooked_orders()
        }
        for interval_text, reason, signed_json in self.journal.rejected_orders():
            interval = _utc(datetime.fromisoformat(interval_text))
            signed = SignedOrder.model_validate_json(signed_json)
            if self._is_closed(interval) or signed in outside:
                continue  # reported with its clearing, or carried outside any book
            book = self._intervals.setdefault(interval, _Interval())
            book.rejected.append((signed.as_order(), reason or "rejected"))
            book.rejected_signed.append(SignedCandidate(order=signed, reason=reason or "rejected"))
        for interval_text, peer in self.journal.completions():
            interval = _utc(datetime.fromisoformat(interval_text))
            if interval not in self._closed:  # the peers the gate need not wait for again
                self._intervals.setdefault(interval, _Interval()).complete.add(peer)

    def _note_used(self, order: SignedOrder, status: str, reason: str | None) -> None:
        """An order received uses its id on the ledger when it is signed by its own peer's
        registered key (the ledger's rule for a used id), whatever its status (an accepted one's
        signature was checked when it was accepted)."""
        if order.order_id in self._used_ids:
            return
        public_key = self.registry.public_key(order.peer)
        if public_key is not None and (status == "accepted" or signature_valid(public_key, order)):
            why = f", {reason}" if reason else ""
            self._used_ids[order.order_id] = (
                f"peer {order.peer!r}'s order for {_utc(order.interval_start).isoformat()}, "
                f"{status}{why}"
            )

    def last_closed(self) -> datetime | None:
        return max(self._closed) if self._closed else None

    # -- the service --------------------------------------------------------------------------

    async def run(self) -> None:
        link_task = asyncio.create_task(self.link.run())
        stop_task = asyncio.create_task(self._stopped.wait())
        try:
            done, _ = await asyncio.wait(
                {link_task, stop_task}, return_when=asyncio.FIRST_COMPLETED
            )
            if link_task in done:
                link_task.result()  # raises LinkRefused
        finally:
            for task in self._gate_tasks.values():
                task.cancel()
            if self._background:
                await asyncio.wait(set(self._background), timeout=5.0)
            await self.link.close()
            link_task.cancel()
            stop_task.cancel()
            await asyncio.gather(link_task, stop_task, return_exceptions=True)
            self.journal.close()

    def stop(self) -> None:
        self._stopped.set()

    def _send(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish without holding up the message loop for the broker's PUBACK.

        The PUBLISH leaves at once (tasks start in the order they are made, and the client writes
        the packet before its first wait), so the broker sees the messages in the order they are
        sent here: an account view sent before an acknowledgement is retained before the
        acknowledgement arrives. `Link.publish` still resends across reconnections."""
        task = asyncio.get_running_loop().create_task(
            self.link.publish(topic, payload, retain=retain)
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _on_message(self, topic: str, payload: bytes) -> None:
        if topic == topics.GATE_REQUESTS:
            await self._on_gate_request(payload)
        elif topic == topics.METERING:
            await self._on_metering(payload)
        elif topic.endswith("/orders"):
            await self._on_submission(topic, payload)
        elif topic.endswith("/status"):
            self._on_status(topic, payload)

    def _on_status(self, topic: str, payload: bytes) -> None:
        peer = topics.peer_of(topic)
        try:
            status = parse(Liveness, payload)
        except BadMessage:
            return
        if peer is None or status.peer != peer:
            return
        self._status_heard.add(peer)
        if status.state == "online":
            self.online.add(peer)
        else:
            self.online.discard(peer)
        for book in self._intervals.values():
            book.changed.set()

    # -- intake -------------------------------------------------------------------------------

    async def _on_submission(self, topic: str, payload: bytes) -> None:
        peer = topics.peer_of(topic) or "?"
        received = datetime.now(UTC)
        try:
            submission = parse(Submission, payload)
        except BadMessage as error:
            reason = str(error)
            attributed = topics.peer_of(topic) is not None
            rejected = RejectedMessage(
                peer=peer,
                topic=topic,
                received_at=received,
                reason=reason,
                payload_sha256=hashlib.sha256(payload).hexdigest(),
                payload_bytes=len(payload),
            )
            self.journal.record_rejected_message(
                received,
                peer,
                topic,
                reason,
                payload,
                rejected.model_dump_json() if attributed else None,
            )
            self._send(
                topics.acks(peer),
                Ack(in_reply_to=_message_id_of(payload), peer=peer, error=reason).payload(),
            )
            return
        known = self.journal.ack_for(peer, submission.message_id)
        if known is not None:  # a duplicate delivery: the same answer, nothing changes
            self._send(topics.acks(peer), known.encode("utf-8"))
            return
        ack, rows, unbooked, complete = self._intake(peer, submission)
        ack_json = ack.model_dump_json()
        self.journal.record_submission(
            submission.message_id, peer, ack_json, received, rows, unbooked, complete
        )
        self._note_account(peer, submission, ack)
        self._send_account(peer)  # retained before the acknowledgement reaches the peer
        self._send(topics.acks(peer), ack_json.encode("utf-8"))
        book = self._intervals.get(_utc(submission.interval_start))
        if book is not None:
            book.changed.set()

    def _intake(
        self, peer: str, submission: Submission
    ) -> tuple[
        Ack, list[tuple[datetime, str, str, int, str, str | None, str]], list[str], datetime | None
    ]:
        """The acknowledgement, the journal's rows, the rejections no book carries, and the
        interval whose book the peer has completed (None: none)."""
        interval = _utc(submission.interval_start)
        statuses: list[OrderStatus] = []
        rows: list[tuple[datetime, str, str, int, str, str | None, str]] = []
        unbooked: list[str] = []
        closed = self._is_closed(interval)
        not_open = None if closed else self._not_open_yet(interval)
        book = None if closed or not_open else self._intervals.setdefault(interval, _Interval())
        public_key = self.registry.public_key(peer)
        for signed in submission.orders:
            if (
                book is not None
                and submission.peer == peer
                and any(known == signed for _, known in book.accepted[peer])
            ):  # the same order again (a resend): still accepted, once in the book
                statuses.append(OrderStatus(order_id=signed.order_id, status="accepted"))
                continue
            reason = self._order_problem(peer, submission, signed, public_key, closed) or (not_open)
            if reason is None and book is not None:
                reason = _standing_problem(book, signed)
            self._note_used(signed, "rejected" if reason else "accepted", reason)
            self._seq += 1
            if reason is None:
                assert book is not None
                book.accepted[peer].append((self._seq, signed))
                statuses.append(OrderStatus(order_id=signed.order_id, status="accepted"))
            else:
                statuses.append(
                    OrderStatus(order_id=signed.order_id, status="rejected", reason=reason)
                )
                candidate = SignedCandidate(order=signed, reason=reason)
                if book is not None and _utc(signed.interval_start) == interval:
                    book.rejected.append((signed.as_order(), reason))
                    book.rejected_signed.append(candidate)
                else:
                    unbooked.append(candidate.model_dump_json())
            rows.append(
                (
                    interval,
                    peer,
                    signed.order_id,
                    self._seq,
                    statuses[-1].status,
                    reason,
                    signed.model_dump_json(),
                )
            )
        complete = None
        if submission.complete and book is not None and submission.peer == peer:
            book.complete.add(peer)
            complete = interval
        ack = Ack(
            in_reply_to=submission.message_id,
            peer=peer,
            interval_start=submission.interval_start,
            statuses=statuses,
        )
        return ack, rows, unbooked, complete

    def _not_open_yet(self, interval: datetime) -> str | None:
        """Why an interval beyond the next gate takes no orders yet (None: it takes them).

        After the first gate, an interval takes orders once its gate was asked for, or when it is
        the next one; a book further ahead might never be closed, and its orders would then reach
        no report and not the run's ledger."""
        last = self.last_closed()
        if last is None or interval in self._gate_tasks:
            return None
        following = last + timedelta(seconds=self.config.market.interval_s)
        if interval <= following:
            return None
        return (
            f"interval {interval.isoformat()} is not open for orders yet (the next is "
            f"{following.isoformat()})"
        )

    def _is_closed(self, interval: datetime) -> bool:
        last = self.last_closed()
        return interval in self._closed or (last is not None and interval <= last)

    def _order_problem(
        self,
        peer: str,
        submission: Submission,
        signed: SignedOrder,
        public_key: str | None,
        closed: bool,
    ) -> str | None:
        if submission.peer != peer or signed.peer != peer:
            return (
                f"order for peer {signed.peer!r} (submission of {submission.peer!r}) arrived on "
                f"peer {peer!r}'s topic: a peer places only its own orders"
            )
        if public_key is None:
            return f"peer {peer!r} is not registered (no approved public key)"
        if _utc(signed.interval_start) != _utc(submission.interval_start):
            return (
                f"order interval {signed.interval_start.isoformat()} is not the submission's "
                f"{submission.interval_start.isoformat()}"
            )
        if not signature_valid(public_key, signed):
            return "bad signature: not signed by the peer's registered key, or changed since"
        if signed.order_id in self._used_ids:
            return (
                f"order id {signed.order_id!r} was already used ({self._used_ids[signed.order_id]})"
            )
        if closed:
            return (
                f"the gate of interval {signed.interval_start.isoformat()} has closed; "
                "the order came too late"
            )
        opens, closes = order_window(signed.interval_start, self.config.market.interval_s)
        if not opens <= signed.signed_at <= closes:
            return (
                f"signed at {signed.signed_at.isoformat()}, outside the order window "
                f"{opens.isoformat()} to {closes.isoformat()}"
            )
        return None

    # -- gate closure and clearing ------------------------------------------------------------

    async def _on_gate_request(self, payload: bytes) -> None:
        try:
            request = parse(GateRequest, payload)
        except BadMessage as error:
            log.warning("gate request ignored: %s", error)
            return
        interval = _utc(request.interval_start)
        if interval in self._closed:  # a repeated request: the journal's answer
            await self.link.publish(topics.CLEARING_REPORTS, self._closed[interval])
            return
        announcement = Announcement(
            interval_start=interval,
            gate_closes_at=request.gate_closes_at,
            mechanism=self.config.market.mechanism,
            context=market_context(self.config, interval),
        )
        now = time.monotonic()
        if interval in self._gate_tasks and now - self._announced.get(interval, 0.0) < REANNOUNCE_S:
            return  # the controller repeats its request while the gate is open: announced
        self._announced[interval] = now
        if interval not in self._gate_tasks:
            book = self._intervals.setdefault(interval, _Interval())
            book.refused_peers = dict(request.refused_peers)
            book.sell_only_peers = dict(request.sell_only_peers)
            book.controller_online = set(request.online_peers)
            await self.link.publish(
                topics.MARKET_STATUS,
                MarketStatus(open_interval=interval, last_closed_interval=self.last_closed()),
                retain=True,
            )
            self._gate_tasks[interval] = asyncio.create_task(self._gate(interval))
        await self.link.publish(topics.ANNOUNCEMENTS, announcement)

    async def _gate(self, interval: datetime) -> None:
        """Wait for every online agent's orders (at most `gate_wait_s`), then close and clear.

        Online: as this process heard each agent's status, or, for an agent it has not heard of
        since it (re)started, as the controller's gate request says."""
        book = self._intervals[interval]
        deadline = time.monotonic() + self.gate_wait_s
        while True:
            online = self.online | (book.controller_online - self._status_heard)
            waiting = online - book.complete
            left = deadline - time.monotonic()
            if not waiting or left <= 0:
                break
            book.changed.clear()
            try:
                await asyncio.wait_for(book.changed.wait(), timeout=left)
            except TimeoutError:
                break
        await self._close(interval)

    async def _close(self, interval: datetime) -> None:
        gate_closed_wall = time.time()
        book = self._intervals.pop(interval, _Interval())
        _apply_standing(book)
        unbooked = self._pending_unbooked()
        ranked = sorted(book.accepted.items(), key=lambda item: self._peer_rank.get(item[0], 1e9))
        accepted = [
            signed
            for _, signed_orders in ranked
            for _, signed in sorted(signed_orders, key=lambda pair: pair[0])
        ]
        orders = [signed.as_order() for signed in accepted]
        order_book, clearing = self.clearer.clear(interval, orders, self.peers, book.rejected)
        submitted = sorted(
            set(book.complete) | {p for p, o in book.accepted.items() if o},
            key=lambda p: self._peer_rank.get(p, 1e9),
        )
        report = ClearingReport(
            interval_start=interval,
            mechanism=clearing.mechanism,
            orders=list(order_book.orders),
            rejected=[RejectedOrder(order=o, reason=r) for o, r in order_book.rejected],
            trades=list(clearing.trades),
            clearing_price=clearing.clearing_price,
            report=dict(clearing.report),
            submitted=submitted,
            gate_closed_wall=gate_closed_wall,
            signed=[
                *(SignedCandidate(order=signed) for signed in accepted),
                *book.rejected_signed,
            ],
            unbooked=unbooked.orders,
            rejected_messages=unbooked.messages,
        )
        report_json = report.model_dump_json()
        self.journal.record_clearing(interval, report_json, self.clearer.order_count, unbooked.seqs)
        self._closed[interval] = report
        self._gate_tasks.pop(interval, None)
        self._announced.pop(interval, None)
        self._send(
            topics.MARKET_STATUS,
            MarketStatus(
                open_interval=max(self._intervals) if self._intervals else None,
                last_closed_interval=self.last_closed(),
            ).payload(),
            retain=True,
        )
        self._send(topics.CLEARING_REPORTS, report_json.encode("utf-8"))
        await self._publish_results(order_book, report)

    async def _publish_results(self, order_book: OrderBook, report: ClearingReport) -> None:
        from testbed.documents import Clearing

        clearing = Clearing(
            interval_start=report.interval_start,
            mechanism=report.mechanism,
            clearing_price=report.clearing_price,
            volume_kwh=sum(t.quantity_kwh for t in report.trades),
            trades=tuple(report.trades),
            report=report.report,
        )
        outcomes = market_outcomes(order_book, clearing, self.peers)
        own_trades: dict[str, list[Trade]] = defaultdict(list)
        for trade in report.trades:
            own_trades[trade.buyer].append(trade)
            if trade.seller != trade.buyer:
                own_trades[trade.seller].append(trade)
        publications = [
            self.link.publish(
                topics.CLEARINGS,
                PublicClearing(
                    interval_start=report.interval_start,
                    mechanism=report.mechanism,
                    clearing_price=report.clearing_price,
                    volume_kwh=clearing.volume_kwh,
                    orders=len(report.orders),
                ),
            )
        ]
        for peer, outcome in outcomes.items():
            result = PeerResult(
                peer=peer,
                interval_start=report.interval_start,
                outcome=outcome,
                trades=own_trades[peer],
                gate_closed_wall=report.gate_closed_wall,
            )
            publications.append(self.link.publish(topics.results(peer), result))
        await asyncio.gather(*publications)
        for peer in self._account_after_clearing(report, own_trades):
            self._send_account(peer)

    # -- settlement ---------------------------------------------------------------------------

    async def _on_metering(self, payload: bytes) -> None:
        try:
            metering = parse(MeteringReport, payload)
        except BadMessage as error:
            log.warning("metering ignored: %s", error)
            return
        interval = _utc(metering.interval_start)
        known = self.journal.settlement(interval)
        if known is not None:
            await self.link.publish(topics.SETTLEMENT_REPORTS, known.encode("utf-8"))
            return
        clearing = self._closed.get(interval)
        trades = tuple(clearing.trades) if clearing is not None else ()
        settlements = settle_interval(
            interval,
            trades,
            dict(metering.metered_kwh),
            self.config.prices,
            balancing=self.config.market.balancing,
        )
        unbooked = self._pending_unbooked()
        report = SettlementReport(
            interval_start=interval,
            settlements=settlements,
            unbooked=unbooked.orders,
            rejected_messages=unbooked.messages,
        )
        self.journal.record_settlement(interval, report.model_dump_json(), unbooked.seqs)
        self._settled.add(interval)
        await self.link.publish(topics.SETTLEMENT_REPORTS, report)
        publications = []
        for settlement in settlements:
            account = self._accounts[settlement.peer]
            account.bill_total += settlement.bill
            account.settled_intervals += 1
            publications.append(
                self.link.publish(
                    topics.settlements(settlement.peer),
                    PeerSettlement(
                        peer=settlement.peer,
                        settlement=settlement,
                        wallet_balance=self.wallet_balance(settlement.peer),
                    ),
                )
            )
            self._send_account(settlement.peer)
        await asyncio.gather(*publications)

    def _pending_unbooked(self) -> _Unbooked:
        """The rejections outside any book that no report has carried yet (from the journal)."""
        pending = _Unbooked()
        for seq, kind, item in self.journal.pending_unbooked():
            pending.seqs.append(seq)
            if kind == "order":
                pending.orders.append(SignedCandidate.model_validate_json(item))
            else:
                pending.messages.append(RejectedMessage.model_validate_json(item))
        return pending

    def wallet_balance(self, peer: str) -> float:
        """The peer's wallet as the operator sees it: the opening balance (`[ledger]
        opening_balance`) less its settled bills since this process started, debts counted (the
        run's ledger, written by the controller, holds the wallets themselves)."""
        opening = self.config.ledger.opening_balance
        return round(opening - self._accounts[peer].bill_total, 6)

    # -- each peer's account (what the participants' page shows) ------------------------------

    def _note_account(self, peer: str, submission: Submission, ack: Ack) -> None:
        account = self._accounts[peer]
        if any(status.status == "accepted" for status in ack.statuses):
            self._accounts_open[_utc(submission.interval_start)].add(peer)
        by_id = {o.order_id: o for o in submission.orders}
        for status in ack.statuses:
            order = by_id.get(status.order_id)
            if order is None:
                continue
            account.orders.append(
                AccountOrder(
                    order_id=order.order_id,
                    interval_start=order.interval_start,
                    side=order.side,
                    quantity_kwh=order.quantity_kwh,
                    price=order.price,
                    status=status.status,
                    reason=status.reason,
                )
            )

    def _account_after_clearing(
        self, report: ClearingReport, own_trades: Mapping[str, Sequence[Trade]]
    ) -> set[str]:
        """Mark the interval's accepted orders traded or not; the peers whose view changed."""
        traded: dict[str, float] = defaultdict(float)
        for trade in report.trades:
            traded[trade.buy_order_id] += trade.quantity_kwh
            traded[trade.sell_order_id] += trade.quantity_kwh
        interval = _utc(report.interval_start)
        changed = set()
        open_peers = self._accounts_open.pop(interval, set())
        for peer in open_peers | own_trades.keys():
            account = self._accounts[peer]
            for index, order in enumerate(account.orders):
                if _utc(order.interval_start) == interval and order.status == "accepted":
                    changed.add(peer)
                    done = traded.get(order.order_id, 0.0)
                    account.orders[index] = order.model_copy(
                        update={
                            "status": "traded" if done > 0 else "not traded",
                            "traded_kwh": done,
                        }
                    )
            account.trades.extend(own_trades.get(peer, ()))
        return changed

    def _send_account(self, peer: str) -> None:
        account = self._accounts[peer]
        self._send(
            topics.account(peer),
            Account(
                peer=peer,
                orders=list(account.orders),
                trades=list(account.trades),
                wallet_balance=self.wallet_balance(peer),
                settled_intervals=account.settled_intervals,
                bill_total=round(account.bill_total, 6),
            ).payload(),
            retain=True,
        )


def _apply_standing(book: _Interval) -> None:
    """Orders accepted before the gate request brought the ledger's standing (a peer refused, a
    peer in debt buying) are rejected at the gate with its reason, as the ledger would."""
    for peer, booked in book.accepted.items():
        kept = []
        for seq, signed in booked:
            reason = _standing_problem(book, signed)
            if reason is None:
                kept.append((seq, signed))
            else:
                book.rejected.append((signed.as_order(), reason))
                book.rejected_signed.append(SignedCandidate(order=signed, reason=reason))
        book.accepted[peer] = kept


def _standing_problem(book: _Interval, signed: SignedOrder) -> str | None:
    """The run ledger's objection to the peer (sent with the gate request), or None."""
    if signed.peer in book.refused_peers:
        return book.refused_peers[signed.peer]
    if signed.side == "buy" and signed.peer in book.sell_only_peers:
        return book.sell_only_peers[signed.peer]
    return None


def _message_id_of(payload: bytes) -> str:
    """The message id of an unreadable submission, when it has one (for the rejection)."""
    import json

    try:
        data = json.loads(payload)
    except ValueError:
        return ""
    value = data.get("message_id") if isinstance(data, dict) else None
    return value if isinstance(value, str) else ""
