"""A meter of coarse resolution (whole watts and watt-hours, another vendor's register map)
repeats its readings while live: that is no freeze, and the battery behind it stays in control."""

from __future__ import annotations

import asyncio

from testbed.config import load_config, parse_config
from testbed.experiment import run_experiment, with_plant_endpoints, with_site
from testbed.runstore import RunReader
from tests.fixtures.ports import free_port
from tests.fixtures.sites import write_site
from tests.orchestrator.test_driver_registry import (  # the Acme meter and its driver kind
    EMULATED,
    AcmeServer,
    acme_registered,  # noqa: F401 (a fixture)
)


def test_a_coarse_meter_does_not_send_the_battery_behind_it_to_its_safe_state(
    tmp_path,
    acme_registered,  # noqa: F811
):
    """Peer A's PCC metered by the Acme meter (W, Wh and 0.1 V as integers): its house load
    held the same whole watts for 3 steps now and then, the repeat rule took that for a frozen
    meter, and the battery went to its safe state and back 85 times in 15 minutes (WSet off 10 %
    of the time). Readings in whole watts now exempt a meter from the repeat rule."""
    from testbed.plant_process import emulated_plant

    port = free_port()
    settings = {"port": port, "device_id": 1, "timeout_s": 2.0}
    site = write_site(
        tmp_path / "acme.toml",
        {"devices": {"meter_A": {"driver": "acme_meter", "driver_settings": settings}}},
    )
    data = with_site(load_config(EMULATED), site).model_dump(mode="json", exclude_none=True)
    data["experiment"]["hours"] = 0.25
    data["market"].update({"interval_s": 300.0, "gate_closure_s": 30.0})
    config = parse_config(data)
    with emulated_plant(3, site=config.site_model()) as endpoints:
        config = with_plant_endpoints(config, endpoints)
        with AcmeServer(endpoints.meter("A"), port):
            result = asyncio.run(run_experiment(config, tmp_path / "run"))
    assert result.finished.status == "finished"
    run = RunReader(tmp_path / "run")
    meter = run.samples("A", "meter")
    power_w = meter["power_kw"] * 1000
    assert ((power_w - power_w.round()).abs() < 1e-6).all()  # whole watts, as the map has them
    assert (meter["power_kw"].diff() == 0).sum() > 50  # and it repeats while live
    interlocks = run.interlocks()
    a = interlocks[(interlocks["peer"] == "A") & (interlocks["reason"] != "end of the run")]
    assert not a["kind"].isin(["frozen_measurement", "stale_measurement", "safe_state"]).any()
    inverter = run.samples("A", "inverter")
    assert inverter["wset_enabled"].iloc[2:].all()  # in control from the start to the end
    assert len(run.settlements("A")) == 3
