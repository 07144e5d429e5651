"""Order signatures: each peer signs its orders with its own Ed25519 key; the operator checks them
with nothing but the public key in the registry.

The key files follow the registry's layout (`<keys_dir>/peers/<peer>/peer.key`, PKCS#8 PEM, owner
read-only; `peer.pub`, 64 hex digits). The signed bytes are the canonical JSON (keys sorted, no
spaces) of the order's fields and its signing time, so changing the quantity, price, side, peer,
interval or id breaks the signature.

This is the seam to the ledger (registry, wallets, hash-chained ledger): it signs and checks with
the same primitive and key layout, and the ledger records the same signed content.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from testbed.platform.messages import SignedOrder

PEER_KEY_NAME = "peer"


class KeyFileError(ValueError):
    """A key file that cannot be used, with the reason."""


def canonical_bytes(data: Any) -> bytes:
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def order_content(
    *,
    order_id: str,
    peer: str,
    side: str,
    quantity_kwh: float,
    price: float,
    interval_start: datetime,
    signed_at: datetime,
) -> bytes:
    """The bytes a peer signs for one order."""
    return canonical_bytes(
        {
            "order_id": order_id,
            "peer": peer,
            "side": str(side),
            "quantity_kwh": float(quantity_kwh),
            "price": float(price),
            "interval_start": _iso(interval_start),
            "signed_at": _iso(signed_at),
        }
    )


@dataclass(frozen=True)
class PeerKey:
    """A peer's private key (stays on the peer's computer) and its public key in hex."""

    peer: str
    private_key: Ed25519PrivateKey
    public_hex: str

    def sign_order(
        self,
        *,
        order_id: str,
        side: str,
        quantity_kwh: float,
        price: float,
        interval_start: datetime,
        signed_at: datetime,
    ) -> SignedOrder:
        content = order_content(
            order_id=order_id,
            peer=self.peer,
            side=side,
            quantity_kwh=quantity_kwh,
            price=price,
            interval_start=interval_start,
            signed_at=signed_at,
        )
        return SignedOrder(
            order_id=order_id,
            peer=self.peer,
            side=side,  # type: ignore[arg-type]
            quantity_kwh=quantity_kwh,
            price=price,
            interval_start=interval_start,
            signed_at=signed_at,
            signature=self.private_key.sign(content).hex(),
        )


def signature_valid(public_hex: str, order: SignedOrder) -> bool:
    """Whether `order` was signed, unchanged, by the holder of `public_hex`."""
    content = order_content(
        order_id=order.order_id,
        peer=order.peer,
        side=order.side,
        quantity_kwh=order.quantity_kwh,
        price=order.price,
        interval_start=order.interval_start,
        signed_at=order.signed_at,
    )
    try:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex))
        key.verify(bytes.fromhex(order.signature), content)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def public_hex(key: Ed25519PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        .hex()
    )


def peer_folder(keys_dir: Path, peer: str) -> Path:
    return keys_dir / "peers" / peer


def load_or_create_key(keys_dir: Path, peer: str) -> PeerKey:
    """The peer's key pair in its folder, made (and written, private key mode 0600) on first use."""
    folder = peer_folder(keys_dir, peer)
    key_path = folder / f"{PEER_KEY_NAME}.key"
    if key_path.exists():
        return load_key(keys_dir, peer)
    folder.mkdir(parents=True, exist_ok=True)
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    tmp = key_path.with_name(f".{key_path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    os.replace(tmp, key_path)
    (folder / f"{PEER_KEY_NAME}.pub").write_text(public_hex(private) + "\n", encoding="utf-8")
    return PeerKey(peer, private, public_hex(private))


def load_key(keys_dir: Path, peer: str, key_path: Path | None = None) -> PeerKey:
    """The peer's private key from its folder (or `key_path`)."""
    path = key_path or peer_folder(keys_dir, peer) / f"{PEER_KEY_NAME}.key"
    try:
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as error:
        raise KeyFileError(f"{path}: cannot read the key ({error.strerror})") from None
    except ValueError as error:
        raise KeyFileError(f"{path}: not a PEM private key ({error})") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 key")
    return PeerKey(peer, private, public_hex(private))


def read_public_key(keys_dir: Path, peer: str) -> str | None:
    """The public key a peer registered (hex), or None when it has none."""
    path = peer_folder(keys_dir, peer) / f"{PEER_KEY_NAME}.pub"
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return text if len(text) == 64 else None
