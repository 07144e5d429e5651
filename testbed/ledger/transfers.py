"""From one interval's settlement to wallet transfers, in whole paisa.

Itemised transfers, each rounded to the paisa:
- P2P, per buyer and seller: the buyer pays the seller what the seller receives; where the buyer
  pays more (McAfee, Huang) the difference goes to the operator (`p2p_surplus`), where the seller
  receives more (VCG) the operator pays it (`p2p_deficit`);
- the grid retailer pays each peer its surplus sold at the feed-in tariff (`feed_in`) and each peer
  pays the retailer its shortfall at the retail tariff (`grid_import`);
- each buyer pays the network operator the network charge (`network_charge`);
- a seller that did not deliver pays its deviation penalty to the operator (`penalty`);
- with local balancing, a peer short in the interval pays the operator its balancing price and the
  operator pays a peer long in it (`balancing`; the operator keeps the spread).
Then every wallet but the operator's is squared to its exact running settlement total rounded to the
paisa (`rounding`, with the operator), so after every interval each peer's, the retailer's and the
network operator's settlement money is its exact total to the paisa; the operator's wallet takes
the rounding remainders.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from testbed.ledger.money import to_paisa
from testbed.ledger.wallets import GRID_RETAILER, NETWORK_OPERATOR, OPERATOR


@dataclass(frozen=True, slots=True)
class Transfer:
    payer: str
    payee: str
    amount_paisa: int
    memo: str


@dataclass(slots=True)
class SettlementTotals:
    """Per wallet: the exact settlement money so far (currency) and what was transferred (paisa)."""

    exact: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    booked: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def plan_transfers(
    trades: Iterable[Mapping[str, Any]],
    settlements: Mapping[str, Mapping[str, float]],
    totals: SettlementTotals,
) -> list[Transfer]:
    """The transfers that settle one interval; updates `totals` as if they were made.

    `trades` have buyer, seller, quantity_kwh, price and seller_price (None: the buyer's price);
    `settlements` map each peer to its network_charge, grid_cost, grid_revenue and penalty.
    """
    items: list[tuple[str, str, float, str]] = []
    pairs: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for trade in trades:
        quantity, price = trade["quantity_kwh"], trade["price"]
        seller_price = trade.get("seller_price")
        received = price if seller_price is None else seller_price
        pair = pairs[(trade["buyer"], trade["seller"])]
        pair[0] += quantity * min(price, received)
        pair[1] += quantity * max(price - received, 0.0)
        pair[2] += quantity * max(received - price, 0.0)
    for (buyer, seller), (direct, surplus, deficit) in pairs.items():
        items.append((buyer, seller, direct, "p2p"))
        items.append((buyer, OPERATOR, surplus, "p2p_surplus"))
        items.append((OPERATOR, seller, deficit, "p2p_deficit"))
    for peer, figures in sorted(settlements.items()):
        items.append((GRID_RETAILER, peer, figures["grid_revenue"], "feed_in"))
    for peer, figures in sorted(settlements.items()):
        items.append((peer, GRID_RETAILER, figures["grid_cost"], "grid_import"))
        items.append((peer, NETWORK_OPERATOR, figures["network_charge"], "network_charge"))
        items.append((peer, OPERATOR, figures["penalty"], "penalty"))
        items.append((peer, OPERATOR, figures.get("balancing_paid", 0.0), "balancing"))
        items.append((OPERATOR, peer, figures.get("balancing_received", 0.0), "balancing"))

    transfers: list[Transfer] = []
    for payer, payee, exact, memo in items:
        if exact <= 0.0:
            continue
        totals.exact[payer] -= exact
        totals.exact[payee] += exact
        amount = to_paisa(exact)
        if amount > 0:
            transfers.append(Transfer(payer, payee, amount, memo))
            totals.booked[payer] -= amount
            totals.booked[payee] += amount
    for wallet in sorted(totals.exact):
        if wallet == OPERATOR:
            continue
        gap = to_paisa(totals.exact[wallet]) - totals.booked[wallet]
        if gap > 0:
            transfers.append(Transfer(OPERATOR, wallet, gap, "rounding"))
        elif gap < 0:
            transfers.append(Transfer(wallet, OPERATOR, -gap, "rounding"))
        totals.booked[wallet] += gap
        totals.booked[OPERATOR] -= gap
    return transfers
