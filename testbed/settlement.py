"""Settlement of one market interval: contracted against metered energy, and the money.

The rules are `peers.settlement_kernel`'s (the agents' bill model uses the same kernel):
- Contracted position c = P2P energy sold - P2P energy bought (cleared trades).
- Metered position m = exported - imported at the PCC, from the meter's energy registers.
- Deviation d = m - c. A shortfall (d < 0) is bought from the grid at the retail tariff; a surplus
  (d > 0) is sold to the grid at the feed-in tariff.
- Deviation penalty: on sold energy that was not delivered, i.e. on min(shortfall, sold energy).
  A buyer who consumes more than it bought buys the rest at retail, as it would without a market.
- P2P money: the buyer pays the trade price, the seller receives it (or the seller's own price,
  for mechanisms that are not budget balanced: the difference is the market operator's surplus or
  deficit); the buyer also pays the network usage charge on every P2P kWh: the trade's own charge
  per kWh when it has one (allocated by electrical distance, testbed.network.charges), else the
  flat prices.network_charge. So buyers' payments =
  sellers' receipts + operator surplus, and the network charges go to the network operator.
- Grid-only baseline: the same metered position settled with the grid alone (import at retail,
  export at feed-in), i.e. the bill the peer would have had for the same energy without the market.
- Local balancing (`market.balancing = "local"`): the interval's surpluses and shortfalls are first
  matched among the peers at prices halfway between the clearing price and the grid tariffs
  (`peers.settlement_kernel.local_balancing`); the spread is the market operator's.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime

from peers.settlement_kernel import (
    BalancingShare,
    P2pTotals,
    local_balancing,
    p2p_totals,
    settle_position,
)
from peers.settlement_kernel import grid_only_bill as _grid_only_bill
from testbed.config import PricesConfig
from testbed.documents import Settlement
from testbed.market.book import Trade


def grid_only_bill(metered_kwh: float, prices: PricesConfig) -> float:
    """What a net position costs when all of it is exchanged with the grid."""
    return float(_grid_only_bill(metered_kwh, prices.retail_tariff, prices.feed_in_tariff))


def network_money(trades: Iterable[Trade], flat_per_kwh: float) -> dict[str, float]:
    """Network charges per buyer: each trade's own charge per kWh, else the flat one."""
    money: dict[str, float] = defaultdict(float)
    for trade in trades:
        rate = flat_per_kwh if trade.network_charge is None else trade.network_charge
        money[trade.buyer] += trade.quantity_kwh * rate
    return money


def settle_interval(
    interval_start: datetime,
    trades: Iterable[Trade],
    metered_kwh: Mapping[str, float],
    prices: PricesConfig,
    balancing: str = "none",
    clearing_price: float | None = None,
) -> list[Settlement]:
    """Settle every peer in `metered_kwh` for one interval.

    `balancing`: "none", or "local" to settle deviations among the peers first, at prices
    referenced to `clearing_price` (None = the trades' volume-weighted price; see the module
    docstring).
    """
    trades = list(trades)
    totals = p2p_totals(trades)
    network = network_money(trades, prices.network_charge)
    shares: dict[str, BalancingShare] = {}
    if balancing == "local":
        volume = sum(t.quantity_kwh for t in trades)
        if clearing_price is None and volume > 0:
            clearing_price = sum(t.quantity_kwh * t.price for t in trades) / volume
        deviations = {}
        for peer, metered in metered_kwh.items():
            p2p = totals.get(peer, P2pTotals())
            deviations[peer] = metered - (p2p.sold_kwh - p2p.bought_kwh)
        shares = local_balancing(
            deviations,
            clearing_price,
            prices.retail_tariff,
            prices.feed_in_tariff,
            prices.network_charge,
        )
    elif balancing != "none":
        raise ValueError(f"balancing = {balancing!r}: choose 'none' or 'local'")
    settlements = []
    for peer, metered in metered_kwh.items():
        p2p = totals.get(peer, P2pTotals())
        share = shares.get(peer, BalancingShare())
        # The kernel charges bought kWh times a rate: the peer's average over its own trades.
        rate = network[peer] / p2p.bought_kwh if p2p.bought_kwh > 0 else prices.network_charge
        settled = settle_position(
            metered,
            p2p.bought_kwh,
            p2p.sold_kwh,
            p2p.paid,
            p2p.received,
            prices.retail_tariff,
            prices.feed_in_tariff,
            rate,
            prices.deviation_penalty,
            share,
        )
        # scalar inputs: the kernel gives floats (float() tells the type checker)
        settlements.append(
            Settlement(
                interval_start=interval_start,
                peer=peer,
                contracted_kwh=float(settled.contracted_kwh),
                metered_kwh=metered,
                p2p_bought_kwh=p2p.bought_kwh,
                p2p_sold_kwh=p2p.sold_kwh,
                p2p_paid=p2p.paid,
                p2p_received=p2p.received,
                deviation_kwh=float(settled.deviation_kwh),
                grid_import_kwh=float(settled.grid_import_kwh),
                grid_export_kwh=float(settled.grid_export_kwh),
                grid_cost=float(settled.grid_cost),
                grid_revenue=float(settled.grid_revenue),
                penalty=float(settled.penalty),
                network_charge=float(settled.network_charge),
                bill=float(settled.bill),
                bill_grid_only=float(settled.bill_grid_only),
                balancing_bought_kwh=share.bought_kwh,
                balancing_sold_kwh=share.sold_kwh,
                balancing_paid=share.paid,
                balancing_received=share.received,
            )
        )
    return settlements
