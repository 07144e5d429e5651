"""Registration, approval and refusal, leaving, and which orders the operator admits."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from testbed.ledger.errors import LedgerRuleError
from testbed.ledger.identity import RegistrationRequest
from testbed.ledger.kyc import kyc_hash
from testbed.ledger.verify import verify_run
from tests.ledger.builder import T0, interval_start, open_lab


def ledger_rows(run_dir: Path, kind: str) -> list[tuple[str, str]]:
    with sqlite3.connect(run_dir / "run.sqlite") as conn:
        return conn.execute(
            "SELECT subject, payload FROM ledger WHERE kind = ? ORDER BY seq", (kind,)
        ).fetchall()


def test_peers_register_with_a_self_signed_request_and_get_a_wallet(tmp_path: Path) -> None:
    lab = open_lab(tmp_path, peer_opening=250.0)
    state = lab.operator.state
    assert {p: r.status for p, r in state.peers.items()} == dict.fromkeys("ABC", "approved")
    for peer, identity in lab.peers.items():
        assert state.peers[peer].public_key == identity.public_key
        assert state.wallets.get(peer).balance_paisa == 25_000
    # The ledger holds the salted KYC hash and the public key, never the record itself.
    for subject, payload in ledger_rows(lab.run_dir, "register"):
        assert lab.peers[subject].kyc.name not in payload
        assert lab.peers[subject].kyc.meter_id not in payload
        identity = lab.peers[subject]
        assert kyc_hash(identity.kyc, identity.salt) in payload
    # The operator keeps the record and salt off-ledger; the private key stays in the peer folder.
    assert (tmp_path / "keys" / "operator" / "kyc" / "A" / "kyc.json").is_file()
    key_file = tmp_path / "keys" / "peers" / "A" / "peer.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert "PRIVATE KEY" in key_file.read_text()


def test_a_refused_peer_is_told_why_and_cannot_trade(tmp_path: Path) -> None:
    lab = open_lab(tmp_path)
    request = lab.identity("D", meter_id="").registration_request()
    reason = lab.operator.register(T0, request)
    assert reason is not None and "no meter id" in reason
    assert ("D", '{"reason":"' + reason + '"}') in ledger_rows(lab.run_dir, "refuse")
    assert "D" not in lab.operator.state.wallets

    accepted, rejected = lab.place([lab.order("D", "buy", 1.0, 7.0, 1)], 1)
    assert accepted == []
    assert rejected[0][1] == f"peer 'D' is refused, not approved ({reason})"
    # A second meter id already in use is refused as well.
    twin = lab.identity("E", meter_id="A/meter").registration_request()
    assert "already registered to another peer" in (lab.operator.register(T0, twin) or "")


def test_a_registration_signed_with_another_key_is_refused_by_the_rules(tmp_path: Path) -> None:
    lab = open_lab(tmp_path)
    d = lab.identity("D").registration_request()
    forged = RegistrationRequest("D", lab.peers["A"].public_key, d.kyc, d.salt, d.signature)
    with pytest.raises(LedgerRuleError, match="not signed by the key it registers"):
        lab.operator.register(T0, forged)


def test_an_unregistered_peer_bad_signature_replay_and_late_order_are_rejected_and_recorded(
    tmp_path: Path,
) -> None:
    lab = open_lab(tmp_path, peers=("A", "B"))
    lab.identity("C")  # has keys, never registered
    good = lab.order("A", "sell", 1.0, 5.0, 1)
    at = interval_start(1) - timedelta(seconds=60)
    signed_good = lab.peers["A"].sign_order(good, at)
    tampered = replace(signed_good, order=replace(good, order_id="o-x", quantity_kwh=9.0))
    by_b_key = lab.peers["B"].sign_order(replace(good, order_id="o-b", peer="B"), at)
    stolen = replace(by_b_key, order=replace(by_b_key.order, peer="A"))  # B's signature, A's name
    unregistered = lab.peers["C"].sign_order(lab.order("C", "buy", 1.0, 7.0, 1), at)
    late = lab.peers["A"].sign_order(
        lab.order("A", "sell", 1.0, 5.0, 1), interval_start(1) + timedelta(seconds=1)
    )
    early = lab.peers["A"].sign_order(lab.order("A", "sell", 1.0, 5.0, 1), interval_start(-1))

    accepted, rejected = lab.operator.admit(
        at, [(s, None) for s in (signed_good, tampered, stolen, unregistered, late, early)]
    )
    assert [o.order_id for o in accepted] == [good.order_id]
    reasons = {order.order_id: reason for order, reason in rejected}
    assert reasons["o-x"] == "signature does not verify with peer 'A''s registered key"
    assert reasons["o-b"] == "signature does not verify with peer 'A''s registered key"
    assert reasons[unregistered.order.order_id] == "peer 'C' is not registered"
    assert "outside the order window" in reasons[late.order.order_id]
    assert "outside the order window" in reasons[early.order.order_id]

    _, replayed = lab.operator.admit(at, [(signed_good, None)])
    assert replayed[0][1].startswith(f"order id {good.order_id!r} replayed (first at entry ")

    orders = ledger_rows(lab.run_dir, "order")
    assert len(orders) == 7
    assert sum('"status":"accepted"' in payload for _, payload in orders) == 1
    assert sum('"status":"rejected"' in payload for _, payload in orders) == 6
    lab.writer.close()
    assert verify_run(lab.run_dir).ok


def test_a_peer_leaves_its_balance_is_redeemed_and_its_orders_stop(tmp_path: Path) -> None:
    lab = open_lab(tmp_path, peer_opening=80.0)
    assert lab.operator.deregister(T0, "B", "moved out") == 8_000
    state = lab.operator.state
    assert state.peers["B"].status == "deregistered"
    assert state.wallets.get("B").balance_paisa == 0
    _, rejected = lab.place([lab.order("B", "sell", 1.0, 5.0, 1)], 1)
    assert rejected[0][1] == "peer 'B' is deregistered, not approved (moved out)"
    # it may register again (same key) and gets a new opening balance
    assert lab.operator.register(T0, lab.peers["B"].registration_request()) is None
    assert state.wallets.get("B").balance_paisa == 8_000
    lab.writer.close()
    assert verify_run(lab.run_dir).ok


def test_a_refused_peer_is_metered_but_settled_off_the_ledger(tmp_path: Path) -> None:
    """A refused peer still draws from the grid (it is in the plant): its interval bill is the
    run store's, and the ledger settles the peers with a wallet without stopping."""
    lab = open_lab(tmp_path)
    assert lab.operator.register(T0, lab.identity("D", bus=" ").registration_request())
    lab.settle(1, (), {"A": 0.4, "B": -0.2, "C": 0.0, "D": -1.5})
    lab.operator.close(interval_start(2), "finished")
    lab.writer.close()
    assert [subject for subject, _ in ledger_rows(lab.run_dir, "delivery")] == ["A", "B", "C"]
    [(_, settlement)] = ledger_rows(lab.run_dir, "settlement")
    assert '"D"' not in settlement
    report = verify_run(lab.run_dir)
    assert report.ok, report.describe()
    assert "D" not in report.wallets


