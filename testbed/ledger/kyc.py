"""Know-your-consumer records: kept off the ledger, which holds only their salted hash.

The peer keeps its record and a random salt in its own folder and hands both to the operator (the
KYC custodian) off-ledger; the ledger's `register` entry carries SHA-256(salt + canonical record).
Anyone shown the record and the salt can check it against the ledger; nobody can read the record
from the ledger, and the salt stops guessing it from a list of likely names and meters.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from testbed.ledger.canonical import canonical_bytes, sha256_hex

KYC_FILE = "kyc.json"


class KycRecord(BaseModel):
    """Who a peer is and what it brings: name, contact, meter id, assets, bus."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    contact: str = ""
    meter_id: str = ""
    assets: dict[str, Any] = Field(default_factory=dict)
    bus: str = ""


class KycOverride(BaseModel):
    """`[ledger.kyc.<peer>]` in the configuration: fields that replace the defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    contact: str | None = None
    meter_id: str | None = None
    assets: dict[str, Any] | None = None
    bus: str | None = None


def kyc_hash(record: KycRecord, salt_hex: str) -> str:
    """SHA-256 of the salt followed by the record's canonical JSON."""
    return sha256_hex(bytes.fromhex(salt_hex) + canonical_bytes(record.model_dump(mode="json")))


def new_salt() -> str:
    return secrets.token_hex(16)


def review(record: KycRecord, meters_in_use: set[str]) -> str | None:
    """The operator's check of a record: why it is refused, or None to approve it."""
    if not record.name.strip():
        return "KYC record has no name"
    if not record.meter_id.strip():
        return "KYC record has no meter id (the PCC meter the peer is settled on)"
    if record.meter_id in meters_in_use:
        return f"meter id {record.meter_id!r} is already registered to another peer"
    if not record.bus.strip():
        return "KYC record has no bus (where the peer connects to the feeder)"
    return None


def store_record(folder: Path, record: KycRecord, salt_hex: str) -> None:
    """Keep a record and its salt in `folder` (a peer's own folder, or the operator's custody)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = {"record": record.model_dump(mode="json"), "salt": salt_hex}
    (folder / KYC_FILE).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def load_record(folder: Path) -> tuple[KycRecord, str] | None:
    """The record and salt kept in `folder`, or None when there is none."""
    path = folder / KYC_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return KycRecord.model_validate(data["record"]), str(data["salt"])
    except (ValueError, KeyError, TypeError, ValidationError) as error:
        raise ValueError(f"{path}: not a KYC record with its salt ({error})") from None
