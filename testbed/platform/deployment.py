"""A platform folder: everything the roles need to meet on one broker.

    <platform_dir>/broker.json            where the broker listens (host, port, tls, ca_file)
    <platform_dir>/keys/peers/<peer>/     a peer's key pair (peer.key, peer.pub) and broker.password
    <platform_dir>/keys/<role>/           operator, controller, monitor: broker.password
                                          (keys/ is `[ledger] keys_dir` when that is set)
    <platform_dir>/broker/                mosquitto.conf, passwd (hashed), acl, data/, broker.log
    <platform_dir>/operator/journal.sqlite

`prepare` makes what is missing (keys and passwords are kept once made). On several computers,
each peer's computer gets its own `keys/peers/<peer>/` folder and `broker.json`; see
docs/platform.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from testbed.config import TestbedConfig
from testbed.platform.broker import MosquittoBroker, TlsFiles
from testbed.platform.credentials import platform_users, read_password
from testbed.platform.link import BrokerAddress
from testbed.platform.registry import KeysRegistry, check_peer_id
from testbed.platform.signing import PeerKey, load_key, load_or_create_key


@dataclass(frozen=True)
class PlatformDir:
    """`shared_keys`: the run ledger's keys folder (`[ledger] keys_dir`) when it is set, so that a
    peer has one identity for the ledger and the platform; else `<root>/keys`."""

    root: Path
    shared_keys: Path | None = None

    @classmethod
    def for_config(cls, root: Path, config: TestbedConfig) -> PlatformDir:
        return cls(root, config.ledger.keys_dir)

    @property
    def keys_dir(self) -> Path:
        return self.shared_keys if self.shared_keys is not None else self.root / "keys"

    @property
    def broker_dir(self) -> Path:
        return self.root / "broker"

    @property
    def broker_json(self) -> Path:
        return self.root / "broker.json"

    @property
    def journal_path(self) -> Path:
        return self.root / "operator" / "journal.sqlite"

    def prepare(self, peers: Sequence[str]) -> dict[str, str]:
        """Key pairs and broker passwords for every peer and role (made where missing)."""
        for peer in peers:
            check_peer_id(peer)
            load_or_create_key(self.keys_dir, peer)
        return platform_users(self.keys_dir, peers)

    def broker(
        self, peers: Sequence[str], *, port: int | None = None, tls: TlsFiles | None = None
    ) -> MosquittoBroker:
        """A broker for these peers in `broker/`; start it, then `write_address`."""
        return MosquittoBroker(self.broker_dir, self.prepare(peers), port=port, tls=tls)

    def write_address(self, address: BrokerAddress) -> None:
        address.write(self.broker_json)

    def address(self) -> BrokerAddress:
        if not self.broker_json.exists():
            raise FileNotFoundError(
                f"{self.broker_json}: no broker address; start the broker with `testbed broker` "
                "or write the file (host, port, tls, ca_file)"
            )
        return BrokerAddress.read(self.broker_json)

    def password(self, user: str) -> str:
        return read_password(self.keys_dir, user)

    def peer_key(self, peer: str) -> PeerKey:
        return load_key(self.keys_dir, peer)

    def registry(self, peers: Sequence[str]) -> KeysRegistry:
        return KeysRegistry(self.keys_dir, peers)
