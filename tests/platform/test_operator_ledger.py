"""Every order the operator receives ends on the run's ledger, on a real mosquitto: accepted,
forged, for another peer, after its gate, for another interval than its submission's, and an
unreadable submission, each with its reason; the operator and the ledger agree on used order ids;
the ledger verifies."""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import aiomqtt
from typer.testing import CliRunner

from peers.interface import DeviceState
from testbed.cli import app
from testbed.config import TestbedConfig
from testbed.ledger.describe import describe_entry
from testbed.ledger.entries import Entry
from testbed.ledger.run_ledger import RunLedger, open_run_ledger
from testbed.ledger.store import read_entries
from testbed.ledger.verify import verify_run
from testbed.market.book import Order, Side
from testbed.platform import topics
from testbed.platform.controller_link import RemoteMarket
from testbed.platform.messages import Ack, SignedOrder, Submission, parse
from testbed.platform.operator import OperatorService
from tests.platform.conftest import INTERVAL, Platform, next_message

MALFORMED = b'{"v": 1, "kind": "submission", "peer": "A"}'


def ledger_entries(run_dir: Path) -> list[Entry]:
    with sqlite3.connect(run_dir / "run.sqlite") as db:
        return read_entries(db)


async def controller_with_ledger(
    platform: Platform, tmp_path: Path, run_id: str
) -> tuple[TestbedConfig, RunLedger, RemoteMarket]:
    """The controller's side: a run ledger opened an interval before INTERVAL (every peer
    registered) and the controller's market link to the operator, started."""
    ledger_config = platform.config.ledger.model_copy(update={"keys_dir": platform.folder.keys_dir})
    config = platform.config.model_copy(update={"ledger": ledger_config})
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    ledger = open_run_ledger(config, run_dir, run_id, run_dir / "run.sqlite")
    assert ledger.start(INTERVAL - timedelta(seconds=config.market.interval_s)) == {}
    market = RemoteMarket(
        config, platform.broker.address, platform.folder.password("controller"), plan_wait_s=0.2
    )
    market.attach_ledger(ledger)
    await market.start()
    return config, ledger, market


