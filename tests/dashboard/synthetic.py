"""A synthetic but physically plausible run: the document stream the orchestrator will emit.

Three peers as in the seed's testbed (A: PV + battery hybrid inverter, B: V2G campus cart,
C: consumer behind a programmable load), one meter per PCC, a 15-minute market cleared by a
`testbed.market` mechanism,
delivery by battery / EV setpoints that follow the contract within device limits, settlement with
`testbed.settlement`. Power in kW with the generator convention (positive = toward the grid).

`python -m tests.dashboard.synthetic --out DIR --hours 0.5 --pace-s 0.005` writes a run slowly,
for tests that watch a live run.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from peers.interface import AgentDecision, ForecastStep, PlanStep
from testbed.config import PricesConfig, parse_config
from testbed.documents import (
    AgentPlan,
    Document,
    Interlock,
    OrderBook,
    RunFinished,
    RunStarted,
    Sample,
)
from testbed.market.book import Order, Side
from testbed.market.registry import get_mechanism
from testbed.runstore import RunStore
from testbed.settlement import settle_interval

# 08:00 IST on a June day: the sun is up, so even an hour-long run trades.
DEFAULT_START = datetime(2024, 6, 1, 2, 30, tzinfo=UTC)
BATTERY_KWH, BATTERY_MAX_KW = 7.5, 3.0
EV_KWH, EV_MAX_KW = 4.59, 1.5
EV_RESERVE_PCT = 30.0
RAMP_LIMIT_KW = 0.6


def synthetic_config(
    hours: float,
    seed: int,
    mechanism: str,
    interval_s: float,
    step_s: float,
    params: dict | None = None,
) -> dict:
    """A valid testbed configuration for the synthetic run (as plain data)."""
    market = {"mechanism": mechanism, "interval_s": interval_s, "gate_closure_s": 60.0}
    data = {
        "experiment": {"name": "synthetic", "hours": hours, "seed": seed},
        "market": {**market, **({"params": dict(params)} if params else {})},
        "control": {"step_s": step_s},
        "peers": {
            "A": {"role": "prosumer", "meter": {}, "inverter": {}},
            "B": {"role": "prosumer", "meter": {}, "ev_charger": {}},
            "C": {"role": "consumer", "meter": {}, "load": {}},
        },
    }
    return parse_config(data, "synthetic").to_toml_dict()


class _Plant:
    """Just enough physics for believable numbers."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.battery_soc_pct = 55.0
        self.ev_soc_pct = 70.0
        self.battery_kw = 0.0  # read-back, + = discharging
        self.ev_kw = 0.0
        self.cloud = 1.0

    def pv_kw(self, moment: datetime) -> float:
        hour_ist = (moment.hour + moment.minute / 60 + moment.second / 3600 + 5.5) % 24
        clear_sky = 3.5 * 0.85 * max(0.0, math.sin(math.pi * (hour_ist - 6.0) / 12.5))
        self.cloud = min(1.0, max(0.4, self.cloud + self.rng.normal(0, 0.01)))
        return clear_sky * self.cloud

    @staticmethod
    def load_kw(peer: str, moment: datetime) -> float:
        hour_ist = (moment.hour + moment.minute / 60 + 5.5) % 24
        base = {"A": 0.9, "B": 0.6, "C": 1.2}[peer]
        evening = 0.5 * math.exp(-((hour_ist - 20.0) ** 2) / 4)
        morning = 0.3 * math.exp(-((hour_ist - 8.0) ** 2) / 2)
        return base + evening + morning


def _agent_plans(
    interval_start: datetime,
    orders: list[Order],
    surplus_a: float,
    mid: datetime,
    interval_h: float,
) -> Iterator[AgentPlan]:
    """Each peer's decision: a one-step plan whose net position is its orders' net."""
    for peer in "ABC":
        load = _Plant.load_kw(peer, mid)
        pv = surplus_a + load if peer == "A" else 0.0
        net_kwh = sum(
            o.quantity_kwh if o.side == Side.SELL else -o.quantity_kwh
            for o in orders
            if o.peer == peer
        )
        forecast = ForecastStep(start=interval_start, load_kw=load, pv_kw=pv)
        step = PlanStep(
            start=interval_start,
            load_kw=load,
            pv_kw=pv,
            battery_kw=0.0,
            ev_kw=0.0,
            net_kw=net_kwh / interval_h,
        )
        decision = AgentDecision(interval_start, (forecast,), (step,), ())
        yield AgentPlan(interval_start, peer, "synthetic", decision)


