"""How much the other peers offer and ask for, per time of day, learned from the public book.

After each clearing the market publishes the accepted quantity on each side (`MarketOutcome.
bid_volume_kwh`, `ask_volume_kwh`). Less the agent's own orders, that is the other peers' demand
(bids) and supply (asks) for that interval. `MarketDepth` keeps, per local time-of-day slot, an
exponentially weighted mean over days; a slot not seen yet takes the latest interval's value (so
a first day adapts within an interval or two). The optimising HEMS caps planned P2P sales at the
expected demand and planned P2P purchases at the expected supply, each with a margin where the
other side is expected at all, so a seller spreads its surplus over the hours its neighbours buy
instead of storing first and selling when nobody is left to buy, and nobody plans to buy P2P when
no neighbour sells.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np

from peers.interface import MarketOutcome, OrderIntent, OrderSide


class MarketDepth:
    def __init__(
        self, interval_s: float, zone: ZoneInfo, day_weight: float = 0.5, margin_kw: float = 0.4
    ) -> None:
        self.interval_s = interval_s
        self.zone = zone
        self.day_weight = day_weight
        self.margin_kw = margin_kw
        self.min_expected_kw = 0.02  # below this, nobody is expected on the other side
        slots = round(86400.0 / interval_s)
        self.demand_kwh = np.full(slots, np.nan)  # others' bids per slot
        self.supply_kwh = np.full(slots, np.nan)  # others' asks per slot
        self.latest: tuple[float, float] | None = None
        self._own: dict[OrderSide, float] = {}

    def _slot(self, moment: datetime) -> int:
        local = moment.astimezone(self.zone)
        seconds = local.hour * 3600 + local.minute * 60 + local.second
        return int(seconds // self.interval_s) % len(self.demand_kwh)

    def record(self, orders: tuple[OrderIntent, ...]) -> None:
        """The agent's own orders for the interval the next outcome reports."""
        own: dict[OrderSide, float] = {}
        for order in orders:
            own[order.side] = own.get(order.side, 0.0) + order.quantity_kwh
        self._own = own

    def learn(self, outcome: MarketOutcome) -> None:
        if outcome.bid_volume_kwh is None or outcome.ask_volume_kwh is None:
            self._own = {}
            return
        demand = max(outcome.bid_volume_kwh - self._own.get(OrderSide.BUY, 0.0), 0.0)
        supply = max(outcome.ask_volume_kwh - self._own.get(OrderSide.SELL, 0.0), 0.0)
        slot = self._slot(outcome.interval_start)
        for table, value in ((self.demand_kwh, demand), (self.supply_kwh, supply)):
            old = table[slot]
            table[slot] = (
                value if np.isnan(old) else (1 - self.day_weight) * old + self.day_weight * value
            )
        self.latest = (demand, supply)
        self._own = {}

    def caps_kw(self, starts: list[datetime]) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(purchase cap, sale cap) in kW per step: expected supply and demand plus the margin;
        (None, None) before any outcome."""
        if self.latest is None:
            return None, None
        slots = np.array([self._slot(s) for s in starts])
        to_kw = 3600.0 / self.interval_s
        demand = np.where(np.isnan(self.demand_kwh[slots]), self.latest[0], self.demand_kwh[slots])
        supply = np.where(np.isnan(self.supply_kwh[slots]), self.latest[1], self.supply_kwh[slots])
        return self._with_margin(supply * to_kw), self._with_margin(demand * to_kw)

    def _with_margin(self, expected_kw: np.ndarray) -> np.ndarray:
        """The margin where the other side is expected to trade at all; none where it is not
        (the only seller of a community plans no P2P purchase at night)."""
        return np.where(expected_kw > self.min_expected_kw, expected_kw + self.margin_kw, 0.0)
