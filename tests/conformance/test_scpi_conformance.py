"""The programmable-load driver against a strict SCPI-1999 instrument written from the standard
(tests/conformance/scpi_instrument.py), in each dialect a lab meets."""

from __future__ import annotations

import pytest

from instruments.config import ProgrammableLoadConfig, ScpiDialect
from instruments.errors import BadReading, ReadbackMismatch
from instruments.programmable_load import LoadSetpoint, ProgrammableLoad
from tests.conformance.scpi_instrument import Dialect, StrictScpiServer


@pytest.fixture
def instrument(request):
    server = StrictScpiServer(getattr(request, "param", Dialect())).start()
    yield server
    server.stop()


def driver(server: StrictScpiServer, **dialect) -> ProgrammableLoad:
    config = ProgrammableLoadConfig(port=server.port, timeout_s=2, dialect=ScpiDialect(**dialect))
    return ProgrammableLoad(config)


async def apply_read_and_safe(load: ProgrammableLoad):
    """Connect, apply 1.5 kW, read, go safe, close: what one step of a run does."""
    await load.connect()
    try:
        confirmation = await load.apply(LoadSetpoint(power_kw=-1.5))
        snapshot = await load.read()
        safe = await load.safe_state()
    finally:
        await load.close()
    return confirmation, snapshot, safe


async def test_fully_qualified_headers_work_on_a_strict_instrument(instrument):
    """SCPI-1999 6.2.4: `MEAS:POW?;MEAS:VOLT?` is MEAS:MEAS:VOLT? to a strict instrument; the
    driver's headers start at the root, so every query is answered and no error is queued."""
    confirmation, snapshot, safe = await apply_read_and_safe(driver(instrument))
    assert confirmation.read_back == LoadSetpoint(power_kw=-1.5, input_on=True)
    assert (snapshot.power_kw, snapshot.voltage_v, snapshot.function) == (-1.5, 230.0, "POW")
    assert snapshot.current_a == pytest.approx(1500 / 230, abs=1e-3)
    assert safe.read_back == LoadSetpoint(power_kw=0.0, input_on=False)
    assert instrument.instrument.errors == []
    assert all(
        unit.startswith((":", "*")) for line in instrument.instrument.received
        for unit in line.split(";")
    )  # fmt: skip


@pytest.mark.parametrize("instrument", [Dialect(long_form_answers=True)], indirect=True)
async def test_a_function_answered_in_long_form_is_understood(instrument):
    confirmation, snapshot, _ = await apply_read_and_safe(driver(instrument))
    assert confirmation.read_back.power_kw == -1.5
    assert snapshot.function == "POW"  # POWER, in the driver's short form


@pytest.mark.parametrize("instrument", [Dialect(unit_suffix_answers=True)], indirect=True)
async def test_numbers_with_unit_suffixes_are_read(instrument):
    confirmation, snapshot, _ = await apply_read_and_safe(driver(instrument))
    assert confirmation.read_back.power_kw == -1.5
    assert (snapshot.power_kw, snapshot.voltage_v) == (-1.5, 230.0)
    assert snapshot.power_setpoint_kw == -1.5


@pytest.mark.parametrize("instrument", [Dialect(answers_on_own_lines=True)], indirect=True)
async def test_answers_on_their_own_lines_need_the_newline_dialect(instrument):
    load = driver(instrument)
    with pytest.raises(BadReading, match="answer_separator = 'newline'"):
        await load.connect()
    await load.close()
    confirmation, snapshot, safe = await apply_read_and_safe(
        driver(instrument, answer_separator="newline")
    )
    assert confirmation.read_back == LoadSetpoint(power_kw=-1.5, input_on=True)
    assert (snapshot.power_kw, snapshot.voltage_v) == (-1.5, 230.0)
    assert safe.read_back == LoadSetpoint(power_kw=0.0, input_on=False)


@pytest.mark.parametrize("instrument", [Dialect(settle_s=0.2)], indirect=True)
async def test_a_setting_that_takes_effect_late_is_confirmed_after_opc(instrument):
    """The instrument applies settings 0.2 s after it gets them; `*OPC?` in the apply message
    holds the read-back until then. Without it, the read-back sees the old setpoint."""
    confirmation, _, safe = await apply_read_and_safe(driver(instrument))
    assert confirmation.read_back == LoadSetpoint(power_kw=-1.5, input_on=True)
    assert safe.read_back == LoadSetpoint(power_kw=0.0, input_on=False)
    assert any("*OPC?" in line for line in instrument.instrument.received)

    waits = driver(instrument, settle="wai")
    await waits.connect()
    assert (await waits.apply(LoadSetpoint(power_kw=-0.5))).read_back.power_kw == -0.5
    await waits.close()

    hasty = driver(instrument, settle="none")
    await hasty.connect()
    with pytest.raises(ReadbackMismatch):
        await hasty.apply(LoadSetpoint(power_kw=-1.0))
    await hasty.close()


async def test_settings_can_carry_their_unit(instrument):
    confirmation, _, _ = await apply_read_and_safe(driver(instrument, command_units=True))
    assert confirmation.read_back.power_kw == -1.5
    assert any(":POW 1500.0W" in line for line in instrument.instrument.received)
    assert instrument.instrument.errors == []


@pytest.mark.parametrize("instrument", [Dialect(line_end="\r\n")], indirect=True)
async def test_crlf_line_ends(instrument):
    confirmation, snapshot, _ = await apply_read_and_safe(driver(instrument))
    assert confirmation.read_back.power_kw == -1.5 and snapshot.voltage_v == 230.0
