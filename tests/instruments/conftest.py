"""Drivers connected to the emulated plant (a fresh plant per test), and the plant's clock."""

from __future__ import annotations

from datetime import datetime

import pytest

from instruments.ev_charger import EvCharger
from instruments.inverter import SunSpecInverter
from instruments.meter import SunSpecMeter
from instruments.programmable_load import ProgrammableLoad
from labspec.plant_control import PlantControl
from tests.instruments.plant_drivers import ev_config, inverter_config, load_config, meter_config


class PlantClock:
    """The drivers' clock in lockstep: plant time, moved by `advance` through the control line."""

    def __init__(self, control: PlantControl, now: datetime):
        self.control = control
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    async def advance(self, dt_s: float) -> datetime:
        self.now = (await self.control.advance(dt_s)).time
        return self.now


@pytest.fixture
async def control(fresh_plant):
    client = await PlantControl.from_endpoints(fresh_plant)
    yield client
    await client.close()


@pytest.fixture
async def clock(control) -> PlantClock:
    return PlantClock(control, (await control.time()).time)


@pytest.fixture
async def inverter(fresh_plant, clock):
    driver = SunSpecInverter(inverter_config(fresh_plant), clock=clock)
    await driver.connect()
    yield driver
    await driver.close()


@pytest.fixture
async def meters(fresh_plant, clock):
    drivers = {peer: SunSpecMeter(meter_config(fresh_plant, peer), clock=clock) for peer in "ABC"}
    for driver in drivers.values():
        await driver.connect()
    yield drivers
    for driver in drivers.values():
        await driver.close()


@pytest.fixture
async def ev_charger(fresh_plant, clock):
    driver = EvCharger(ev_config(fresh_plant), clock=clock)
    await driver.connect()
    yield driver
    await driver.close()


@pytest.fixture
async def load(fresh_plant, clock):
    driver = ProgrammableLoad(load_config(fresh_plant), clock=clock)
    await driver.connect()
    yield driver
    await driver.close()
