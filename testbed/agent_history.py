"""A warm start: each agent learns an earlier finished run before its first interval.

`[experiment] agent_history = "runs/<earlier run>"` names a finished run of the same peers. Before
the first interval each agent replays that run's intervals in order: its own metered load and PV
(its forecasters' history), the orders it placed and the market's outcome (its fills, the
clearing price and the book's depth, so a community agent expects its neighbours' sales and
purchases by time of day). Nothing else carries over: the plant, the devices' SoC and the
ledger start as the new run's configuration says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pandas as pd

from peers.interface import (
    Fill,
    IntervalObservation,
    MarketOutcome,
    OrderIntent,
    OrderSide,
)
from testbed.runstore import RunReader
from testbed.runstore.schema import RunDirError
from testbed.value.metered_day import IncompleteRun, metered_day


class AgentHistoryError(ValueError):
    """The configured history run cannot seed the agents (names the run and what is wrong)."""


@dataclass(frozen=True, slots=True)
class HistoryInterval:
    observation: IntervalObservation
    own_orders: tuple[OrderIntent, ...]
    outcome: MarketOutcome | None


def _optional(value: object) -> float | None:
    number = float(value) if value is not None else math.nan  # type: ignore[arg-type]
    return None if math.isnan(number) else number


@lru_cache(maxsize=4)
def run_history(run_dir: Path) -> dict[str, tuple[HistoryInterval, ...]]:
    """Every peer's intervals of a finished run, in time order."""
    try:
        day = metered_day(run_dir)
        reader = RunReader(run_dir)
        orders = reader.orders()
        trades = reader.trades()
        clearings = reader.clearings()
    except (IncompleteRun, RunDirError, FileNotFoundError) as error:
        raise AgentHistoryError(
            f"[experiment] agent_history = {str(run_dir)!r}: cannot seed the agents: {error}"
        ) from error
    accepted = orders[orders["accepted"]] if not orders.empty else orders
    history: dict[str, list[HistoryInterval]] = {peer: [] for peer in day.peers}
    for k, start in enumerate(day.interval_starts()):
        stamp = pd.Timestamp(start)
        book = accepted[accepted["interval_start"] == stamp] if not accepted.empty else accepted
        dealt = trades[trades["interval_start"] == stamp] if not trades.empty else trades
        cleared = (
            clearings[clearings["interval_start"] == stamp] if not clearings.empty else clearings
        )
        outcome_known = not cleared.empty
        bids = book[book["side"] == "buy"] if not book.empty else book
        asks = book[book["side"] == "sell"] if not book.empty else book
        price = _optional(cleared["clearing_price"].iloc[0]) if outcome_known else None
        for peer, peer_day in day.peers.items():
            observation = IntervalObservation(
                interval_start=start,
                interval_s=day.interval_s,
                load_kwh=max(float(peer_day.load_kwh[k]), 0.0),
                pv_kwh=max(float(peer_day.pv_kwh[k]), 0.0),
                net_kwh=float(peer_day.metered_kwh[k]),
            )
            own = (
                tuple(
                    OrderIntent(OrderSide(row.side), float(row.quantity_kwh), float(row.price))
                    for row in book.itertuples()
                    if row.peer == peer
                )
                if not book.empty
                else ()
            )
            outcome = None
            if outcome_known:
                fills = [
                    Fill(OrderSide.BUY, float(t.quantity_kwh), float(t.price))
                    for t in dealt.itertuples()
                    if t.buyer == peer
                ] + [
                    Fill(OrderSide.SELL, float(t.quantity_kwh), float(t.price))
                    for t in dealt.itertuples()
                    if t.seller == peer
                ]
                outcome = MarketOutcome(
                    interval_start=start,
                    clearing_price=price,
                    fills=tuple(fills),
                    best_bid_price=float(bids["price"].max()) if not bids.empty else None,
                    best_ask_price=float(asks["price"].min()) if not asks.empty else None,
                    bid_volume_kwh=float(bids["quantity_kwh"].sum()) if not bids.empty else 0.0,
                    ask_volume_kwh=float(asks["quantity_kwh"].sum()) if not asks.empty else 0.0,
                )
            history[peer].append(HistoryInterval(observation, own, outcome))
    return {peer: tuple(intervals) for peer, intervals in history.items()}


def warm_start(agent: object, peer: str, run_dir: Path) -> int:
    """Replay the history run's intervals of `peer` into `agent`; the number replayed (0 for a
    peer the history run did not have). An agent kind without `replay` only observes."""
    intervals = run_history(Path(run_dir).resolve()).get(peer, ())
    replay = getattr(agent, "replay", None)
    for interval in intervals:
        if replay is not None:
            replay(interval.observation, interval.own_orders, interval.outcome)
        else:
            agent.observe(interval.observation)  # type: ignore[attr-defined]
    return len(intervals)
