"""Every order the operator receives ends on the run's ledger, on a real mosquitto: accepted,
forged, for another peer, after its gate, for another interval than its submission's, and an
unreadable submission, each with its reason; the operator and the ledger agree on used order ids;
the ledger verifies."""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import timedelta
from pathlib import Path

from typer.testing import CliRunner

from peers.interface import DeviceState
from testbed.cli import app
from testbed.ledger.describe import describe_entry
from testbed.ledger.entries import Entry
from testbed.ledger.run_ledger import open_run_ledger
from testbed.ledger.store import read_entries
from testbed.ledger.verify import verify_run
from testbed.market.book import Order, Side
from testbed.platform import topics
from testbed.platform.controller_link import RemoteMarket
from testbed.platform.messages import Ack, Submission, parse
from testbed.platform.operator import OperatorService
from tests.platform.conftest import INTERVAL, Platform, next_message

MALFORMED = b'{"v": 1, "kind": "submission", "peer": "A"}'


def ledger_entries(run_dir: Path) -> list[Entry]:
    with sqlite3.connect(run_dir / "run.sqlite") as db:
        return read_entries(db)


async def test_late_forged_foreign_and_unreadable_orders_are_on_the_ledger_as_rejected(
    platform: Platform, operator: OperatorService, tmp_path: Path
) -> None:
    ledger_config = platform.config.ledger.model_copy(update={"keys_dir": platform.folder.keys_dir})
    config = platform.config.model_copy(update={"ledger": ledger_config})
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    ledger = open_run_ledger(config, run_dir, "operator-ledger", run_dir / "run.sqlite")
    opened = INTERVAL - timedelta(seconds=config.market.interval_s)
    assert ledger.start(opened) == {}
    market = RemoteMarket(
        config, platform.broker.address, platform.folder.password("controller"), plan_wait_s=0.2
    )
    market.attach_ledger(ledger)
    await market.start()
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
