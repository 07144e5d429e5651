"""From a planned net position to bids and asks: quantities and limit prices.

Every limit price lies in [feed-in tariff, retail tariff] of the interval: no peer should pay more
for P2P energy than the grid charges, nor accept less than the grid pays.

- Tariff band (baseline): a bid's limit is `feed_in + bid_fraction x (retail - feed_in)`, an
  ask's `feed_in + ask_fraction x (retail - feed_in)`; with the defaults (0.75, 0.25) bids sit at
  3/4 of the band and asks at 1/4, so a buyer and a seller always cross.
- Marginal value (optimising agent): the plan's value of one kWh at the PCC in the coming interval
  with the grid as the alternative (the dual of the power balance; see `peers.hems`), less the
  network charge for a bid (the buyer pays it): the peer's reservation price.
- Delivery risk (optimising agent): a contracted kWh the peer then does not consume is sold back
  at the feed-in tariff, one it does not deliver is bought at retail plus the deviation penalty.
  So the agent offers only its firm position (the plan shaded by the forecast's spread down to a
  low quantile) and prices in a share of that risk: a bid moves toward the feed-in tariff, an ask
  toward retail plus penalty. Without it, a buyer bidding retail less network charge gains nothing
  when it trades and loses on every kWh its forecast overestimated.
- ZIP (Cliff 1997, zero-intelligence-plus): each side keeps a profit margin over its reservation
  price and moves it after every clearing with a Widrow-Hoff rule with momentum toward a target
  just beyond the clearing price (raise after a trade, lower after a miss).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TypeGuard

import numpy as np

from peers.assets import BatteryAsset, EvAsset, PeerAssets
from peers.interface import ForecastStep, MarketOutcome, OrderIntent, OrderSide, PlanStep


def clip_price(price: float, feed_in: float, retail: float) -> float:
    """Clamp a price into [feed_in, retail] (feed_in when the price is not a number)."""
    if not math.isfinite(price):
        return feed_in
    return float(min(max(price, feed_in), retail))


def position_orders(
    net_kwh: float, bid_price: float, ask_price: float, min_quantity_kwh: float = 0.01
) -> tuple[OrderIntent, ...]:
    """One ask for a planned export, one bid for a planned import, none below the minimum."""
    if not math.isfinite(net_kwh) or abs(net_kwh) < min_quantity_kwh:
        return ()
    if net_kwh > 0:
        return (OrderIntent(OrderSide.SELL, round(net_kwh, 6), ask_price),)
    return (OrderIntent(OrderSide.BUY, round(-net_kwh, 6), bid_price),)


def tariff_band_prices(
    retail: float, feed_in: float, bid_fraction: float = 0.75, ask_fraction: float = 0.25
) -> tuple[float, float]:
    """(bid limit, ask limit) at fixed positions in the band between feed-in and retail."""
    spread = retail - feed_in
    return feed_in + bid_fraction * spread, feed_in + ask_fraction * spread


def reservation_prices(
    value_per_kwh: float, retail: float, feed_in: float, network_charge: float = 0.0
) -> tuple[float, float]:
    """(highest bid, lowest ask) a peer should accept, from its marginal value of energy.

    The buyer pays the network charge on top of the P2P price, so its bid is lower by that much.
    """
    bid = clip_price(value_per_kwh - network_charge, feed_in, retail)
    ask = clip_price(value_per_kwh, feed_in, retail)
    return bid, ask


def shade_position(net_kwh: float, spread_kwh: float) -> float:
    """The planned net position moved toward zero by the forecast's spread (never past zero)."""
    if not (math.isfinite(net_kwh) and math.isfinite(spread_kwh)) or spread_kwh <= 0:
        return net_kwh
    return math.copysign(max(abs(net_kwh) - spread_kwh, 0.0), net_kwh)


