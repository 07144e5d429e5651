"""The market operator's side of the ledger: registration, admission of orders, and recording
clearings, deliveries, settlements and the wallet transfers that settle them.

Every call appends its entries in one batch. Peers never call this directly: they send a
`RegistrationRequest` and `SignedOrder`s (`testbed.ledger.identity`), which is all a peer's agent
in its own process needs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from testbed.documents import Clearing, Settlement
from testbed.ledger.entries import Entry
from testbed.ledger.errors import LedgerRuleError
from testbed.ledger.identity import RegistrationRequest
from testbed.ledger.kyc import KycRecord, review, store_record
from testbed.ledger.money import to_paisa
from testbed.ledger.orders import SignedOrder, iso, order_content, order_signature_valid
from testbed.ledger.state import LedgerState
from testbed.ledger.store import LedgerWriter
from testbed.ledger.wallets import INSTITUTIONS, OPERATOR
from testbed.market.book import Order

FinalisedHook = Callable[[Entry], None]
SETTLEMENT_FIELDS = (
    "contracted_kwh",
    "metered_kwh",
    "p2p_bought_kwh",
    "p2p_sold_kwh",
    "p2p_paid",
    "p2p_received",
    "grid_import_kwh",
    "grid_export_kwh",
    "grid_cost",
    "grid_revenue",
    "penalty",
    "network_charge",
    "balancing_paid",
    "balancing_received",
    "bill",
)


@dataclass(frozen=True, slots=True)
class Opening:
    """What the operator mints when a wallet opens (currency)."""

    peer: float = 1000.0
    institution: float = 1_000_000.0


class LedgerOperator:
    """The operator's ledger service for one run (see the module docstring)."""

    def __init__(
        self,
        writer: LedgerWriter,
        *,
        run_id: str,
        currency: str,
        interval_s: float,
        prices: Mapping[str, Any],
        opening: Opening = Opening(),
        kyc_custody: Path | None = None,
        on_finalised: FinalisedHook | None = None,
    ) -> None:
        self.writer = writer
        self.run_id = run_id
        self.currency = currency
        self.interval_s = interval_s
        self.prices = dict(prices)
        self.opening = opening
        self.kyc_custody = kyc_custody
        self.on_finalised = on_finalised
        self._kyc_records: dict[str, KycRecord] = {}

    @property
    def state(self) -> LedgerState:
        return self.writer.state

    # -- start and registry -------------------------------------------------------------------

    def start(self, time: datetime, requests: Iterable[RegistrationRequest]) -> dict[str, str]:
        """Genesis, the institutions' wallets, then every peer's registration.

        Returns the refusal reason of every peer that was refused."""
        refused: dict[str, str] = {}
        with self.writer.batch() as w:
            w.append(
                time,
                "genesis",
                "",
                {
                    "run_id": self.run_id,
                    "operator_key": w.operator_public_key,
                    "currency": self.currency,
                    "interval_s": self.interval_s,
                    "prices": self.prices,
                    "opening_peer_paisa": to_paisa(self.opening.peer),
                    "opening_institution_paisa": to_paisa(self.opening.institution),
                },
            )
            for name in INSTITUTIONS:
                w.append(time, "wallet_open", name, {"kind": name})
                self._mint(time, name, to_paisa(self.opening.institution), "opening float")
            for request in requests:
                reason = self.register(time, request)
                if reason is not None:
                    refused[request.peer] = reason
        return refused

    def register(self, time: datetime, request: RegistrationRequest) -> str | None:
        """Record a peer's registration and the operator's decision; an approved peer gets its
        wallet and opening balance. Returns the refusal reason, or None when approved."""
        with self.writer.batch() as w:
            w.append(
                time,
                "register",
                request.peer,
                {
                    "public_key": request.public_key,
                    "kyc_hash": request.kyc_hash,
                    "signature": request.signature,
                },
            )
            meters = {
                record.meter_id
                for name, record in self._kyc_records.items()
                if name != request.peer and self._status(name) == "approved"
            }
            reason = review(request.kyc, meters)
            if reason is not None:
                w.append(time, "refuse", request.peer, {"reason": reason})
                return reason
            self._keep_kyc(request)
            w.append(time, "approve", request.peer, {})
            w.append(time, "wallet_open", request.peer, {"kind": "peer"})
            self._mint(time, request.peer, to_paisa(self.opening.peer), "joined")
        return None

    def deregister(self, time: datetime, peer: str, reason: str = "left") -> int:
        """A peer leaves: its wallet's balance (after repaying any debt) is redeemed; returns the
        amount redeemed in paisa. Refused (`LedgerRuleError`, nothing recorded) while it has
        accepted orders of an interval not yet settled."""
        problem = self.state.leave_problem(peer)
        if problem is not None:
            raise LedgerRuleError(problem)
        with self.writer.batch() as w:
            wallet = self.state.wallets.get(peer)
            if wallet.debt_paisa and wallet.balance_paisa:
                repay = min(wallet.debt_paisa, wallet.balance_paisa)
                self._transfer(time, peer, OPERATOR, repay, "debt repayment", None)
            balance = self.state.wallets.get(peer).balance_paisa
            if balance:
                w.append(time, "redeem", peer, {"amount_paisa": balance, "reason": reason})
            w.append(time, "deregister", peer, {"reason": reason})
        return balance

    # -- orders -------------------------------------------------------------------------------

    def admit(
        self,
        time: datetime,
        candidates: Sequence[tuple[SignedOrder, str | None]],
    ) -> tuple[list[Order], list[tuple[Order, str]]]:
        """Record every signed order, accepted or rejected with its reason.

        Each candidate comes with the market's own objection (None when the book takes it); the
        ledger's rules (`LedgerState.order_problem`) come first. Returns (accepted, rejected)."""
        accepted: list[Order] = []
        rejected: list[tuple[Order, str]] = []
        with self.writer.batch() as w:
            for signed, market_problem in candidates:
                problem = self.state.order_problem(signed) or market_problem
                data = {
                    **order_content(signed.order, signed.signed_at),
                    "signature": signed.signature,
                    "status": "rejected" if problem else "accepted",
                    "reason": problem or "",
                }
                w.append(time, "order", signed.order.peer, data)
                if problem:
                    rejected.append((signed.order, problem))
                else:
                    accepted.append(signed.order)
        return accepted, rejected

    def record_rejected_message(
        self,
        time: datetime,
        peer: str,
        *,
        topic: str,
        received_at: datetime,
        reason: str,
        payload_sha256: str,
        payload_bytes: int,
    ) -> Entry:
        """A message a peer sent that the operator could not read as a submission (a bad
        schema): who sent it (its topic, which only that peer may write), when, why it was
        refused, and the SHA-256 and size of its bytes (the operator's journal keeps the bytes)."""
        with self.writer.batch() as w:
            entry = w.append(
                time,
                "rejected_message",
                peer,
                {
                    "topic": topic,
                    "received_at": iso(received_at),
                    "reason": reason,
                    "payload_sha256": payload_sha256,
                    "payload_bytes": payload_bytes,
                },
            )
        return entry

    def order_signature_ok(self, signed: SignedOrder) -> bool:
        record = self.state.peers.get(signed.order.peer)
        return record is not None and order_signature_valid(record.public_key, signed)

    # -- clearing, delivery, settlement --------------------------------------------------------

    def record_clearing(self, time: datetime, clearing: Clearing) -> Entry:
        with self.writer.batch() as w:
            entry = w.append(
                time,
                "clearing",
                "",
                {
                    "interval_start": iso(clearing.interval_start),
                    "mechanism": clearing.mechanism,
                    "clearing_price": clearing.clearing_price,
                    "volume_kwh": clearing.volume_kwh,
                    "trades": [
                        {
                            "buy_order_id": t.buy_order_id,
                            "sell_order_id": t.sell_order_id,
                            "buyer": t.buyer,
                            "seller": t.seller,
                            "quantity_kwh": t.quantity_kwh,
                            "price": t.price,
                            "seller_price": t.seller_price,
                        }
                        for t in clearing.trades
                    ],
                },
            )
        return entry

    def record_settlement(
        self, time: datetime, interval_start: datetime, settlements: Sequence[Settlement]
    ) -> Entry:
        """Each peer's metered delivery, the interval's settlement, and the transfers that settle
        it (`testbed.ledger.transfers`). Returns the settlement entry (a finalised result).

        Only approved peers are settled here: a peer the operator refused, or that left (or never
        registered), trades on no market, and its grid bill stays in the run store."""
        interval = iso(interval_start)
        settlements = [s for s in settlements if self._status(s.peer) == "approved"]
        with self.writer.batch() as w:
            for s in settlements:
                w.append(
                    time,
                    "delivery",
                    s.peer,
                    {
                        "interval_start": interval,
                        "metered_kwh": s.metered_kwh,
                        "contracted_kwh": s.contracted_kwh,
                    },
                )
            entry = w.append(
                time,
                "settlement",
                "",
                {
                    "interval_start": interval,
                    "peers": {
                        s.peer: {name: getattr(s, name) for name in SETTLEMENT_FIELDS}
                        for s in settlements
                    },
                },
            )
            while self.state.expected:
                _, transfer = self.state.expected[0]
                self._transfer(
                    time,
                    transfer.payer,
                    transfer.payee,
                    transfer.amount_paisa,
                    transfer.memo,
                    interval,
                )
        if self.on_finalised is not None:
            self.on_finalised(entry)
        return entry

    def close(self, time: datetime, status: str) -> Entry:
        with self.writer.batch() as w:
            entry = w.append(
                time,
                "close",
                "",
                {"status": status, "balances": self.state.wallets.balances()},
            )
        return entry

    # -- helpers ------------------------------------------------------------------------------

    def _mint(self, time: datetime, wallet: str, amount_paisa: int, reason: str) -> None:
        if amount_paisa > 0:
            self.writer.append(
                time, "mint", wallet, {"amount_paisa": amount_paisa, "reason": reason}
            )

    def _transfer(
        self,
        time: datetime,
        payer: str,
        payee: str,
        amount_paisa: int,
        memo: str,
        interval: str | None,
    ) -> None:
        wallets = self.state.wallets
        operator = wallets.get(OPERATOR)
        if payer == OPERATOR:
            short = amount_paisa - operator.balance_paisa
        elif payee != OPERATOR:
            advance = max(amount_paisa - wallets.get(payer).balance_paisa, 0)
            short = advance - operator.balance_paisa
        else:
            short = 0
        if short > 0:
            self._mint(time, OPERATOR, short, "operator credit line")
        split = wallets.split(payer, payee, amount_paisa)
        self.writer.append(
            time,
            "transfer",
            payer,
            {
                "from": payer,
                "to": payee,
                "amount_paisa": amount_paisa,
                "memo": memo,
                "interval_start": interval,
                "paid_paisa": split.paid_paisa,
                "advanced_paisa": split.advanced_paisa,
                "repaid_paisa": split.repaid_paisa,
            },
        )

    def _status(self, peer: str) -> str:
        record = self.state.peers.get(peer)
        return record.status if record else ""

    def _keep_kyc(self, request: RegistrationRequest) -> None:
        """The operator keeps the approved peer's KYC record and salt off-ledger."""
        self._kyc_records[request.peer] = request.kyc
        if self.kyc_custody is not None:
            store_record(self.kyc_custody / request.peer, request.kyc, request.salt)
