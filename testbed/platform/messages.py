"""The JSON messages on the platform's topics (schema version 1), validated by pydantic.

Every message has `v` (the schema version, 1) and `kind`. Times are ISO 8601 with a UTC offset;
energy in kWh, prices in the run's currency per kWh. The peers' own data types (market context,
device state, metering, outcome, decision) are the dataclasses of `peers.interface` and the book's
`Order` and `Trade`, carried field for field. A payload that does not validate is refused with the
field that is wrong (`parse`). JSON Schema of each: `Model.model_json_schema()`; docs/platform.md
lists them.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from peers.interface import (
    AgentDecision,
    DeviceState,
    IntervalObservation,
    MarketContext,
    MarketOutcome,
)
from testbed.documents import Settlement
from testbed.market.book import Order, Trade

SCHEMA_VERSION = 1
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    v: Literal[1] = 1

    def payload(self) -> bytes:
        return self.model_dump_json().encode("utf-8")


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{value.isoformat()} has no UTC offset; give one (e.g. +00:00)")
    return value


class SignedOrder(BaseModel):
    """One bid (buy) or ask (sell), signed with the peer's Ed25519 key (`signing.order_content`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    order_id: str = Field(min_length=1, max_length=200)
    peer: str = Field(min_length=1, max_length=100)
    side: Literal["buy", "sell"]
    quantity_kwh: FiniteFloat = Field(gt=0)
    price: FiniteFloat
    interval_start: datetime
    signed_at: datetime
    signature: str = Field(pattern=r"^[0-9a-f]{128}$")

    _aware_times = field_validator("interval_start", "signed_at")(_aware)

    def as_order(self) -> Order:
        from testbed.market.book import Side

        return Order(
            order_id=self.order_id,
            peer=self.peer,
            side=Side(self.side),
            quantity_kwh=self.quantity_kwh,
            price=self.price,
            interval_start=self.interval_start,
        )


class Announcement(Message):
    """Operator, on `market/announcements`: an interval is open for orders until its gate closes."""

    kind: Literal["announcement"] = "announcement"
    interval_start: datetime
    gate_closes_at: datetime  # plant time
    mechanism: str
    context: MarketContext


class MarketStatus(Message):
    """Operator, retained on `market/status`: what is open and what has closed."""

    kind: Literal["market_status"] = "market_status"
    open_interval: datetime | None = None
    last_closed_interval: datetime | None = None


class Measurements(Message):
    """Controller, on `peers/<id>/measurements`: the peer's own devices just before a gate and the
    metering of its intervals finished since the last such message."""

    kind: Literal["measurements"] = "measurements"
    peer: str
    interval_start: datetime  # the interval about to be traded
    state: DeviceState
    observations: list[IntervalObservation] = Field(default_factory=list)


class Submission(Message):
    """Peer, on `peers/<id>/orders`: its orders for one interval. `complete` says the peer has
    nothing more for the interval (an agent's whole decision; a person's page sends false), so the
    operator need not wait for it. Resending the same `message_id` changes nothing."""

    kind: Literal["submission"] = "submission"
    message_id: str = Field(min_length=1, max_length=200)
    peer: str
    interval_start: datetime
    orders: list[SignedOrder] = Field(default_factory=list, max_length=100)
    complete: bool = True

    _aware_times = field_validator("interval_start")(_aware)