def forecast_spread_kw(step: ForecastStep, buying: bool, low: float = 0.1) -> float:
    """How far the step's net power may miss the plan, at the `low` / `1 - low` quantiles: less
    load and more PV for a buyer, more load and less PV for a seller (kW, 0 without quantiles)."""

    def gap(mean: float, quantiles: Mapping[float, float], level: float) -> float:
        value = next((v for q, v in quantiles.items() if abs(q - level) < 1e-9), None)
        return abs(mean - value) if value is not None and math.isfinite(value) else 0.0

    load_level, pv_level = (low, 1.0 - low) if buying else (1.0 - low, low)
    return gap(step.load_kw, step.load_quantiles_kw, load_level) + gap(
        step.pv_kw, step.pv_quantiles_kw, pv_level
    )


def storage_headroom_kw(assets: PeerAssets, step: PlanStep, dt_h: float, buying: bool) -> float:
    """Power the battery and a plugged EV could still add in the plan's first step to hold the
    PCC to the contract: more charging for a buyer, more discharging for a seller (kW)."""
    room = 0.0
    battery, ev = assets.battery, assets.ev
    if battery is not None and _known(step.soc_pct):
        room += _room(battery, step.soc_pct, step.battery_kw, dt_h, buying, battery.soc_min_pct)
    if ev is not None and step.ev_plugged and _known(step.ev_soc_pct):
        floor_pct = max(ev.soc_min_pct, ev.reserve_soc_pct)  # no V2G below the reserve
        room += _room(ev, step.ev_soc_pct, step.ev_kw, dt_h, buying, floor_pct)
    return room


def _known(value: float | None) -> TypeGuard[float]:
    return value is not None and math.isfinite(value)


def _room(
    store: BatteryAsset | EvAsset,
    end_soc_pct: float,
    planned_kw: float,
    dt_h: float,
    buying: bool,
    floor_pct: float,
) -> float:
    """One store's extra power (kW, >= 0) within its power limit and its SoC window."""
    if buying:  # absorb more: charge harder (planned_kw is + for discharge)
        power = store.max_charge_kw + planned_kw
        energy = store.capacity_kwh * (store.soc_max_pct - end_soc_pct) / 100.0
    else:
        power = store.max_discharge_kw - planned_kw
        energy = store.capacity_kwh * (end_soc_pct - floor_pct) / 100.0
    return max(min(power, energy / dt_h), 0.0)


def risk_priced(
    bid: float,
    ask: float,
    risk_share: float,
    feed_in: float,
    retail: float,
    deviation_penalty: float,
) -> tuple[float, float]:
    """(bid, ask) with `risk_share` of each kWh valued at its fallback if it is not delivered:
    an unused bought kWh sells at feed-in, an undelivered sold kWh costs retail plus penalty."""
    share = min(max(risk_share, 0.0), 1.0)
    risky_bid = (1.0 - share) * bid + share * feed_in
    risky_ask = (1.0 - share) * ask + share * (retail + deviation_penalty)
    return clip_price(risky_bid, feed_in, retail), clip_price(risky_ask, feed_in, retail)


