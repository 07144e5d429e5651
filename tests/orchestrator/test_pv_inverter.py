"""A PV-only home: the controller reads its PV inverter (SunSpec 701/702/714 over Modbus TCP) on
the emulated plant; its production is recorded, counted in the energy balance behind the PCC,
and the house load the agents observe is the load, not the load net of the PV."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from labspec.site import default_site
from testbed.config import load_config, parse_config
from testbed.engine import Engine
from testbed.experiment import run_experiment, with_plant_endpoints, with_site
from testbed.runstore import RunReader
from testbed.value.metered_day import metered_day
from tests.fixtures.sites import write_site

REPO = Path(__file__).resolve().parents[2]
EMULATED = REPO / "configs" / "emulated.toml"

# House D: a 4 kWp array behind its own PV inverter on a new bus off J2, and its house load.
HOUSE_D = {
    "feeder": {
        "buses": ["LV", "J1", "J2", "A", "B", "C", "D"],
        "lines": [
            *default_site().to_toml_dict()["feeder"]["lines"],
            {"from_bus": "J2", "to_bus": "D", "length_m": 35, "type": "service"},
        ],
    },
    "peers": {
        "D": {
            "role": "prosumer",
            "bus": "D",
            "load": {"peak_kw": 1.2, "base_kw": 0.3, "typical_kw": 0.6},
            "pv": {"peak_kw": 4.0},
        },
    },
    "devices": {
        "pv_D": {
            "kind": "pv_inverter",
            "peer": "D",
            "modbus": {"port": 0, "unit_id": 1},
            "rated_power_kw": 4.0,
        },
        "meter_D": {"kind": "pcc_meter", "peer": "D", "modbus": {"port": 0, "unit_id": 1}},
    },
}


def test_a_pv_only_home_is_read_recorded_and_balanced(tmp_path):
    from testbed.plant_process import emulated_plant

    site_file = write_site(tmp_path / "pv.toml", HOUSE_D)
    config = with_site(load_config(EMULATED), site_file)
    assert config.peers["D"].devices["pv_inverter"].driver == "sunspec_pv_inverter"
    data = config.model_dump(mode="json", exclude_none=True)
    data["experiment"]["hours"] = 0.25
    data["market"].update({"interval_s": 300.0, "gate_closure_s": 30.0})
    config = parse_config(data)
    engines: list[Engine] = []
    start = "start = 2026-03-21T11:00:00+05:30\n"
    with emulated_plant(7, plant_toml=start, site=config.site_model()) as endpoints:
        config = with_plant_endpoints(config, endpoints)
        result = asyncio.run(run_experiment(config, tmp_path / "run", on_engine=engines.append))
    assert result.finished.status == "finished"
    run = RunReader(tmp_path / "run")
    pv = run.samples("D", "pv_inverter")
    assert len(pv) > 800
    assert pv["pv_power_kw"].mean() > 1.0  # late morning in March on 4 kWp
    assert pv["pv_power_kw"].max() <= 4.0 * 1.01  # within the array's rating
    assert (pv["ac_power_kw"] - pv["pv_power_kw"]).abs().max() < 0.01  # no battery behind it
    injected = pv["ac_injected_kwh"].iloc[-1] - pv["ac_injected_kwh"].iloc[0]
    assert injected == pytest.approx(pv["ac_power_kw"].mean() * 0.25, rel=0.02)
    meter = run.samples("D", "meter")
    assert meter["power_kw"].mean() > 0.3  # the PV covers the load and D exports
    settled = run.settlements("D")
    assert len(settled) == 3 and settled["metered_kwh"].sum() > 0.05
    summary = result.finished.summary  # D's PV counts among the devices behind its PCC
    assert abs(summary["energy_balance_error_kwh"]) < 1e-3 * summary["energy_through_pcc_kwh"]
    day = metered_day(tmp_path / "run").peers["D"]  # the yardstick sees the PV and the true load
    assert day.pv_kwh.sum() == pytest.approx(injected, rel=0.02)
    assert day.load_kwh == pytest.approx(day.pv_kwh - day.metered_kwh)
    assert (day.load_kwh > 0.02).all()
    image = engines[0].peers["D"].image(None)  # what the agents observe at the last step
    assert image.pv_kw == pytest.approx(pv["pv_power_kw"].iloc[-1])
    assert image.house_load_kw is not None
    assert 0.2 < image.house_load_kw < 1.5  # the house's own load, not load minus PV
