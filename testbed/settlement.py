"""Settlement of one market interval: contracted against metered energy, and the money.

Rules per interval and peer (energy in kWh, generator convention; money in the config's currency):
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
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime

from testbed.config import PricesConfig
from testbed.documents import Settlement
from testbed.market.book import Trade


def grid_only_bill(metered_kwh: float, prices: PricesConfig) -> float:
    """What a net position costs when all of it is exchanged with the grid."""
    if metered_kwh < 0:
        return -metered_kwh * prices.retail_tariff
    return -metered_kwh * prices.feed_in_tariff


def settle_interval(
    interval_start: datetime,
    trades: Iterable[Trade],
    metered_kwh: Mapping[str, float],
    prices: PricesConfig,
) -> list[Settlement]:
    """Settle every peer in `metered_kwh` for one interval."""
    bought: dict[str, float] = defaultdict(float)
    sold: dict[str, float] = defaultdict(float)
    paid: dict[str, float] = defaultdict(float)
    received: dict[str, float] = defaultdict(float)
    network: dict[str, float] = defaultdict(float)
    for trade in trades:
        bought[trade.buyer] += trade.quantity_kwh
        sold[trade.seller] += trade.quantity_kwh
        paid[trade.buyer] += trade.quantity_kwh * trade.price
        received[trade.seller] += trade.quantity_kwh * trade.received_price
        charge = prices.network_charge if trade.network_charge is None else trade.network_charge
        network[trade.buyer] += trade.quantity_kwh * charge

    settlements = []
    for peer, metered in metered_kwh.items():
        contracted = sold[peer] - bought[peer]
        deviation = metered - contracted
        shortfall = max(-deviation, 0.0)
        surplus = max(deviation, 0.0)
        penalised = min(shortfall, sold[peer])
        grid_cost = shortfall * prices.retail_tariff
        grid_revenue = surplus * prices.feed_in_tariff
        penalty = penalised * prices.deviation_penalty
        network_charge = network[peer]
        bill = paid[peer] - received[peer] + network_charge + grid_cost - grid_revenue + penalty
        settlements.append(
            Settlement(
                interval_start=interval_start,
                peer=peer,
                contracted_kwh=contracted,
                metered_kwh=metered,
                p2p_bought_kwh=bought[peer],
                p2p_sold_kwh=sold[peer],
                p2p_paid=paid[peer],
                p2p_received=received[peer],
                deviation_kwh=deviation,
                grid_import_kwh=shortfall,
                grid_export_kwh=surplus,
                grid_cost=grid_cost,
                grid_revenue=grid_revenue,
                penalty=penalty,
                network_charge=network_charge,
                bill=bill,
                bill_grid_only=grid_only_bill(metered, prices),
            )
        )
    return settlements
