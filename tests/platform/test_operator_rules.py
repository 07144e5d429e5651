"""The market operator on a real mosquitto: what it accepts and refuses, and why; duplicates; the
broker's passwords and ACL against rogue clients."""

from __future__ import annotations

import contextlib
import sqlite3
from datetime import timedelta

import aiomqtt
import pytest

from testbed.platform import topics
from testbed.platform.link import Credentials, session_client_id
from testbed.platform.messages import Ack, ClearingReport, GateRequest, parse
from testbed.platform.operator import OperatorService
from tests.platform.conftest import INTERVAL, Platform, next_message


def gate_request() -> bytes:
    request = GateRequest(interval_start=INTERVAL, gate_closes_at=INTERVAL - timedelta(seconds=60))
    return request.payload()


def submission_ids(platform: Platform) -> list[str]:
    with sqlite3.connect(platform.folder.journal_path) as db:
        return [row[0] for row in db.execute("SELECT message_id FROM submissions")]


async def test_forged_foreign_late_and_malformed_orders_are_rejected_with_reasons(
    platform: Platform, operator: OperatorService
) -> None:
    good = platform.signed("A", 1)
    forged = platform.signed("A", 2, signer="B")  # A's order signed with B's key
    foreign = platform.signed("B", 1)  # B's genuine order, sent on A's topic
    async with platform.client("A") as peer, platform.client("controller") as controller:
        await peer.subscribe(topics.acks("A"), qos=1)
        await controller.subscribe(topics.CLEARING_REPORTS, qos=1)
        submission = platform.submission("A", good, forged, foreign)
        await peer.publish(topics.orders("A"), submission.payload(), qos=1)
        ack = parse(Ack, (await next_message(peer.messages)).payload)
        await peer.publish(topics.orders("A"), b'{"v": 1, "kind": "submission"}', qos=1)
        malformed = parse(Ack, (await next_message(peer.messages)).payload)
        await controller.publish(topics.GATE_REQUESTS, gate_request(), qos=1)
        report = parse(ClearingReport, (await next_message(controller.messages)).payload)
        late = platform.submission("A", platform.signed("A", 3), message_id="A-late")
        await peer.publish(topics.orders("A"), late.payload(), qos=1)
        too_late = parse(Ack, (await next_message(peer.messages)).payload)

    status = {s.order_id: s for s in ack.statuses}
    assert status[good.order_id].status == "accepted"
    assert status[forged.order_id].status == "rejected"
    assert "bad signature" in (status[forged.order_id].reason or "")
    assert status[foreign.order_id].status == "rejected"
    assert "places only its own orders" in (status[foreign.order_id].reason or "")
    assert malformed.error is not None and "message_id" in malformed.error
    assert too_late.statuses[0].status == "rejected"
    assert "gate" in (too_late.statuses[0].reason or "")

    # the interval cleared without them; the controller gets each with its reason to record
    assert [o.order_id for o in report.orders] == [good.order_id]
    assert {r.order.order_id for r in report.rejected} == {forged.order_id, foreign.order_id}
    assert [(c.order.order_id, c.reason is None) for c in report.signed] == [
        (good.order_id, True),
        (forged.order_id, False),
        (foreign.order_id, False),
    ]
    rows = {(p, order_id, status) for _, p, order_id, status, _ in operator.journal.order_rows()}
    assert ("A", forged.order_id, "rejected") in rows
    assert ("A", foreign.order_id, "rejected") in rows
    assert ("A", late.orders[0].order_id, "rejected") in rows
    assert len(operator.journal.rejected_messages()) == 1


async def test_a_duplicate_delivery_changes_nothing(
    platform: Platform, operator: OperatorService
) -> None:
    order = platform.signed("A", 1)
    submission = platform.submission("A", order, message_id="A-once")
    async with platform.client("A") as peer, platform.client("controller") as controller:
        await peer.subscribe(topics.acks("A"), qos=1)
        await controller.subscribe(topics.CLEARING_REPORTS, qos=1)
        acks = []
        for _ in range(2):
            await peer.publish(topics.orders("A"), submission.payload(), qos=1)
            acks.append(parse(Ack, (await next_message(peer.messages)).payload))
        reports = []
        for _ in range(2):
            await controller.publish(topics.GATE_REQUESTS, gate_request(), qos=1)
            reports.append(parse(ClearingReport, (await next_message(controller.messages)).payload))
    assert acks[0] == acks[1] and acks[0].statuses[0].status == "accepted"
    assert submission_ids(platform) == ["A-once"]
    assert len(operator.journal.order_rows()) == 1
    assert [o.order_id for o in reports[0].orders] == [order.order_id]
    assert reports[0] == reports[1]


