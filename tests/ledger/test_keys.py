"""Key folders that cannot be used are named before a run starts: a public key file that is not
the private key's, and two peers with one key pair."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from testbed.config import load_config
from testbed.ledger import keys
from testbed.ledger.run_ledger import open_run_ledger

REPO = Path(__file__).resolve().parents[2]


def test_a_public_key_file_that_is_not_the_private_keys_is_named(tmp_path: Path) -> None:
    mine = keys.load_or_create(tmp_path / "B", "peer")
    other = keys.load_or_create(tmp_path / "A", "peer")
    assert keys.load_or_create(tmp_path / "B", "peer").public_hex == mine.public_hex
    shutil.copy(tmp_path / "A" / "peer.pub", tmp_path / "B" / "peer.pub")
    with pytest.raises(keys.KeyFileError, match=r"B/peer.pub: not the public key of .*B/peer.key"):
        keys.load_or_create(tmp_path / "B", "peer")
    (tmp_path / "B" / "peer.pub").unlink()  # written again from the private key
    assert keys.load_or_create(tmp_path / "B", "peer").public_hex == mine.public_hex
    assert (tmp_path / "B" / "peer.pub").read_text().strip() == mine.public_hex != other.public_hex


def test_two_peers_with_one_key_pair_are_named_before_the_ledger_opens(tmp_path: Path) -> None:
    config = load_config(REPO / "configs" / "emulated.toml")
    config = config.model_copy(
        update={"ledger": config.ledger.model_copy(update={"keys_dir": tmp_path / "keys"})}
    )
    peers = tmp_path / "keys" / "peers"
    keys.load_or_create(peers / "A", "peer")
    (peers / "B").mkdir(parents=True)
    for name in ("peer.key", "peer.pub"):
        shutil.copy(peers / "A" / name, peers / "B" / name)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with pytest.raises(keys.KeyFileError, match=r"B/peer.key: the same key pair as peer 'A'"):
        open_run_ledger(config, run_dir, "twins", run_dir / "run.sqlite")
    assert not (run_dir / "run.sqlite").exists()
