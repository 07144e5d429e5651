"""The trading platform on the emulated plant: mosquitto, the operator and one agent process per
peer, with the engine as the controller, against the same day run in one process.

The plant starts at 11:00 local time with a full battery (peer A's PV surplus gives the market
something to clear); 5-minute intervals keep the runs short.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from labspec.endpoints import PlantEndpoints
from labspec.plant_control import SyncPlantControl
from testbed.config import TestbedConfig, load_config, parse_config
from testbed.experiment import RunResult, run_experiment, with_plant_endpoints
from testbed.ledger.verify import verify_run
from testbed.platform.processes import platform_processes, with_run_keys
from testbed.platform.roles import connect_controller
from testbed.runstore import RunReader

REPO = Path(__file__).resolve().parents[2]
PLANT_TOML = """
[plant]
seed = 7
start = 2026-03-21T11:00:00+05:30
site = "site.toml"
"""


@pytest.fixture(scope="module")
def morning_plant(tmp_path_factory: pytest.TempPathFactory):
    from tests.fixtures.plant import start_plant_process
    from tests.fixtures.ports import stop_process
    from tests.fixtures.sites import write_site

    folder = tmp_path_factory.mktemp("platform_plant")
    write_site(folder / "site.toml", {"peers": {"A": {"battery": {"initial_soc_pct": 95.0}}}})
    config = folder / "plant.toml"
    config.write_text(PLANT_TOML)
    plant = start_plant_process(folder, "--config", str(config))
    yield plant.endpoints
    stop_process(plant.proc)


def morning_config(endpoints: PlantEndpoints, hours: float = 0.5) -> TestbedConfig:
    data = load_config(REPO / "configs" / "emulated.toml").model_dump(mode="json")
    data["experiment"]["hours"] = hours
    data["market"].update({"interval_s": 300.0, "gate_closure_s": 30.0})
    return with_plant_endpoints(parse_config(data), endpoints)


def reset_plant(endpoints: PlantEndpoints) -> None:
    with SyncPlantControl.from_endpoints(endpoints) as control:
        control.request("reset")


async def run_on_platform(config: TestbedConfig, run_dir: Path, platform) -> RunResult:
    market = await connect_controller(
        config, platform.address, platform.controller_password(), 120.0
    )
    try:
        return await run_experiment(config, run_dir, market=market, check_influx=False)
    finally:
        await market.close()


def test_platform_day_equals_the_in_process_day(morning_plant, tmp_path):
    """Same seed, same plant: the same orders, trades and settlement to the paisa whether the
    agents are objects in the engine's process or processes of their own on the broker."""
    config = morning_config(morning_plant)
    reset_plant(morning_plant)
    alone = asyncio.run(run_experiment(config, tmp_path / "in-process"))
    reset_plant(morning_plant)
    run_dir = tmp_path / "platform-run"
    config = with_run_keys(config, run_dir)
    with platform_processes(config, tmp_path / "platform") as platform:
        over_broker = asyncio.run(run_on_platform(config, run_dir, platform))
        assert platform.exited() == []

    assert over_broker.finished.status == alone.finished.status == "finished"
    assert over_broker.finished.summary == alone.finished.summary
    assert alone.finished.summary["market"]["traded_kwh"] > 0
    one, two = RunReader(alone.run_dir), RunReader(over_broker.run_dir)
    columns = ["interval_start", "peer", "bill", "p2p_paid", "p2p_received", "grid_cost"]
    assert one.settlements()[columns].equals(two.settlements()[columns])
    trade_columns = ["buyer", "seller", "quantity_kwh", "price"]
    assert one.trades()[trade_columns].equals(two.trades()[trade_columns])
    plans = two.agent_plans()
    assert set(plans["peer"]) == {"A", "B", "C"}
    report = verify_run(over_broker.run_dir)
    assert report.ok, report.describe()
