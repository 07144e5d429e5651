"""Order signatures on the platform: each peer signs its orders with its own Ed25519 key; the
operator checks them with nothing but the public key in the registry.

Keys and signed bytes are the ledger's (`testbed.ledger.keys`, `testbed.ledger.orders`): a peer's
folder `<keys_dir>/peers/<peer>/` holds `peer.key` (PKCS#8 PEM, owner read-only) and `peer.pub`
(64 hex digits), the same identity the run's ledger registers; the signed bytes are the canonical
JSON of the order's fields and its signing time, so a changed quantity, price, side, peer, interval
or id breaks the signature, and the ledger accepts the very signature the operator checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from testbed.ledger import keys
from testbed.ledger import orders as ledger_orders
from testbed.ledger.canonical import canonical_bytes
from testbed.ledger.keys import KeyFileError
from testbed.market.book import Order
from testbed.platform.messages import SignedOrder

PEER_KEY_NAME = "peer"

__all__ = [
    "KeyFileError",
    "PeerKey",
    "load_key",
    "load_or_create_key",
    "peer_folder",
    "read_public_key",
    "signature_valid",
    "to_ledger",
]


@dataclass(frozen=True)
class PeerKey:
    """A peer's key pair (the private key stays on the peer's computer)."""

    peer: str
    pair: keys.KeyPair

    @property
    def public_hex(self) -> str:
        return self.pair.public_hex

    def sign(self, order: Order, signed_at: datetime) -> SignedOrder:
        """The order as the peer submits it, signed."""
        if order.peer != self.peer:
            raise ValueError(f"peer {self.peer!r} cannot sign an order of peer {order.peer!r}")
        signed = ledger_orders.sign_order(self.pair, order, signed_at)
        return SignedOrder(
            order_id=order.order_id,
            peer=order.peer,
            side=order.side.value,
            quantity_kwh=order.quantity_kwh,
            price=order.price,
            interval_start=order.interval_start,
            signed_at=signed_at,
            signature=signed.signature,
        )


def to_ledger(signed: SignedOrder) -> ledger_orders.SignedOrder:
    """The submitted order in the ledger's form (what `LedgerOperator.admit` records)."""
    return ledger_orders.SignedOrder(signed.as_order(), signed.signed_at, signed.signature)


def signed_bytes(signed: SignedOrder) -> bytes:
    return canonical_bytes(ledger_orders.order_content(signed.as_order(), signed.signed_at))


def signature_valid(public_hex: str, signed: SignedOrder) -> bool:
    """Whether `signed` was signed, unchanged, by the holder of `public_hex`."""
    return keys.signature_valid(public_hex, signed_bytes(signed), signed.signature)


def peer_folder(keys_dir: Path, peer: str) -> Path:
    return keys_dir / "peers" / peer


def load_or_create_key(keys_dir: Path, peer: str) -> PeerKey:
    """The peer's key pair in its folder, made (private key mode 0600) on first use."""
    return PeerKey(peer, keys.load_or_create(peer_folder(keys_dir, peer), PEER_KEY_NAME))


def load_key(keys_dir: Path, peer: str, key_path: Path | None = None) -> PeerKey:
    """The peer's private key from its folder (or `key_path`); `KeyFileError` names the file."""
    path = key_path or peer_folder(keys_dir, peer) / f"{PEER_KEY_NAME}.key"
    if not path.exists():
        raise KeyFileError(
            f"{path}: no key for peer {peer!r} (make it with `testbed platform init`)"
        )
    return PeerKey(peer, keys.load(path))


def read_public_key(keys_dir: Path, peer: str) -> str | None:
    """The public key a peer registered (hex), or None when it has none (or not a valid one)."""
    path = peer_folder(keys_dir, peer) / f"{PEER_KEY_NAME}.pub"
    if not path.is_file():
        return None
    try:
        return keys.read_public(path)
    except KeyFileError:
        return None