class OrderStatus(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    order_id: str
    status: Literal["accepted", "rejected"]
    reason: str | None = None


class Ack(Message):
    """Operator, on `peers/<id>/acks`: each order of a submission accepted or rejected (with the
    reason); `error` when the submission itself could not be read."""

    kind: Literal["ack"] = "ack"
    in_reply_to: str
    peer: str
    interval_start: datetime | None = None
    statuses: list[OrderStatus] = Field(default_factory=list)
    error: str | None = None


class PeerResult(Message):
    """Operator, on `peers/<id>/results`: what the peer got in a cleared interval."""

    kind: Literal["result"] = "result"
    peer: str
    interval_start: datetime
    outcome: MarketOutcome
    trades: list[Trade] = Field(default_factory=list)  # the peer's own
    gate_closed_wall: float  # Unix time the gate closed (for latency figures)


class PublicClearing(Message):
    """Operator, on `market/clearings`: price and volume, no names."""

    kind: Literal["clearing"] = "clearing"
    interval_start: datetime
    mechanism: str
    clearing_price: float | None
    volume_kwh: float
    orders: int


class GateRequest(Message):
    """Controller, on `controller/gate`: close the gate of this interval (plant time has reached
    it) and clear. Repeating it is harmless: the operator answers from its journal."""

    kind: Literal["gate_request"] = "gate_request"
    interval_start: datetime
    gate_closes_at: datetime
    # The run ledger's standing of restricted peers (reasons): all their orders are refused, or
    # their buy orders (a peer in debt may only sell), as the ledger would refuse them.
    refused_peers: dict[str, str] = {}
    sell_only_peers: dict[str, str] = {}
    # The agents online as the controller sees them: an operator that has just (re)started waits
    # for these at the gate until it hears their own status.
    online_peers: list[str] = []


class RejectedOrder(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    order: Order
    reason: str


class SignedCandidate(BaseModel):
    """A signed order as the operator received it before the gate, with its rejection reason
    (None: accepted into the book); the controller records each on the run's ledger."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    order: SignedOrder
    reason: str | None = None


class RejectedMessage(BaseModel):
    """A message on a peer's order topic that did not parse as a submission (the topic names the
    peer: only it may write there): when, why, and the SHA-256 and size of its bytes."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    peer: str
    topic: str
    received_at: datetime
    reason: str = Field(min_length=1)
    payload_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    payload_bytes: int = Field(ge=0)


class ClearingReport(Message):
    """Operator, on `operator/clearings`: the whole book and its clearing, for the controller."""

    kind: Literal["clearing_report"] = "clearing_report"
    interval_start: datetime
    mechanism: str
    orders: list[Order]
    rejected: list[RejectedOrder]
    trades: list[Trade]
    clearing_price: float | None
    report: dict[str, Any]
    submitted: list[str]  # peers whose orders (or an empty submission) arrived before the gate
    gate_closed_wall: float
    signed: list[SignedCandidate] = []  # every signed order of the interval, accepted first
    # rejections outside any book since the operator's previous report: orders after their gate
    # (or for another interval than their submission's), and unreadable submissions
    unbooked: list[SignedCandidate] = []
    rejected_messages: list[RejectedMessage] = []


class MeteringReport(Message):
    """Controller, on `controller/metering`: each peer's metered net energy (+ = exported)."""

    kind: Literal["metering"] = "metering"
    interval_start: datetime
    metered_kwh: dict[str, FiniteFloat]


class SettlementReport(Message):
    """Operator, on `operator/settlements`: every peer's settlement of an interval."""

    kind: Literal["settlement_report"] = "settlement_report"
    interval_start: datetime
    settlements: list[Settlement]
    unbooked: list[SignedCandidate] = []  # as in `ClearingReport`, since its previous report
    rejected_messages: list[RejectedMessage] = []


class PeerSettlement(Message):
    """Operator, on `peers/<id>/settlements`: the peer's own settlement and wallet balance."""

    kind: Literal["settlement"] = "settlement"
    peer: str
    settlement: Settlement
    wallet_balance: float


class Liveness(Message):
    """Peer, retained on `peers/<id>/status` (and its last will, `offline`)."""

    kind: Literal["status"] = "status"
    peer: str
    state: Literal["online", "offline"]
    agent: str = ""


class PlanMessage(Message):
    """Agent, on `peers/<id>/plans`: its forecast and plan (for the controller's run store)."""

    kind: Literal["plan"] = "plan"
    peer: str
    agent: str
    decision: AgentDecision


class AccountOrder(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    order_id: str
    interval_start: datetime
    side: str
    quantity_kwh: float
    price: float
    status: Literal["accepted", "rejected", "traded", "not traded"]
    reason: str | None = None
    traded_kwh: float = 0.0


class Account(Message):
    """Operator, retained on `peers/<id>/account`: the peer's recent orders with their status,
    its trades and its wallet (what the participants' page shows)."""

    kind: Literal["account"] = "account"
    peer: str
    orders: list[AccountOrder]
    trades: list[Trade]
    wallet_balance: float
    settled_intervals: int
    bill_total: float


M = TypeVar("M", bound=BaseModel)


class BadMessage(ValueError):
    """A payload that is not the expected message, naming what is wrong."""


def parse(model: type[M], payload: bytes | str) -> M:
    """The payload as `model`, or `BadMessage` naming each bad field and what is allowed."""
    try:
        return model.model_validate_json(payload)
    except ValidationError as error:
        problems = []
        for item in error.errors()[:5]:
            where = ".".join(str(part) for part in item["loc"]) or "message"
            problems.append(f"{where}: {item['msg']}")
        raise BadMessage(f"not a valid {model.__name__}: " + "; ".join(problems)) from None


def finite_or_none(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value