class ZipMargins:
    """ZIP margin adaptation for one peer, both sides; deterministic given its seed.

    A seller asks `reservation x (1 + margin)`, a buyer bids `reservation x (1 - margin)`, both
    clamped into the tariff band and never past the reservation price.
    """

    def __init__(
        self,
        seed: int = 0,
        learning_rate: float = 0.3,
        momentum: float = 0.05,
        initial_margin: tuple[float, float] = (0.05, 0.3),
    ) -> None:
        self._rng = np.random.default_rng(seed)
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.margin = {
            OrderSide.SELL: float(self._rng.uniform(*initial_margin)),
            OrderSide.BUY: float(self._rng.uniform(*initial_margin)),
        }
        self._velocity = {OrderSide.SELL: 0.0, OrderSide.BUY: 0.0}
        self._last: dict[OrderSide, tuple[float, float]] = {}  # side -> (price, reservation)

    def price(self, side: OrderSide, reservation: float, retail: float, feed_in: float) -> float:
        reservation = clip_price(reservation, feed_in, retail)
        if side == OrderSide.SELL:
            price = min(max(reservation * (1 + self.margin[side]), reservation), retail)
        else:
            price = max(min(reservation * (1 - self.margin[side]), reservation), feed_in)
        return price

    def record(self, side: OrderSide, price: float, reservation: float) -> None:
        """Remember the order placed this interval, so `learn` knows what it is judging."""
        self._last = {side: (price, reservation)}

    def clear_record(self) -> None:
        self._last = {}

    def learn(self, outcome: MarketOutcome) -> None:
        for side, (price, reservation) in self._last.items():
            traded = outcome.traded_kwh(side) > 0
            reference = outcome.clearing_price
            if reference is None:
                reference = (
                    outcome.best_bid_price if side == OrderSide.SELL else outcome.best_ask_price
                )
            if reference is None:
                reference = price
            up = reference * self._rng.uniform(1.0, 1.05) + self._rng.uniform(0.0, 0.05)
            down = reference * self._rng.uniform(0.95, 1.0) - self._rng.uniform(0.0, 0.05)
            raise_price = traded if side == OrderSide.SELL else not traded
            target = up if raise_price else down
            delta = self.learning_rate * (target - price)
            self._velocity[side] = (
                self.momentum * self._velocity[side] + (1 - self.momentum) * delta
            )
            new_price = price + self._velocity[side]
            if reservation <= 0:
                continue
            if side == OrderSide.SELL:
                margin = new_price / reservation - 1.0
            else:
                margin = 1.0 - new_price / reservation
            self.margin[side] = float(min(max(margin, 0.0), 1.0))
        self._last = {}


class MarketExpectation:
    """What an agent expects of the P2P market, learned from its clearing outcomes.

    `fill[side]` is the share of an order's quantity that trades (exponentially weighted, starting
    at `fill_prior`); `price` the weighted clearing price (None before any clearing). The HEMS
    values a planned P2P kWh at `fill x P2P price + (1 - fill) x grid tariff`: energy that does not
    trade goes to or comes from the grid.
    """

    def __init__(self, fill_prior: float = 0.5, learning_rate: float = 0.1) -> None:
        self.fill = {OrderSide.BUY: fill_prior, OrderSide.SELL: fill_prior}
        self.price: float | None = None
        self.learning_rate = learning_rate
        self._ordered: dict[OrderSide, float] = {}

    def record(self, orders: tuple[OrderIntent, ...]) -> None:
        """The orders placed for the interval the next outcome reports."""
        self._ordered = {order.side: order.quantity_kwh for order in orders}

    def learn(self, outcome: MarketOutcome) -> None:
        rate = self.learning_rate
        if outcome.clearing_price is not None and math.isfinite(outcome.clearing_price):
            price = outcome.clearing_price
            self.price = price if self.price is None else (1 - rate) * self.price + rate * price
        for side, quantity in self._ordered.items():
            share = min(outcome.traded_kwh(side) / quantity, 1.0) if quantity > 0 else 0.0
            self.fill[side] = (1 - rate) * self.fill[side] + rate * share
        self._ordered = {}

    def prices(
        self,
        retail: np.ndarray,
        feed_in: np.ndarray,
        p2p_price: np.ndarray,
        network_charge: float,
        price_given: bool,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Expected (purchase cost, sale revenue) per kWh planned as P2P, per step."""
        if self.price is not None and not price_given:
            p2p_price = np.clip(np.full_like(retail, self.price), feed_in, retail)
        buy_fill, sell_fill = self.fill[OrderSide.BUY], self.fill[OrderSide.SELL]
        buy = buy_fill * (p2p_price + network_charge) + (1 - buy_fill) * retail
        sell = sell_fill * p2p_price + (1 - sell_fill) * feed_in
        return buy, sell
