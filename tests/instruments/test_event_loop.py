"""The drivers run unchanged on uvloop (the controller's loop when it is installed)."""

from __future__ import annotations

import asyncio

import pytest

from instruments.ev_charger import EvCharger, EvSetpoint
from instruments.event_loop import loop_factory
from instruments.inverter import InverterSetpoint, SunSpecInverter
from instruments.meter import SunSpecMeter
from instruments.programmable_load import LoadSetpoint, ProgrammableLoad
from tests.instruments.plant_drivers import ev_config, inverter_config, load_config, meter_config


def test_asyncio_is_there_on_request_and_a_wrong_name_is_refused():
    name, factory = loop_factory("asyncio")
    assert name == "asyncio" and factory is asyncio.new_event_loop
    with pytest.raises(ValueError, match="'tokio'"):
        loop_factory("tokio")  # type: ignore[arg-type]


def test_every_driver_reads_and_confirms_setpoints_on_uvloop(fresh_plant):
    pytest.importorskip("uvloop")
    name, factory = loop_factory("auto")
    assert name == "uvloop"

    async def session() -> tuple:
        drivers = (
            SunSpecMeter(meter_config(fresh_plant, "A")),
            SunSpecInverter(inverter_config(fresh_plant)),
            EvCharger(ev_config(fresh_plant)),
            ProgrammableLoad(load_config(fresh_plant)),
        )
        _, inverter, ev, load = drivers
        for driver in drivers:
            await driver.connect()
        try:
            assert isinstance(asyncio.get_running_loop(), factory().__class__)
            snapshots = await asyncio.gather(*(driver.read() for driver in drivers))
            confirmations = await asyncio.gather(
                inverter.apply(InverterSetpoint(-1.0)),
                ev.apply(EvSetpoint(0.0, enabled=False)),
                load.apply(LoadSetpoint(-0.8)),
            )
            return snapshots, confirmations
        finally:
            for driver in drivers:
                await driver.close()

    with asyncio.Runner(loop_factory=factory) as runner:
        snapshots, confirmations = runner.run(session())
    meter, inverter, ev, load = snapshots
    assert 200 < meter.voltage_v < 260 and 0 <= inverter.soc_pct <= 100
    assert ev.capacity_kwh > 0 and load.voltage_v > 200
    assert [c.read_back.power_kw for c in confirmations] == pytest.approx([-1.0, 0.0, -0.8])
