"""Zero-Intelligence-Plus traders (Cliff 1997) driving a continuous double auction."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from testbed.market.book import Order, Side, Trade
from testbed.market.cda import ContinuousDoubleAuction
from testbed.market.matching import QUANTITY_TOLERANCE_KWH
from testbed.market.uniform import UniformPriceAuction

_INTERVAL = datetime(1970, 1, 1, tzinfo=UTC)  # ZIP rounds are not tied to a market interval


@dataclass(frozen=True)
class ZipSettings:
    """Cliff's (1997) parameters; prices in currency per kWh."""

    learning_rate: tuple[float, float] = (0.1, 0.5)  # beta, drawn per trader
    momentum: tuple[float, float] = (0.0, 0.1)  # gamma, drawn per trader
    initial_margin: tuple[float, float] = (0.05, 0.35)
    relative_perturbation: float = 0.05  # R in [1, 1.05] or [0.95, 1]
    absolute_perturbation: float = 0.05  # A in [0, 0.05] or [-0.05, 0]


@dataclass
class ZipTrader:
    """One trader: a limit price it never crosses and a profit margin it learns.

    Quote = limit * (1 + margin) for a seller, limit * (1 - margin) for a buyer. After every
    shout the margin moves the quote toward a target near the shout's price with Widrow-Hoff
    learning and momentum.
    """

    trader_id: str
    side: Side
    limit_price: float
    quantity_kwh: float
    margin: float
    learning_rate: float
    momentum: float
    change: float = 0.0
    remaining_kwh: float = 0.0

    @property
    def quote(self) -> float:
        if self.side is Side.SELL:
            return self.limit_price * (1.0 + self.margin)
        return self.limit_price * (1.0 - self.margin)

    @property
    def active(self) -> bool:
        return self.remaining_kwh > QUANTITY_TOLERANCE_KWH

    def move_toward(self, target: float) -> None:
        delta = self.learning_rate * (target - self.quote)
        self.change = self.momentum * self.change + (1.0 - self.momentum) * delta
        new_quote = self.quote + self.change
        if self.side is Side.SELL:
            self.margin = max(new_quote / self.limit_price - 1.0, 0.0)
        else:
            self.margin = min(max(1.0 - new_quote / self.limit_price, 0.0), 1.0)

    def respond(
        self,
        *,
        price: float,
        shout_side: Side,
        traded: bool,
        rng: np.random.Generator,
        settings: ZipSettings,
    ) -> None:
        """Cliff's rules after a shout at `price` (the trade price when `traded`)."""
        raise_quote = self._direction(price, shout_side, traded)
        if raise_quote is None:
            return
        rel, absolute = settings.relative_perturbation, settings.absolute_perturbation
        if raise_quote:
            target = price * rng.uniform(1.0, 1.0 + rel) + rng.uniform(0.0, absolute)
        else:
            target = price * rng.uniform(1.0 - rel, 1.0) - rng.uniform(0.0, absolute)
        self.move_toward(target)

    def _direction(self, price: float, shout_side: Side, traded: bool) -> bool | None:
        """True to raise the quote, False to lower it, None to keep it."""
        quote, active = self.quote, self.active
        if self.side is Side.SELL:
            if traded:
                if quote <= price:
                    return True  # raise the margin
                if shout_side is Side.BUY and active and quote >= price:
                    return False  # a bid was hit below my quote: lower the margin
            elif shout_side is Side.SELL and active and quote >= price:
                return False  # an offer at or below my quote went unaccepted
            return None
        if traded:
            if quote >= price:
                return False  # raise the margin: lower the quote
            if shout_side is Side.SELL and active and quote <= price:
                return True  # an offer was lifted above my quote: raise the quote
        elif shout_side is Side.BUY and active and quote <= price:
            return True  # a bid at or above my quote went unaccepted
        return None


@dataclass(frozen=True)
class ZipRound:
    """One trading round (a "day"): every trader starts with its full quantity."""

    index: int
    trades: list[Trade]
    volume_kwh: float
    mean_price: float | None  # volume-weighted
    surplus: float  # gains from trade on limit prices
    efficiency: float | None  # surplus / maximal surplus
    smith_alpha_pct: float | None  # RMS deviation of trade prices from equilibrium, % of it


@dataclass(frozen=True)
class ZipSimulation:
    rounds: list[ZipRound]
    equilibrium_price: float | None  # midpoint of the competitive interval on limit prices
    equilibrium_volume_kwh: float
    max_surplus: float
    traders: list[ZipTrader] = field(repr=False)


