"""A ledger entry and its hash.

Each entry is (seq, time, kind, subject, payload, prev_hash), then its hash and the operator's
signature of the hash. The hash is SHA-256 of the canonical JSON list of those six fields, the
payload as the exact stored text; `prev_hash` is the previous entry's hash (64 zeros for the first),
so changing, removing, inserting or moving any entry breaks a link that the operator's key would
have to sign again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from testbed.ledger.canonical import canonical_bytes, sha256_hex

GENESIS_PREV_HASH = "0" * 64

KINDS = (
    "genesis",
    "wallet_open",
    "register",
    "approve",
    "refuse",
    "deregister",
    "mint",
    "redeem",
    "order",
    "rejected_message",
    "clearing",
    "delivery",
    "settlement",
    "transfer",
    "close",
)


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    time: str  # ISO 8601, UTC (plant time)
    kind: str
    subject: str  # the peer or wallet the entry is about ("" for none)
    payload: str  # canonical JSON
    prev_hash: str
    hash: str
    signature: str  # the operator's Ed25519 signature of bytes.fromhex(hash)

    def data(self) -> dict[str, Any]:
        """The payload as data."""
        data: dict[str, Any] = json.loads(self.payload)
        return data


def entry_hash(seq: int, time: str, kind: str, subject: str, payload: str, prev_hash: str) -> str:
    return sha256_hex(canonical_bytes([seq, time, kind, subject, payload, prev_hash]))


def head_message(seq: int, hash_hex: str) -> bytes:
    """What the operator signs for the ledger's head (the last entry): detects a cut tail."""
    return canonical_bytes({"head_seq": seq, "head_hash": hash_hex})
