"""A peer's identity, kept in the peer's own folder: its key pair and its KYC record.

Peer side only: the private key is read here and used to sign the peer's registration request and
its orders; what leaves the folder is the public key, the KYC record for the operator's custody, and
signatures.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from testbed.ledger import keys
from testbed.ledger.canonical import canonical_bytes
from testbed.ledger.kyc import KycRecord, kyc_hash, load_record, new_salt, store_record
from testbed.ledger.orders import SignedOrder, sign_order
from testbed.market.book import Order

PEER_KEY_NAME = "peer"


@dataclass(frozen=True, slots=True)
class RegistrationRequest:
    """What a peer hands the operator to join: its public key and KYC record with the salt (both
    off-ledger), and its signature over (peer, public key, KYC hash), proving it holds the key."""

    peer: str
    public_key: str
    kyc: KycRecord
    salt: str
    signature: str

    @property
    def kyc_hash(self) -> str:
        return kyc_hash(self.kyc, self.salt)


def registration_content(peer: str, public_key: str, kyc_hash_hex: str) -> bytes:
    """The bytes a peer signs to register."""
    return canonical_bytes({"peer": peer, "public_key": public_key, "kyc_hash": kyc_hash_hex})


def registration_signature_valid(
    peer: str, public_key: str, kyc_hash_hex: str, signature: str
) -> bool:
    """Operator side (and anyone's): the request was signed by the key it registers."""
    return keys.signature_valid(
        public_key, registration_content(peer, public_key, kyc_hash_hex), signature
    )


class PeerIdentity:
    """A peer's key pair and KYC record in its folder (made on first use)."""

    def __init__(self, peer: str, folder: Path, key: keys.KeyPair, kyc: KycRecord, salt: str):
        self.peer = peer
        self.folder = folder
        self._key = key
        self.kyc = kyc
        self.salt = salt

    @classmethod
    def load_or_create(cls, peer: str, folder: Path, kyc: KycRecord) -> PeerIdentity:
        """The identity in `folder`; a new key pair the first time. The KYC record is `kyc` (from
        the configuration); its salt is kept while the record stays the same."""
        key = keys.load_or_create(folder, PEER_KEY_NAME)
        stored = load_record(folder)
        salt = stored[1] if stored is not None and stored[0] == kyc else new_salt()
        if stored is None or stored != (kyc, salt):
            store_record(folder, kyc, salt)
        return cls(peer, folder, key, kyc, salt)

    @property
    def public_key(self) -> str:
        return self._key.public_hex

    def registration_request(self) -> RegistrationRequest:
        digest = kyc_hash(self.kyc, self.salt)
        signature = self._key.sign(registration_content(self.peer, self.public_key, digest))
        return RegistrationRequest(self.peer, self.public_key, self.kyc, self.salt, signature)

    def sign_order(self, order: Order, signed_at: datetime) -> SignedOrder:
        if order.peer != self.peer:
            raise ValueError(f"peer {self.peer!r} cannot sign an order of peer {order.peer!r}")
        return sign_order(self._key, order, signed_at)
