"""Running totals of an experiment and the `summary.json` it ends with.

The one summary of a run: the engine feeds `RunTotals` as it goes, and a run that ended without
one gets the same totals from its stored tables (`testbed.runstore.summary.summarize`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from testbed.documents import Clearing, Settlement

_PEER_KEYS = (
    "p2p_bought_kwh",
    "p2p_sold_kwh",
    "grid_import_kwh",
    "grid_export_kwh",
    "p2p_paid",
    "p2p_received",
    "grid_cost",
    "grid_revenue",
    "penalty",
    "network_charge",
    "bill",
    "bill_grid_only",
    "balancing_bought_kwh",
    "balancing_sold_kwh",
    "balancing_paid",
    "balancing_received",
)


class RunTotals:
    """Totals per peer, of the market, of interlocks, and the metering energy balance.

    Energy balance, per peer: the PCC meter's energy registers against the sum of the energies
    behind the PCC: each metered device's own energy registers, plus the unmetered house load
    integrated from the sampled powers (PCC minus devices). It checks the whole metering chain
    (registers, sampled powers, the control step) and is reported over the run.
    """

    def __init__(self, peers: list[str]) -> None:
        self.peers = peers
        self.per_peer: dict[str, dict[str, float]] = {
            p: dict.fromkeys(_PEER_KEYS, 0.0) for p in peers
        }
        self.intervals = 0
        self.cleared_intervals = 0
        self.price_volume = 0.0
        self.prices: list[float] = []
        self.traded_kwh = 0.0
        self.interlocks: Counter[str] = Counter()
        self._first_counters: dict[str, tuple[float, float]] = {}
        self._last_counters: dict[str, tuple[float, float]] = {}
        self._unmetered_kwh: dict[str, float] = defaultdict(float)
        self._metered_abs_kwh: dict[str, float] = defaultdict(float)

    def add_settlement(self, settlement: Settlement) -> None:
        totals = self.per_peer.setdefault(settlement.peer, dict.fromkeys(_PEER_KEYS, 0.0))
        for key in _PEER_KEYS:
            totals[key] += getattr(settlement, key)

    def count_clearing(self, clearing: Clearing) -> None:
        self.intervals += 1
        if clearing.clearing_price is not None and clearing.volume_kwh > 0:
            self.cleared_intervals += 1
            self.prices.append(clearing.clearing_price)
            self.price_volume += clearing.clearing_price * clearing.volume_kwh
            self.traded_kwh += clearing.volume_kwh

    def count_interlock(self, kind: str, action: str) -> None:
        if action != "cleared":
            self.interlocks[kind] += 1

    def observe_counters(self, peer: str, image: Any) -> None:
        """Meter and device energy registers, kept at the first and the latest complete reading."""
        if image.import_kwh is None or image.device_energy_kwh is None:
            return
        net = image.export_kwh - image.import_kwh
        counters = (net, image.device_energy_kwh)
        self._first_counters.setdefault(peer, counters)
        self._last_counters[peer] = counters

    def integrate(self, peer: str, image: Any, dt_s: float) -> None:
        """Add one step of the unmetered part behind the PCC (PCC power minus device power)."""
        if image.pcc_kw is None or image.device_kw is None:
            return
        self._unmetered_kwh[peer] += (image.pcc_kw - image.device_kw) * dt_s / 3600.0
        self._metered_abs_kwh[peer] += abs(image.pcc_kw) * dt_s / 3600.0

    def energy_balance(self) -> tuple[float | None, float | None]:
        """(error, energy through the PCCs) over the run, kWh; None without meter readings
        (a summary rebuilt from stored settlements has none)."""
        if not self._first_counters:
            return None, None
        error = 0.0
        through = 0.0
        for peer in self.peers:
            if peer not in self._first_counters:
                continue
            meter0, devices0 = self._first_counters[peer]
            meter1, devices1 = self._last_counters[peer]
            parts = (devices1 - devices0) + self._unmetered_kwh[peer]
            error += abs((meter1 - meter0) - parts)
            through += self._metered_abs_kwh[peer]
        return error, through

    def summary(self, mechanism: str, currency: str) -> dict[str, Any]:
        """The totals as summary.json holds them."""
        error, through = self.energy_balance()
        peers = {
            peer: {key: round(value, 6) for key, value in totals.items()}
            for peer, totals in self.per_peer.items()
        }
        return {
            "peers": peers,
            "market": {
                "mechanism": mechanism,
                "intervals": self.intervals,
                "cleared_intervals": self.cleared_intervals,
                "mean_clearing_price": round(sum(self.prices) / len(self.prices), 6)
                if self.prices
                else None,
                "volume_weighted_price": round(self.price_volume / self.traded_kwh, 6)
                if self.traded_kwh
                else None,
                "traded_kwh": round(self.traded_kwh, 6),
                "operator_surplus": round(
                    sum(
                        t["p2p_paid"]
                        - t["p2p_received"]
                        + t["balancing_paid"]
                        - t["balancing_received"]
                        for t in self.per_peer.values()
                    ),
                    6,
                ),
                "network_charges": round(
                    sum(t["network_charge"] for t in self.per_peer.values()), 6
                ),
            },
            "energy_balance_error_kwh": None if error is None else round(error, 9),
            "energy_through_pcc_kwh": None if through is None else round(through, 6),
            "interlocks": dict(sorted(self.interlocks.items())),
            "currency": currency,
        }
