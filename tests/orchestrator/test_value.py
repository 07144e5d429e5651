"""The yardstick: baseline, perfect-foresight optimum and actual bills of a run's metered day."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from labspec.plant_control import SyncPlantControl
from peers import default_assets
from peers.settlement_kernel import settle_position
from testbed.cli import app
from testbed.config import load_config, parse_config
from testbed.experiment import run_experiment, with_plant_endpoints
from testbed.runstore import RunReader
from testbed.value import (
    IncompleteRun,
    InfeasibleOptimum,
    metered_day,
    optimum,
    storage_value,
    value_report,
)
from testbed.value.baseline import baseline_schedules, grid_only_cash
from testbed.value.metered_day import (
    BatteryDay,
    EvDay,
    MeteredDay,
    PeerDay,
    drive_kwh,
    plug_masks,
)

REPO = Path(__file__).resolve().parents[2]
PLANT_TOML = """
[plant]
seed = 3
start = 2026-03-21T11:30:00+05:30
site = "site.toml"
"""
SITE_CHANGES = {
    "peers": {"A": {"battery": {"initial_soc_pct": 80.0}}, "B": {"ev": {"initial_soc_pct": 60.0}}}
}


@pytest.fixture(scope="module")
def noon_run(tmp_path_factory) -> Path:
    """One hour of the optimising agents, the uniform market and local balancing from 11:30 IST."""
    from tests.fixtures.plant import start_plant_process
    from tests.fixtures.ports import stop_process
    from tests.fixtures.sites import write_site

    folder = tmp_path_factory.mktemp("value_plant")
    write_site(folder / "site.toml", SITE_CHANGES)
    (folder / "plant.toml").write_text(PLANT_TOML)
    plant = start_plant_process(folder, "--config", str(folder / "plant.toml"))
    try:
        with SyncPlantControl.from_endpoints(plant.endpoints) as control:
            control.request("reset")
        data = load_config(REPO / "configs" / "emulated.toml").model_dump(mode="json")
        data["experiment"]["hours"] = 1.0
        data["market"].update({"interval_s": 300.0, "gate_closure_s": 30.0, "balancing": "local"})
        config = with_plant_endpoints(parse_config(data), plant.endpoints)
        run_dir = folder / "run"
        asyncio.run(run_experiment(config, run_dir))
    finally:
        stop_process(plant.proc)
    return run_dir


def test_the_optimum_bounds_the_run_and_the_baseline_from_below(noon_run):
    report = value_report(noon_run)
    c = report.community
    assert c.optimum_bill <= c.actual_bill + 1e-6
    assert c.optimum_bill <= c.baseline_bill + 1e-6
    assert report.intervals == 12
    # the community's cash is what left it: the peers' bills less the operator's surplus (the
    # local balancing's spread; the uniform auction is budget balanced)
    summary = json.loads((noon_run / "summary.json").read_text())
    bills = sum(p["bill"] for p in summary["peers"].values())
    assert summary["market"]["operator_surplus"] > 0  # some deviations were balanced locally
    assert c.actual_cash == pytest.approx(bills - summary["market"]["operator_surplus"], abs=1e-5)
    for name, bills in report.peers.items():
        assert bills.actual_cash == pytest.approx(summary["peers"][name]["bill"], abs=1e-6)
    if c.captured_pct is not None:
        expected = 100 * (c.baseline_bill - c.actual_bill) / (c.baseline_bill - c.optimum_bill)
        assert c.captured_pct == pytest.approx(expected)


def test_the_run_reproduces_its_metered_positions_from_its_own_storage_energy(noon_run):
    """load = pv + storage - metered, so the run's schedule is one the optimum may choose."""
    day = metered_day(noon_run)
    a, b = day.peers["A"], day.peers["B"]
    assert a.pv_kwh.sum() > 0.1  # noon: the array produces
    assert np.all(a.load_kwh > 0) and np.all(day.peers["C"].load_kwh > 0)
    np.testing.assert_allclose(a.pv_kwh - a.load_kwh + a.battery.terminal_kwh, a.metered_kwh)
    np.testing.assert_allclose(b.pv_kwh - b.load_kwh + b.ev.terminal_kwh, b.metered_kwh)
    # the stored energy follows the plant's efficiencies within the SoC registers' resolution
    bat = a.battery
    change = np.where(
        bat.terminal_kwh < 0,
        -bat.terminal_kwh * bat.asset.charge_efficiency,
        -bat.terminal_kwh / bat.asset.discharge_efficiency,
    )
    np.testing.assert_allclose(np.diff(bat.energy_kwh), change, atol=0.01)


