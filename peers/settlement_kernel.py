"""The settlement rules, written once: what one interval's trades and metering cost a peer.

Both the orchestrator's settlement (`testbed.settlement`, from cleared trades and meter registers)
and the agents' bill model (`peers.bill`, from a plan) call `settle_position`, so an agent plans
against exactly the rules it is settled by. The functions take numpy arrays or floats (one value
per interval and peer) and return the same shape.

Rules (energy in kWh, generator convention; money in the config's currency):
- Contracted position c = P2P energy sold - P2P energy bought (cleared trades).
- Metered position m = exported - imported at the PCC.
- Deviation d = m - c. A shortfall (d < 0) is bought from the grid at the retail tariff; a surplus
  (d > 0) is sold to the grid at the feed-in tariff.
- Deviation penalty: on sold energy that was not delivered, min(shortfall, sold).
- P2P money: the buyer pays each trade's price, the seller receives each trade's seller price
  (they differ for mechanisms that are not budget balanced); the buyer also pays the network
  charge on its P2P energy.
- bill = paid - received + network charge + grid cost - grid revenue + penalty.
- Grid-only bill: the same metered position settled with the grid alone.

Local balancing (optional, `local_balancing`): before the grid, the interval's deviations are
settled among the peers. The surpluses (metered above contracted) and the shortfalls are matched
pro rata up to the smaller of the two totals; a peer whose surplus is matched receives the long
price (feed-in + reference) / 2, a peer whose shortfall is matched pays the short price
(reference + retail) / 2 (at most retail - network charge) and the network charge, where the
reference is the interval's clearing price (the midpoint of feed-in and retail when nothing
cleared). The rest goes to and comes from the grid as above. The spread between the two prices is
the market operator's, like a non-budget-balanced mechanism's surplus. Incentive: a kWh traded
ahead earns the clearing price, a surplus balanced locally only halfway between it and feed-in,
and a shortfall balanced locally costs halfway between it and retail, so trading ahead stays
better than waiting for the balancing, while a forecast error costs half what it did.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

Number = float | np.ndarray


class TradeLike(Protocol):
    """What the kernel reads from a cleared trade (`testbed.market.book.Trade` is one); read-only,
    so frozen dataclasses match."""

    @property
    def buyer(self) -> str: ...

    @property
    def seller(self) -> str: ...

    @property
    def quantity_kwh(self) -> float: ...

    @property
    def price(self) -> float: ...

    @property
    def received_price(self) -> float: ...


@dataclass(frozen=True, slots=True)
class P2pTotals:
    """One peer's P2P energy and money in one interval."""

    bought_kwh: float = 0.0
    sold_kwh: float = 0.0
    paid: float = 0.0  # what the peer paid for energy bought
    received: float = 0.0  # what the peer received for energy sold


def p2p_totals(trades: Iterable[TradeLike]) -> dict[str, P2pTotals]:
    """Per peer: energy bought and sold, money paid (trade price) and received (seller price)."""
    bought: dict[str, float] = defaultdict(float)
    sold: dict[str, float] = defaultdict(float)
    paid: dict[str, float] = defaultdict(float)
    received: dict[str, float] = defaultdict(float)
    for trade in trades:
        bought[trade.buyer] += trade.quantity_kwh
        sold[trade.seller] += trade.quantity_kwh
        paid[trade.buyer] += trade.quantity_kwh * trade.price
        received[trade.seller] += trade.quantity_kwh * trade.received_price
    return {
        peer: P2pTotals(bought[peer], sold[peer], paid[peer], received[peer])
        for peer in set(bought) | set(sold)
    }


@dataclass(frozen=True, slots=True)
class SettledPosition:
    """The settlement of a peer's position (floats or arrays, one value per interval)."""

    contracted_kwh: Number
    deviation_kwh: Number
    grid_import_kwh: Number
    grid_export_kwh: Number
    undelivered_kwh: Number  # sold P2P energy the peer did not deliver
    grid_cost: Number
    grid_revenue: Number
    penalty: Number
    network_charge: Number
    bill: Number
    bill_grid_only: Number


def grid_only_bill(metered_kwh: Number, retail_tariff: Number, feed_in_tariff: Number) -> Number:
    """What a net position costs when all of it is exchanged with the grid."""
    metered = np.asarray(metered_kwh, dtype=float)
    cost = np.maximum(-metered, 0.0) * retail_tariff - np.maximum(metered, 0.0) * feed_in_tariff
    return float(cost) if cost.ndim == 0 else cost