async def test_the_broker_refuses_rogue_clients_and_foreign_topics(
    platform: Platform, operator: OperatorService
) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with platform.client("A", password="not-the-password"):
            pass
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client(platform.broker.host, platform.broker.port, timeout=10):
            pass  # no credentials at all

    async with platform.client("A") as rogue, platform.client("B") as peer_b:
        await rogue.subscribe(topics.acks("A"), qos=1)
        await rogue.subscribe(topics.acks("B"), qos=1)  # not A's to read
        await peer_b.subscribe(topics.acks("B"), qos=1)
        # A publishes on B's order topic: the broker drops it
        as_b = platform.submission("B", platform.signed("B", 1, signer="A"), message_id="rogue")
        await rogue.publish(topics.orders("B"), as_b.payload(), qos=1)
        own_b = platform.submission("B", platform.signed("B", 2), message_id="B-own")
        await peer_b.publish(topics.orders("B"), own_b.payload(), qos=1)
        assert parse(Ack, (await next_message(peer_b.messages)).payload).in_reply_to == "B-own"
        own_a = platform.submission("A", platform.signed("A", 1), message_id="A-own")
        await rogue.publish(topics.orders("A"), own_a.payload(), qos=1)
        # B's ack went out first; A, not allowed to read it, gets only its own
        first = parse(Ack, (await next_message(rogue.messages)).payload)
    assert first.in_reply_to == "A-own"
    assert sorted(submission_ids(platform)) == ["A-own", "B-own"]


async def test_another_user_cannot_take_over_the_operators_session(
    platform: Platform, operator: OperatorService
) -> None:
    """The broker hands a session to whoever connects with its client id, and the ACL cannot
    stop it: the operator's id carries a tag only its password gives, so a peer that connects
    with the names it could guess displaces nobody."""
    assert operator.link.identifier.startswith("operator-")
    assert operator.link.identifier != session_client_id(
        "operator", Credentials("operator", "a guess")
    )
    guesses = ("operator", operator.link.client_id, f"{operator.link.client_id}-0")
    async with contextlib.AsyncExitStack() as stack:
        for guess in guesses:
            await stack.enter_async_context(
                aiomqtt.Client(
                    platform.broker.host,
                    platform.broker.port,
                    username="B",
                    password=platform.folder.password("B"),
                    identifier=guess,
                    timeout=10,
                )
            )
        async with platform.client("B") as peer_b:
            await peer_b.subscribe(topics.acks("B"), qos=1)
            own_b = platform.submission("B", platform.signed("B", 1), message_id="B-1")
            await peer_b.publish(topics.orders("B"), own_b.payload(), qos=1)
            ack = parse(Ack, (await next_message(peer_b.messages)).payload)
    assert ack.in_reply_to == "B-1"
    assert operator.link.connections == 1  # never knocked off, never reconnected


async def test_a_peer_cannot_take_another_peers_message_id(
    platform: Platform, operator: OperatorService
) -> None:
    """Message ids are the sender's own: B sending first with the id A's agent will use (they are
    predictable) neither drops A's orders nor shows A B's acknowledgement."""
    a_order, b_order = platform.signed("A", 1), platform.signed("B", 1)
    async with (
        platform.client("A") as peer_a,
        platform.client("B") as peer_b,
        platform.client("controller") as controller,
    ):
        await peer_a.subscribe(topics.acks("A"), qos=1)
        await peer_b.subscribe(topics.acks("B"), qos=1)
        await controller.subscribe(topics.CLEARING_REPORTS, qos=1)
        squat = platform.submission("B", b_order, message_id="A-20260321T060000")
        await peer_b.publish(topics.orders("B"), squat.payload(), qos=1)
        b_ack = parse(Ack, (await next_message(peer_b.messages)).payload)
        own = platform.submission("A", a_order, message_id="A-20260321T060000")
        await peer_a.publish(topics.orders("A"), own.payload(), qos=1)
        a_ack = parse(Ack, (await next_message(peer_a.messages)).payload)
        await controller.publish(topics.GATE_REQUESTS, gate_request(), qos=1)
        report = parse(ClearingReport, (await next_message(controller.messages)).payload)
    assert [(s.order_id, s.status) for s in b_ack.statuses] == [(b_order.order_id, "accepted")]
    assert a_ack.peer == "A"
    assert [(s.order_id, s.status) for s in a_ack.statuses] == [(a_order.order_id, "accepted")]
    assert {o.order_id for o in report.orders} == {a_order.order_id, b_order.order_id}


