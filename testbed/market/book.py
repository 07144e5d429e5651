"""The order book types shared by every mechanism."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

# The smallest quantity the market resolves: an order of less is rejected (see matching.py).
QUANTITY_RESOLUTION_KWH = 1e-9


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


@dataclass(frozen=True, slots=True)
class Order:
    """A bid (buy) or ask (sell) for energy in one market interval."""

    order_id: str
    peer: str
    side: Side
    quantity_kwh: float
    price: float  # limit price, currency per kWh
    interval_start: datetime
    time: float = 0.0  # submission time, seconds (orders earlier in time win ties)


@dataclass(frozen=True, slots=True)
class Trade:
    """Energy sold by one peer to another at one price."""

    buy_order_id: str
    sell_order_id: str
    buyer: str
    seller: str
    quantity_kwh: float
    price: float  # what the buyer pays per kWh
    seller_price: float | None = None  # what the seller receives, when not the same
    # Network usage and loss charge per kWh the buyer pays the network operator for this trade
    # (by electrical distance, testbed.network.charges); None: the flat prices.network_charge.
    network_charge: float | None = None

    @property
    def received_price(self) -> float:
        """The price the seller receives per kWh."""
        return self.price if self.seller_price is None else self.seller_price
