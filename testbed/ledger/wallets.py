"""Wallets: whole-paisa balances, and the rule for a payer that cannot pay.

Wallets: one per peer (named by the peer's id) and three institutions: `operator` (the market
operator, the trusted third party that mints tokens for joining peers and redeems them when they
leave), `grid_retailer` (buys and sells the deviations at the tariffs) and `network_operator`
(receives the network charges).

The rule for a payer that cannot pay (`Wallets.transfer`): the payer pays what its wallet holds,
never going below zero; the operator advances the rest to the payee, so the payee is always paid in
full, and the rest becomes the payer's debt to the operator. Money that later arrives in a wallet
with a debt repays the operator first. A peer with a debt may only sell until it is repaid
(`testbed.ledger.state`). The operator never goes below zero either: when it cannot advance, its
own credit line is minted first, as an entry of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from testbed.ledger.errors import LedgerRuleError

OPERATOR = "operator"
GRID_RETAILER = "grid_retailer"
NETWORK_OPERATOR = "network_operator"
INSTITUTIONS = (OPERATOR, GRID_RETAILER, NETWORK_OPERATOR)
WALLET_KINDS = ("peer", *INSTITUTIONS)


@dataclass(frozen=True, slots=True)
class TransferSplit:
    """How a transfer was paid: by the payer, advanced by the operator, repaying payee debt."""

    paid_paisa: int
    advanced_paisa: int
    repaid_paisa: int


@dataclass(slots=True)
class Wallet:
    kind: str
    balance_paisa: int = 0
    debt_paisa: int = 0  # owed to the operator
    minted_paisa: int = 0
    redeemed_paisa: int = 0

    @property
    def settled_paisa(self) -> int:
        """What settlement moved into the wallet (negative: out), debts counted."""
        return self.balance_paisa - self.debt_paisa - self.minted_paisa + self.redeemed_paisa


class Wallets:
    """Every wallet's balance and debt; each change checks that no balance goes below zero."""

    def __init__(self) -> None:
        self.wallets: dict[str, Wallet] = {}

    def __contains__(self, wallet: str) -> bool:
        return wallet in self.wallets

    def get(self, wallet: str) -> Wallet:
        try:
            return self.wallets[wallet]
        except KeyError:
            raise LedgerRuleError(f"wallet {wallet!r} does not exist") from None

    def open(self, wallet: str, kind: str) -> None:
        if kind not in WALLET_KINDS:
            raise LedgerRuleError(f"wallet kind {kind!r}: allowed are {', '.join(WALLET_KINDS)}")
        if wallet in self.wallets:
            raise LedgerRuleError(f"wallet {wallet!r} is already open")
        self.wallets[wallet] = Wallet(kind)

    def mint(self, wallet: str, amount_paisa: int) -> None:
        _positive(amount_paisa, "mint")
        held = self.get(wallet)
        held.balance_paisa += amount_paisa
        held.minted_paisa += amount_paisa

    def redeem(self, wallet: str, amount_paisa: int) -> None:
        _positive(amount_paisa, "redeem")
        held = self.get(wallet)
        if amount_paisa > held.balance_paisa:
            raise LedgerRuleError(
                f"redeem {amount_paisa} paisa from {wallet!r}, which holds {held.balance_paisa}"
            )
        held.balance_paisa -= amount_paisa
        held.redeemed_paisa += amount_paisa

    def split(self, payer: str, payee: str, amount_paisa: int) -> TransferSplit:
        """How a transfer would be paid now (see the module docstring)."""
        _positive(amount_paisa, "transfer")
        if payer == payee:
            raise LedgerRuleError(f"transfer from {payer!r} to itself")
        source, target = self.get(payer), self.get(payee)
        paid = min(source.balance_paisa, amount_paisa)
        advanced = amount_paisa - paid
        if advanced and payer == OPERATOR:
            raise LedgerRuleError(
                f"the operator cannot pay {amount_paisa} paisa: it holds {paid} (mint its credit "
                "line first)"
            )
        operator = self.get(OPERATOR)
        if payee != OPERATOR and advanced > operator.balance_paisa:
            raise LedgerRuleError(
                f"the operator cannot advance {advanced} paisa for {payer!r}: it holds "
                f"{operator.balance_paisa} (mint its credit line first)"
            )
        repaid = min(target.debt_paisa, amount_paisa) if payee != OPERATOR else 0
        return TransferSplit(paid, advanced, repaid)

    def transfer(self, payer: str, payee: str, amount_paisa: int) -> TransferSplit:
        """Move `amount_paisa` from `payer` to `payee` by the rule; returns how it was paid."""
        split = self.split(payer, payee, amount_paisa)
        source, target, operator = self.get(payer), self.get(payee), self.get(OPERATOR)
        source.balance_paisa -= split.paid_paisa
        operator.balance_paisa -= split.advanced_paisa
        source.debt_paisa += split.advanced_paisa
        target.debt_paisa -= split.repaid_paisa
        operator.balance_paisa += split.repaid_paisa
        target.balance_paisa += amount_paisa - split.repaid_paisa
        for name in (payer, payee, OPERATOR):
            if self.wallets[name].balance_paisa < 0:  # the split above forbids it: a defect
                raise LedgerRuleError(f"wallet {name!r} would go below zero")
        return split

    def balances(self) -> dict[str, tuple[int, int]]:
        """(balance, debt) in paisa per wallet."""
        return {name: (w.balance_paisa, w.debt_paisa) for name, w in sorted(self.wallets.items())}


def _positive(amount_paisa: int, what: str) -> None:
    if type(amount_paisa) is not int or amount_paisa <= 0:
        raise LedgerRuleError(
            f"{what} amount {amount_paisa!r}: must be a whole number of paisa > 0"
        )
