"""Whole experiments on the emulated plant, through the real protocol stack.

The plant starts at 11:00 local time with a full battery, so that peer A's PV surplus gives the
market something to clear. Market
intervals are 5 minutes here (15 in the shipped configuration) to keep the runs short.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from labspec.endpoints import PlantEndpoints
from labspec.plant_control import SyncPlantControl
from testbed.config import TestbedConfig, load_config, parse_config
from testbed.engine import Engine, StartupError
from testbed.experiment import RunResult, run_experiment, with_plant_endpoints
from testbed.ledger.money import to_paisa
from testbed.ledger.verify import verify_run
from testbed.runstore import RunReader

REPO = Path(__file__).resolve().parents[2]
PLANT_TOML = """
[plant]
seed = 7
start = 2026-03-21T11:00:00+05:30
site = "site.toml"
"""


@pytest.fixture(scope="module")
def morning_plant(tmp_path_factory) -> PlantEndpoints:
    """A plant of its own that starts at 11:00 IST (shared by this module's runs)."""
    from tests.fixtures.plant import start_plant_process
    from tests.fixtures.ports import stop_process
    from tests.fixtures.sites import write_site

    folder = tmp_path_factory.mktemp("morning_plant")
    write_site(folder / "site.toml", {"peers": {"A": {"battery": {"initial_soc_pct": 95.0}}}})
    config = folder / "plant.toml"
    config.write_text(PLANT_TOML)
    plant = start_plant_process(folder, "--config", str(config))
    yield plant.endpoints
    stop_process(plant.proc)


def experiment_config(endpoints: PlantEndpoints, hours: float, **market: object) -> TestbedConfig:
    data = load_config(REPO / "configs" / "emulated.toml").model_dump(mode="json")
    data["experiment"]["hours"] = hours
    data["market"].update({"interval_s": 300.0, "gate_closure_s": 30.0, **market})
    return with_plant_endpoints(parse_config(data), endpoints)


def run(
    endpoints: PlantEndpoints,
    run_dir: Path,
    hours: float = 0.5,
    on_step: Callable[[int], None] | None = None,
) -> RunResult:
    with SyncPlantControl.from_endpoints(endpoints) as control:
        control.request("reset")
    config = experiment_config(endpoints, hours)

    def progress(step: int, total: int, now) -> None:
        if on_step is not None:
            on_step(step)

    return asyncio.run(run_experiment(config, run_dir, progress=progress))


@pytest.fixture(scope="module")
def morning_run(morning_plant, tmp_path_factory) -> RunResult:
    return run(morning_plant, tmp_path_factory.mktemp("runs") / "morning")


def test_run_writes_summary_with_every_peer(morning_run):
    summary = json.loads((morning_run.run_dir / "summary.json").read_text())
    assert morning_run.finished.status == "finished"
    assert set(summary["peers"]) == {"A", "B", "C"}
    for totals in summary["peers"].values():
        for key in (
            "p2p_bought_kwh",
            "p2p_sold_kwh",
            "grid_import_kwh",
            "grid_export_kwh",
            "bill",
            "bill_grid_only",
        ):
            assert key in totals
    assert summary["market"]["intervals"] == 6
    assert summary["market"]["traded_kwh"] > 0, "PV surplus at 11:00 should clear some trades"


def test_money_balances_to_the_paisa(morning_run):
    reader = RunReader(morning_run.run_dir)
    trades = reader.trades()
    settlements = reader.settlements()
    assert len(trades) > 0
    paid = settlements["p2p_paid"].sum()
    received = settlements["p2p_received"].sum()
    value = (trades["quantity_kwh"] * trades["price"]).sum()
    assert paid == pytest.approx(received, abs=0.005)
    assert paid == pytest.approx(value, abs=0.005)
    charges = settlements["network_charge"].sum()
    bought_locally = settlements["balancing_bought_kwh"].sum()  # deviations balanced locally
    assert charges == pytest.approx(
        0.5 * (trades["quantity_kwh"].sum() + bought_locally), abs=0.005
    )
    assert settlements["balancing_sold_kwh"].sum() == pytest.approx(bought_locally, abs=1e-6)
    recomputed = (
        settlements["p2p_paid"]
        - settlements["p2p_received"]
        + settlements["network_charge"]
        + settlements["grid_cost"]
        - settlements["grid_revenue"]
        + settlements["penalty"]
        + settlements["balancing_paid"]
        - settlements["balancing_received"]
    )
    assert (recomputed - settlements["bill"]).abs().max() < 0.005


def test_no_peer_pays_more_than_it_would_have_without_the_market(morning_run):
    """The optimising agents price their delivery risk: trading leaves every peer's bill at or
    below the same metered energy settled with the grid alone, and the sellers gain."""
    peers = morning_run.finished.summary["peers"]
    for name, totals in peers.items():
        assert totals["bill"] <= totals["bill_grid_only"] + 0.005, name
    assert sum(t["bill_grid_only"] - t["bill"] for t in peers.values()) > 0.1


def test_every_agent_decision_is_recorded_with_its_forecast_and_plan(morning_run):
    reader = RunReader(morning_run.run_dir)
    plans = reader.agent_plans()
    clearings = reader.clearings()
    decisions = plans[plans["step"] == 0]
    assert len(decisions) == 3 * len(clearings)  # every peer, every interval
    assert set(decisions["agent"]) == {"community"}
    horizon = plans.groupby(["interval_start", "peer"]).size()
    assert (horizon == horizon.iloc[0]).all() and horizon.iloc[0] > 1  # the whole horizon
    # the fallbacks are the ones the interlock log reports
    fallbacks = decisions[decisions["fallback_reason"].notna()]
    logged = reader.interlocks()
    assert len(fallbacks) == (logged["kind"] == "agent_fallback").sum()
    # a planned decision has a forecast; its order is on the plan's side, at most its size
    orders = reader.orders()
    planned = decisions[decisions["fallback_reason"].isna()]
    assert len(planned) > 0 and planned["forecast_load_kw"].notna().all()
    for row in planned.itertuples():
        mine = orders[
            (orders["interval_start"] == row.interval_start) & (orders["peer"] == row.peer)
        ]
        planned_kwh = row.net_kw * 300.0 / 3600.0
        for order in mine.itertuples():
            assert order.side == ("sell" if planned_kwh > 0 else "buy")
            assert order.quantity_kwh <= abs(planned_kwh) + 1e-6


EVENING_TOML = """
[plant]
seed = 7
start = 2026-03-21T20:00:00+05:30
site = "site.toml"
"""


@pytest.fixture(scope="module")
def evening_run(tmp_path_factory) -> RunResult:
    """20:00 IST: A's battery empty (nobody sells), B's cart plugged in above its plug-out need."""
    from tests.fixtures.plant import start_plant_process
    from tests.fixtures.ports import stop_process
    from tests.fixtures.sites import write_site

    folder = tmp_path_factory.mktemp("evening_plant")
    write_site(
        folder / "site.toml",
        {
            "peers": {
                "A": {"battery": {"initial_soc_pct": 10.0}},
                "B": {"ev": {"initial_soc_pct": 85.0}},
            }
        },
    )
    (folder / "plant.toml").write_text(EVENING_TOML)
    plant = start_plant_process(folder, "--config", str(folder / "plant.toml"))
    try:
        return run(plant.endpoints, folder / "run", hours=0.25)
    finally:
        stop_process(plant.proc)


def test_a_buyer_without_a_seller_imports_what_its_plan_imports(evening_run):
    """Each step the dispatcher holds every PCC at the lower of its contract and its plan's net
    position. With nobody selling in the evening, B's cart is not drained into B's house to hold
    its PCC at the empty contract (the old rule): B imports its load as its plan says."""
    reader = RunReader(evening_run.run_dir)
    step_s = float(load_config(REPO / "configs" / "emulated.toml").control.step_s)
    plans = reader.agent_plans(first_step_only=True)
    plan_kw = {
        (row.peer, pd.Timestamp(row.interval_start).timestamp()): row.net_kw
        for row in plans.itertuples()
    }
    samples = reader.samples(device="meter", fields=["power_kw", "contract_kw", "target_kw"])
    # a sample records the target of the step before it: skip each interval's first step
    interval_s = ((samples["time_s"] - step_s) // 300.0) * 300.0
    inside = interval_s == (samples["time_s"] // 300.0) * 300.0
    below_contract = 0
    for row, start_s in zip(samples[inside].itertuples(), interval_s[inside], strict=True):
        planned = plan_kw[(row.peer, float(start_s))]
        assert row.target_kw == pytest.approx(min(row.contract_kw, planned), abs=1e-9)
        below_contract += row.target_kw < row.contract_kw - 0.05
    assert below_contract > 0.5 * len(samples[inside])  # the bids found no seller
    b = reader.samples(peer="B", device="meter", fields=["power_kw", "target_kw"])
    b = b[inside[samples["peer"] == "B"].to_numpy()]
    # B imports (the old rule held its PCC near 0 kW with the cart), as its plan says within the
    # cart's 0.3 kW deadband (it takes no smaller setpoint)
    assert b["power_kw"].mean() < -0.3
    assert b["power_kw"].mean() == pytest.approx(b["target_kw"].mean(), abs=0.3)
    # the cart covers at most the plan's forecast error, not B's house load
    cart = reader.samples(peer="B", device="ev_charger", fields=["power_kw"])["power_kw"]
    house_kw = -reader.samples(peer="B", device="meter", fields=["power_kw"])["power_kw"] + cart
    assert cart.clip(lower=0.0).sum() < 0.5 * house_kw.sum()


def test_energy_balance_within_a_tenth_of_a_percent(morning_run):
    summary = morning_run.finished.summary
    assert summary["energy_through_pcc_kwh"] > 0.5
    assert summary["energy_balance_error_kwh"] <= 0.001 * summary["energy_through_pcc_kwh"]


def test_sold_energy_is_delivered(morning_run):
    """Peer A sells: it exports at least what it sold (a full battery exports the rest of the PV
    surplus too, sold at the feed-in tariff, rather than curtailing it)."""
    settlements = RunReader(morning_run.run_dir).settlements(peer="A")
    sold = settlements[settlements["contracted_kwh"] > 0.01]
    assert len(sold) > 0
    assert (sold["deviation_kwh"] >= -0.02 * sold["contracted_kwh"]).all()
    assert (sold["penalty"] < 0.01).all()  # below a paisa: the PCC's tracking error


def test_same_seed_gives_the_same_numbers(morning_plant, morning_run, tmp_path):
    again = run(morning_plant, tmp_path / "again")
    assert again.finished.summary == morning_run.finished.summary


def test_device_killed_mid_run_goes_to_safe_state_and_run_finishes(morning_plant, tmp_path):
    control = SyncPlantControl.from_endpoints(morning_plant)

    def kill_charger(step: int) -> None:
        if step == 400:
            control.set_fault("ev_charger", kind="drop")

    try:
        result = run(morning_plant, tmp_path / "killed", hours=0.25, on_step=kill_charger)
        state = control.state()
    finally:
        control.clear_faults()
        control.close()
    assert result.finished.status == "finished"
    interlocks = RunReader(result.run_dir).interlocks()
    lost = interlocks[
        (interlocks["device"] == "ev_charger") & (interlocks["kind"] == "device_lost")
    ]
    assert len(lost) >= 1
    assert lost.iloc[0]["action"] == "safe_state"
    # the charger's own watchdog took the setpoint back to zero once the controller was gone
    assert state["ev"]["setpoint_kw"] == 0.0
    # the other peers went on: peer A's meter kept reporting until the end
    samples = RunReader(result.run_dir).samples(peer="A", device="meter")
    assert len(samples) == 900 + 1


def test_interrupt_ends_the_interval_cleanly(morning_plant, tmp_path):
    engines: list[Engine] = []

    def stop_soon(step: int) -> None:
        if step == 350 and engines:
            engines[0].stop_requested = True

    with SyncPlantControl.from_endpoints(morning_plant) as control:
        control.request("reset")
    config = experiment_config(morning_plant, 0.5)

    def progress(step: int, total: int, now) -> None:
        stop_soon(step)

    result = asyncio.run(
        run_experiment(config, tmp_path / "stopped", progress=progress, on_engine=engines.append)
    )
    assert result.finished.status == "interrupted"
    reader = RunReader(result.run_dir)
    settled = reader.settlements()
    # stopped during the second interval: both started intervals are settled, nothing after
    assert (
        sorted(settled["interval_start"].unique())
        == sorted(reader.clearings()["interval_start"])[:2]
    )
    assert reader.meta.status == "interrupted"


def test_the_run_ledger_verifies_and_wallets_equal_the_settlements_to_the_paisa(morning_run):
    """Every order on the ledger, signed; the ledger verifies; each peer's wallet moved by exactly
    its settled bill, to the paisa; `testbed ledger verify` agrees, and names an edited entry."""
    run_dir = morning_run.run_dir
    report = verify_run(run_dir)
    assert report.ok, report.describe()
    assert report.closed and report.operator_key_trusted is False
    reader = RunReader(run_dir)
    opening = to_paisa(1000.0)
    bills = reader.settlements().groupby("peer")["bill"].sum()
    for peer, bill in bills.items():
        balance, debt = report.wallets[peer]
        assert balance - debt - opening == to_paisa(-bill), peer
    with sqlite3.connect(run_dir / "run.sqlite") as conn:
        counts = dict(conn.execute("SELECT kind, COUNT(*) FROM ledger GROUP BY kind"))
    assert counts["order"] == len(reader.orders())
    assert counts["settlement"] == len(reader.clearings()) == 6
    assert counts["register"] == counts["approve"] == 3

    cli = [sys.executable, "-m", "testbed", "ledger", "verify", str(run_dir)]
    done = subprocess.run(cli, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ledger verified" in done.stdout

    edited = run_dir.parent / "edited"
    shutil.copytree(run_dir, edited)
    with sqlite3.connect(edited / "run.sqlite") as conn:
        seq = conn.execute("SELECT MIN(seq) FROM ledger WHERE kind = 'settlement'").fetchone()[0]
        conn.execute(
            "UPDATE ledger SET payload = replace(payload, '\"bill\":', '\"bill\":1') WHERE seq = ?",
            (seq,),
        )
    done = subprocess.run([*cli[:-1], str(edited)], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 1
    assert f"entry {seq}: settlement: its hash does not match its contents" in " ".join(
        done.stdout.split()
    )


def test_a_peer_the_operator_refuses_runs_without_trading_and_the_run_finishes(
    morning_plant, tmp_path
):
    """C's KYC record has no bus: the operator refuses it. C stays in the plant, is metered and
    billed by the grid in the run store, every order of its is rejected, and the run finishes
    with a ledger that verifies (C has no wallet, so it is not settled on the ledger)."""
    with SyncPlantControl.from_endpoints(morning_plant) as control:
        control.request("reset")
    data = experiment_config(morning_plant, 0.25).model_dump(mode="json", exclude_none=True)
    data["ledger"]["kyc"] = {"C": {"bus": " "}}
    run_dir = tmp_path / "refused"
    result = asyncio.run(run_experiment(parse_config(data), run_dir))
    assert result.finished.status == "finished"
    report = verify_run(run_dir)
    assert report.ok, report.describe()
    assert "C" not in report.wallets
    reader = RunReader(run_dir)
    orders = reader.orders()
    c_orders = orders[orders["peer"] == "C"]
    assert len(c_orders) > 0 and not c_orders["accepted"].any()
    assert c_orders["reason"].str.contains("refused, not approved").all()
    settlements = reader.settlements()
    assert set(settlements["peer"]) == {"A", "B", "C"}
    assert (settlements[settlements["peer"] == "C"]["p2p_bought_kwh"] == 0).all()


def test_a_broken_key_file_stops_the_run_before_it_starts_naming_the_file(morning_plant, tmp_path):
    """A peer's private key file that is not a key: one startup error naming the file, and no
    half-made run directory."""
    keys = tmp_path / "keys"
    (keys / "peers" / "B").mkdir(parents=True)
    (keys / "peers" / "B" / "peer.key").write_text("not a key\n")
    data = experiment_config(morning_plant, 0.25).model_dump(mode="json", exclude_none=True)
    data["ledger"]["keys_dir"] = str(keys)
    with pytest.raises(StartupError, match=r"\[ledger\] .*peers/B/peer.key: not a readable"):
        asyncio.run(run_experiment(parse_config(data), tmp_path / "broken-key"))
    assert not (tmp_path / "broken-key").exists()


def test_a_run_with_the_chain_settles_on_its_own_node_as_in_its_ledger(morning_plant, tmp_path):
    """`[ledger.chain]` on, with the operator's own chain key: the run starts its own anvil, funds
    the account, deploys the contract and settles every interval on it; `testbed ledger chain`
    starts the node again from the state the run left and reads every wallet back equal to the
    embedded ledger's."""
    from testbed.ledger.chain.account import create_account_file
    from testbed.ledger.chain.node import free_port

    with SyncPlantControl.from_endpoints(morning_plant) as control:
        control.request("reset")
    config = experiment_config(morning_plant, 0.25)
    data = config.model_dump(mode="json", exclude_none=True)
    key_file = tmp_path / "chain.key"
    address = create_account_file(key_file)
    data["ledger"]["chain"] = {"enabled": True, "account_key_file": str(key_file)}
    run_dir = tmp_path / "chained"
    asyncio.run(run_experiment(parse_config(data), run_dir))
    assert (run_dir / "chain" / "anvil-state.json").is_file()
    with sqlite3.connect(run_dir / "run.sqlite") as conn:
        functions = dict(conn.execute("SELECT function, COUNT(*) FROM chain_tx GROUP BY function"))
    assert functions["settleInterval"] == functions["storeClearingResults"] == 3
    assert functions["registerHousehold"] == 3 and functions["closeLedger"] == 1

    cli = [sys.executable, "-m", "testbed", "ledger", "chain", str(run_dir)]
    done = subprocess.run(cli, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 2  # the contract is the operator's key's, not the node's account
    assert f"is written by account {address}" in " ".join(done.stdout.split())
    cli += ["--account-key", str(key_file)]
    done = subprocess.run(cli, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "chain agrees with the ledger" in done.stdout
    assert "0 sent now" in done.stdout

    # a configured node that does not answer: one clear message, nothing left behind
    data["ledger"]["chain"] = {"enabled": True, "url": f"http://127.0.0.1:{free_port()}"}
    with pytest.raises(
        StartupError, match=r"\[ledger.chain\] the chain node at .* does not answer"
    ):
        asyncio.run(run_experiment(parse_config(data), tmp_path / "no-node"))
    assert not (tmp_path / "no-node").exists()


def test_results_wait_while_the_chain_node_is_down_and_go_on_chain_when_it_returns(
    morning_plant, tmp_path
):
    """A configured node stops after the first interval: the run finishes all the same, what it
    could not send waits in its ledger, and goes on chain, in order, when the node is back."""
    from testbed.ledger.chain.node import free_port, start_node

    port = free_port()
    state = tmp_path / "node" / "state.json"
    node = start_node(port, state_path=state)
    with SyncPlantControl.from_endpoints(morning_plant) as control:
        control.request("reset")
    config = experiment_config(morning_plant, 0.25)
    data = config.model_dump(mode="json", exclude_none=True)
    data["ledger"]["chain"] = {"enabled": True, "url": node.url, "timeout_s": 2.0}
    config = parse_config(data)
    steps_per_interval = round(config.market.interval_s / config.control.step_s)

    def progress(step: int, total: int, now) -> None:
        if step == steps_per_interval + 10:
            node.stop()  # writes its state

    run_dir = tmp_path / "outage"
    result = asyncio.run(run_experiment(config, run_dir, progress=progress))
    assert result.finished.status == "finished"

    def settled_on_chain() -> int:
        with sqlite3.connect(run_dir / "run.sqlite") as conn:
            query = "SELECT COUNT(*) FROM chain_tx WHERE function = 'settleInterval'"
            return conn.execute(query).fetchone()[0]

    assert settled_on_chain() < 3
    with start_node(port, state_path=state):
        cli = [sys.executable, "-m", "testbed", "ledger", "chain", str(run_dir)]
        done = subprocess.run(cli, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "chain agrees with the ledger" in done.stdout
    assert settled_on_chain() == 3
