"""The contract calls that the ledger's entries translate to: only finalised results go on chain.

| ledger entries                                   | contract call                          |
| ------------------------------------------------ | -------------------------------------- |
| `wallet_open` of an institution                  | `openWallet(wallet, kind)`             |
| `register` + `approve` of a peer                 | `registerHousehold(wallet, kyc, key)`  |
| `mint` (joining, opening float)                  | `mintToken(wallet, paisa)`             |
| `settlement` + its `transfer`s (+ credit lines)  | `settleInterval(start, seq, hash, moves)` |
| other `transfer`s (a leaving peer repays)        | `transferTokens(moves)`                |
| `redeem`                                         | `burnToken(wallet, paisa)`             |
| `deregister`                                     | `deregisterHousehold(wallet)`          |
| `clearing`                                       | `storeClearingResults(start, seq, hash)` |
| `close`                                          | `closeLedger(seq, hash)`               |

Every call also carries, first, the last ledger entry it stands for (`ledgerSeq`): the contract
applies each call once and in order, so a call sent again after a lost answer changes nothing.
Orders, deliveries, refusals and the genesis stay off chain (the settlement's and the clearing's
hashes chain over them). A wallet is named on chain by keccak256 of its ledger name.

The translation depends only on the entries (never on how they were read in chunks, since the
writer commits whole batches), so a sender that restarts feeds the ledger again from the start and
skips the calls already sent (`ChainCall.last_seq`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from eth_utils.crypto import keccak

from testbed.ledger.entries import Entry

ZERO = b"\x00" * 32
WALLET_KIND_CODES = {"peer": 0, "operator": 1, "grid_retailer": 2, "network_operator": 3}
Move = tuple[bytes, bytes, int]  # (from, to, paisa); from == ZERO mints


def wallet_id(name: str) -> bytes:
    """A wallet's id on chain."""
    return keccak(text=name)


def bytes32(hex_text: str) -> bytes:
    value = bytes.fromhex(hex_text)
    if len(value) != 32:
        raise ValueError(f"{hex_text!r} is not 32 bytes of hex")
    return value


def unix_s(iso_time: str) -> int:
    return int(datetime.fromisoformat(iso_time).timestamp())


@dataclass(frozen=True, slots=True)
class ChainCall:
    function: str
    args: tuple[Any, ...]
    last_seq: int  # the last ledger entry the call carries
    interval_start: str | None = None
    n_moves: int = 0

    @property
    def contract_args(self) -> tuple[Any, ...]:
        """The arguments as the contract takes them: `ledgerSeq` first."""
        return (self.last_seq, *self.args)


@dataclass(slots=True)
class _Settlement:
    interval: str
    seq: int
    hash: str


@dataclass
class CallTranslator:
    """Feeds on entries in order; returns the calls they complete (see the module docstring)."""

    _registered: dict[str, dict[str, Any]] = field(default_factory=dict)
    _moves: list[Move] = field(default_factory=list)
    _move_seqs: list[int] = field(default_factory=list)
    _settlement: _Settlement | None = None

    def feed(self, entries: Iterable[Entry]) -> list[ChainCall]:
        """The calls of these entries (whole batches of the writer); the last is flushed."""
        calls: list[ChainCall] = []
        for entry in entries:
            calls.extend(self._one(entry))
        calls.extend(self._flush())
        return calls

    def _one(self, entry: Entry) -> list[ChainCall]:
        kind, subject, seq = entry.kind, entry.subject, entry.seq
        if kind in ("mint", "transfer"):
            data = entry.data()
            flushed: list[ChainCall] = []
            if kind == "transfer":
                move = (wallet_id(data["from"]), wallet_id(data["to"]), int(data["amount_paisa"]))
                if self._settlement and data.get("interval_start") != self._settlement.interval:
                    flushed = self._flush()
            else:
                move = (ZERO, wallet_id(subject), int(data["amount_paisa"]))
            self._moves.append(move)
            self._move_seqs.append(seq)
            return flushed
        if kind == "register":
            self._registered[subject] = entry.data()
            return []
        if kind not in CALL_KINDS:
            return []
        calls = self._flush()
        data = entry.data()
        if kind == "wallet_open":
            if data["kind"] != "peer":
                calls.append(
                    ChainCall(
                        "openWallet", (wallet_id(subject), WALLET_KIND_CODES[data["kind"]]), seq
                    )
                )
        elif kind == "approve":
            request = self._registered[subject]
            args = (
                wallet_id(subject),
                bytes32(request["kyc_hash"]),
                bytes32(request["public_key"]),
            )
            calls.append(ChainCall("registerHousehold", args, seq))
        elif kind == "redeem":
            calls.append(
                ChainCall("burnToken", (wallet_id(subject), int(data["amount_paisa"])), seq)
            )
        elif kind == "deregister":
            calls.append(ChainCall("deregisterHousehold", (wallet_id(subject),), seq))
        elif kind == "clearing":
            interval = data["interval_start"]
            clearing = (unix_s(interval), seq, bytes32(entry.hash))
            calls.append(ChainCall("storeClearingResults", clearing, seq, interval))
        elif kind == "settlement":
            self._settlement = _Settlement(data["interval_start"], seq, entry.hash)
        elif kind == "close":
            calls.append(ChainCall("closeLedger", (seq, bytes32(entry.hash)), seq))
        return calls

    def _flush(self) -> list[ChainCall]:
        moves, seqs, settlement = self._moves, self._move_seqs, self._settlement
        self._moves, self._move_seqs, self._settlement = [], [], None
        if settlement is not None:
            last = max([settlement.seq, *seqs])
            args = (unix_s(settlement.interval), settlement.seq, bytes32(settlement.hash), moves)
            return [
                ChainCall("settleInterval", args, last, settlement.interval, n_moves=len(moves))
            ]
        if not moves:
            return []
        if all(source == ZERO for source, _, _ in moves):
            return [
                ChainCall("mintToken", (to, amount), seq)
                for (_, to, amount), seq in zip(moves, seqs, strict=True)
            ]
        return [ChainCall("transferTokens", (moves,), seqs[-1], n_moves=len(moves))]


CALL_KINDS = {
    "wallet_open",
    "approve",
    "redeem",
    "deregister",
    "clearing",
    "settlement",
    "close",
}