def document_stream(
    run_id: str = "synthetic",
    hours: float = 2.0,
    step_s: float = 1.0,
    seed: int = 1,
    mechanism: str = "uniform",
    interval_s: float = 900.0,
    start: datetime = DEFAULT_START,
    params: dict | None = None,
) -> Iterator[Document]:
    """Every document of one synthetic run, in the order the orchestrator emits them."""
    rng = np.random.default_rng(seed)
    prices = PricesConfig()
    config = synthetic_config(hours, seed, mechanism, interval_s, step_s, params)
    yield RunStarted(run_id=run_id, time=start, config=config)
    plant = _Plant(rng)
    market = get_mechanism(mechanism, **(params or {}))
    steps_per_interval = round(interval_s / step_s)
    n_intervals = max(1, round(hours * 3600 / interval_s))
    dt_h = step_s / 3600
    interval_h = interval_s / 3600
    for k in range(n_intervals):
        interval_start = start + timedelta(seconds=k * interval_s)
        mid = interval_start + timedelta(seconds=interval_s / 2)
        # Bid: A sells its PV surplus (and battery energy in the evening), B sells V2G energy when
        # the cart is full enough, otherwise buys to charge it, C buys its load.
        surplus_a = plant.pv_kw(mid) - plant.load_kw("A", mid)
        orders: list[Order] = []
        rejected: list[tuple[Order, str]] = []

        def order(peer: str, side: Side, kwh: float, price: float, n: int, k: int = k) -> Order:
            return Order(
                order_id=f"{peer}-{k}-{n}",
                peer=peer,
                side=side,
                quantity_kwh=round(kwh, 4),
                price=round(price, 2),
                interval_start=start + timedelta(seconds=k * interval_s),
                time=float(n) + float(rng.uniform(0, 1)),
            )

        if surplus_a > 0.05:  # PV surplus in two price tiers
            pv_kwh = surplus_a * interval_h * 0.9
            orders.append(order("A", Side.SELL, 0.6 * pv_kwh, 4.0 + rng.uniform(0, 0.5), 0))
            orders.append(order("A", Side.SELL, 0.4 * pv_kwh, 4.8 + rng.uniform(0, 0.5), 4))
        if plant.battery_soc_pct > 40:  # stored energy, dearer
            orders.append(order("A", Side.SELL, 0.5 * interval_h, 5.6 + rng.uniform(0, 0.8), 5))
        if plant.ev_soc_pct > 60:
            orders.append(order("B", Side.SELL, 0.7 * interval_h, 4.6 + rng.uniform(0, 0.8), 1))
        else:
            orders.append(order("B", Side.BUY, 1.2 * interval_h, 6.0 + rng.uniform(0, 0.8), 1))
        orders.append(
            order("C", Side.BUY, plant.load_kw("C", mid) * interval_h, 6.5 + rng.uniform(0, 1.0), 2)
        )
        orders.append(order("C", Side.BUY, 0.3 * interval_h, 3.5 + rng.uniform(0, 0.5), 3))
        late = order("C", Side.BUY, 0.1, 7.0, 9)
        rejected.append((late, "arrived after gate closure"))
        yield OrderBook(
            interval_start=interval_start, orders=tuple(orders), rejected=tuple(rejected)
        )

        clearing = market.clear(orders).to_document(interval_start)
        trades = clearing.trades
        yield clearing
        yield from _agent_plans(interval_start, orders, surplus_a, mid, interval_h)
        contracted_kw = {peer: 0.0 for peer in "ABC"}
        for trade in trades:
            contracted_kw[trade.seller] += trade.quantity_kwh / interval_h
            contracted_kw[trade.buyer] -= trade.quantity_kwh / interval_h

        metered_kwh = {peer: 0.0 for peer in "ABC"}
        for n in range(steps_per_interval):
            now = interval_start + timedelta(seconds=n * step_s)
            pv = plant.pv_kw(now)
            loads = {peer: plant.load_kw(peer, now) + rng.normal(0, 0.02) for peer in "ABC"}
            # Peer A: battery fills the gap between PV - load and the contract.
            battery_set = contracted_kw["A"] - (pv - loads["A"])
            battery_set = min(BATTERY_MAX_KW, max(-BATTERY_MAX_KW, battery_set))
            if (battery_set > 0 and plant.battery_soc_pct <= 10) or (
                battery_set < 0 and plant.battery_soc_pct >= 95
            ):
                if abs(battery_set) > 0.01 and n % 300 == 0:
                    yield Interlock(
                        now,
                        "A",
                        "inverter",
                        "soc_limit",
                        f"battery soc_pct = {plant.battery_soc_pct:.1f} at its limit",
                        "clamped",
                    )
                battery_set = 0.0
            if abs(battery_set - plant.battery_kw) > RAMP_LIMIT_KW:
                yield Interlock(
                    now,
                    "A",
                    "inverter",
                    "ramp_limit",
                    f"battery step {battery_set - plant.battery_kw:+.2f} kW exceeds "
                    f"{RAMP_LIMIT_KW} kW per step",
                    "clamped",
                )
            plant.battery_kw += 0.5 * (battery_set - plant.battery_kw)  # inverter ramp
            plant.battery_soc_pct -= plant.battery_kw * dt_h / BATTERY_KWH * 100
            # Peer B: the cart charges or discharges toward B's contract; idle without one.
            ev_set = contracted_kw["B"] + loads["B"] if contracted_kw["B"] else 0.0
            ev_set = min(EV_MAX_KW, max(-EV_MAX_KW, ev_set))
            if ev_set > 0 and plant.ev_soc_pct <= EV_RESERVE_PCT:
                if n % 300 == 0:
                    yield Interlock(
                        now,
                        "B",
                        "ev_charger",
                        "soc_limit",
                        f"EV soc_pct = {plant.ev_soc_pct:.1f} at the reserve {EV_RESERVE_PCT} %",
                        "clamped",
                    )
                ev_set = 0.0
            plant.ev_kw += 0.3 * (ev_set - plant.ev_kw)
            plant.ev_soc_pct -= plant.ev_kw * dt_h / EV_KWH * 100
            inverter_kw = pv + plant.battery_kw
            pcc = {
                "A": inverter_kw - loads["A"],
                "B": plant.ev_kw - loads["B"],
                "C": -loads["C"],
            }
            for peer in "ABC":
                metered_kwh[peer] += pcc[peer] * dt_h
            yield Sample(
                now,
                "A",
                "inverter",
                {
                    "ac_power_kw": inverter_kw,
                    "wset_kw": pv + battery_set,
                    "rated_power_kw": 5.0,
                    "pv_power_kw": pv,
                    "battery_power_kw": plant.battery_kw,
                    "soc_pct": plant.battery_soc_pct,
                },
            )
            yield Sample(
                now,
                "B",
                "ev_charger",
                {
                    "power_kw": plant.ev_kw,
                    "setpoint_kw": ev_set,
                    "soc_pct": plant.ev_soc_pct,
                },
            )
            yield Sample(
                now, "C", "load", {"power_kw": -loads["C"], "power_setpoint_kw": -loads["C"]}
            )
            for peer in "ABC":
                voltage = 230.0 + 0.9 * pcc[peer] + rng.normal(0, 0.15)
                yield Sample(
                    now,
                    peer,
                    "meter",
                    {
                        "power_kw": pcc[peer],
                        "voltage_v": voltage,
                        "current_a": abs(pcc[peer]) * 1000 / voltage,
                        "frequency_hz": 50.0 + rng.normal(0, 0.01),
                    },
                )
        yield from settle_interval(interval_start, trades, metered_kwh, prices)
    yield RunFinished(
        run_id=run_id, time=start + timedelta(seconds=n_intervals * interval_s), status="finished"
    )


