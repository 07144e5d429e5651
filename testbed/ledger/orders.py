"""Signed orders: what a peer signs (peer side) and how the operator checks it (operator side).

A peer's agent, in this process or in its own on another computer, signs each order with its own
private key (`sign_order`); the message it sends is a `SignedOrder`. The operator checks it with
nothing but the public key the peer registered (`order_signature_valid`) and the order window
(`order_window`). The signed content is the order's canonical JSON (`order_content`), so a changed
id, peer, quantity, price, side, interval or signing time breaks the signature. The submission
sequence that breaks price ties is the operator's (`testbed.trading.BookClearer`), not signed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from testbed.ledger.canonical import canonical_bytes
from testbed.ledger.keys import KeyPair, signature_valid
from testbed.market.book import Order, Side


@dataclass(frozen=True, slots=True)
class SignedOrder:
    """An order as a peer sends it: the order, when it was signed, and the peer's signature."""

    order: Order
    signed_at: datetime
    signature: str


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC, the form every time on the ledger takes."""
    if moment.tzinfo is None:
        raise ValueError(f"time {moment.isoformat()} has no timezone; give a UTC datetime")
    return moment.astimezone(UTC).isoformat()


def order_content(order: Order, signed_at: datetime) -> dict[str, Any]:
    """The fields a peer signs."""
    return {
        "order_id": order.order_id,
        "peer": order.peer,
        "side": str(order.side),
        "quantity_kwh": order.quantity_kwh,
        "price": order.price,
        "interval_start": iso(order.interval_start),
        "signed_at": iso(signed_at),
    }


def order_from_content(content: dict[str, Any]) -> tuple[Order, datetime]:
    """The order and signing time back from `order_content` (as stored on the ledger)."""
    order = Order(
        order_id=content["order_id"],
        peer=content["peer"],
        side=Side(content["side"]),
        quantity_kwh=content["quantity_kwh"],
        price=content["price"],
        interval_start=datetime.fromisoformat(content["interval_start"]),
    )
    return order, datetime.fromisoformat(content["signed_at"])


def sign_order(key: KeyPair, order: Order, signed_at: datetime) -> SignedOrder:
    """Peer side: sign `order` with the peer's private key."""
    return SignedOrder(order, signed_at, key.sign(canonical_bytes(order_content(order, signed_at))))


def order_signature_valid(public_key_hex: str, signed: SignedOrder) -> bool:
    """Operator side: whether the order was signed by the holder of `public_key_hex`, unchanged."""
    message = canonical_bytes(order_content(signed.order, signed.signed_at))
    return signature_valid(public_key_hex, message, signed.signature)


def order_window(interval_start: datetime, interval_s: float) -> tuple[datetime, datetime]:
    """When an order for the interval starting at `interval_start` may be signed: from one interval
    before it up to its start (the gate closes earlier; the run's first interval trades at its
    start)."""
    return interval_start - timedelta(seconds=interval_s), interval_start
