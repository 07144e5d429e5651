"""Each fault the emulated plant can inject, seen through the drivers: calls return (never hang),
lost connections are retried with backoff and reported once, bad values are rejected."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest

from instruments.errors import BadReading, DeviceError, DeviceTimeout, DeviceUnavailable
from instruments.ev_charger import EvCharger, EvSetpoint
from instruments.inverter import InverterSetpoint, SunSpecInverter
from instruments.link import LinkStatus
from instruments.meter import SunSpecMeter
from instruments.programmable_load import LoadSetpoint, ProgrammableLoad
from tests.instruments.plant_drivers import ev_config, inverter_config, load_config, meter_config

DEVICES = ("inverter", "meter_A", "ev_charger", "load")
NEVER_HANG_S = 10.0  # a call that takes this long has hung


def make_driver(device: str, endpoints, clock, **overrides):
    if device == "inverter":
        return SunSpecInverter(inverter_config(endpoints, **overrides), clock=clock)
    if device.startswith("meter_"):
        return SunSpecMeter(meter_config(endpoints, device[-1], **overrides), clock=clock)
    if device == "ev_charger":
        return EvCharger(ev_config(endpoints, **overrides), clock=clock)
    return ProgrammableLoad(load_config(endpoints, **overrides), clock=clock)


async def returns(call: Awaitable):
    """Await a driver call; fail the test if it hangs."""
    return await asyncio.wait_for(call, NEVER_HANG_S)


async def eventually(call: Callable[[], Awaitable], within_s: float = 15.0):
    """Retry a driver call while the device is unavailable (backoff), until it succeeds."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        try:
            return await returns(call())
        except DeviceUnavailable:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.05)


def warnings(caplog) -> list[str]:
    """Every warning or error logged in the test, by any logger (drivers and libraries)."""
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.fixture
async def driver_for(fresh_plant, clock):
    started = []

    async def start(device: str, connect: bool = True, **overrides):
        driver = make_driver(device, fresh_plant, clock, **overrides)
        started.append(driver)
        if connect:
            await driver.connect()
        return driver

    yield start
    for driver in started:
        await driver.close()


@pytest.mark.parametrize("device", DEVICES)
async def test_dropped_connections_fail_fast_are_reported_once_and_come_back(
    device, driver_for, control, caplog
):
    caplog.set_level(logging.INFO)
    driver = await driver_for(device)
    statuses: list[LinkStatus] = []
    driver.subscribe_status(lambda _device, status, _reason: statuses.append(status))

    await control.set_fault(device, kind="drop")
    for _ in range(5):  # five control steps against a device that is gone
        with pytest.raises(DeviceUnavailable):
            await returns(driver.read())
    await control.clear_faults(device)
    snapshot = await eventually(driver.read)

    assert snapshot.time is not None
    assert statuses == [LinkStatus.LOST, LinkStatus.CONNECTED]
    assert len(warnings(caplog)) == 1, warnings(caplog)
    assert warnings(caplog)[0].startswith(f"instruments: {device}: connection lost")


@pytest.mark.parametrize("device", DEVICES)
async def test_a_refused_connection_is_retried_with_backoff(device, driver_for, control, caplog):
    caplog.set_level(logging.INFO)
    await control.set_fault(device, kind="refuse")
    driver = await driver_for(device, connect=False)
    with pytest.raises(DeviceUnavailable) as caught:
        await returns(driver.connect())
    assert "connect" in str(caught.value)
    with pytest.raises(DeviceUnavailable) as again:  # inside the backoff delay: no new attempt
        await returns(driver.read())
    assert again.value.retry_in_s > 0
    await control.clear_faults(device)
    await eventually(driver.connect)
    assert driver.status is LinkStatus.CONNECTED
    assert len(warnings(caplog)) == 1, warnings(caplog)
    assert warnings(caplog)[0].startswith(f"instruments: {device}: connection lost")


@pytest.mark.parametrize("device", DEVICES)
async def test_a_slow_device_times_out_and_recovers(device, driver_for, control):
    driver = await driver_for(device, timeout_s=0.2)
    await control.set_fault(device, kind="delay", delay_ms=1500)
    with pytest.raises(DeviceTimeout) as caught:
        await returns(driver.read())
    assert "200 ms" in str(caught.value)
    await control.clear_faults(device)
    await eventually(driver.read)
    assert driver.status is LinkStatus.CONNECTED


@pytest.mark.parametrize(
    ("device", "code", "name"), [("inverter", 4, "DEVICE_FAILURE"), ("meter_A", 6, "DEVICE_BUSY")]
)
async def test_a_modbus_exception_is_a_device_error_naming_function_and_code(
    device, code, name, driver_for, control
):
    driver = await driver_for(device)
    await control.set_fault(device, kind="exception", code=code)
    with pytest.raises(DeviceError) as caught:
        await returns(driver.read())
    assert caught.value.code == code and name in str(caught.value)
    assert "function 3" in str(caught.value) and device in str(caught.value)
    if device == "inverter":
        with pytest.raises(DeviceError, match=r"function (23|16)"):
            await returns(driver.apply(InverterSetpoint(1.0)))
    assert driver.status is LinkStatus.CONNECTED  # the device answered: the session stays
    await control.clear_faults(device)
    await returns(driver.read())


@pytest.mark.parametrize("device", DEVICES)
async def test_out_of_range_values_are_rejected_as_bad_readings(device, driver_for, control, clock):
    driver = await driver_for(device)
    await control.set_fault(device, kind="out_of_range")
    await clock.advance(1)
    with pytest.raises(BadReading) as caught:
        await returns(driver.read())
    assert caught.value.quantity in {
        "soc_pct", "ac_power_kw", "pv_power_kw", "voltage_v", "power_kw", "current_a"
    }  # fmt: skip
    assert str(caught.value.value) in str(caught.value)
    await control.clear_faults(device)
    await clock.advance(1)
    await returns(driver.read())


async def _draw_power(device: str, driver_for) -> Callable[[], Awaitable]:
    """Make `device` carry power; returns what keeps it so each step (the EV watchdog)."""
    if device == "inverter":
        inverter = await driver_for("inverter")
        await inverter.apply(InverterSetpoint(-2.0))
        return inverter.read
    if device == "ev_charger":
        charger = await driver_for("ev_charger")
        await charger.apply(EvSetpoint(-1.5))

        async def keep_charging():
            await charger.apply(EvSetpoint(-1.5))

        return keep_charging
    load = await driver_for("load")
    await load.apply(LoadSetpoint(-1.5))
    return load.read


@pytest.mark.parametrize("device", ("inverter", "meter_C", "ev_charger", "load"))
async def test_a_frozen_measurement_is_rejected_once_the_energy_should_have_moved(
    device, driver_for, control, clock
):
    keep_going = await _draw_power("load" if device == "meter_C" else device, driver_for)
    driver = await driver_for(device)
    for _ in range(5):  # a live device: every step reads fine
        await clock.advance(20)
        await keep_going()
        await driver.read()
    await control.set_fault(device, kind="freeze")
    with pytest.raises(BadReading, match="frozen"):
        for _ in range(30):  # 1.5 kW for 10 min is 250 Wh; the guard trips at 50 Wh
            await clock.advance(20)
            await keep_going()
            await driver.read()
    await control.clear_faults(device)
    await clock.advance(20)
    await driver.read()
