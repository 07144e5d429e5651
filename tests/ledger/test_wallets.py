"""Wallets: settlement moves money to the paisa, and the rule for a buyer that cannot pay."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from testbed.ledger.errors import LedgerRuleError
from testbed.ledger.money import to_paisa
from testbed.ledger.verify import verify_run
from testbed.ledger.wallets import GRID_RETAILER, OPERATOR, Wallets
from testbed.market.book import Trade
from tests.ledger.builder import open_lab, small_day


def settled_bills(run_dir: Path) -> dict[str, float]:
    bills: dict[str, float] = {}
    with sqlite3.connect(run_dir / "run.sqlite") as conn:
        for (payload,) in conn.execute("SELECT payload FROM ledger WHERE kind = 'settlement'"):
            for peer, figures in json.loads(payload)["peers"].items():
                bills[peer] = bills.get(peer, 0.0) + figures["bill"]
    return bills


def test_wallets_equal_the_settlement_totals_to_the_paisa(tmp_path: Path) -> None:
    lab = small_day(tmp_path)
    report = verify_run(lab.run_dir)
    assert report.ok, report.describe()
    assert report.closed
    bills = settled_bills(lab.run_dir)
    assert set(bills) == {"A", "B", "C"}
    for peer, bill in bills.items():
        balance, debt = report.wallets[peer]
        assert balance - debt - 10_000 == to_paisa(-bill), peer
    # money is conserved: the wallets hold what was minted
    assert sum(balance for balance, _ in report.wallets.values()) == 3 * 10_000 + 3 * 1_000_000


def test_a_buyer_that_cannot_pay_pays_what_it_has_and_owes_the_rest(tmp_path: Path) -> None:
    lab = open_lab(tmp_path, peer_opening=1.0)  # 1 INR each
    sell = lab.order("A", "sell", 2.0, 5.0, 1)
    buy = lab.order("C", "buy", 2.0, 7.0, 1)
    lab.place([sell, buy], 1)
    trade = Trade(buy.order_id, sell.order_id, "C", "A", 2.0, 6.0)
    lab.settle(1, (trade,), {"A": 2.0, "B": 0.0, "C": -2.0})
    wallets = lab.operator.state.wallets
    # C owed 12.00 (P2P) + 1.00 (network charge) and held 1.00: it pays that, never going below
    # zero, and the operator advances the rest, which C now owes
    assert (wallets.get("C").balance_paisa, wallets.get("C").debt_paisa) == (0, 1_200)
    assert wallets.get("A").balance_paisa == 100 + 1_200  # the seller is paid in full

    # In debt, C may only sell; its receipts repay the operator first.
    blocked = lab.order("C", "buy", 0.5, 7.0, 2)
    c_sell = lab.order("C", "sell", 1.0, 4.0, 2)
    a_buy = lab.order("A", "buy", 1.0, 6.0, 2)
    accepted, rejected = lab.place([blocked, c_sell, a_buy], 2)
    assert [o.order_id for o in accepted] == [c_sell.order_id, a_buy.order_id]
    assert rejected[0][1] == (
        "peer 'C' owes the operator 12.00 INR: it may only sell until that is repaid"
    )
    trade = Trade(a_buy.order_id, c_sell.order_id, "A", "C", 1.0, 5.0)
    lab.settle(2, (trade,), {"A": -1.0, "B": 0.0, "C": 1.0})
    assert (wallets.get("C").balance_paisa, wallets.get("C").debt_paisa) == (0, 700)
    lab.writer.close()
    report = verify_run(lab.run_dir)
    assert report.ok, report.describe()
    assert report.wallets["C"] == (0, 700)
    bills = settled_bills(lab.run_dir)
    assert report.wallets["C"][0] - report.wallets["C"][1] - 100 == to_paisa(-bills["C"])


def test_no_wallet_goes_below_zero_by_accident() -> None:
    wallets = Wallets()
    wallets.open(OPERATOR, OPERATOR)
    wallets.open("A", "peer")
    wallets.open(GRID_RETAILER, GRID_RETAILER)
    wallets.mint("A", 500)
    with pytest.raises(LedgerRuleError, match="redeem 600 paisa from 'A', which holds 500"):
        wallets.redeem("A", 600)
    with pytest.raises(LedgerRuleError, match="operator cannot advance 100 paisa"):
        wallets.transfer("A", GRID_RETAILER, 600)
    with pytest.raises(LedgerRuleError, match="whole number of paisa"):
        wallets.mint("A", 1.5)  # type: ignore[arg-type]
    with pytest.raises(LedgerRuleError, match="to itself"):
        wallets.transfer("A", "A", 1)
    assert wallets.balances() == {OPERATOR: (0, 0), "A": (500, 0), GRID_RETAILER: (0, 0)}


def test_the_operator_mints_its_credit_line_before_it_advances(tmp_path: Path) -> None:
    lab = open_lab(tmp_path, peer_opening=0.0, institution_opening=0.0)
    sell = lab.order("A", "sell", 1.0, 5.0, 1)
    buy = lab.order("B", "buy", 1.0, 7.0, 1)
    lab.place([sell, buy], 1)
    trade = Trade(buy.order_id, sell.order_id, "B", "A", 1.0, 6.0)
    lab.settle(1, (trade,), {"A": 1.0, "B": -1.0, "C": 0.0})
    wallets = lab.operator.state.wallets
    assert wallets.get("B").debt_paisa == 650
    assert wallets.get("A").balance_paisa == 600
    assert all(balance >= 0 for balance, _ in wallets.balances().values())
    with sqlite3.connect(lab.run_dir / "run.sqlite") as conn:
        mints = conn.execute(
            "SELECT payload FROM ledger WHERE kind = 'mint' AND subject = 'operator'"
        ).fetchall()
    assert any("operator credit line" in payload for (payload,) in mints)
    lab.writer.close()
    assert verify_run(lab.run_dir).ok