def write_run(
    run_dir: Path, pace_s: float = 0.0, stop_after_steps: int | None = None, **kwargs
) -> Path:
    """Write a synthetic run into `run_dir`; `pace_s` sleeps after every control step.

    With `stop_after_steps` the writer stops early and closes the run as interrupted.
    """
    store = RunStore(run_dir)
    steps = 0
    try:
        for doc in document_stream(run_id=run_dir.name, **kwargs):
            store.emit(doc)
            if isinstance(doc, Sample) and doc.device == "meter" and doc.peer == "C":
                steps += 1
                if pace_s:
                    time.sleep(pace_s)
                if stop_after_steps is not None and steps >= stop_after_steps:
                    store.close("interrupted")
                    return run_dir
    except BaseException:
        store.close("failed")
        raise
    store.close()
    return run_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the run directory to write")
    parser.add_argument("--hours", type=float, default=0.5)
    parser.add_argument("--step-s", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mechanism", default="uniform")
    parser.add_argument("--pace-s", type=float, default=0.0, help="sleep after every step")
    args = parser.parse_args()
    write_run(
        args.out,
        pace_s=args.pace_s,
        hours=args.hours,
        step_s=args.step_s,
        seed=args.seed,
        mechanism=args.mechanism,
    )


if __name__ == "__main__":
    main()
