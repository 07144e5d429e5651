"""Who may trade: the registry the operator checks each order against.

`Registry` is the seam to the registry with KYC and wallets (the ledger work): the operator needs
only the ordered list of peers, each peer's public key and whether it is approved. `KeysRegistry`
reads the public keys from the keys folder (`<keys_dir>/peers/<peer>/peer.pub`), with the peers
of the experiment's configuration in its order (the site's peers).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from testbed.platform.signing import read_public_key

PEER_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
RESERVED_USERS = frozenset({"operator", "controller", "monitor"})


class RegistryError(ValueError):
    """A registry that cannot be used, with the reason."""


def check_peer_id(peer: str) -> str:
    """A peer id is its broker user name and a topic level: letters, digits, '_' and '-'."""
    if not PEER_ID.fullmatch(peer):
        raise RegistryError(
            f"peer id {peer!r}: use 1-64 letters, digits, '_' or '-' (it is a broker user name "
            "and an MQTT topic level)"
        )
    if peer in RESERVED_USERS:
        raise RegistryError(f"peer id {peer!r} is reserved for a platform role")
    return peer


class Registry(Protocol):
    """The operator's view of the registered peers."""

    @property
    def peers(self) -> Sequence[str]:
        """Approved peers, in the order ties in the book are broken."""
        ...

    def public_key(self, peer: str) -> str | None:
        """The peer's Ed25519 public key (hex), or None when it has none or is not approved."""
        ...


class KeysRegistry:
    """Approved peers: the configuration's, each with the public key in the keys folder."""

    def __init__(self, keys_dir: Path, peers: Sequence[str]) -> None:
        self._peers = [check_peer_id(peer) for peer in peers]
        self._keys: dict[str, str] = {}
        for peer in self._peers:
            key = read_public_key(keys_dir, peer)
            if key is not None:
                self._keys[peer] = key

    @property
    def peers(self) -> Sequence[str]:
        return self._peers

    def public_key(self, peer: str) -> str | None:
        return self._keys.get(peer)
