"""The value captured by a run: baseline, perfect-foresight optimum and actual bills.

Each bill is the community's (or a peer's) cash bill minus the value of the change in stored
energy over the day (`storage_value`): cash from the settlement kernel, energy from the run's
first and last state of charge. The community's cash bill is what leaves the community: grid
imports minus exports, network charges and penalties; P2P payments are transfers between peers
(the market operator's surplus, if any, stays in the community), so it is the sum of the peers'
bills minus the operator's surplus.

captured = (baseline - actual) / (baseline - optimum), for the community and per peer. A peer's
optimum bill prices its P2P exchanges in the optimum at the run's volume-weighted P2P price (the
midpoint of feed-in and retail when nothing traded).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from peers.settlement_kernel import settle_position
from testbed.runstore import RunReader
from testbed.value.baseline import PeerSchedule, baseline_schedules, grid_only_cash
from testbed.value.metered_day import MeteredDay, metered_day
from testbed.value.optimum import Optimum, optimum, storage_value

MIN_GAP = 0.01  # currency: below this, baseline and optimum are the same and no share is given


def captured_pct(baseline: float, actual: float, best: float) -> float | None:
    gap = baseline - best
    if gap < MIN_GAP:
        return None
    return 100.0 * (baseline - actual) / gap


@dataclass(frozen=True, slots=True)
class BillSet:
    baseline_bill: float
    optimum_bill: float
    actual_bill: float
    captured_pct: float | None
    baseline_cash: float
    optimum_cash: float
    actual_cash: float
    stored_change_kwh: dict[str, float]  # per source (baseline, optimum, actual), all devices


@dataclass(frozen=True, slots=True)
class ValueReport:
    run_dir: str
    intervals: int
    p2p_price: float
    community: BillSet
    peers: dict[str, BillSet] = field(default_factory=dict)
    # per interval and peer: the run's and the optimum's net position and stored energy
    schedules: pd.DataFrame | None = field(default=None, compare=False, repr=False)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(replace(self, schedules=None))
        data.pop("schedules")
        data.update(
            {
                key: getattr(self.community, key)
                for key in ("baseline_bill", "optimum_bill", "actual_bill", "captured_pct")
            }
        )
        return data


def _stored_change(day: MeteredDay, name: str, schedule: PeerSchedule) -> tuple[float, float]:
    """(kWh change, its value) of a schedule's stored energy over the day."""
    values = storage_value(day)
    kwh = value = 0.0
    for kind, energy in (("battery", schedule.battery_energy_kwh), ("ev", schedule.ev_energy_kwh)):
        if energy is not None:
            change = float(energy[-1] - energy[0])
            kwh += change
            value += values[(name, kind)] * change
    return kwh, value


def _run_schedule(day: MeteredDay, name: str) -> PeerSchedule:
    peer = day.peers[name]
    n = day.n
    zeros = np.zeros(n)
    return PeerSchedule(
        net_kwh=peer.metered_kwh,
        battery_kwh=peer.battery.terminal_kwh if peer.battery else zeros,
        ev_kwh=peer.ev.terminal_kwh if peer.ev else zeros,
        battery_energy_kwh=peer.battery.energy_kwh if peer.battery else None,
        ev_energy_kwh=peer.ev.energy_kwh if peer.ev else None,
        p2p_bought_kwh=zeros,
        p2p_sold_kwh=zeros,
    )


def run_p2p_price(reader: RunReader, day: MeteredDay) -> float:
    trades = reader.trades()
    if trades.empty or trades["quantity_kwh"].sum() <= 0:
        return float((day.retail_tariff.mean() + day.feed_in_tariff.mean()) / 2.0)
    return float((trades["quantity_kwh"] * trades["price"]).sum() / trades["quantity_kwh"].sum())


def value_report(run_dir: Path | str) -> ValueReport:
    """The yardstick for one finished run (raises `IncompleteRun`, `InfeasibleOptimum`)."""
    day = metered_day(run_dir)
    reader = RunReader(run_dir)
    settlements = reader.settlements()
    price = run_p2p_price(reader, day)
    base = baseline_schedules(day)
    best: Optimum = optimum(day)
    peers = {}
    totals = dict.fromkeys(("b", "o", "a", "bc", "oc", "ac", "bk", "ok", "ak"), 0.0)
    for name in day.peers:
        rows = settlements[settlements["peer"] == name]
        actual_cash = float(rows["bill"].sum())
        outside_cash = float(
            (
                rows["grid_cost"] - rows["grid_revenue"] + rows["network_charge"] + rows["penalty"]
            ).sum()
        )
        baseline_cash = grid_only_cash(day, base[name])
        o = best.schedules[name]
        settled = settle_position(
            o.net_kwh,
            o.p2p_bought_kwh,
            o.p2p_sold_kwh,
            o.p2p_bought_kwh * price,
            o.p2p_sold_kwh * price,
            day.retail_tariff,
            day.feed_in_tariff,
            day.network_charge,
            0.0,
        )
        optimum_cash = float(np.sum(settled.bill))
        optimum_outside = optimum_cash - float(np.sum((o.p2p_bought_kwh - o.p2p_sold_kwh) * price))
        bk, bv = _stored_change(day, name, base[name])
        ok, ov = _stored_change(day, name, o)
        ak, av = _stored_change(day, name, _run_schedule(day, name))
        b, opt, a = baseline_cash - bv, optimum_cash - ov, actual_cash - av
        peers[name] = BillSet(
            b,
            opt,
            a,
            captured_pct(b, a, opt),
            baseline_cash,
            optimum_cash,
            actual_cash,
            {"baseline": bk, "optimum": ok, "actual": ak},
        )
        for key, v in (
            ("b", b),
            ("o", optimum_outside - ov),
            ("a", outside_cash - av),
            ("bc", baseline_cash),
            ("oc", optimum_outside),
            ("ac", outside_cash),
            ("bk", bk),
            ("ok", ok),
            ("ak", ak),
        ):
            totals[key] += v
    community = BillSet(
        totals["b"],
        totals["o"],
        totals["a"],
        captured_pct(totals["b"], totals["a"], totals["o"]),
        totals["bc"],
        totals["oc"],
        totals["ac"],
        {"baseline": totals["bk"], "optimum": totals["ok"], "actual": totals["ak"]},
    )
    return ValueReport(str(day.run_dir), day.n, price, community, peers, schedule_table(day, best))


def schedule_table(day: MeteredDay, best: Optimum) -> pd.DataFrame:
    """Per interval and peer: the run's and the optimum's PCC energy, storage and P2P energy."""
    frames = []
    starts = pd.DatetimeIndex(day.interval_starts())
    for name in day.peers:
        run = _run_schedule(day, name)
        o = best.schedules[name]
        frames.append(
            pd.DataFrame(
                {
                    "interval_start": starts,
                    "peer": name,
                    "run_net_kwh": run.net_kwh,
                    "optimum_net_kwh": o.net_kwh,
                    "run_storage_kwh": run.battery_kwh + run.ev_kwh,
                    "optimum_storage_kwh": o.battery_kwh + o.ev_kwh,
                    "optimum_p2p_kwh": o.p2p_sold_kwh - o.p2p_bought_kwh,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
