"""What a run sent to the chain, read from its run.sqlite alone (no node, no web3)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ChainStatus:
    address: str
    chain_id: int
    url: str
    transactions: int
    gas_used: int
    sent_upto: int  # the last ledger entry carried by a transaction (-1: none yet)
    ledger_last_seq: int

    def describe(self) -> str:
        return (
            f"On chain: contract {self.address} (chain {self.chain_id}, {self.url}): "
            f"{self.transactions:,} transactions, {self.gas_used:,} gas, ledger entries up to "
            f"{self.sent_upto} of 0-{self.ledger_last_seq} sent (orders and deliveries stay off "
            "chain)."
        )


def chain_status(conn: sqlite3.Connection) -> ChainStatus | None:
    """The run's chain figures, or None when the run sent nothing to a chain."""
    tables = {
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'chain_%'"
        )
    }
    if not {"chain_contract", "chain_tx"} <= tables:
        return None
    contract = conn.execute("SELECT address, chain_id, url FROM chain_contract").fetchone()
    if contract is None:
        return None
    count, gas, upto = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(gas_used), 0), COALESCE(MAX(last_seq), -1) FROM chain_tx"
    ).fetchone()
    last = conn.execute("SELECT COALESCE(MAX(seq), -1) FROM ledger").fetchone()[0]
    return ChainStatus(
        str(contract[0]),
        int(contract[1]),
        str(contract[2]),
        int(count),
        int(gas),
        int(upto),
        int(last),
    )
