"""The `community` agent: the optimising agent made to capture the community's value.

Measured with the yardstick (`testbed value`, docs/agents.md "What moved the figure"), it changes
these things of the optimising agent:
- **Warm start without history.** PV is forecast from the array's clear-sky curve times the
  clear-sky index of the last metered hour (`peers.clearsky`), not a flat first-day profile; the
  house load blends the last metered intervals' level into the EWMA profile for the coming hours.
  With both it plans from the run's first interval (`min_history_intervals = 0`).
- **Book depth.** P2P sales are planned up to the other peers' expected demand and purchases up
  to their expected supply per time of day (`peers.market_depth`), so a seller spreads its surplus
  over the hours its neighbours buy instead of filling its battery first and selling when nobody
  is left to buy.
- **Firm quantities nearer the plan.** Orders cover the plan shaded to the 25 % forecast quantile
  (10 % for the optimising agent), beyond what storage headroom absorbs: with local balancing a
  forecast error costs half what it did, and withholding most of the surplus cost more.
- **Fill expectation 0.8** before learning (0.5): a P2P kWh is planned at nearly the P2P price.
- **Sales first** (`p2p_sales_first`): among plans of equal value to the peer, the one that sells
  the neighbours' present demand before filling the battery, so the battery does not fill by
  mid-afternoon and send the rest of the surplus to the grid; and no P2P purchase is planned where
  no neighbour is expected to sell (`peers.market_depth`).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from pydantic import Field

from peers.agents import OptimisingAgent, OptimisingParams, register_agent
from peers.assets import PeerAssets
from peers.clearsky import ClearSkyIndexForecaster
from peers.forecast import Forecast
from peers.horizon import HorizonInputs
from peers.interface import (
    AgentDecision,
    DeviceState,
    MarketContext,
    MarketOutcome,
    OrderIntent,
)
from peers.market_depth import MarketDepth
from peers.schedule import Schedule


class CommunityParams(OptimisingParams):
    min_history_intervals: int = Field(default=0, ge=0)
    firm_quantile: float | None = Field(default=0.25, gt=0, lt=0.5)
    p2p_fill_prior: float = Field(default=0.8, ge=0, le=1)
    depth_margin_kw: float = Field(
        default=0.4, ge=0, description="Added to the expected P2P demand and supply per step"
    )
    recent_load_steps: float = Field(
        default=4.0, gt=0, description="Lead (steps) over which the recent load level fades"
    )
    clear_sky_prior_index: float = Field(default=0.8, gt=0, le=1.2)
    p2p_sales_first: bool = True


class CommunityAgent(OptimisingAgent):
    """Optimising agent with a clear-sky PV forecast, recent load level and book-depth caps."""

    kind = "community"
    Params = CommunityParams
    params: CommunityParams

    def __init__(
        self, peer: str, assets: PeerAssets, params: CommunityParams, seed: int = 0
    ) -> None:
        super().__init__(peer, assets, params, seed)
        self.depth: MarketDepth | None = None
        self._pv_forecaster: ClearSkyIndexForecaster | None = None

    def _depth(self, interval_s: float) -> MarketDepth:
        if self.depth is None or self.depth.interval_s != interval_s:
            self.depth = MarketDepth(
                interval_s, self.assets.zone, margin_kw=self.params.depth_margin_kw
            )
        return self.depth

    def _forecast(self, ctx: MarketContext) -> tuple[Forecast, Forecast]:
        load_fc, pv_fc = super()._forecast(ctx)
        load_fc = self._with_recent_level(ctx, load_fc)
        if self.assets.pv is not None:
            if self._pv_forecaster is None or self._pv_forecaster.interval_s != ctx.interval_s:
                self._pv_forecaster = ClearSkyIndexForecaster(
                    self.assets.pv, ctx.interval_s, self.params.clear_sky_prior_index
                )
            self._pv_forecaster.fit(self.history.pv_kw(before=ctx.interval_start))
            pv_fc = self._pv_forecaster.predict(ctx.interval_start, ctx.horizon)
        return load_fc, pv_fc

    def _with_recent_level(self, ctx: MarketContext, load_fc: Forecast) -> Forecast:
        """Blend the last metered hour's mean load into the first steps of the profile."""
        recent = self.history.load_kw(before=ctx.interval_start).dropna().tail(2)
        if recent.empty:
            return load_fc
        lead = np.arange(ctx.horizon) + 2.0  # the last metered interval ends two steps before
        weight = np.exp(-lead / self.params.recent_load_steps)
        shift = weight * (float(recent.mean()) - load_fc.mean_kw)
        cap = 1.5 * self.assets.peak_load_kw
        return Forecast(
            load_fc.start,
            load_fc.interval_s,
            np.clip(load_fc.mean_kw + shift, 0.0, cap),
            {q: np.clip(v + shift, 0.0, cap) for q, v in load_fc.quantiles_kw.items()},
        )

    def _schedule(self, inputs: HorizonInputs, ctx: MarketContext) -> Schedule:
        buy_cap, sell_cap = self._depth(ctx.interval_s).caps_kw(list(inputs.starts))
        inputs = replace(inputs, p2p_buy_cap_kw=buy_cap, p2p_sell_cap_kw=sell_cap)
        return super()._schedule(inputs, ctx)

    def decide(self, ctx: MarketContext, state: DeviceState) -> AgentDecision:
        decision = super().decide(ctx, state)
        self._depth(ctx.interval_s).record(decision.orders)
        return decision

    def _record_orders(self, orders: tuple[OrderIntent, ...]) -> None:
        super()._record_orders(orders)
        self._depth(self.history.interval_s).record(orders)

    def learn(self, outcome: MarketOutcome) -> None:
        super().learn(outcome)
        self._depth(self.depth.interval_s if self.depth else self.history.interval_s).learn(outcome)


register_agent("community", CommunityAgent)