async def test_late_forged_foreign_and_unreadable_orders_are_on_the_ledger_as_rejected(
    platform: Platform, operator: OperatorService, tmp_path: Path
) -> None:
    config, ledger, market = await controller_with_ledger(platform, tmp_path, "operator-ledger")
    run_dir = tmp_path / "run"
    good = platform.signed("A", 1)
    forged = platform.signed("A", 2, signer="B")  # A's order signed with B's key
    foreign = platform.signed("B", 1)  # B's genuine order, sent on A's topic
    late = platform.signed("A", 3)
    interval_end = INTERVAL + timedelta(seconds=config.market.interval_s)
    # A's order for the next interval, first sent in this interval's submission (rejected, and on
    # the ledger with that reason: its id is used), then again in its own interval's
    ahead = platform.folder.peer_key("A").sign(
        Order(
            order_id=f"{interval_end:%Y%m%dT%H%M}-A-1",
            peer="A",
            side=Side.SELL,
            quantity_kwh=0.5,
            price=5.0,
            interval_start=interval_end,
        ),
        INTERVAL,
    )
    try:
        async with platform.client("A") as peer:
            await peer.subscribe(topics.acks("A"), qos=1)
            submission = platform.submission("A", good, forged, foreign, ahead)
            await peer.publish(topics.orders("A"), submission.payload(), qos=1)
            first = parse(Ack, (await next_message(peer.messages)).payload)
            await peer.publish(topics.orders("A"), MALFORMED, qos=1)
            await next_message(peer.messages)

            states = {p: DeviceState(time=INTERVAL - timedelta(seconds=60)) for p in config.peers}
            market_result = await market.trade(INTERVAL, states)
            ledger.operator.record_clearing(INTERVAL, market_result.clearing)

            after_gate = platform.submission("A", late, message_id="A-late")
            await peer.publish(topics.orders("A"), after_gate.payload(), qos=1)
            too_late = parse(Ack, (await next_message(peer.messages)).payload)
            settlements = await market.settle(
                INTERVAL, market_result.clearing.trades, dict.fromkeys(config.peers, 0.0), {}
            )
            ledger.operator.record_settlement(interval_end, INTERVAL, settlements)

            again = Submission(
                message_id="A-ahead",
                peer="A",
                interval_start=interval_end,
                orders=[ahead],
                complete=True,
            )
            await peer.publish(topics.orders("A"), again.payload(), qos=1)
            reused = parse(Ack, (await next_message(peer.messages)).payload)
            states = {p: DeviceState(time=interval_end - timedelta(seconds=60)) for p in states}
            next_market = await market.trade(interval_end, states)  # the ledger agrees
            ledger.operator.record_clearing(interval_end, next_market.clearing)
    finally:
        await market.close()
        ledger.close(interval_end, "finished")

    assert too_late.statuses[0].status == "rejected"
    assert {s.order_id: s.status for s in first.statuses}[ahead.order_id] == "rejected"
    assert reused.statuses[0].status == "rejected"
    assert "already used" in (reused.statuses[0].reason or "")
    assert next_market.book.orders == ()
    assert [o.order_id for o in market_result.book.orders] == [good.order_id]

    entries = ledger_entries(run_dir)
    ahead_entries = [
        e.data() for e in entries if e.kind == "order" and e.data()["order_id"] == ahead.order_id
    ]
    assert [d["status"] for d in ahead_entries] == ["rejected", "rejected"]
    assert "is not the submission's" in ahead_entries[0]["reason"]
    assert "replayed" in ahead_entries[1]["reason"]
    orders = {e.data()["order_id"]: e for e in entries if e.kind == "order"}
    assert set(orders) == {
        good.order_id,
        forged.order_id,
        foreign.order_id,
        late.order_id,
        ahead.order_id,
    }
    status = {order_id: (e.subject, e.data()["status"]) for order_id, e in orders.items()}
    assert status == {
        good.order_id: ("A", "accepted"),
        forged.order_id: ("A", "rejected"),
        foreign.order_id: ("B", "rejected"),
        late.order_id: ("A", "rejected"),
        ahead.order_id: ("A", "rejected"),
    }
    assert "signature does not verify" in orders[forged.order_id].data()["reason"]
    assert "places only its own orders" in orders[foreign.order_id].data()["reason"]
    assert "came too late" in orders[late.order_id].data()["reason"]
    # the late order is recorded with the settlement that followed it, before that settlement
    settlement_seq = next(e.seq for e in entries if e.kind == "settlement")
    clearing_seq = next(e.seq for e in entries if e.kind == "clearing")
    assert clearing_seq < orders[late.order_id].seq < settlement_seq

    [unreadable] = [e for e in entries if e.kind == "rejected_message"]
    assert unreadable.subject == "A"
    assert unreadable.data()["topic"] == topics.orders("A")
    assert unreadable.data()["payload_sha256"] == hashlib.sha256(MALFORMED).hexdigest()
    assert "message_id" in unreadable.data()["reason"]
    assert "unreadable message" in describe_entry(unreadable)

    report = verify_run(run_dir)
    assert report.ok, report.describe()
    operator_key = platform.folder.keys_dir / "operator" / "operator.pub"
    runner = CliRunner()
    verified = runner.invoke(
        app, ["ledger", "verify", str(run_dir), "--operator-key", str(operator_key)]
    )
    assert verified.exit_code == 0, verified.output
    shown = runner.invoke(app, ["ledger", "show", str(run_dir), "--kind", "rejected_message"])
    assert shown.exit_code == 0, shown.output
    assert "1 of" in shown.output

    # a repeated report changes nothing: the operator's journal has carried each one once
    assert operator.journal.pending_unbooked() == []


def signed_as(
    platform: Platform, peer: str, order_id: str, interval: datetime, signed_at: datetime
) -> SignedOrder:
    """`peer`'s own order (signed with its own key) under any order id."""
    order = Order(
        order_id=order_id,
        peer=peer,
        side=Side.SELL,
        quantity_kwh=0.5,
        price=5.0,
        interval_start=interval,
    )
    return platform.folder.peer_key(peer).sign(order, signed_at)


