"""What the orchestrator and a peer's agent exchange, once per market interval.

The orchestrator builds an `IntervalObservation` from metering after each interval and hands it to
`Agent.observe`; before gate closure of the coming interval it calls `Agent.decide` with a
`MarketContext` (tariffs, interval, horizon) and the `DeviceState` it has just read; after clearing
it calls `Agent.learn` with the `MarketOutcome`. Agents are pure computation: no I/O, no clock, and
the same inputs and seed give the same decision.

Conventions: energy in kWh per interval, power in kW (mean over a step), prices in currency per kWh.
House load and PV are magnitudes (>= 0); battery, EV and PCC powers follow the generator convention
(positive = delivered toward the grid: discharge, V2G, export). Times are timezone-aware UTC and an
interval is labelled by its start.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol, runtime_checkable

import numpy as np


class OrderSide(StrEnum):
    """Same values as `testbed.market.book.Side`, so `Side(intent.side)` converts."""

    BUY = "buy"
    SELL = "sell"


def _require_aware(name: str, value: datetime | None) -> None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise ValueError(f"{name} must be timezone-aware (UTC), got naive {value.isoformat()}")


def _require_finite(name: str, value: float | None, minimum: float | None = None) -> None:
    if value is None:
        return
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


@dataclass(frozen=True, slots=True)
class IntervalObservation:
    """What the meters and devices recorded for one finished interval of one peer."""

    interval_start: datetime
    interval_s: float
    load_kwh: float  # consumed by the house, >= 0
    pv_kwh: float = 0.0  # produced by the array, >= 0
    net_kwh: float = 0.0  # at the PCC, + = exported
    soc_pct: float | None = None  # battery SoC at interval end
    ev_soc_pct: float | None = None  # EV SoC at interval end
    ev_plugged: bool | None = None

    def __post_init__(self) -> None:
        _require_aware("interval_start", self.interval_start)
        _require_finite("interval_s", self.interval_s, minimum=1.0)
        _require_finite("load_kwh", self.load_kwh, minimum=0.0)
        _require_finite("pv_kwh", self.pv_kwh, minimum=0.0)
        _require_finite("net_kwh", self.net_kwh)

    @property
    def load_kw(self) -> float:
        return self.load_kwh * 3600.0 / self.interval_s

    @property
    def pv_kw(self) -> float:
        return self.pv_kwh * 3600.0 / self.interval_s


@dataclass(frozen=True, slots=True)
class DeviceState:
    """The peer's devices as read just before `decide` (None = the peer has no such device)."""

    time: datetime
    battery_soc_pct: float | None = None
    ev_soc_pct: float | None = None
    ev_plugged: bool | None = None
    ev_departure_time: datetime | None = None  # planned plug-out, when the charger knows it

    def __post_init__(self) -> None:
        _require_aware("time", self.time)
        _require_aware("ev_departure_time", self.ev_departure_time)


@dataclass(frozen=True, slots=True)
class MarketContext:
    """The coming market interval and the prices an agent plans with.

    `horizon` is the number of intervals planned from `interval_start` on (96 = 24 h at 15 min).
    Optional per-step profiles (length `horizon`) override the flat tariffs (time-of-use pricing).
    `expected_p2p_price` is the price the HEMS assumes for P2P energy; None = midpoint of feed-in
    and retail. The buyer pays the network charge on every P2P kWh (as `testbed.settlement` does).
    """

    interval_start: datetime
    retail_tariff: float
    feed_in_tariff: float
    interval_s: float = 900.0
    network_charge: float = 0.0
    deviation_penalty: float = 0.0
    horizon: int = 96
    retail_tariff_profile: tuple[float, ...] | None = None
    feed_in_tariff_profile: tuple[float, ...] | None = None
    expected_p2p_price: float | None = None

    def __post_init__(self) -> None:
        _require_aware("interval_start", self.interval_start)
        _require_finite("interval_s", self.interval_s, minimum=60.0)
        _require_finite("retail_tariff", self.retail_tariff, minimum=0.0)
        _require_finite("feed_in_tariff", self.feed_in_tariff, minimum=0.0)
        _require_finite("network_charge", self.network_charge, minimum=0.0)
        _require_finite("deviation_penalty", self.deviation_penalty, minimum=0.0)
        _require_finite("expected_p2p_price", self.expected_p2p_price)
        if self.feed_in_tariff > self.retail_tariff:
            raise ValueError(
                f"feed_in_tariff ({self.feed_in_tariff}) must not exceed "
                f"retail_tariff ({self.retail_tariff})"
            )
        if not 1 <= self.horizon <= 2016:
            raise ValueError(f"horizon must be in [1, 2016] intervals, got {self.horizon}")
        for name in ("retail_tariff_profile", "feed_in_tariff_profile"):
            profile = getattr(self, name)
            if profile is not None and len(profile) != self.horizon:
                raise ValueError(
                    f"{name} has {len(profile)} values; it needs one per horizon step "
                    f"({self.horizon})"
                )

    @property
    def dt_h(self) -> float:
        return self.interval_s / 3600.0

    def step_starts(self) -> list[datetime]:
        return [
            self.interval_start + timedelta(seconds=k * self.interval_s)
            for k in range(self.horizon)
        ]

    def retail_per_step(self) -> np.ndarray:
        if self.retail_tariff_profile is not None:
            return np.asarray(self.retail_tariff_profile, dtype=float)
        return np.full(self.horizon, self.retail_tariff)

    def feed_in_per_step(self) -> np.ndarray:
        if self.feed_in_tariff_profile is not None:
            return np.asarray(self.feed_in_tariff_profile, dtype=float)
        return np.full(self.horizon, self.feed_in_tariff)

    def p2p_price_per_step(self) -> np.ndarray:
        if self.expected_p2p_price is not None:
            return np.full(self.horizon, self.expected_p2p_price)
        midpoint: np.ndarray = 0.5 * (self.retail_per_step() + self.feed_in_per_step())
        return midpoint


