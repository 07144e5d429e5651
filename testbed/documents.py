"""Everything a run records, as a stream of documents that any number of sinks subscribe to.

The control loop and the trading cycle emit documents; the run store, InfluxDB and the dashboard
consume them. Units are in the field names; times are timezone-aware UTC; power uses the generator
convention (positive = delivered toward the grid).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from testbed.market.book import Order, Trade

if TYPE_CHECKING:  # peers pulls in the solvers; readers of a run do not need them
    from peers.interface import AgentDecision


@dataclass(frozen=True, slots=True)
class RunStarted:
    run_id: str
    time: datetime
    config: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Sample:
    """One device's (or meter's) readings and setpoints at one control step.

    `values` maps field names that carry their unit (`power_kw`, `soc_pct`, ...) to numbers.
    """

    time: datetime
    peer: str
    device: str
    values: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class OrderBook:
    """All orders submitted for one market interval, rejected ones with their reason."""

    interval_start: datetime
    orders: tuple[Order, ...]
    rejected: tuple[tuple[Order, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Clearing:
    """The result of clearing one interval's book."""

    interval_start: datetime
    mechanism: str
    clearing_price: float | None  # None when nothing cleared
    volume_kwh: float
    trades: tuple[Trade, ...]
    report: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Settlement:
    """One peer's money and energy for one interval (currency and kWh)."""

    interval_start: datetime
    peer: str
    contracted_kwh: float  # net P2P position, positive = sold
    metered_kwh: float  # net PCC energy, positive = exported
    p2p_bought_kwh: float
    p2p_sold_kwh: float
    p2p_paid: float
    p2p_received: float
    deviation_kwh: float  # metered minus contracted
    grid_import_kwh: float
    grid_export_kwh: float
    grid_cost: float
    grid_revenue: float
    penalty: float
    network_charge: float
    bill: float  # net cost to the peer; negative = the peer earned money
    bill_grid_only: float  # the same interval without the P2P market
    balancing_bought_kwh: float = 0.0  # shortfall covered by the neighbours (local balancing)
    balancing_sold_kwh: float = 0.0  # surplus taken by the neighbours (local balancing)
    balancing_paid: float = 0.0
    balancing_received: float = 0.0


@dataclass(frozen=True, slots=True)
class Interlock:
    """A safety interlock that fired, with what it did."""

    time: datetime
    peer: str
    device: str
    kind: str  # power_limit, soc_limit, ramp_limit, stale_measurement, device_lost, ...
    reason: str
    action: str  # clamped, safe_state, held, ...


@dataclass(frozen=True, slots=True)
class AgentPlan:
    """What one peer's agent decided for an interval: its forecast and plan over the horizon
    (the orders are in the OrderBook), or the safe plan and why it fell back."""

    interval_start: datetime
    peer: str
    agent: str  # the agent kind: baseline, optimising, zip, ...
    decision: AgentDecision


@dataclass(frozen=True, slots=True)
class RunFinished:
    run_id: str
    time: datetime
    status: str  # finished, interrupted, failed
    summary: Mapping[str, Any] = field(default_factory=dict)


Document = (
    RunStarted | Sample | OrderBook | Clearing | Settlement | Interlock | AgentPlan | RunFinished
)


class Sink(Protocol):
    """Anything that consumes the document stream of a run."""

    def emit(self, doc: Document) -> None: ...

    def close(self) -> object: ...  # what it returns (a sink's backlog, say) is not used