async def test_a_reused_order_id_is_rejected_by_the_operator_and_the_run_goes_on(
    platform: Platform, operator: OperatorService, tmp_path: Path
) -> None:
    """Order ids are used once on the ledger, whoever used them and in whichever interval: the
    operator refuses a reused one (A's id of an earlier interval, B taking A's next id first, a
    late order of B carrying an id A has in the open book), so it never books an order the ledger
    refuses as replayed, which would stop the run."""
    config, ledger, market = await controller_with_ledger(platform, tmp_path, "reused-ids")
    run_dir = tmp_path / "run"
    interval_s = config.market.interval_s
    following = INTERVAL + timedelta(seconds=interval_s)
    first = platform.signed("A", 1)
    again = signed_as(platform, "A", first.order_id, following, INTERVAL)
    squatted = f"{following:%Y%m%dT%H%M}-A-1"
    by_b = signed_as(platform, "B", squatted, following, INTERVAL)
    by_a = signed_as(platform, "A", squatted, following, INTERVAL)
    booked = signed_as(platform, "A", f"{following:%Y%m%dT%H%M}-A-2", following, INTERVAL)
    late_b = signed_as(platform, "B", booked.order_id, INTERVAL, INTERVAL - timedelta(seconds=60))
    acks: dict[str, Ack] = {}
    try:
        async with platform.client("A") as peer_a, platform.client("B") as peer_b:
            await peer_a.subscribe(topics.acks("A"), qos=1)
            await peer_b.subscribe(topics.acks("B"), qos=1)

            async def submit(
                client: aiomqtt.Client, peer: str, tag: str, *orders: SignedOrder
            ) -> None:
                interval = orders[0].interval_start
                submission = Submission(
                    message_id=f"{peer}-{tag}",
                    peer=peer,
                    interval_start=interval,
                    orders=list(orders),
                    complete=True,
                )
                await client.publish(topics.orders(peer), submission.payload(), qos=1)
                acks[tag] = parse(Ack, (await next_message(client.messages)).payload)

            await submit(peer_a, "A", "first", first)
            states = {p: DeviceState(time=INTERVAL - timedelta(seconds=60)) for p in config.peers}
            result = await market.trade(INTERVAL, states)
            ledger.operator.record_clearing(INTERVAL, result.clearing)
            settlements = await market.settle(
                INTERVAL, result.clearing.trades, dict.fromkeys(config.peers, 0.0), {}
            )
            ledger.operator.record_settlement(following, INTERVAL, settlements)

            await submit(peer_a, "A", "again", again)
            await submit(peer_b, "B", "squat", by_b)
            await submit(peer_a, "A", "squatted", by_a, booked)
            await submit(peer_b, "B", "late", late_b)
            states = {p: DeviceState(time=following - timedelta(seconds=60)) for p in states}
            following_result = await market.trade(following, states)
            ledger.operator.record_clearing(following, following_result.clearing)
    finally:
        await market.close()
        ledger.close(following, "finished")

    def status(tag: str, order_id: str) -> tuple[str, str]:
        [found] = [s for s in acks[tag].statuses if s.order_id == order_id]
        return found.status, found.reason or ""

    assert status("first", first.order_id)[0] == "accepted"
    assert status("again", first.order_id)[0] == "rejected"
    assert "already used" in status("again", first.order_id)[1]
    assert status("squat", squatted)[0] == "accepted"
    assert status("squatted", squatted)[0] == "rejected"
    assert status("squatted", booked.order_id)[0] == "accepted"
    assert status("late", booked.order_id)[0] == "rejected"
    assert sorted((o.peer, o.order_id) for o in following_result.book.orders) == [
        ("A", booked.order_id),
        ("B", squatted),
    ]
    orders = [
        (e.subject, e.data()["order_id"], e.data()["status"])
        for e in ledger_entries(run_dir)
        if e.kind == "order"
    ]
    assert sorted(o for o in orders if o[2] == "accepted") == sorted(
        [
            ("A", first.order_id, "accepted"),
            ("A", booked.order_id, "accepted"),
            ("B", squatted, "accepted"),
        ]
    )
    report = verify_run(run_dir)
    assert report.ok, report.describe()


async def test_an_order_for_an_interval_far_ahead_reaches_the_ledger_as_rejected(
    platform: Platform, operator: OperatorService, tmp_path: Path
) -> None:
    """A submission for an interval no gate will reach soon (here a day ahead) is not kept in a
    book of its own that no report would carry: it is rejected at once and recorded with the
    next report, like a late one."""
    config, ledger, market = await controller_with_ledger(platform, tmp_path, "far-ahead")
    run_dir = tmp_path / "run"
    interval_s = config.market.interval_s
    following = INTERVAL + timedelta(seconds=interval_s)
    far = INTERVAL + timedelta(days=1)
    ahead = signed_as(platform, "A", "far-ahead-1", far, far - timedelta(seconds=60))
    try:
        async with platform.client("A") as peer_a:
            await peer_a.subscribe(topics.acks("A"), qos=1)
            states = {p: DeviceState(time=INTERVAL - timedelta(seconds=60)) for p in config.peers}
            result = await market.trade(INTERVAL, states)
            ledger.operator.record_clearing(INTERVAL, result.clearing)
            submission = Submission(
                message_id="A-far", peer="A", interval_start=far, orders=[ahead], complete=True
            )
            await peer_a.publish(topics.orders("A"), submission.payload(), qos=1)
            ack = parse(Ack, (await next_message(peer_a.messages)).payload)
            settlements = await market.settle(
                INTERVAL, result.clearing.trades, dict.fromkeys(config.peers, 0.0), {}
            )
            ledger.operator.record_settlement(following, INTERVAL, settlements)
    finally:
        await market.close()
        ledger.close(following, "finished")
    assert ack.statuses[0].status == "rejected"
    assert "not open for orders" in (ack.statuses[0].reason or "")
    [entry] = [
        e.data()
        for e in ledger_entries(run_dir)
        if e.kind == "order" and e.data()["order_id"] == ahead.order_id
    ]
    assert entry["status"] == "rejected" and "not open for orders" in entry["reason"]
    assert verify_run(run_dir).ok