@dataclass(frozen=True, slots=True)
class BalancingShare:
    """A peer's part of an interval's local balancing."""

    bought_kwh: float = 0.0  # shortfall covered by the neighbours' surplus
    sold_kwh: float = 0.0  # surplus taken by the neighbours' shortfall
    paid: float = 0.0
    received: float = 0.0
    network_charge: float = 0.0  # paid by the short side, at the flat rate


def balancing_prices(
    reference_price: float | None, retail_tariff: float, feed_in_tariff: float, network: float
) -> tuple[float, float]:
    """(long price received, short price paid) per kWh settled by local balancing."""
    if reference_price is None or not np.isfinite(reference_price):
        reference_price = (retail_tariff + feed_in_tariff) / 2.0
    reference = min(max(reference_price, feed_in_tariff), retail_tariff)
    long_price = (feed_in_tariff + reference) / 2.0
    short_price = min((reference + retail_tariff) / 2.0, retail_tariff - network)
    return long_price, max(short_price, long_price)


def local_balancing(
    deviation_kwh: dict[str, float],
    reference_price: float | None,
    retail_tariff: float,
    feed_in_tariff: float,
    network_charge_per_kwh: float,
) -> dict[str, BalancingShare]:
    """Match the interval's surpluses with its shortfalls, pro rata (see the module docstring)."""
    long_total = sum(max(d, 0.0) for d in deviation_kwh.values())
    short_total = sum(max(-d, 0.0) for d in deviation_kwh.values())
    matched = min(long_total, short_total)
    if matched <= 0.0:
        return {peer: BalancingShare() for peer in deviation_kwh}
    long_price, short_price = balancing_prices(
        reference_price, retail_tariff, feed_in_tariff, network_charge_per_kwh
    )
    shares = {}
    for peer, d in deviation_kwh.items():
        if d > 0:
            sold = matched * d / long_total
            shares[peer] = BalancingShare(sold_kwh=sold, received=sold * long_price)
        elif d < 0:
            bought = matched * -d / short_total
            shares[peer] = BalancingShare(
                bought_kwh=bought,
                paid=bought * short_price,
                network_charge=bought * network_charge_per_kwh,
            )
        else:
            shares[peer] = BalancingShare()
    return shares


def settle_position(
    metered_kwh: Number,
    bought_kwh: Number,
    sold_kwh: Number,
    paid: Number,
    received: Number,
    retail_tariff: Number,
    feed_in_tariff: Number,
    network_charge_per_kwh: Number,
    deviation_penalty_per_kwh: Number,
    balancing: BalancingShare | None = None,
) -> SettledPosition:
    """Settle a peer's metered position against its P2P trades (see the module docstring).

    `balancing`: the peer's share of the interval's local balancing (scalars only), settled before
    the grid; the penalty still applies to sold energy not delivered.
    """
    arrays = np.broadcast_arrays(
        *(
            np.asarray(v, dtype=float)
            for v in (
                metered_kwh,
                bought_kwh,
                sold_kwh,
                paid,
                received,
                retail_tariff,
                feed_in_tariff,
                network_charge_per_kwh,
                deviation_penalty_per_kwh,
            )
        )
    )
    metered, bought, sold, paid_a, received_a, retail, feed_in, network, penalty_rate = arrays
    contracted = sold - bought
    deviation = metered - contracted
    shortfall = np.maximum(-deviation, 0.0)
    surplus = np.maximum(deviation, 0.0)
    undelivered = np.minimum(shortfall, sold)
    penalty = undelivered * penalty_rate
    network_charge = bought * network
    if balancing is not None:
        shortfall = np.maximum(shortfall - balancing.bought_kwh, 0.0)
        surplus = np.maximum(surplus - balancing.sold_kwh, 0.0)
        network_charge = network_charge + balancing.network_charge
        paid_a = paid_a + balancing.paid
        received_a = received_a + balancing.received
    grid_cost = shortfall * retail
    grid_revenue = surplus * feed_in
    bill = paid_a - received_a + network_charge + grid_cost - grid_revenue + penalty
    values = (
        contracted,
        deviation,
        shortfall,
        surplus,
        undelivered,
        grid_cost,
        grid_revenue,
        penalty,
        network_charge,
        bill,
        grid_only_bill(metered, retail, feed_in),
    )
    if metered.ndim == 0:
        return SettledPosition(*(float(v) for v in values))
    return SettledPosition(*values)
