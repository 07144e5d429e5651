"""The peers' smart agents (seed paper, Fig. 4 and sections 3.2-3.3) and their registry.

Both agents share one cycle: forecast load and PV from metered history, plan the horizon, turn the
plan's first step into orders. They differ in how they plan and price:

- `baseline`: seasonal-persistence forecast, rule-based schedule (`peers.rules`), tariff-band
  prices.
- `optimising`: a configurable forecaster (EWMA profile by default), the cvxpy/HiGHS MILP HEMS
  (`peers.hems`), and limit prices from the plan's marginal value (`bidding="marginal"`) or from ZIP
  margin adaptation (`bidding="zip"`).

Nothing here raises on bad data: with no history, an unknown SoC, an EV that cannot reach its
plug-out energy, or a solver failure, `decide` returns the safe plan (battery and EV idle, no
orders) with `fallback_reason` saying why.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from datetime import time
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from peers.assets import PeerAssets
from peers.bidding import (
    MarketExpectation,
    ZipMargins,
    forecast_spread_kw,
    position_orders,
    reservation_prices,
    risk_priced,
    shade_position,
    storage_headroom_kw,
    tariff_band_prices,
)
from peers.forecast import Forecast, Forecaster, make_forecaster
from peers.hems import Hems, HemsError, HemsSettings
from peers.history import MeterHistory
from peers.horizon import HorizonInputs, PlanningError, ev_horizon, horizon_inputs
from peers.interface import (
    AgentDecision,
    DeviceState,
    ForecastStep,
    IntervalObservation,
    MarketContext,
    MarketOutcome,
    OrderIntent,
    OrderSide,
    PlanStep,
)
from peers.rules import mobility_first_ev, rule_based_schedule
from peers.schedule import Schedule, plan_steps

ForecastMethod = Literal["persistence", "ewma", "gbm"]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    forecast_method: ForecastMethod = "persistence"
    min_history_intervals: int = Field(
        default=1, ge=0, description="Below this many metered intervals the agent stays idle"
    )
    min_order_kwh: float = Field(default=0.01, gt=0)
    history_days: float = Field(default=28.0, gt=0)


class BaselineParams(_Params):
    forecast_method: ForecastMethod = "persistence"
    bid_fraction: float = Field(default=0.75, ge=0, le=1)
    ask_fraction: float = Field(default=0.25, ge=0, le=1)
    evening_peak_start_local: time = time(18, 0)
    evening_peak_end_local: time = time(22, 0)


class OptimisingParams(_Params):
    forecast_method: ForecastMethod = "ewma"
    bidding: Literal["marginal", "zip"] = "marginal"
    value_of_lost_load: float = Field(default=100.0, gt=0)
    terminal_value_per_kwh: float | None = Field(default=None, ge=0)
    p2p_limit_kw: float | None = Field(default=None, ge=0)
    solver_time_limit_s: float = Field(default=1.0, gt=0)
    mip_rel_gap: float = Field(default=1e-3, gt=0, lt=1)
    relaxation_first: bool = True
    ev_integer_steps: int | None = Field(default=48, ge=1)
    zip_learning_rate: float = Field(default=0.3, gt=0, le=1)
    zip_momentum: float = Field(default=0.05, ge=0, lt=1)
    p2p_fill_prior: float = Field(
        default=0.5, ge=0, le=1, description="Share of an order expected to trade, before learning"
    )
    p2p_learning_rate: float = Field(default=0.1, gt=0, le=1)
    firm_quantile: float | None = Field(
        default=0.1,
        gt=0,
        lt=0.5,
        description="Orders cover the plan shaded to this forecast quantile; None = the plan",
    )
    delivery_risk_share: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Share of a kWh priced at its fallback (feed-in; retail + penalty)",
    )
    ev_holding_value_per_kwh_step: float = Field(
        default=1e-3,
        ge=-0.01,
        le=0.01,
        description="Tie-break per kWh held in the EV per step: > 0 charges early, < 0 late",
    )
    p2p_sales_first: bool = Field(
        default=False, description="Tie-break: serve the neighbours' demand before storing"
    )


def _finite(values: np.ndarray | None) -> bool:
    return values is None or bool(np.all(np.isfinite(values)))


class _AgentBase:
    kind = "base"
    Params: type[_Params] = _Params

    def __init__(self, peer: str, assets: PeerAssets, params: _Params, seed: int = 0) -> None:
        self.peer = peer
        self.assets = assets
        self.params = params
        self.seed = seed
        self.history = MeterHistory(max_days=params.history_days)
        self._forecasters: dict[tuple[str, float], Forecaster] = {}

    # --- the Agent protocol -------------------------------------------------------------------
    def observe(self, obs: IntervalObservation) -> None:
        if self.history.interval_s != obs.interval_s:
            self.history = MeterHistory(obs.interval_s, self.params.history_days)
            self._forecasters.clear()
        self.history.add(obs)

    def learn(self, outcome: MarketOutcome) -> None:
        """Non-learning agents ignore the outcome."""

    def replay(
        self,
        obs: IntervalObservation,
        own_orders: tuple[OrderIntent, ...],
        outcome: MarketOutcome | None,
    ) -> None:
        """Learn one interval of an earlier day (a warm start): its metering, the orders this
        peer placed and the market's outcome, as if the agent had traded it."""
        self.observe(obs)
        if outcome is not None:
            self._record_orders(own_orders)
            self.learn(outcome)

    def _record_orders(self, orders: tuple[OrderIntent, ...]) -> None:
        """Remember the orders the next outcome answers (learning kinds)."""

    def decide(self, ctx: MarketContext, state: DeviceState) -> AgentDecision:
        load_kw = np.full(ctx.horizon, self.assets.typical_load_kw)
        pv_kw = np.zeros(ctx.horizon)
        forecast: tuple[ForecastStep, ...] = ()
        try:
            load_fc, pv_fc = self._forecast(ctx)
            load_kw, pv_kw = load_fc.mean_kw, pv_fc.mean_kw
            forecast = _forecast_steps(ctx, load_fc, pv_fc)
            if len(self.history) < self.params.min_history_intervals:
                raise PlanningError(
                    f"missing history: {len(self.history)} metered intervals, "
                    f"{self.params.min_history_intervals} needed"
                )
            inputs = horizon_inputs(self.assets, ctx, state, load_kw, pv_kw)
            schedule = self._schedule(inputs, ctx)
            if not all(
                _finite(v)
                for v in (schedule.net_kw, schedule.battery_kw, schedule.ev_kw, schedule.pv_used_kw)
            ):
                raise PlanningError("the plan has non-finite powers")
            plan = plan_steps(inputs, schedule, self.assets)
            orders = self._orders(ctx, schedule, forecast[0], plan[0])
        except (PlanningError, HemsError) as exc:
            return self._fallback(ctx, state, load_kw, pv_kw, forecast, str(exc))
        except Exception as exc:  # an agent must never stop the trading cycle
            return self._fallback(
                ctx, state, load_kw, pv_kw, forecast, f"{type(exc).__name__}: {exc}"
            )
        diagnostics = {"forecast_method": self.params.forecast_method, **schedule.info}
        return AgentDecision(ctx.interval_start, forecast, plan, orders, None, diagnostics)

    # --- steps the kinds fill in --------------------------------------------------------------
    def _schedule(self, inputs: HorizonInputs, ctx: MarketContext) -> Schedule:
        raise NotImplementedError

    def _orders(
        self, ctx: MarketContext, schedule: Schedule, expected: ForecastStep, first: PlanStep
    ) -> tuple[OrderIntent, ...]:
        raise NotImplementedError

    # --- shared helpers -----------------------------------------------------------------------
    def _forecaster(self, quantity: str, interval_s: float) -> Forecaster:
        key = (quantity, interval_s)
        if key not in self._forecasters:
            if quantity == "load":
                fallback, cap = self.assets.typical_load_kw, 1.5 * self.assets.peak_load_kw
            else:
                pv = self.assets.pv
                peak = 0.0 if pv is None else min(pv.peak_power_kw, pv.ac_limit_kw or math.inf)
                fallback, cap = 0.0, peak
            self._forecasters[key] = make_forecaster(
                self.params.forecast_method,
                interval_s=interval_s,
                fallback_kw=fallback,
                max_kw=cap,
                timezone=self.assets.timezone,
                seed=self.seed,
            )
        return self._forecasters[key]

    def _forecast(self, ctx: MarketContext) -> tuple[Forecast, Forecast]:
        load = self._forecaster("load", ctx.interval_s)
        load.fit(self.history.load_kw(before=ctx.interval_start))
        load_fc = load.predict(ctx.interval_start, ctx.horizon)
        if self.assets.pv is None:
            pv_fc = Forecast(ctx.interval_start, ctx.interval_s, np.zeros(ctx.horizon))
        else:
            pv = self._forecaster("pv", ctx.interval_s)
            pv.fit(self.history.pv_kw(before=ctx.interval_start))
            pv_fc = pv.predict(ctx.interval_start, ctx.horizon)
        return load_fc, pv_fc

    def _fallback(
        self,
        ctx: MarketContext,
        state: DeviceState,
        load_kw: np.ndarray,
        pv_kw: np.ndarray,
        forecast: tuple[ForecastStep, ...],
        reason: str,
    ) -> AgentDecision:
        """The safe plan: no orders, battery idle at its present SoC; a plugged EV below its
        plug-out energy charges flat out toward it (mobility first), otherwise it idles too."""
        load_kw = np.nan_to_num(np.asarray(load_kw, dtype=float), nan=self.assets.typical_load_kw)
        pv_kw = np.nan_to_num(np.asarray(pv_kw, dtype=float), nan=0.0)
        if self.assets.pv is None:
            pv_kw = np.zeros(ctx.horizon)
        soc = state.battery_soc_pct if self.assets.battery is not None else None
        ev_kw = np.zeros(ctx.horizon)
        ev_soc = [state.ev_soc_pct if self.assets.ev is not None else None] * ctx.horizon
        plugged = [False] * ctx.horizon
        ev = self.assets.ev
        if ev is not None and state.ev_soc_pct is not None and math.isfinite(state.ev_soc_pct):
            try:
                horizon = ev_horizon(ev, self.assets.zone, ctx.step_starts(), ctx.interval_s, state)
                ev_kw, energy = mobility_first_ev(ev, horizon, ctx.dt_h)
                ev_soc = [ev.soc_pct(e) for e in energy[1:]]
                plugged = [bool(p) for p in horizon.available]
            except Exception:  # the safe plan must not fail: leave the EV idle
                ev_kw = np.zeros(ctx.horizon)
        plan = tuple(
            PlanStep(
                start=start,
                load_kw=float(load_kw[k]),
                pv_kw=float(pv_kw[k]),
                battery_kw=0.0,
                ev_kw=float(ev_kw[k]),
                net_kw=float(pv_kw[k] - load_kw[k] + ev_kw[k]),
                soc_pct=soc,
                ev_soc_pct=ev_soc[k],
                ev_plugged=plugged[k],
            )
            for k, start in enumerate(ctx.step_starts())
        )
        diagnostics = {"forecast_method": self.params.forecast_method, "planner": "fallback"}
        return AgentDecision(ctx.interval_start, forecast, plan, (), reason, diagnostics)


