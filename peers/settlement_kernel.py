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
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

Number = float | np.ndarray


class TradeLike(Protocol):
    """What the kernel reads from a cleared trade (`testbed.market.book.Trade` is one)."""

    buyer: str
    seller: str
    quantity_kwh: float
    price: float

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
) -> SettledPosition:
    """Settle a peer's metered position against its P2P trades (see the module docstring)."""
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
    grid_cost = shortfall * retail
    grid_revenue = surplus * feed_in
    penalty = undelivered * penalty_rate
    network_charge = bought * network
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
        values = tuple(float(v) for v in values)
    return SettledPosition(*values)
