"""A peer's bill for a plan under a tariff: the value side of comparing agents.

Per step, the PCC energy is `net_kw x dt` (+ = export). The rules are the settlement kernel's
(`peers.settlement_kernel`, the very function `testbed.settlement` settles a run with): P2P volumes
(kWh per step, from cleared trades) are paid at the P2P price and received at the seller's price
(the same unless the mechanism is not budget balanced); the deviation (metered minus contracted) is
bought at retail (shortfall) or sold at feed-in (surplus); the deviation penalty applies to sold
energy not delivered, min(shortfall, sold); the buyer pays the network charge on every P2P kWh.
Battery depreciation and levelised PV cost are the remaining terms of the seed's objective (7);
`total` is the cash bill, `objective` adds those two.

The orchestrator's settlement is authoritative for what peers pay; this function lets a plan be
valued the same way before or after a run (e.g. to compare baseline and optimising agents).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from peers.assets import PeerAssets
from peers.interface import PlanStep
from peers.settlement_kernel import settle_position


@dataclass(frozen=True, slots=True)
class Bill:
    grid_import_kwh: float
    grid_export_kwh: float
    grid_cost: float
    grid_revenue: float
    p2p_bought_kwh: float
    p2p_sold_kwh: float
    p2p_cost: float
    p2p_revenue: float
    network_charge: float
    undelivered_kwh: float  # sold P2P energy the peer did not deliver
    penalty: float
    storage_depreciation: float
    pv_cost: float
    grid_only_total: float  # the same metered energy settled with the grid alone

    @property
    def total(self) -> float:
        """Net cash paid by the peer (negative = earned)."""
        return (
            self.grid_cost
            - self.grid_revenue
            + self.p2p_cost
            - self.p2p_revenue
            + self.network_charge
            + self.penalty
        )

    @property
    def objective(self) -> float:
        """The seed's objective (7) for this peer: the cash bill plus depreciation and PV cost."""
        return self.total + self.storage_depreciation + self.pv_cost


def _per_step(value: float | Sequence[float] | np.ndarray, steps: int, name: str) -> np.ndarray:
    array = np.broadcast_to(np.asarray(value, dtype=float), (steps,)).copy()
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite")
    return array


def plan_bill(
    plan: Sequence[PlanStep],
    assets: PeerAssets,
    interval_s: float,
    retail_tariff: float | Sequence[float],
    feed_in_tariff: float | Sequence[float],
    p2p_bought_kwh: float | Sequence[float] = 0.0,
    p2p_sold_kwh: float | Sequence[float] = 0.0,
    p2p_price: float | Sequence[float] = 0.0,
    network_charge: float = 0.0,
    deviation_penalty: float = 0.0,
    p2p_seller_price: float | Sequence[float] | None = None,
) -> Bill:
    """The bill of `plan` (as executed) with the given P2P volumes per step.

    `p2p_price` is what a buyer pays per kWh, `p2p_seller_price` what a seller receives (None =
    `p2p_price`; they differ for mechanisms that are not budget balanced).
    """
    steps = len(plan)
    dt = interval_s / 3600.0
    net = np.array([s.net_kw for s in plan], dtype=float) * dt
    retail = _per_step(retail_tariff, steps, "retail_tariff")
    feed_in = _per_step(feed_in_tariff, steps, "feed_in_tariff")
    bought = _per_step(p2p_bought_kwh, steps, "p2p_bought_kwh")
    sold = _per_step(p2p_sold_kwh, steps, "p2p_sold_kwh")
    price = _per_step(p2p_price, steps, "p2p_price")
    if np.any(bought < 0) or np.any(sold < 0):
        raise ValueError("p2p_bought_kwh and p2p_sold_kwh must be >= 0")
    received = (
        price
        if p2p_seller_price is None
        else _per_step(p2p_seller_price, steps, "p2p_seller_price")
    )
    settled = settle_position(
        net,
        bought,
        sold,
        price * bought,
        received * sold,
        retail,
        feed_in,
        network_charge,
        deviation_penalty,
    )

    depreciation = 0.0
    if assets.battery is not None:
        throughput = np.abs([s.battery_kw for s in plan]).sum() * dt
        depreciation += assets.battery.depreciation_per_kwh * throughput
    if assets.ev is not None:
        throughput = np.abs([s.ev_kw for s in plan]).sum() * dt
        depreciation += assets.ev.depreciation_per_kwh * throughput
    pv_cost = 0.0
    if assets.pv is not None:
        pv_cost = assets.pv.levelised_cost_per_kwh * sum(s.pv_kw for s in plan) * dt

    return Bill(
        grid_import_kwh=float(np.sum(settled.grid_import_kwh)),
        grid_export_kwh=float(np.sum(settled.grid_export_kwh)),
        grid_cost=float(np.sum(settled.grid_cost)),
        grid_revenue=float(np.sum(settled.grid_revenue)),
        p2p_bought_kwh=float(bought.sum()),
        p2p_sold_kwh=float(sold.sum()),
        p2p_cost=float(price @ bought),
        p2p_revenue=float(received @ sold),
        network_charge=float(np.sum(settled.network_charge)),
        undelivered_kwh=float(np.sum(settled.undelivered_kwh)),
        penalty=float(np.sum(settled.penalty)),
        storage_depreciation=float(depreciation),
        pv_cost=float(pv_cost),
        grid_only_total=float(np.sum(settled.bill_grid_only)),
    )