def _forecast_steps(ctx: MarketContext, load: Forecast, pv: Forecast) -> tuple[ForecastStep, ...]:
    steps = []
    for k, start in enumerate(ctx.step_starts()):
        steps.append(
            ForecastStep(
                start=start,
                load_kw=float(load.mean_kw[k]),
                pv_kw=float(pv.mean_kw[k]),
                load_quantiles_kw={q: float(v[k]) for q, v in load.quantiles_kw.items()},
                pv_quantiles_kw={q: float(v[k]) for q, v in pv.quantiles_kw.items()},
            )
        )
    return tuple(steps)


class BaselineAgent(_AgentBase):
    """Seasonal persistence, rules, tariff-band prices: the orchestrator's default agent."""

    kind = "baseline"
    Params = BaselineParams
    params: BaselineParams

    def _schedule(self, inputs: HorizonInputs, ctx: MarketContext) -> Schedule:
        peak = (self.params.evening_peak_start_local, self.params.evening_peak_end_local)
        return rule_based_schedule(inputs, self.assets, evening_peak=peak)

    def _orders(
        self, ctx: MarketContext, schedule: Schedule, expected: ForecastStep, first: PlanStep
    ) -> tuple[OrderIntent, ...]:
        retail, feed_in = float(ctx.retail_per_step()[0]), float(ctx.feed_in_per_step()[0])
        bid, ask = tariff_band_prices(
            retail, feed_in, self.params.bid_fraction, self.params.ask_fraction
        )
        net_kwh = float(schedule.net_kw[0]) * ctx.dt_h
        return position_orders(net_kwh, bid, ask, self.params.min_order_kwh)