def test_cli_prints_the_three_bills_as_json(noon_run):
    result = CliRunner().invoke(app, ["value", str(noon_run), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    for key in ("baseline_bill", "optimum_bill", "actual_bill", "captured_pct"):
        assert key in data
    assert set(data["peers"]) == {"A", "B", "C"}
    table = CliRunner().invoke(app, ["value", str(noon_run)])
    assert table.exit_code == 0 and "community" in table.output and "captured" in table.output


def test_an_interrupted_run_is_reported_as_such_not_as_a_number(noon_run, tmp_path):
    copy = tmp_path / "interrupted"
    shutil.copytree(noon_run, copy)
    meta = json.loads((copy / "meta.json").read_text())
    meta["status"] = "interrupted"
    (copy / "meta.json").write_text(json.dumps(meta))
    result = CliRunner().invoke(app, ["value", str(copy), "--json"])
    assert result.exit_code == 2
    assert "interrupted" in json.loads(result.output)["error"]
    assert "baseline_bill" not in result.output


def test_a_run_missing_a_settlement_names_the_peer_and_interval(noon_run, tmp_path):
    copy = tmp_path / "gap"
    shutil.copytree(noon_run, copy)
    with sqlite3.connect(copy / "run.sqlite") as db:
        last = db.execute("SELECT MAX(interval_start) FROM settlements").fetchone()[0]
        db.execute("DELETE FROM settlements WHERE peer = 'C' AND interval_start = ?", (last,))
    with pytest.raises(IncompleteRun, match="peer C has no settlement for the interval starting"):
        value_report(copy)


# --- a synthetic metered day: the optimum is a true lower bound whatever the schedule -----------

N = 16
DT_H = 0.25
START = datetime(2026, 3, 21, 6, 30, tzinfo=UTC)
rng0 = np.random.default_rng(5)
PV = np.clip(np.sin(np.linspace(0.3, 2.8, N)), 0, None) * 3.0 * DT_H
LOADS = {p: (0.3 + 0.7 * rng0.random(N)) * DT_H for p in "ABC"}
PLUGGED = np.array([True] * 6 + [False] * 4 + [True] * 6)
DRIVE = np.where(PLUGGED, 0.0, 0.6 * DT_H)


def simulate(battery_req: np.ndarray, ev_req: np.ndarray) -> MeteredDay:
    """A 'run' on the day: storage requests (fractions of full power) through the plant's limits."""
    a_bat, b_ev = default_assets("A").battery, default_assets("B").ev
    e = [a_bat.energy_kwh(50.0)]
    bat_kwh = np.zeros(N)
    for k in range(N):
        if battery_req[k] >= 0:
            x = min(
                battery_req[k] * a_bat.max_discharge_kw * DT_H,
                (e[-1] - a_bat.energy_min_kwh) * a_bat.discharge_efficiency,
            )
            e.append(e[-1] - x / a_bat.discharge_efficiency)
        else:
            x = -min(
                -battery_req[k] * a_bat.max_charge_kw * DT_H,
                (a_bat.energy_max_kwh - e[-1]) / a_bat.charge_efficiency,
            )
            e.append(e[-1] - x * a_bat.charge_efficiency)
        bat_kwh[k] = x
    v = [b_ev.energy_kwh(60.0)]
    ev_kwh = np.zeros(N)
    for k in range(N):
        if not PLUGGED[k]:
            v.append(v[-1] - DRIVE[k])
            continue
        if ev_req[k] >= 0:
            x = min(
                ev_req[k] * b_ev.max_discharge_kw * DT_H,
                (v[-1] - b_ev.energy_min_kwh) * b_ev.discharge_efficiency,
            )
            v.append(v[-1] - x / b_ev.discharge_efficiency)
        else:
            x = -min(
                -ev_req[k] * b_ev.max_charge_kw * DT_H,
                (b_ev.energy_max_kwh - v[-1]) / b_ev.charge_efficiency,
            )
            v.append(v[-1] - x * b_ev.charge_efficiency)
        ev_kwh[k] = x
    peers = {
        "A": PeerDay(
            "A",
            default_assets("A"),
            PV - LOADS["A"] + bat_kwh,
            PV,
            LOADS["A"],
            battery=BatteryDay(a_bat, 5.0, np.array(e), bat_kwh),
        ),
        "B": PeerDay(
            "B",
            default_assets("B"),
            -LOADS["B"] + ev_kwh,
            np.zeros(N),
            LOADS["B"],
            ev=EvDay(b_ev, PLUGGED, np.array(v), ev_kwh, DRIVE),
        ),
        "C": PeerDay("C", default_assets("C"), -LOADS["C"], np.zeros(N), LOADS["C"]),
    }
    return MeteredDay(Path("synthetic"), START, 900.0, np.full(N, 8.0), np.full(N, 3.0), 0.5, peers)


def community_bill(day: MeteredDay, sold_share: np.ndarray, bought_share: np.ndarray) -> float:
    """Settle the day's metering with P2P trades (A sells to C) by the kernel, net of storage."""
    a, c = day.peers["A"].metered_kwh, day.peers["C"].metered_kwh
    traded = np.minimum(np.maximum(a, 0) * sold_share + 0.1 * bought_share, np.maximum(-c, 0) + 0.1)
    total = 0.0
    for name, bought, sold in (
        ("A", 0 * traded, traded),
        ("B", 0 * traded, 0 * traded),
        ("C", traded, 0 * traded),
    ):
        s = settle_position(
            day.peers[name].metered_kwh, bought, sold, bought * 6.0, sold * 6.0, 8.0, 3.0, 0.5, 2.0
        )
        total += float(np.sum(s.grid_cost - s.grid_revenue + s.network_charge + s.penalty))
    values = storage_value(day)
    total -= values[("A", "battery")] * (
        day.peers["A"].battery.energy_kwh[-1] - day.peers["A"].battery.energy_kwh[0]
    )
    total -= values[("B", "ev")] * (
        day.peers["B"].ev.energy_kwh[-1] - day.peers["B"].ev.energy_kwh[0]
    )
    return total


fractions = st.lists(st.floats(-1.0, 1.0, allow_nan=False), min_size=N, max_size=N).map(np.array)
shares = st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=N, max_size=N).map(np.array)


@settings(max_examples=25, deadline=None)
@given(battery=fractions, ev=fractions, sold=shares, over=shares)
def test_no_schedule_and_no_trades_bill_the_community_less_than_the_optimum(
    battery, ev, sold, over
):
    day = simulate(battery, ev)
    best = optimum(day)
    assert community_bill(day, sold, over) >= best.objective - 1e-6
    baseline = sum(grid_only_cash(day, s) for s in baseline_schedules(day).values())
    assert baseline >= best.objective - 1e6  # the baseline's cash is finite and comparable


def test_the_optimum_sends_the_surplus_to_the_neighbours_before_the_grid():
    best = optimum(simulate(np.zeros(N), np.zeros(N)))
    exported = sum(best.grid_export_kwh[p].sum() for p in "ABC")
    imported = sum(best.grid_import_kwh[p].sum() for p in "ABC")
    sold = best.schedules["A"].p2p_sold_kwh.sum()
    assert sold > 0.5
    # nobody exports while somebody imports in the same interval
    for k in range(N):
        ex = sum(best.grid_export_kwh[p][k] for p in "ABC")
        im = sum(best.grid_import_kwh[p][k] for p in "ABC")
        assert min(ex, im) < 1e-6
    assert exported < imported


def test_the_cart_drove_in_the_interval_it_came_back_in():
    """Away until mid-interval 1, then plugged: that interval's driving is metered, not lost."""
    import pandas as pd

    cart = default_assets("B").ev
    times = np.arange(100.0, 2701.0, 100.0)  # samples in (0, 2700]: intervals 0, 1, 2 of 900 s
    frame = pd.DataFrame({"time_s": times, "plugged": (times > 1350).astype(float)})
    plugged, away = plug_masks(frame, 0.0, 900.0, 3)
    assert plugged.tolist() == [False, True, True]
    assert away.tolist() == [True, True, False]
    charged = np.array([0.0, 0.1, 0.2])  # charged in interval 1's second half, and in 2
    energy = np.array([3.0, 2.85, 2.85 - 0.15 + 0.1 * cart.charge_efficiency, 0.0])
    energy[3] = energy[2] + 0.2 * cart.charge_efficiency
    drive = drive_kwh(cart, energy, charged, np.zeros(3), away)
    np.testing.assert_allclose(drive, [0.15, 0.15, 0.0], atol=1e-12)


def test_the_baseline_cart_drives_the_plug_in_interval_before_it_charges():
    day = simulate(np.zeros(N), np.zeros(N))
    ev = day.peers["B"].ev
    back = int(np.argmax(PLUGGED[6:])) + 6  # the first plugged interval after the trip
    drive = ev.drive_kwh.copy()
    drive[back] = 0.15
    peers = dict(day.peers)
    peers["B"] = replace(peers["B"], ev=replace(ev, drive_kwh=drive))
    day2 = replace(day, peers=peers)
    before = baseline_schedules(day)["B"]
    after = baseline_schedules(day2)["B"]
    # the cart charges 0.15 kWh more energy over the day (at the charger: / efficiency), or
    # ends 0.15 kWh lower
    extra = after.ev_kwh.sum() - before.ev_kwh.sum()  # + = discharge: more charge is negative
    lower = before.ev_energy_kwh[-1] - after.ev_energy_kwh[-1]
    assert -extra * ev.asset.charge_efficiency + lower == pytest.approx(0.15, abs=1e-9)
    assert lower < 0.15 or extra < 0
    # and the optimum pays for it too: the day costs more with the drive than without
    assert optimum(day2).objective > optimum(day).objective + 0.5


def test_inconsistent_limits_name_the_peer_and_the_constraint():
    day = simulate(np.zeros(N), np.zeros(N))
    ev = day.peers["B"].ev
    heavy = EvDay(ev.asset, ev.plugged, ev.energy_kwh, ev.terminal_kwh, np.where(PLUGGED, 0.0, 2.5))
    peers = dict(day.peers)
    peers["B"] = replace(peers["B"], ev=heavy)
    broken = replace(day, peers=peers)
    with pytest.raises(
        InfeasibleOptimum,
        match=r"peer B: EV charge limit 2 kW while plugged cannot hold together with .*"
        r"EV SoC window 10-95 %",
    ):
        optimum(broken)


def test_settlement_page_shows_the_optimum_beside_the_run(noon_run, tmp_path, monkeypatch):
    from tests.dashboard.apptest import figures, metrics, numbers, open_page

    runs = tmp_path / "runs"
    runs.mkdir()
    shutil.copytree(noon_run, runs / "noon")
    report = value_report(runs / "noon")
    at = open_page(monkeypatch, runs, "settlement", "noon")
    shown = metrics(at)
    assert shown["Perfect-foresight optimum"] == f"{report.community.optimum_bill:.2f} INR"
    assert shown["This run"] == f"{report.community.actual_bill:.2f} INR"
    drawn = next(
        f for f in figures(at) if any(t.get("name") == "A optimum: PCC" for t in f["data"])
    )
    traces = {t["name"]: t for t in drawn["data"]}
    table = report.schedules
    for peer in "ABC":
        mine = table[table["peer"] == peer]
        assert numbers(traces[f"{peer} optimum: PCC"]["y"]) == pytest.approx(
            mine["optimum_net_kwh"].tolist(), abs=1e-9
        )
        assert numbers(traces[f"{peer} run: PCC"]["y"]) == pytest.approx(
            mine["run_net_kwh"].tolist(), abs=1e-9
        )


def _community_config(history: Path | None) -> dict:
    data = load_config(REPO / "configs" / "emulated.toml").model_dump(mode="json")
    data["market"].update({"interval_s": 300.0, "gate_closure_s": 30.0})
    data["experiment"]["agent_history"] = None if history is None else str(history)
    for peer in data["peers"].values():
        peer["agent"] = "community"
    return data


def test_a_warm_started_agent_knows_the_earlier_runs_metering_and_neighbours(noon_run):
    from peers.community import CommunityAgent
    from testbed.trading import make_peer_agent

    day = metered_day(noon_run)
    orders = RunReader(noon_run).orders()
    warm = make_peer_agent(parse_config(_community_config(noon_run)), "B")
    cold = make_peer_agent(parse_config(_community_config(None)), "B")
    assert isinstance(warm, CommunityAgent) and isinstance(cold, CommunityAgent)
    assert len(cold.history) == 0 and cold.depth is None
    assert len(warm.history) == day.n == 12
    np.testing.assert_allclose(
        warm.history.load_kw().to_numpy(), np.clip(day.peers["B"].load_kwh, 0, None) / day.dt_h
    )
    # what B expects its neighbours to sell per time of day: the book's accepted asks less B's
    asks = orders[orders["accepted"] & (orders["side"] == "sell") & (orders["peer"] != "B")]
    assert asks["quantity_kwh"].sum() > 0.1  # A sold in the history run
    assert warm.depth is not None
    slots = [warm.depth._slot(start) for start in day.interval_starts()]
    np.testing.assert_allclose(
        np.nansum(warm.depth.supply_kwh[slots]), asks["quantity_kwh"].sum(), atol=1e-9
    )
    assert warm.market.price is not None  # the expected P2P price from the run's clearings


def test_a_history_that_is_not_a_finished_run_is_refused_with_its_path(noon_run, tmp_path):
    from testbed.agent_history import AgentHistoryError, run_history
    from testbed.config import ConfigError

    with pytest.raises(ConfigError, match=r"agent_history.*not a run directory"):
        parse_config(_community_config(tmp_path))
    copy = tmp_path / "interrupted"
    shutil.copytree(noon_run, copy)
    meta = json.loads((copy / "meta.json").read_text())
    meta["status"] = "interrupted"
    (copy / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(AgentHistoryError, match="interrupted") as error:
        run_history(copy.resolve())
    assert str(copy) in str(error.value)
