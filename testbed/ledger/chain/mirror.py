"""Sends the ledger's finalised results to the contract, in order, and records each transaction.

The embedded ledger is the queue: what has been sent is recorded in `chain_tx` (one row per
transaction, by the last ledger entry it carries) in the same run.sqlite, so a node that is down
only delays the calls; they go out in order when it answers again, from this process or from
`testbed ledger chain RUN` later.

Nothing is applied twice. A call whose answer was lost (the node applied it and then the connection
broke, or this process stopped before recording it) is not known to be on chain; the contract
applies each call once, by the last ledger entry it carries (`appliedSeq`), so before sending
anything after such an uncertainty the mirror asks the contract how far it got, and records the
calls already applied from their `Applied` events instead of sending them again.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import (
    ContractLogicError,
    TimeExhausted,
    TransactionNotFound,
    Web3Exception,
)

from testbed.ledger.chain.artifact import compiled_contract
from testbed.ledger.chain.calls import CallTranslator, ChainCall, wallet_id
from testbed.ledger.chain.node import answers
from testbed.ledger.entries import Entry
from testbed.ledger.store import COLUMNS
from testbed.ledger.wallets import OPERATOR

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS chain_contract (
    address TEXT NOT NULL, chain_id INTEGER NOT NULL, url TEXT NOT NULL, tx_hash TEXT NOT NULL,
    gas_used INTEGER NOT NULL, block INTEGER NOT NULL, deployed_at TEXT NOT NULL,
    solc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS chain_tx (
    last_seq INTEGER PRIMARY KEY, function TEXT NOT NULL, interval_start TEXT,
    n_moves INTEGER NOT NULL, tx_hash TEXT NOT NULL, gas_used INTEGER NOT NULL,
    block INTEGER NOT NULL
);
"""


class ChainUnavailable(RuntimeError):
    """The chain node does not answer, or does not hold this run's contract."""


class ChainRejected(RuntimeError):
    """The contract refused a call (the chain and the embedded ledger disagree)."""


@dataclass(frozen=True, slots=True)
class Deployment:
    address: ChecksumAddress
    chain_id: int
    url: str


def node_down_message(url: str) -> str:
    return (
        f"the chain node at {url} does not answer: start one (`testbed ledger node`) or leave "
        "[ledger.chain] url unset so that the run starts its own"
    )