class OptimisingAgent(_AgentBase):
    """Forecast, MILP HEMS, and prices from the plan's marginal value (or ZIP margins)."""

    kind = "optimising"
    Params = OptimisingParams
    params: OptimisingParams

    def __init__(self, peer: str, assets: PeerAssets, params: OptimisingParams, seed: int = 0):
        super().__init__(peer, assets, params, seed)
        self._hems: dict[tuple[int, float], Hems] = {}
        self.market = MarketExpectation(params.p2p_fill_prior, params.p2p_learning_rate)
        self.zip = (
            ZipMargins(seed, params.zip_learning_rate, params.zip_momentum)
            if params.bidding == "zip"
            else None
        )

    def hems(self, steps: int, interval_s: float) -> Hems:
        """The compiled HEMS for this horizon (built on first use, then re-solved)."""
        key = (steps, interval_s)
        if key not in self._hems:
            settings = HemsSettings(
                value_of_lost_load=self.params.value_of_lost_load,
                terminal_value_per_kwh=self.params.terminal_value_per_kwh,
                p2p_limit_kw=self.params.p2p_limit_kw,
                time_limit_s=self.params.solver_time_limit_s,
                mip_rel_gap=self.params.mip_rel_gap,
                relaxation_first=self.params.relaxation_first,
                ev_integer_steps=self.params.ev_integer_steps,
                ev_holding_value_per_kwh_step=self.params.ev_holding_value_per_kwh_step,
                p2p_sales_first=self.params.p2p_sales_first,
                seed=self.seed,
            )
            self._hems[key] = Hems(self.assets, steps, interval_s / 3600.0, settings)
        return self._hems[key]

    def _schedule(self, inputs: HorizonInputs, ctx: MarketContext) -> Schedule:
        buy, sell = self.market.prices(
            inputs.retail,
            inputs.feed_in,
            ctx.p2p_price_per_step(),
            ctx.network_charge,
            price_given=ctx.expected_p2p_price is not None,
        )
        inputs = replace(inputs, p2p_buy_price=buy, p2p_sell_price=sell)
        schedule = self.hems(ctx.horizon, ctx.interval_s).solve(inputs)
        schedule.info["p2p_fill_buy"] = self.market.fill[OrderSide.BUY]
        schedule.info["p2p_fill_sell"] = self.market.fill[OrderSide.SELL]
        return schedule

    def _orders(
        self, ctx: MarketContext, schedule: Schedule, expected: ForecastStep, first: PlanStep
    ) -> tuple[OrderIntent, ...]:
        retail, feed_in = float(ctx.retail_per_step()[0]), float(ctx.feed_in_per_step()[0])
        planned_kwh = float(schedule.net_kw[0]) * ctx.dt_h
        buying = planned_kwh < 0
        spread_kw = 0.0
        if self.params.firm_quantile is not None:
            spread_kw = forecast_spread_kw(expected, buying, self.params.firm_quantile)
            headroom_kw = storage_headroom_kw(self.assets, first, ctx.dt_h, buying)
            spread_kw = max(spread_kw - headroom_kw, 0.0)
        net_kwh = shade_position(planned_kwh, spread_kw * ctx.dt_h)
        schedule.info["firm_net_kwh"] = net_kwh
        value = None
        if schedule.value_per_kwh is not None and math.isfinite(schedule.value_per_kwh[0]):
            value = float(schedule.value_per_kwh[0])
        if value is None:  # no dual: the grid alternative of the planned direction
            value = feed_in if net_kwh > 0 else retail
            schedule.info["price_source"] = "tariff (no marginal value)"
        bid, ask = reservation_prices(value, retail, feed_in, ctx.network_charge)
        bid, ask = risk_priced(
            bid, ask, self.params.delivery_risk_share, feed_in, retail, ctx.deviation_penalty
        )
        schedule.info["reservation_bid"] = bid
        schedule.info["reservation_ask"] = ask
        if self.zip is not None:
            side = OrderSide.SELL if net_kwh > 0 else OrderSide.BUY
            reservation = ask if side == OrderSide.SELL else bid
            price = self.zip.price(side, reservation, retail, feed_in)
            bid = ask = price
            orders = position_orders(net_kwh, bid, ask, self.params.min_order_kwh)
            if orders:
                self.zip.record(side, price, reservation)
            else:
                self.zip.clear_record()
            return orders
        return position_orders(net_kwh, bid, ask, self.params.min_order_kwh)

    def _record_orders(self, orders: tuple[OrderIntent, ...]) -> None:
        self.market.record(orders)

    def decide(self, ctx: MarketContext, state: DeviceState) -> AgentDecision:
        decision = super().decide(ctx, state)
        self.market.record(decision.orders)
        if decision.fallback_reason is not None and self.zip is not None:
            self.zip.clear_record()
        return decision

    def learn(self, outcome: MarketOutcome) -> None:
        self.market.learn(outcome)
        if self.zip is not None:
            self.zip.learn(outcome)


