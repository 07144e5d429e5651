"""The ledger of one run: the operator's service and every peer's identity, from the config.

In this single process the peers' identities live beside the operator, each in its own folder; a
peer's agent in its own process would load only its own (`PeerIdentity.load_or_create`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from testbed.ledger import keys
from testbed.ledger.identity import PeerIdentity
from testbed.ledger.kyc import KycRecord
from testbed.ledger.operator import FinalisedHook, LedgerOperator, Opening
from testbed.ledger.orders import SignedOrder
from testbed.market.book import Order

OPERATOR_KEY_NAME = "operator"
KEYS_DIR_NAME = "keys"


def keys_dir(configured: Path | None, run_dir: Path) -> Path:
    """Where the keys live: the configured folder, else `keys` beside the run directory."""
    return configured if configured is not None else run_dir.resolve().parent / KEYS_DIR_NAME


def operator_public_key(folder: Path) -> str | None:
    """The operator's public key kept in a keys folder, or None when there is none."""
    path = folder / OPERATOR_KEY_NAME / f"{OPERATOR_KEY_NAME}.pub"
    return keys.read_public(path) if path.is_file() else None


def _check_distinct_keys(identities: dict[str, PeerIdentity]) -> None:
    """Each peer signs with a key of its own (the ledger refuses a key registered twice)."""
    holders: dict[str, str] = {}
    for name, identity in identities.items():
        other = holders.setdefault(identity.public_key, name)
        if other != name:
            raise keys.KeyFileError(
                f"{identity.folder / 'peer.key'}: the same key pair as peer {other!r}'s; each "
                "peer needs its own (remove this folder's peer.key and peer.pub to make one)"
            )


def default_kyc(peer: str, peer_config: Any, override: Any | None) -> KycRecord:
    """A peer's KYC record: what the configuration says of it, replaced field by field by
    `[ledger.kyc.<peer>]`."""
    assets = peer_config.peer_assets(peer)
    summary: dict[str, Any] = {"role": assets.role}
    if assets.pv is not None:
        summary["pv_kwp"] = assets.pv.peak_power_kw
    if assets.battery is not None:
        summary["battery_kwh"] = assets.battery.capacity_kwh
    if assets.ev is not None:
        summary["ev_kwh"] = assets.ev.capacity_kwh
    data: dict[str, Any] = {
        "name": f"peer {peer}",
        "contact": f"{peer}@lab",
        "meter_id": f"{peer}/{peer_config.meter.name}",
        "assets": summary,
        "bus": peer,
    }
    if override is not None:
        data.update(override.model_dump(exclude_none=True))
    return KycRecord.model_validate(data)


@dataclass
class RunLedger:
    """The operator's ledger service and the peers' identities of one run."""

    operator: LedgerOperator
    identities: dict[str, PeerIdentity]
    keys_dir: Path

    def start(self, time: datetime) -> dict[str, str]:
        """Genesis and registrations; returns the refused peers with their reasons."""
        requests = [identity.registration_request() for identity in self.identities.values()]
        return self.operator.start(time, requests)

    def sign(self, order: Order, signed_at: datetime) -> SignedOrder:
        """Peer side: the order signed by its own peer's key."""
        return self.identities[order.peer].sign_order(order, signed_at)

    def admit(
        self, time: datetime, candidates: Sequence[tuple[SignedOrder, str | None]]
    ) -> tuple[list[Order], list[tuple[Order, str]]]:
        """Operator side: record and admit signed orders (`LedgerOperator.admit`)."""
        return self.operator.admit(time, candidates)

    def close(self, time: datetime | None, status: str) -> None:
        writer = self.operator.writer
        try:
            if time is not None and writer.next_seq > 0 and not writer.state.closed:
                self.operator.close(time, status)
        finally:
            writer.close()


def open_run_ledger(
    config: Any,
    run_dir: Path,
    run_id: str,
    db_file: Path,
    on_finalised: FinalisedHook | None = None,
) -> RunLedger:
    """The run's ledger in `db_file` (the run store's SQLite), with keys from the keys folder."""
    from testbed.ledger.store import LedgerWriter

    ledger_config = config.ledger
    folder = keys_dir(ledger_config.keys_dir, run_dir)
    operator_key = keys.load_or_create(folder / OPERATOR_KEY_NAME, OPERATOR_KEY_NAME)
    identities = {
        name: PeerIdentity.load_or_create(
            name,
            folder / "peers" / name,
            default_kyc(name, peer, ledger_config.kyc.get(name)),
        )
        for name, peer in sorted(config.peers.items())
    }
    _check_distinct_keys(identities)
    writer = LedgerWriter(db_file, operator_key)
    operator = LedgerOperator(
        writer,
        run_id=run_id,
        currency=config.prices.currency,
        interval_s=config.market.interval_s,
        prices=config.prices.model_dump(mode="json"),
        opening=Opening(ledger_config.opening_balance, ledger_config.institution_balance),
        kyc_custody=folder / OPERATOR_KEY_NAME / "kyc",
        on_finalised=on_finalised,
    )
    return RunLedger(operator, identities, folder)
