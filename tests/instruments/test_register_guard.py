"""The meter driver's register check: a meter whose registers restart (reset, replaced, or a first
reading that was a glitch ahead) is taken back after a few readings consistent with each other,
and the break is reported once; garbage that runs ahead is never taken."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from instruments.config import SunSpecMeterConfig
from instruments.device import RegisterGuard
from instruments.errors import BadReading
from instruments.meter import SunSpecMeter
from tests.instruments.sunspec_device import SunSpecTestDevice

COMMON_MODEL = (1, {"Mn": "Acme", "Md": "Meter", "SN": "7", "DA": 1})
START = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def at(step_s: int) -> datetime:
    return START + timedelta(seconds=step_s)


def registers(import_kwh: float, export_kwh: float = 2.0) -> dict[str, float]:
    return {"import_kwh": import_kwh, "export_kwh": export_kwh}


def guard(restart_after: int | None = 3) -> RegisterGuard:
    return RegisterGuard("meter_C", max_kw=15.0, slack_kwh=1.0, restart_after=restart_after)


def test_a_meter_reset_is_a_new_series_after_three_consistent_readings():
    meter = guard()
    assert meter.check(at(0), registers(1234.5)) is None
    assert meter.check(at(1), registers(1234.501)) is None
    # the meter is reset: its registers start again near zero
    for second, value in ((2, 0.0), (3, 0.001)):
        with pytest.raises(BadReading, match="import_kwh"):
            meter.check(at(second), registers(value, 0.0))
    restart = meter.check(at(4), registers(0.002, 0.0))
    assert restart is not None
    assert restart.before_kwh == registers(1234.501)
    assert restart.after_kwh == registers(0.002, 0.0)
    assert restart.before_time == at(1) and restart.time == at(4)
    assert "1234.501 -> 0.002" in restart.describe()
    # reported once; the new series is the reference from now on
    assert meter.check(at(5), registers(0.003, 0.0)) is None
    with pytest.raises(BadReading):
        meter.check(at(6), registers(1234.502))


def test_a_first_reading_that_was_a_glitch_ahead_is_left_behind():
    meter = guard()
    assert meter.check(at(0), registers(1_000_003.0)) is None  # garbage taken as the reference
    assert meter.check(at(59), registers(1_000_003.1)) is None
    with pytest.raises(BadReading):
        meter.check(at(60), registers(3.1))
    with pytest.raises(BadReading):
        meter.check(at(61), registers(3.1))
    restart = meter.check(at(62), registers(3.11))
    assert restart is not None and restart.before_kwh["import_kwh"] == 1_000_003.1


def test_registers_ahead_of_the_rating_are_never_taken():
    meter = guard()
    meter.check(at(0), registers(3.0))
    for second in range(1, 30):
        with pytest.raises(BadReading):
            meter.check(at(second), registers(1_000_003.0 + second * 0.001))
    assert meter.check(at(30), registers(3.05)) is None  # the real series, as before


def test_readings_behind_that_disagree_with_each_other_are_not_a_series():
    meter = guard()
    meter.check(at(0), registers(500.0))
    for second, value in enumerate((0.0, 50.0, 0.0, 50.0, 0.0, 50.0), start=1):
        with pytest.raises(BadReading):
            meter.check(at(second), registers(value))
    # a glitch interrupts a series: it starts again
    meter.check(at(10), registers(500.01))
    for second, value in ((11, 0.0), (12, 0.001), (13, 700.0), (14, 0.002), (15, 0.003)):
        with pytest.raises(BadReading):
            meter.check(at(second), registers(value))
    assert meter.check(at(16), registers(0.004)) is not None


def test_without_restarts_registers_behind_stay_rejected():
    meter = guard(restart_after=None)
    meter.check(at(0), registers(500.0))
    for second in range(1, 10):
        with pytest.raises(BadReading):
            meter.check(at(second), registers(0.001 * second))


class SteppedClock:
    """The driver's clock, moved by hand (one reading per control step)."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


async def test_a_meter_replaced_mid_run_is_read_again_over_modbus():
    """A SunSpec meter (register image built by pysunspec2, served by pymodbus) whose registers
    drop from 1234.5 kWh to near zero: two readings are rejected, the third begins a new series
    and carries the break, once; the readings after it are plain readings of the new series."""
    meter_211 = {"A": 5.0, "PhV": 230.0, "Hz": 50.0, "W": 1150.0, "TotWhExp": 10.0,
                 "TotWhImp": 1_234_500.0}  # fmt: skip
    device = SunSpecTestDevice(40000, [COMMON_MODEL, (211, meter_211)])
    await device.start()
    clock = SteppedClock()
    meter = SunSpecMeter(SunSpecMeterConfig(port=device.port), clock=clock)
    try:
        await meter.connect()
        clock.now = at(1)
        assert (await meter.read()).register_break is None
        device.set_point(211, "TotWhImp", 0.0)  # a new meter: its registers start at zero
        device.set_point(211, "TotWhExp", 0.0)
        for second in (2, 3):
            clock.now = at(second)
            with pytest.raises(BadReading, match="import_kwh"):
                await meter.read()
        clock.now = at(4)
        first = await meter.read()
        assert first.register_break is not None
        assert first.register_break.before_kwh == {"import_kwh": 1234.5, "export_kwh": 0.01}
        assert first.register_break.after_kwh == {"import_kwh": 0.0, "export_kwh": 0.0}
        device.set_point(211, "TotWhImp", 1.0)
        clock.now = at(5)
        after = await meter.read()
        assert after.register_break is None and after.import_kwh == 0.001
    finally:
        await meter.close()
        await device.stop()


def test_registers_that_come_back_to_the_series_left_at_a_break_are_taken_again():
    """A glitch behind the true registers long enough to be taken for a new series (three zeros
    in a row) is followed by the true registers again: they run ahead of the new reference, but
    continue the series left at the break within the rating, so they are a break back to it."""
    meter = guard()
    meter.check(at(0), registers(500.0))
    for second in (1, 2):
        with pytest.raises(BadReading):
            meter.check(at(second), registers(0.0, 0.0))
    assert meter.check(at(3), registers(0.0, 0.0)) is not None
    for second, value in ((4, 500.001), (5, 500.0015)):
        with pytest.raises(BadReading):
            meter.check(at(second), registers(value))
    back = meter.check(at(6), registers(500.002))
    assert back is not None and back.before_kwh == registers(0.0, 0.0)
    assert meter.check(at(7), registers(500.003)) is None