_REGISTRY: dict[str, type[_AgentBase]] = {}


def register_agent(kind: str, cls: type[_AgentBase]) -> None:
    """Make `kind` buildable by `make_agent` (cls(peer, assets, cls.Params(**params), seed))."""
    _REGISTRY[kind] = cls


def agent_kinds() -> list[str]:
    return sorted(_REGISTRY)


def agent_param_names(kind: str) -> frozenset[str]:
    """The parameters an agent of `kind` takes (empty for an unknown kind)."""
    cls = _REGISTRY.get(kind)
    return frozenset(cls.Params.model_fields) if cls is not None else frozenset()


def agent_params(kind: str, peer: str, params: Mapping[str, Any] | None = None) -> _Params:
    """The validated parameters of an agent of `kind`; an unknown kind or a bad parameter raises
    ValueError naming it (so a configuration can be checked before anything starts)."""
    try:
        cls = _REGISTRY[kind]
    except KeyError:
        raise ValueError(f"unknown agent kind {kind!r}; choose one of {agent_kinds()}") from None
    options = dict(params or {})
    if kind == "zip":
        options.setdefault("bidding", "zip")
    try:
        return cls.Params(**options)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}={err.get('input')!r}: {err['msg']}"
            for err in exc.errors()
        )
        raise ValueError(f"invalid params for {kind} agent of peer {peer}: {problems}") from None


def make_agent(
    kind: str,
    peer: str,
    assets: PeerAssets,
    params: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> _AgentBase:
    """Build the agent of `kind` for `peer`; bad params raise ValueError naming key and value.

    Kinds: `baseline`, `optimising`, and `zip` (the optimising agent with `bidding="zip"`).
    """
    validated = agent_params(kind, peer, params)
    agent = _REGISTRY[kind](peer, assets, validated, seed)
    agent.kind = kind
    return agent


register_agent("baseline", BaselineAgent)
register_agent("optimising", OptimisingAgent)
register_agent("zip", OptimisingAgent)