async def test_a_restarted_operator_still_refuses_an_order_id_already_used(
    platform: Platform,
) -> None:
    """The used order ids come back from the journal: after a restart, another order under an
    id already used (here by a rejected, validly signed order) is refused, not booked."""

    from testbed.market.book import Side

    gate_wait_s = 0.2
    foreign = platform.signed("B", 1)  # B's genuine order on A's topic: rejected, its id used
    reused = platform.signed("B", 1, side=Side.BUY)  # another order of B under the same id
    acks = []
    for orders, peer in (((foreign,), "A"), ((reused,), "B")):
        running, task = await platform.start_operator(gate_wait_s=gate_wait_s)
        async with platform.client(peer) as client:
            await client.subscribe(topics.acks(peer), qos=1)
            submission = platform.submission(peer, *orders, message_id=f"{peer}-restart")
            await client.publish(topics.orders(peer), submission.payload(), qos=1)
            acks.append(parse(Ack, (await next_message(client.messages)).payload))
        running.stop()
        await task
    assert acks[0].statuses[0].status == "rejected"
    assert acks[1].statuses[0].status == "rejected"
    assert "already used" in (acks[1].statuses[0].reason or "")


def test_the_account_view_is_the_configured_opening_less_the_bills_also_after_a_restart(
    platform: Platform,
) -> None:
    """A peer's wallet in its account view starts at `[ledger] opening_balance` and loses its
    settled bills, also those an operator settled before it restarted (from its journal)."""
    from testbed.platform.journal import Journal
    from testbed.platform.messages import SettlementReport
    from testbed.settlement import settle_interval

    ledger = platform.config.ledger.model_copy(update={"opening_balance": 250.0})
    config = platform.config.model_copy(update={"ledger": ledger})
    settlements = settle_interval(INTERVAL, (), {"A": -2.0, "B": 1.0, "C": 0.0}, config.prices)
    bill_a = next(s.bill for s in settlements if s.peer == "A")
    assert bill_a > 0
    journal = Journal(platform.folder.journal_path)
    report = SettlementReport(interval_start=INTERVAL, settlements=settlements)
    journal.record_settlement(INTERVAL, report.model_dump_json())
    journal.close()
    service = platform.operator_service(config)
    try:
        assert service.wallet_balance("A") == pytest.approx(250.0 - bill_a)
        assert service.wallet_balance("C") == pytest.approx(250.0)
    finally:
        service.journal.close()


async def test_a_restarted_operator_remembers_who_has_submitted_for_the_open_gate(
    platform: Platform,
) -> None:
    """A and B submitted (complete) and were answered, then the operator restarted before the
    gate: the new one does not wait for A and B again (their agents decided once and will not
    resubmit), it closes the gate with their orders."""

    gate_wait_s = 600.0
    orders = {peer: platform.signed(peer, 1) for peer in ("A", "B")}
    first, task = await platform.start_operator(gate_wait_s=gate_wait_s)
    for peer, order in orders.items():
        async with platform.client(peer) as client:
            await client.subscribe(topics.acks(peer), qos=1)
            submission = platform.submission(peer, order, message_id=f"{peer}-before")
            await client.publish(topics.orders(peer), submission.payload(), qos=1)
            await next_message(client.messages)
    first.stop()
    await task

    second, task = await platform.start_operator(gate_wait_s=gate_wait_s)
    try:
        async with platform.client("controller") as controller:
            await controller.subscribe(topics.CLEARING_REPORTS, qos=1)
            request = GateRequest(
                interval_start=INTERVAL,
                gate_closes_at=INTERVAL - timedelta(seconds=60),
                online_peers=["A", "B"],
            )
            await controller.publish(topics.GATE_REQUESTS, request.payload(), qos=1)
            report = parse(ClearingReport, (await next_message(controller.messages)).payload)
    finally:
        second.stop()
        await task
    assert {o.order_id for o in report.orders} == {o.order_id for o in orders.values()}
    assert report.submitted == ["A", "B"]


