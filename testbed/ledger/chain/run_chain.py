"""One run's chain: its node (the run's own anvil, or a configured one) and its contract."""

from __future__ import annotations

import threading
from pathlib import Path

from testbed.ledger.chain.account import load_account
from testbed.ledger.chain.mirror import ChainMirror, ChainUnavailable, node_down_message
from testbed.ledger.chain.node import LocalNode, answers, start_node
from testbed.ledger.config import ChainConfig
from testbed.ledger.entries import Entry

CHAIN_FOLDER = "chain"  # in the run directory: the own node's state and log
STATE_FILE = "anvil-state.json"


class RunChain:
    """Sends the ledger's finalised results after every settlement and at the end of the run.

    Sending happens in a thread of its own, so a slow or absent node never holds up the control
    loop: each settlement only wakes the thread."""

    def __init__(self, mirror: ChainMirror, node: LocalNode | None) -> None:
        self.mirror = mirror
        self.node = node
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._send_loop, name="ledger-chain", daemon=True)
        self._thread.start()

    def on_finalised(self, _entry: Entry) -> None:
        self._wake.set()

    def _send_loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            self.mirror.try_sync()

    def close(self) -> None:
        """Send what is left (a node that is down keeps it waiting in the ledger), stop the own
        node (its state is written to the run directory)."""
        self._stopping = True
        self._wake.set()
        self._thread.join()
        try:
            self.mirror.try_sync()
        finally:
            self.mirror.close()
            if self.node is not None:
                self.node.stop()


def start_run_node(config: ChainConfig, run_dir: Path) -> tuple[str, LocalNode | None]:
    """The node's URL, and the node when the run starts its own; a configured node that does not
    answer raises ChainUnavailable (one clear message, before anything is recorded), an account
    key file that cannot be read ChainKeyError."""
    if config.account_key_file is not None:
        load_account(config.account_key_file)
    if config.url is not None:
        if not answers(config.url, config.timeout_s):
            raise ChainUnavailable(node_down_message(config.url))
        return config.url, None
    folder = run_dir / CHAIN_FOLDER
    node = start_node(state_path=folder / STATE_FILE, log_path=folder / "anvil.log")
    return node.url, node


def open_run_chain(
    config: ChainConfig, url: str, node: LocalNode | None, db_path: Path, run_id: str
) -> RunChain:
    """Deploy (or find again) the run's contract on the node (the run's own node gives the
    operator's account its ether)."""
    account = load_account(config.account_key_file) if config.account_key_file else None
    mirror = ChainMirror(db_path, url, config.timeout_s, account)
    try:
        if node is not None and account is not None:
            node.fund(account.address)
        mirror.connect(run_id)
    except BaseException:
        mirror.close()
        if node is not None:
            node.stop()
        raise
    return RunChain(mirror, node)