class ChainMirror:
    """One run's contract on one node (see the module docstring)."""

    def __init__(
        self,
        db_path: Path | str,
        url: str,
        timeout_s: float = 10.0,
        account: LocalAccount | None = None,
    ) -> None:
        """`account`: the key that writes the contract (signed here, sent raw); None: the node's
        first unlocked account (a development node)."""
        self.db_path = Path(db_path)
        self.signer = account
        self.url = url
        self.timeout_s = timeout_s
        # used by one thread at a time: the run's sender thread, then the closing one
        self._conn = sqlite3.connect(
            self.db_path, isolation_level=None, timeout=30.0, check_same_thread=False
        )
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(SCHEMA)
        # no retries inside a call: a node that does not answer is reported at once, and the
        # calls wait in the ledger until the next attempt
        provider = Web3.HTTPProvider(
            url, request_kwargs={"timeout": timeout_s}, exception_retry_configuration=None
        )
        self.w3 = Web3(provider)
        # chain id is checked once in connect(); no ENS names: each transaction is 4 requests
        for middleware in ("validation", "ens_name_to_address"):
            self.w3.middleware_onion.remove(middleware)
        self._contract: Contract | None = None
        self._account: ChecksumAddress | None = None
        self._chain_id = 0
        self._fees: dict[str, int] = {}
        self._translator = CallTranslator()
        self._read_seq = -1
        self._pending: deque[ChainCall] = deque()
        # a call may have gone on chain without its row in chain_tx (the last process stopped
        # between the two, or an answer was lost): ask the contract before the next send
        self._uncertain = True
        self.rejected: str | None = None

    def close(self) -> None:
        self._conn.close()

    # -- the contract ---------------------------------------------------------------------------

    def deployment(self) -> Deployment | None:
        row = self._conn.execute("SELECT address, chain_id, url FROM chain_contract").fetchone()
        return Deployment(Web3.to_checksum_address(row[0]), int(row[1]), row[2]) if row else None

    def connect(self, run_id: str) -> Deployment:
        """The run's contract: deployed on first use, else found again on the node."""
        if not answers(self.url, self.timeout_s):
            raise ChainUnavailable(node_down_message(self.url))
        artifact = compiled_contract()
        with self._rpc("connect"):
            self._account = self.signer.address if self.signer else self.w3.eth.accounts[0]
            chain_id = int(self.w3.eth.chain_id)
            self._chain_id = chain_id
            tip = int(self.w3.eth.max_priority_fee)
            base = int(self.w3.eth.get_block("latest").get("baseFeePerGas", 0))
            self._fees = {"maxFeePerGas": 2 * base + tip, "maxPriorityFeePerGas": tip}
            known = self.deployment()
            if known is None:
                self._check_funds()
                factory = self.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
                constructor = factory.constructor(keccak(text=run_id), wallet_id(OPERATOR))
                tx = self._transact(constructor, {"from": self._account})
                receipt = self.w3.eth.wait_for_transaction_receipt(tx, timeout=self.timeout_s)
                address = Web3.to_checksum_address(str(receipt["contractAddress"]))
                known = Deployment(address, chain_id, self.url)
                self._conn.execute(
                    "INSERT INTO chain_contract VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        known.address,
                        chain_id,
                        self.url,
                        tx.hex(),
                        int(receipt["gasUsed"]),
                        int(receipt["blockNumber"]),
                        datetime.now(UTC).isoformat(),
                        artifact.solc,
                    ),
                )
            elif known.chain_id != chain_id or not self.w3.eth.get_code(known.address):
                raise ChainUnavailable(
                    f"the chain node at {self.url} (chain {chain_id}) holds no contract at "
                    f"{known.address} (chain {known.chain_id}), where this run's results were "
                    "sent: it lost its state, or it is another node"
                )
        self._contract = self.w3.eth.contract(address=known.address, abi=artifact.abi)
        with self._rpc("ttp"):
            writer = str(self._contract.functions.ttp().call())
        if writer != self._account:
            raise ChainUnavailable(
                f"this run's contract {known.address} is written by account {writer}, and this "
                f"sender is {self._account}: give the key of {writer} "
                "([ledger.chain] account_key_file, or --account-key)"
            )
        return known

    @property
    def _sender(self) -> ChecksumAddress:
        if self._account is None:
            raise ChainUnavailable("not connected to the chain (call connect first)")
        return self._account

    def _check_funds(self) -> None:
        if self.signer is not None and int(self.w3.eth.get_balance(self._sender)) == 0:
            raise ChainUnavailable(
                f"account {self._account} holds no ether on the chain at {self.url}: it cannot "
                "pay for gas (fund it first)"
            )

    def _transact(self, function: Any, params: dict[str, Any]) -> HexBytes:
        """Send one transaction: by the node's unlocked account, or signed here and sent raw."""
        if self.signer is None:
            return HexBytes(function.transact(params))
        nonce = self.w3.eth.get_transaction_count(self._sender, "pending")
        built = function.build_transaction({**params, "nonce": nonce, "chainId": self._chain_id})
        signed = self.signer.sign_transaction(built)
        return HexBytes(self.w3.eth.send_raw_transaction(signed.raw_transaction))

    @property
    def contract(self) -> Contract:
        if self._contract is None:
            raise ChainUnavailable("not connected to the chain (call connect first)")
        return self._contract

    # -- sending --------------------------------------------------------------------------------

    def sent_upto(self) -> int:
        """The last ledger entry whose call is on chain (-1: none)."""
        row = self._conn.execute("SELECT MAX(last_seq) FROM chain_tx").fetchone()
        return -1 if row[0] is None else int(row[0])

    def sync(self) -> int:
        """Send every call not yet on chain, in order; returns how many were sent.

        Raises ChainUnavailable when the node stops answering (what is left goes next time) and
        ChainRejected when the contract refuses a call."""
        rows = self._conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM ledger WHERE seq > ? ORDER BY seq",
            (self._read_seq,),
        ).fetchall()
        if rows:
            entries = [Entry(*row) for row in rows]
            self._read_seq = entries[-1].seq
            done = self.sent_upto()
            self._pending.extend(c for c in self._translator.feed(entries) if c.last_seq > done)
        sent = 0
        while self._pending:
            if self._uncertain:
                self._record_applied()
                continue
            try:
                applied_here = self._send(self._pending[0])
            except ChainUnavailable:
                self._uncertain = True
                raise
            if applied_here:
                self._pending.popleft()
                sent += 1
            else:
                self._uncertain = True
        return sent

    def applied_upto(self) -> int:
        """The last ledger entry whose call the contract has applied (0: none)."""
        with self._rpc("appliedSeq"):
            return int(self.contract.functions.appliedSeq().call())

    def _record_applied(self) -> None:
        """Record the waiting calls that the contract already applied (see the module docstring);
        they leave the queue without being sent again."""
        applied = self.applied_upto()
        done = [call for call in self._pending if call.last_seq <= applied]
        if done:
            with self._rpc("Applied events"):
                events = self.contract.events.Applied.get_logs(
                    from_block=0, argument_filters={"ledgerSeq": [c.last_seq for c in done]}
                )
                tx_of = {
                    int(event["args"]["ledgerSeq"]): event["transactionHash"] for event in events
                }
                for call in done:
                    tx = tx_of.get(call.last_seq)
                    receipt = None
                    with contextlib.suppress(TransactionNotFound):
                        receipt = None if tx is None else self.w3.eth.get_transaction_receipt(tx)
                    self._record(call, tx, receipt)
                    log.info(
                        "chain: %s for ledger entry %d was already applied; recorded, not sent "
                        "again",
                        call.function,
                        call.last_seq,
                    )
            for _ in done:
                self._pending.popleft()
        self._uncertain = False

    def try_sync(self) -> bool:
        """`sync` for a run, which goes on whatever the chain does: a node that does not answer is
        logged (the calls wait); a refused call is logged and ends sending for this run (the
        embedded ledger stays the record; `rejected` says why). True when all was sent."""
        if self.rejected is not None:
            return False
        try:
            self.sync()
        except ChainUnavailable as error:
            log.warning("chain: %s; %d calls wait", error, len(self._pending))
            return False
        except ChainRejected as error:
            self.rejected = str(error)
            log.error("chain: %s; nothing more is sent in this run", error)
            return False
        return True

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _send(self, call: ChainCall) -> bool:
        """Send one call; False when the contract had already applied it (another sender)."""
        function = self.contract.get_function_by_name(call.function)(*call.contract_args)
        with self._rpc(f"{call.function} (ledger entry {call.last_seq})"):
            try:
                # the estimate names the contract's objection; then fees and gas are given so
                # that sending takes one request
                gas = function.estimate_gas({"from": self._account})
                params = {**self._fees, "from": self._account, "gas": gas + gas // 5}
                tx = self._transact(function, params)
                receipt = self.w3.eth.wait_for_transaction_receipt(tx, timeout=self.timeout_s)
            except ContractLogicError as error:
                if self.applied_upto() >= call.last_seq:  # another sender was first
                    return False
                raise ChainRejected(
                    f"the contract refused {call.function} for ledger entry {call.last_seq}: "
                    f"{error}"
                ) from error
        if receipt["status"] != 1:
            raise ChainRejected(f"{call.function} for ledger entry {call.last_seq} reverted")
        self._record(call, tx, receipt)
        return True

    def _record(self, call: ChainCall, tx: bytes | None, receipt: Any) -> None:
        """One row of chain_tx; a call found applied whose transaction the node no longer holds
        (a node restarted without its history) is recorded with an empty hash and no gas."""
        self._conn.execute(
            "INSERT OR IGNORE INTO chain_tx VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                call.last_seq,
                call.function,
                call.interval_start,
                call.n_moves,
                HexBytes(tx).hex() if tx is not None else "",
                int(receipt["gasUsed"]) if receipt is not None else 0,
                int(receipt["blockNumber"]) if receipt is not None else -1,
            ),
        )

    @contextlib.contextmanager
    def _rpc(self, what: str) -> Any:
        try:
            yield
        except (requests.exceptions.RequestException, OSError, TimeExhausted) as error:
            raise ChainUnavailable(
                f"the chain node at {self.url} failed during {what}: {error}"
            ) from error
        except ChainRejected:
            raise
        except Web3Exception as error:
            raise ChainRejected(f"the chain refused {what}: {error}") from error

    # -- reading back ---------------------------------------------------------------------------

    def balances(self, wallets: list[str]) -> dict[str, tuple[int, int]]:
        """(balance, debt) in paisa per wallet, as the contract holds them."""
        with self._rpc("balanceOf"):
            read = {
                name: self.contract.functions.balanceOf(wallet_id(name)).call() for name in wallets
            }
        return {name: (int(balance), int(debt)) for name, (balance, debt) in read.items()}

    def anchor(self) -> tuple[int, str]:
        """The last ledger entry anchored on chain: (seq, hash hex)."""
        with self._rpc("anchor"):
            seq = int(self.contract.functions.anchoredSeq().call())
            digest = bytes(self.contract.functions.anchoredHash().call()).hex()
        return seq, digest