async def test_orders_sent_before_the_gate_request_meet_the_ledgers_standing_at_the_gate(
    platform: Platform, operator: OperatorService
) -> None:
    """C (refused by the run's ledger) and B (in debt: it may only sell) place orders before the
    controller's gate request says so: at the gate they are rejected with the ledger's reasons,
    never cleared (the ledger would refuse them, which stops the run)."""
    from testbed.market.book import Side

    early = {
        "C": platform.signed("C", 1),
        "B": platform.signed("B", 1, side=Side.BUY),
        "A": platform.signed("A", 1),
    }
    async with platform.client("controller") as controller:
        await controller.subscribe(topics.CLEARING_REPORTS, qos=1)
        for peer, order in early.items():
            async with platform.client(peer) as client:
                await client.subscribe(topics.acks(peer), qos=1)
                submission = platform.submission(peer, order, message_id=f"{peer}-early")
                await client.publish(topics.orders(peer), submission.payload(), qos=1)
                ack = parse(Ack, (await next_message(client.messages)).payload)
                assert ack.statuses[0].status == "accepted"
        request = GateRequest(
            interval_start=INTERVAL,
            gate_closes_at=INTERVAL - timedelta(seconds=60),
            refused_peers={"C": "peer 'C' is refused, not approved"},
            sell_only_peers={"B": "peer 'B' owes the operator 1.00 INR"},
        )
        await controller.publish(topics.GATE_REQUESTS, request.payload(), qos=1)
        report = parse(ClearingReport, (await next_message(controller.messages)).payload)
    assert [o.order_id for o in report.orders] == [early["A"].order_id]
    reasons = {r.order.order_id: r.reason for r in report.rejected}
    assert reasons == {
        early["C"].order_id: "peer 'C' is refused, not approved",
        early["B"].order_id: "peer 'B' owes the operator 1.00 INR",
    }
    signed = {c.order.order_id: c.reason for c in report.signed}
    assert signed[early["A"].order_id] is None
    assert signed[early["C"].order_id] == reasons[early["C"].order_id]


async def test_orders_rejected_in_the_open_book_survive_an_operator_restart(
    platform: Platform,
) -> None:
    """A forged order and a foreign one, rejected into the open interval's book, then the
    operator restarts before the gate: the clearing report still carries them (with their
    reasons) for the run's ledger, once each."""

    gate_wait_s = 0.2
    good = platform.signed("A", 1)
    forged = platform.signed("A", 2, signer="B")
    foreign = platform.signed("B", 1)
    late_for_next = platform.signed("A", 3)  # an order of another interval: outside the book
    late_for_next = late_for_next.model_copy(
        update={"interval_start": INTERVAL + timedelta(minutes=15)}
    )
    first, task = await platform.start_operator(gate_wait_s=gate_wait_s)
    async with platform.client("A") as client:
        await client.subscribe(topics.acks("A"), qos=1)
        submission = platform.submission("A", good, forged, foreign, late_for_next)
        await client.publish(topics.orders("A"), submission.payload(), qos=1)
        await next_message(client.messages)
    first.stop()
    await task

    second, task = await platform.start_operator(gate_wait_s=gate_wait_s)
    try:
        async with platform.client("controller") as controller:
            await controller.subscribe(topics.CLEARING_REPORTS, qos=1)
            await controller.publish(topics.GATE_REQUESTS, gate_request(), qos=1)
            report = parse(ClearingReport, (await next_message(controller.messages)).payload)
    finally:
        second.stop()
        await task
    assert [o.order_id for o in report.orders] == [good.order_id]
    signed = [(c.order.order_id, c.reason is None) for c in report.signed]
    assert signed == [(good.order_id, True), (forged.order_id, False), (foreign.order_id, False)]
    assert [c.order.order_id for c in report.unbooked] == [late_for_next.order_id]