@dataclass(frozen=True, slots=True)
class ForecastStep:
    """Forecast mean power over one horizon step; quantiles map a level (0.1) to kW."""

    start: datetime
    load_kw: float
    pv_kw: float = 0.0
    load_quantiles_kw: Mapping[float, float] = field(default_factory=dict)
    pv_quantiles_kw: Mapping[float, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PlanStep:
    """The schedule for one horizon step (mean kW over the step; SoC at the step's end)."""

    start: datetime
    load_kw: float  # forecast house load, >= 0
    pv_kw: float  # PV the plan uses (after any curtailment), >= 0
    battery_kw: float  # + = discharge
    ev_kw: float  # + = V2G discharge
    net_kw: float  # at the PCC, + = export
    soc_pct: float | None = None
    ev_soc_pct: float | None = None
    ev_plugged: bool = False
    value_per_kwh: float | None = None  # marginal value of energy at the PCC in this step


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """A bid (buy) or ask (sell) for the coming interval; the orchestrator makes it an Order."""

    side: OrderSide
    quantity_kwh: float
    limit_price: float

    def __post_init__(self) -> None:
        _require_finite("quantity_kwh", self.quantity_kwh)
        _require_finite("limit_price", self.limit_price)
        if self.quantity_kwh <= 0:
            raise ValueError(f"quantity_kwh must be > 0, got {self.quantity_kwh}")


@dataclass(frozen=True, slots=True)
class AgentDecision:
    """Everything one `decide` call produced for the coming interval."""

    interval_start: datetime
    forecast: tuple[ForecastStep, ...]
    plan: tuple[PlanStep, ...]
    orders: tuple[OrderIntent, ...]
    fallback_reason: str | None = None
    diagnostics: Mapping[str, float | str] = field(default_factory=dict)

    @property
    def first_step(self) -> PlanStep:
        return self.plan[0]


@dataclass(frozen=True, slots=True)
class Fill:
    """Part of one of this peer's orders that traded."""

    side: OrderSide
    quantity_kwh: float
    price: float


@dataclass(frozen=True, slots=True)
class MarketOutcome:
    """The cleared market interval as one peer sees it (its own fills plus public prices)."""

    interval_start: datetime
    clearing_price: float | None  # None when nothing cleared
    fills: tuple[Fill, ...] = ()
    best_bid_price: float | None = None  # highest bid in the book, any peer
    best_ask_price: float | None = None  # lowest ask in the book, any peer
    bid_volume_kwh: float | None = None  # all accepted bids' quantity, any peer (book depth)
    ask_volume_kwh: float | None = None  # all accepted asks' quantity, any peer

    def traded_kwh(self, side: OrderSide) -> float:
        return sum(f.quantity_kwh for f in self.fills if f.side == side)


@runtime_checkable
class Agent(Protocol):
    """A peer's smart agent: forecast, schedule and bid, once per market interval."""

    peer: str
    kind: str

    def observe(self, obs: IntervalObservation) -> None:
        """Record one finished interval's metering."""
        ...

    def decide(self, ctx: MarketContext, state: DeviceState) -> AgentDecision:
        """Forecast, plan and place orders for `ctx.interval_start`; never raises on bad data."""
        ...

    def learn(self, outcome: MarketOutcome) -> None:
        """Adapt after clearing (bidding strategies that learn use it; others ignore it)."""
        ...
