"""The ledger's state and rules, replayed entry by entry.

The operator applies every entry to this state before it appends it, and `verify` replays the whole
ledger through the same `apply`: an entry the rules refuse (a negative balance, an accepted order
without a valid signature, a replayed order id, a trade of an order that was never accepted,
transfers that do not settle the interval as recorded, a closing balance that differs, a rejected
order or message without a reason) is named with the reason.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from testbed.ledger.errors import LedgerRuleError
from testbed.ledger.identity import registration_signature_valid
from testbed.ledger.money import format_money
from testbed.ledger.orders import (
    SignedOrder,
    iso,
    order_from_content,
    order_signature_valid,
    order_window,
)
from testbed.ledger.transfers import SettlementTotals, Transfer, plan_transfers
from testbed.ledger.wallets import INSTITUTIONS, OPERATOR, Wallets
from testbed.market.book import Side

VOLUME_TOLERANCE_KWH = 1e-9


@dataclass(slots=True)
class PeerRecord:
    """A peer as the registry knows it."""

    public_key: str
    kyc_hash: str
    status: str = "registered"  # registered, approved, refused, deregistered
    reason: str = ""
    registered_seq: int = 0


@dataclass(slots=True)
class AcceptedOrder:
    peer: str
    side: str
    interval_start: str
    quantity_kwh: float
    filled_kwh: float = 0.0


@dataclass(slots=True)
class LedgerState:
    """Registry, wallets, orders seen and the settlement in progress."""

    operator_key: str = ""
    run_id: str = ""
    currency: str = "INR"
    interval_s: float = 900.0
    peers: dict[str, PeerRecord] = field(default_factory=dict)
    wallets: Wallets = field(default_factory=Wallets)
    seen_orders: dict[str, int] = field(default_factory=dict)  # order id -> entry seq
    accepted: dict[str, AcceptedOrder] = field(default_factory=dict)
    trades: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # interval -> trades
    settled_intervals: set[str] = field(default_factory=set)
    totals: SettlementTotals = field(default_factory=SettlementTotals)
    expected: deque[tuple[str, Transfer]] = field(default_factory=deque)
    closed: bool = False
    n_entries: int = 0

    # -- orders (the operator's admission uses the same rule) ---------------------------------

    def peer_problem(self, peer: str) -> str | None:
        """Why the ledger refuses every order of `peer` (not registered or not approved)."""
        record = self.peers.get(peer)
        if record is None:
            return f"peer {peer!r} is not registered"
        if record.status != "approved":
            why = f" ({record.reason})" if record.reason else ""
            return f"peer {peer!r} is {record.status}, not approved{why}"
        return None

    def buy_problem(self, peer: str) -> str | None:
        """Why the ledger refuses `peer`'s buy orders (a debt to the operator), or None."""
        debt = self.wallets.get(peer).debt_paisa if peer in self.wallets else 0
        if debt > 0:
            return (
                f"peer {peer!r} owes the operator {format_money(debt, self.currency)}: "
                "it may only sell until that is repaid"
            )
        return None

    def order_problem(self, signed: SignedOrder) -> str | None:
        """Why the ledger refuses `signed`, or None when the peer may place it."""
        order = signed.order
        refused = self.peer_problem(order.peer)
        if refused is not None:
            return refused
        record = self.peers[order.peer]
        if not order_signature_valid(record.public_key, signed):
            return f"signature does not verify with peer {order.peer!r}'s registered key"
        if order.order_id in self.seen_orders:
            return (
                f"order id {order.order_id!r} replayed (first at entry "
                f"{self.seen_orders[order.order_id]})"
            )
        opens, closes = order_window(order.interval_start, self.interval_s)
        if not opens <= signed.signed_at <= closes:
            return (
                f"signed at {iso(signed.signed_at)}, outside the order window {iso(opens)} to "
                f"{iso(closes)} of interval {iso(order.interval_start)}"
            )
        if order.side is Side.BUY:
            return self.buy_problem(order.peer)
        return None

    def leave_problem(self, peer: str) -> str | None:
        """Why `peer` cannot leave now, or None: only a registered peer leaves, and only once
        every interval it has accepted orders for is settled (else its wallet, redeemed, would
        pay or be paid after it left)."""
        status = self._status(peer)
        if status not in ("registered", "approved"):
            return f"peer {peer!r} is {status or 'unknown'}, not registered: it cannot leave"
        open_intervals = sorted(
            order.interval_start
            for order in self.accepted.values()
            if order.peer == peer and order.interval_start not in self.settled_intervals
        )
        if open_intervals:
            return (
                f"peer {peer!r} has accepted orders for interval {open_intervals[0]} not settled "
                "yet: it leaves after that settlement"
            )
        return None

    # -- replay -------------------------------------------------------------------------------

    def apply(self, seq: int, time: str, kind: str, subject: str, data: dict[str, Any]) -> None:
        """Apply one entry, or raise `LedgerRuleError` with what is wrong."""
        if self.closed:
            raise LedgerRuleError("an entry after the ledger was closed")
        if seq == 0 and kind != "genesis":
            raise LedgerRuleError("the first entry is not the genesis entry")
        if self.expected and not (kind == "transfer" or (kind == "mint" and subject == OPERATOR)):
            interval, missing = self.expected[0]
            raise LedgerRuleError(
                f"the settlement of interval {interval} lacks its transfer {_describe(missing)}"
            )
        handler = getattr(self, f"_apply_{kind}", None)
        if handler is None:
            raise LedgerRuleError(f"unknown entry kind {kind!r}")
        handler(seq, time, subject, data)
        self.n_entries += 1

    def _apply_genesis(self, seq: int, time: str, subject: str, data: dict[str, Any]) -> None:
        if seq != 0:
            raise LedgerRuleError("a second genesis entry")
        self.operator_key = str(data["operator_key"])
        self.run_id = str(data.get("run_id", ""))
        self.currency = str(data.get("currency", "INR"))
        self.interval_s = float(data["interval_s"])

    def _apply_wallet_open(self, seq: int, time: str, subject: str, data: dict[str, Any]) -> None:
        kind = data["kind"]
        if kind != "peer" and subject != kind:
            raise LedgerRuleError(f"wallet {subject!r} of kind {kind!r}: institutions are named so")
        if kind == "peer" and self._status(subject) != "approved":
            raise LedgerRuleError(f"a wallet for peer {subject!r}, which is not approved")
        if subject in self.wallets and kind == "peer":
            return  # a peer that joins again keeps its wallet
        self.wallets.open(subject, kind)

    def _apply_register(self, seq: int, time: str, subject: str, data: dict[str, Any]) -> None:
        if subject in INSTITUTIONS:
            raise LedgerRuleError(f"peer id {subject!r} is reserved for an institution's wallet")
        if self._status(subject) in ("registered", "approved"):
            raise LedgerRuleError(f"peer {subject!r} is already registered")
        public_key, digest = str(data["public_key"]), str(data["kyc_hash"])
        if not registration_signature_valid(subject, public_key, digest, data["signature"]):
            raise LedgerRuleError(
                f"registration of {subject!r} is not signed by the key it registers"
            )
        for name, record in self.peers.items():
            if (
                name != subject
                and record.public_key == public_key
                and record.status
                in (
                    "registered",
                    "approved",
                )
            ):
                raise LedgerRuleError(f"public key already registered to peer {name!r}")
        self.peers[subject] = PeerRecord(public_key, digest, registered_seq=seq)

    def _apply_approve(self, seq: int, time: str, subject: str, data: dict[str, Any]) -> None:
        self._decide(subject, "approved", "")

    def _apply_refuse(self, seq: int, time: str, subject: str, data: dict[str, Any]) -> None:
        reason = str(data.get("reason", "")).strip()
        if not reason:
            raise LedgerRuleError(f"refusal of {subject!r} without a reason")
        self._decide(subject, "refused", reason)

    def _decide(self, subject: str, status: str, reason: str) -> None:
        if self._status(subject) != "registered":
            raise LedgerRuleError(
                f"peer {subject!r} is {self._status(subject) or 'unknown'}: only a registered "
                "peer is approved or refused"
            )
        self.peers[subject].status = status
        self.peers[subject].reason = reason

    def _apply_deregister(self, seq: int, time: str, subject: str, data: dict[str, Any]) -> None:
        problem = self.leave_problem(subject)
        if problem is not None:
            raise LedgerRuleError(problem)
        if subject in self.wallets and self.wallets.get(subject).balance_paisa:
            raise LedgerRuleError(f"peer {subject!r} leaves with money in its wallet (redeem it)")
        self.peers[subject].status = "deregistered"
        self.peers[subject].reason = str(data.get("reason", ""))

    def _apply_mint(self, seq: int, time: str, subject: str, data: dict[str, Any]) -> None:
        if subject not in INSTITUTIONS and self._status(subject) != "approved":
            raise LedgerRuleError(f"minting for peer {subject!r}, which is not approved")
        self.wallets.mint(subject, data["amount_paisa"])

    def _apply_redeem(self, seq: int, time: str, subject: str, data: dict[str, Any]) -> None:
        self.wallets.redeem(subject, data["amount_paisa"])

    def _apply_order(self, seq: int, time: str, subject: str, data: dict[str, Any]) -> None:
        order, signed_at = order_from_content(data)
        if order.peer != subject:
            raise LedgerRuleError(f"order of peer {order.peer!r} filed under {subject!r}")
        signed = SignedOrder(order, signed_at, str(data["signature"]))
        problem = self.order_problem(signed)
        status = data["status"]
        if status == "accepted":
            if problem is not None:
                raise LedgerRuleError(f"order {order.order_id!r} accepted, but {problem}")
            self.accepted[order.order_id] = AcceptedOrder(
                order.peer, str(order.side), iso(order.interval_start), order.quantity_kwh
            )
        elif status == "rejected":
            if not str(data.get("reason", "")).strip():
                raise LedgerRuleError(f"order {order.order_id!r} rejected without a reason")
        else:
            raise LedgerRuleError(f"order status {status!r}: allowed are accepted, rejected")
        record = self.peers.get(order.peer)
        if (
            record is not None
            and order.order_id not in self.seen_orders
            and order_signature_valid(record.public_key, signed)
        ):
            self.seen_orders[order.order_id] = seq

    def _apply_rejected_message(
        self, seq: int, time: str, subject: str, data: dict[str, Any]
    ) -> None:
        """A peer's message the operator could not read as a submission: recorded, no effect."""
        if not str(data.get("reason", "")).strip():
            raise LedgerRuleError(f"a rejected message of {subject!r} without a reason")
        digest = str(data["payload_sha256"])
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise LedgerRuleError(f"a rejected message's payload_sha256 {digest[:70]!r}")

    def _apply_clearing(self, seq: int, time: str, subject: str, data: dict[str, Any]) -> None:
        interval = data["interval_start"]
        if interval in self.trades:
            raise LedgerRuleError(f"interval {interval} was already cleared")
        for trade in data["trades"]:
            for order_id, peer, side in (
                (trade["buy_order_id"], trade["buyer"], "buy"),
                (trade["sell_order_id"], trade["seller"], "sell"),
            ):
                accepted = self.accepted.get(order_id)
                if accepted is None:
                    raise LedgerRuleError(f"a trade of order {order_id!r}, never accepted")
                if (accepted.peer, accepted.side, accepted.interval_start) != (
                    peer,
                    side,
                    interval,
                ):
                    raise LedgerRuleError(
                        f"a trade of order {order_id!r} as {peer!r}'s {side} in {interval}; the "
                        f"order is {accepted.peer!r}'s {accepted.side} in {accepted.interval_start}"
                    )
                accepted.filled_kwh += trade["quantity_kwh"]
                if accepted.filled_kwh > accepted.quantity_kwh + VOLUME_TOLERANCE_KWH:
                    raise LedgerRuleError(
                        f"order {order_id!r} filled {accepted.filled_kwh} kWh of "
                        f"{accepted.quantity_kwh}"
                    )
        self.trades[interval] = list(data["trades"])

    def _apply_delivery(self, seq: int, time: str, subject: str, data: dict[str, Any]) -> None:
        if subject not in self.peers:
            raise LedgerRuleError(f"a delivery of peer {subject!r}, never registered")
        interval = data["interval_start"]
        trades = self.trades.get(interval, [])
        contracted = sum(t["quantity_kwh"] for t in trades if t["seller"] == subject) - sum(
            t["quantity_kwh"] for t in trades if t["buyer"] == subject
        )
        if abs(contracted - data["contracted_kwh"]) > 1e-6:
            raise LedgerRuleError(
                f"delivery of {subject!r} in {interval}: contracted {data['contracted_kwh']} kWh, "
                f"the clearing says {contracted}"
            )

    def _apply_settlement(self, seq: int, time: str, subject: str, data: dict[str, Any]) -> None:
        interval = data["interval_start"]
        if interval not in self.trades:
            raise LedgerRuleError(f"settlement of interval {interval}, which was never cleared")
        for peer in data["peers"]:
            if peer not in self.wallets:
                raise LedgerRuleError(f"settlement of peer {peer!r}, which has no wallet")
        plan = plan_transfers(self.trades.pop(interval), data["peers"], self.totals)
        self.settled_intervals.add(interval)
        self.expected.extend((interval, transfer) for transfer in plan)

    def _apply_transfer(self, seq: int, time: str, subject: str, data: dict[str, Any]) -> None:
        payer, payee, amount = data["from"], data["to"], data["amount_paisa"]
        if subject != payer:
            raise LedgerRuleError(f"transfer from {payer!r} filed under {subject!r}")
        memo = data.get("memo", "")
        if data.get("interval_start") is not None:
            if not self.expected:
                raise LedgerRuleError("a settlement transfer that no settlement calls for")
            interval, wanted = self.expected.popleft()
            got = Transfer(payer, payee, amount, memo)
            if (interval, wanted) != (data["interval_start"], got):
                raise LedgerRuleError(
                    f"transfer {_describe(got)}; the settlement of {interval} calls for "
                    f"{_describe(wanted)}"
                )
        split = self.wallets.split(payer, payee, amount)
        recorded = (data["paid_paisa"], data["advanced_paisa"], data["repaid_paisa"])
        if recorded != (split.paid_paisa, split.advanced_paisa, split.repaid_paisa):
            raise LedgerRuleError(
                f"transfer paid/advanced/repaid {recorded}; the wallets give "
                f"{(split.paid_paisa, split.advanced_paisa, split.repaid_paisa)}"
            )
        self.wallets.transfer(payer, payee, amount)

    def _apply_close(self, seq: int, time: str, subject: str, data: dict[str, Any]) -> None:
        recorded = {name: tuple(pair) for name, pair in data["balances"].items()}
        if recorded != self.wallets.balances():
            raise LedgerRuleError("the closing balances differ from the replayed wallets")
        self.closed = True

    def _status(self, peer: str) -> str:
        record = self.peers.get(peer)
        return record.status if record else ""


def _describe(transfer: Transfer) -> str:
    return f"{transfer.payer} -> {transfer.payee} {transfer.amount_paisa} paisa ({transfer.memo})"


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)
