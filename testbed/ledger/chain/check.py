"""Compare a run's chain with its embedded ledger: send what is still waiting, then read every
wallet and the last anchored entry back from the contract."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from testbed.ledger.chain.account import load_account
from testbed.ledger.chain.mirror import ChainMirror, ChainUnavailable
from testbed.ledger.chain.node import LocalNode, start_node
from testbed.ledger.chain.run_chain import CHAIN_FOLDER, STATE_FILE
from testbed.ledger.verify import verify_run

DB_FILE = "run.sqlite"


@dataclass
class ChainCheck:
    url: str
    address: str
    sent_now: int  # calls that were still waiting and went out during the check
    transactions: int
    gas_used: int
    anchored_seq: int
    currency: str
    on_chain: dict[str, tuple[int, int]] = field(default_factory=dict)  # (balance, debt) paisa
    in_ledger: dict[str, tuple[int, int]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_chain(
    run_dir: Path,
    url: str | None = None,
    timeout_s: float = 10.0,
    account_key_file: Path | None = None,
) -> ChainCheck:
    """See the module docstring. Without `url`: the run's own node, started again from the state
    it left in the run directory, else the node the run used. `account_key_file`: the key of the
    account that writes the run's contract, when the node does not hold it unlocked."""
    account = load_account(account_key_file) if account_key_file else None
    db_path = run_dir / DB_FILE
    report = verify_run(run_dir)
    if report.state is None:
        raise ChainUnavailable(f"{run_dir}: {report.describe()}")
    with sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True) as conn:
        has_table = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE name = 'chain_contract'"
        ).fetchone()
        row = conn.execute("SELECT url FROM chain_contract").fetchone() if has_table else None
    if row is None:
        raise ChainUnavailable(f"{run_dir}: the run sent nothing to a chain ([ledger.chain])")
    node: LocalNode | None = None
    state = run_dir / CHAIN_FOLDER / STATE_FILE
    if url is None and state.is_file():
        node = start_node(state_path=state, log_path=state.parent / "anvil.log")
        url = node.url
    mirror = ChainMirror(db_path, url or str(row[0]), timeout_s, account)
    try:
        deployment = mirror.connect(report.state.run_id)
        sent = mirror.sync()
        wallets = sorted(report.wallets)
        seq, anchored_hash = mirror.anchor()
        check = ChainCheck(
            url=mirror.url,
            address=deployment.address,
            sent_now=sent,
            transactions=0,
            gas_used=0,
            anchored_seq=seq,
            currency=report.state.currency,
            on_chain=mirror.balances(wallets),
            in_ledger=dict(report.wallets),
        )
        with sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True) as conn:
            count, gas = conn.execute("SELECT COUNT(*), SUM(gas_used) FROM chain_tx").fetchone()
            found = conn.execute("SELECT hash FROM ledger WHERE seq = ?", (seq,)).fetchone()
    finally:
        mirror.close()
        if node is not None:
            node.stop()
    check.transactions, check.gas_used = int(count), int(gas or 0)
    if not report.ok:
        check.problems.append(report.describe())
    for name in wallets:
        if check.on_chain[name] != check.in_ledger[name]:
            check.problems.append(
                f"wallet {name}: {check.on_chain[name]} (balance, debt in paisa) on chain, "
                f"{check.in_ledger[name]} in the ledger"
            )
    if found is None or found[0] != anchored_hash:
        check.problems.append(
            f"the chain anchors ledger entry {seq} with hash {anchored_hash[:12]}…, which the "
            "ledger does not hold: the ledger was rewritten after it went on chain"
        )
    return check