def test_a_peer_leaves_only_after_its_orders_are_settled_and_is_settled_no_more(
    tmp_path: Path,
) -> None:
    """C bought for interval 1: it cannot leave before that interval is settled (its wallet
    would be redeemed, then pay or be paid after it left); once settled it leaves, and its later
    metering is no longer settled on the ledger (no debt piles up in a wallet it left)."""
    from testbed.market.book import Trade

    lab = open_lab(tmp_path, peer_opening=5.0)
    sell, buy = lab.order("A", "sell", 1.0, 4.0, 1), lab.order("C", "buy", 1.0, 7.0, 1)
    lab.place([sell, buy], 1)
    with pytest.raises(LedgerRuleError, match=r"peer 'C' has accepted orders .* not settled"):
        lab.operator.deregister(interval_start(1), "C", "moving")
    assert not ledger_rows(lab.run_dir, "redeem")
    trade = Trade(buy.order_id, sell.order_id, "C", "A", 1.0, 6.0)
    lab.settle(1, (trade,), {"A": 1.0, "B": 0.0, "C": -1.0})
    lab.operator.deregister(interval_start(2), "C", "moving")
    lab.settle(2, (), {"A": 0.5, "B": -0.5, "C": -2.0})
    lab.operator.close(interval_start(3), "finished")
    lab.writer.close()
    deliveries = [subject for subject, _ in ledger_rows(lab.run_dir, "delivery")]
    assert deliveries == ["A", "B", "C", "A", "B"]
    report = verify_run(lab.run_dir)
    assert report.ok, report.describe()
    assert report.wallets["C"] == (0, lab.operator.state.wallets.get("C").debt_paisa)
    assert lab.operator.state.wallets.get("C").balance_paisa == 0