def simulate_zip_market(
    buy_limits: Sequence[float],
    sell_limits: Sequence[float],
    *,
    rounds: int = 10,
    quantity_kwh: float | Sequence[float] = 1.0,
    steps_per_round: int | None = None,
    seed: int = 0,
    settings: ZipSettings | None = None,
) -> ZipSimulation:
    """Run ZIP buyers and sellers with the given limit prices in a CDA for `rounds` rounds.

    In each step a random trader that still has energy to trade shouts its quote for all its
    remaining quantity (replacing its resting order); the book matches it; every trader then
    learns from the shout. A round ends after `steps_per_round` steps (default 30 per trader) or
    when no remaining buyer's limit reaches a remaining seller's limit. Margins carry over from
    round to round; the same seed gives the same run.
    """
    settings = settings or ZipSettings()
    limits = [*buy_limits, *sell_limits]
    if rounds < 1:
        raise ValueError(f"rounds = {rounds} must be at least 1")
    if not limits or any(not math.isfinite(p) or p <= 0 for p in limits):
        raise ValueError("limit prices must be finite and > 0 (ZIP margins are relative)")
    quantities = _per_trader(quantity_kwh, len(limits))
    rng = np.random.default_rng(seed)
    traders = [
        ZipTrader(
            trader_id=f"{'B' if i < len(buy_limits) else 'S'}{i}",
            side=Side.BUY if i < len(buy_limits) else Side.SELL,
            limit_price=float(limit),
            quantity_kwh=quantities[i],
            margin=float(rng.uniform(*settings.initial_margin)),
            learning_rate=float(rng.uniform(*settings.learning_rate)),
            momentum=float(rng.uniform(*settings.momentum)),
        )
        for i, limit in enumerate(limits)
    ]
    reference = UniformPriceAuction(k=0.5).clear(_limit_book(traders))
    max_surplus = reference.report["max_welfare"] or 0.0
    steps = steps_per_round or 30 * len(traders)
    results = [
        _run_round(index, traders, steps, rng, settings, reference.clearing_price, max_surplus)
        for index in range(rounds)
    ]
    return ZipSimulation(
        rounds=results,
        equilibrium_price=reference.clearing_price,
        equilibrium_volume_kwh=reference.volume_kwh,
        max_surplus=max_surplus,
        traders=traders,
    )


def _run_round(
    index: int,
    traders: list[ZipTrader],
    steps: int,
    rng: np.random.Generator,
    settings: ZipSettings,
    equilibrium_price: float | None,
    max_surplus: float,
) -> ZipRound:
    market = ContinuousDoubleAuction()
    by_id = {trader.trader_id: trader for trader in traders}
    resting: dict[str, str] = {}  # trader -> its resting order_id
    for trader in traders:
        trader.remaining_kwh = trader.quantity_kwh
    trades: list[Trade] = []
    for step in range(steps):
        active = [trader for trader in traders if trader.active]
        if not _trade_possible(active):
            break
        shouter = active[int(rng.integers(len(active)))]
        if shouter.trader_id in resting:
            market.cancel(resting.pop(shouter.trader_id))
        order = Order(
            order_id=f"r{index}-{step}-{shouter.trader_id}",
            peer=shouter.trader_id,
            side=shouter.side,
            quantity_kwh=shouter.remaining_kwh,
            price=shouter.quote,
            interval_start=_INTERVAL,
            time=float(step),
        )
        made = market.submit(order)
        for trade in made:
            by_id[trade.buyer].remaining_kwh -= trade.quantity_kwh
            by_id[trade.seller].remaining_kwh -= trade.quantity_kwh
        for trader in traders:
            if (
                resting.get(trader.trader_id)
                and market.remaining_kwh(resting[trader.trader_id]) <= 0
            ):
                del resting[trader.trader_id]
        if market.remaining_kwh(order.order_id) > 0:
            resting[shouter.trader_id] = order.order_id
        trades.extend(made)
        price = made[-1].price if made else order.price
        for trader in traders:
            trader.respond(
                price=price, shout_side=shouter.side, traded=bool(made), rng=rng, settings=settings
            )
    return _summarise(index, trades, by_id, equilibrium_price, max_surplus)


def _summarise(
    index: int,
    trades: list[Trade],
    by_id: dict[str, ZipTrader],
    equilibrium_price: float | None,
    max_surplus: float,
) -> ZipRound:
    quantity = np.array([t.quantity_kwh for t in trades])
    price = np.array([t.price for t in trades])
    gain = np.array([by_id[t.buyer].limit_price - by_id[t.seller].limit_price for t in trades])
    volume = float(quantity.sum()) if len(trades) else 0.0
    surplus = float(np.sum(quantity * gain)) if len(trades) else 0.0
    mean_price = float(np.sum(quantity * price) / volume) if volume > 0 else None
    alpha = None
    if volume > 0 and equilibrium_price:
        rms = math.sqrt(float(np.sum(quantity * (price - equilibrium_price) ** 2)) / volume)
        alpha = 100.0 * rms / abs(equilibrium_price)
    return ZipRound(
        index=index,
        trades=trades,
        volume_kwh=volume,
        mean_price=mean_price,
        surplus=surplus,
        efficiency=surplus / max_surplus if max_surplus > 0 else None,
        smith_alpha_pct=alpha,
    )


def _trade_possible(active: list[ZipTrader]) -> bool:
    buy = [t.limit_price for t in active if t.side is Side.BUY]
    sell = [t.limit_price for t in active if t.side is Side.SELL]
    return bool(buy) and bool(sell) and max(buy) >= min(sell)


def _limit_book(traders: list[ZipTrader]) -> list[Order]:
    return [
        Order(t.trader_id, t.trader_id, t.side, t.quantity_kwh, t.limit_price, _INTERVAL)
        for t in traders
    ]


def _per_trader(quantity_kwh: float | Sequence[float], count: int) -> list[float]:
    if isinstance(quantity_kwh, int | float):
        values = [float(quantity_kwh)] * count
    else:
        values = [float(q) for q in quantity_kwh]
        if len(values) != count:
            raise ValueError(f"quantity_kwh has {len(values)} entries for {count} traders")
    if any(not math.isfinite(q) or q <= 0 for q in values):
        raise ValueError("quantity_kwh must be finite and > 0 for every trader")
    return values
