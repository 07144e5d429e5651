"""The SCPI declarations of the programmable load, checked line by line against a TCP responder."""

from __future__ import annotations

import pytest
import pyvisa

from instruments.config import ProgrammableLoadConfig
from instruments.errors import BadReading, DeviceError, SetpointRefused
from instruments.programmable_load import AcElectronicLoadScpi, LoadSetpoint, ProgrammableLoad
from instruments.scpi import split_answers
from tests.instruments.scpi_responder import ExpectedProtocol

NO_ERROR = '0,"No error"'


@pytest.fixture(scope="module")
def visa():
    manager = pyvisa.ResourceManager("@py")
    yield manager
    manager.close()


def open_load(visa, responder: ExpectedProtocol) -> AcElectronicLoadScpi:
    resource = visa.open_resource(
        responder.resource, read_termination="\n", write_termination="\n", timeout=2000
    )
    return AcElectronicLoadScpi(resource, "load")


def test_setting_a_control_sends_the_command_then_checks_the_error_queue(visa):
    with ExpectedProtocol([(":POW 1500.0", None), (":SYST:ERR?", NO_ERROR)]) as responder:
        load = open_load(visa, responder)
        load.power_setpoint_w = 1500
        load.transport.close()
    responder.check()


def test_an_error_in_the_queue_names_the_command_and_the_answer(visa):
    script = [
        (":INP ON", None),
        (":SYST:ERR?", '-222,"Data out of range"'),
        (":SYST:ERR?", NO_ERROR),  # the driver drains the queue
    ]
    with ExpectedProtocol(script) as responder:
        load = open_load(visa, responder)
        with pytest.raises(DeviceError) as caught:
            load.input_on = True
        load.transport.close()
    responder.check()
    assert caught.value.code == -222
    assert "':INP ON'" in str(caught.value) and "Data out of range" in str(caught.value)


def test_a_value_outside_the_declared_range_is_refused_before_anything_is_sent(visa):
    with ExpectedProtocol([]) as responder:
        load = open_load(visa, responder)
        with pytest.raises(SetpointRefused) as caught:
            load.power_setpoint_w = 3500
        with pytest.raises(SetpointRefused):
            load.function = "CURR"
        load.transport.close()
    responder.check()
    assert caught.value.value == 3500
    assert "0 to 3000 W" in str(caught.value)


def test_measurements_and_controls_parse_their_answers(visa):
    script = [(":MEAS:POW?", "1234.5000"), (":INP?", "1"), (":FUNC?", "LIST"), (":POW?", "0.0000")]
    with ExpectedProtocol(script) as responder:
        load = open_load(visa, responder)
        assert load.power_w == 1234.5
        assert load.input_on is True
        assert load.function == "LIST"
        assert load.power_setpoint_w == 0.0
        load.transport.close()
    responder.check()


def test_a_garbled_answer_is_a_bad_reading(visa):
    with ExpectedProtocol([(":MEAS:VOLT?", "two hundred")]) as responder:
        load = open_load(visa, responder)
        with pytest.raises(BadReading) as caught:
            _ = load.voltage_v
        load.transport.close()
    responder.check()
    assert caught.value.quantity == "voltage_v"


def test_several_queries_travel_in_one_program_message(visa):
    script = [(":MEAS:POW?;:MEAS:VOLT?;:INP?", "800.0000;229.5000;0")]
    with ExpectedProtocol(script) as responder:
        load = open_load(visa, responder)
        values = load.query_many(["power_w", "voltage_v", "input_on"])
        load.transport.close()
    responder.check()
    assert values == {"power_w": 800.0, "voltage_v": 229.5, "input_on": False}


def test_an_exchange_sets_checks_and_reads_back_in_one_message(visa):
    script = [(":POW 250.0;:INP OFF;*OPC?;:SYST:ERR?;:POW?;:INP?", '1;0,"No error";250.0000;0')]
    with ExpectedProtocol(script) as responder:
        load = open_load(visa, responder)
        values = load.exchange(
            {"power_setpoint_w": 250, "input_on": False}, ["power_setpoint_w", "input_on"]
        )
        load.transport.close()
    responder.check()
    assert values == {"power_setpoint_w": 250.0, "input_on": False}


def test_answers_split_at_semicolons_outside_quotes():
    assert split_answers('-100,"a;b";1.0') == ['-100,"a;b"', "1.0"]


def test_the_declarations_read_like_a_datasheet():
    declared = AcElectronicLoadScpi.declarations()
    assert declared["power_setpoint_w"].unit == "W"
    assert declared["power_setpoint_w"].command == ":POW {:.1f}"
    assert declared["power_w"].query == ":MEAS:POW?"
    assert set(declared) >= {"input_on", "function", "voltage_v", "current_a", "energy_wh"}


async def test_the_driver_applies_a_setpoint_in_one_exchange_and_confirms_it():
    read = ":MEAS:POW?;:MEAS:VOLT?;:MEAS:CURR?;:MEAS:ENER?;:INP?;:FUNC?;:POW?"
    script = [
        ("*CLS", None),
        ("*IDN?", "P2P-Testbed,EL-AC-3000,SN1,0.1"),
        (read, "0.0000;230.0000;0.0000;10.0000;0;LIST;0.0000"),
        (
            ":FUNC POW;:POW 1500.0;:INP ON;*OPC?;:SYST:ERR?;:POW?;:INP?;:FUNC?",
            '1;0,"No error";1500.0000;1;POW',
        ),
        (":POW 0.0;:INP OFF;*OPC?;:SYST:ERR?;:POW?;:INP?;:FUNC?", '1;0,"No error";0.0000;0;POW'),
    ]
    with ExpectedProtocol(script) as responder:
        load = ProgrammableLoad(ProgrammableLoadConfig(port=responder.port, timeout_s=2))
        await load.connect()
        assert load.last_snapshot.function == "LIST"
        confirmation = await load.apply(LoadSetpoint(power_kw=-1.5))
        safe = await load.safe_state()
        await load.close()
    responder.check()
    assert confirmation.read_back == LoadSetpoint(power_kw=-1.5, input_on=True)
    assert safe.read_back == LoadSetpoint(power_kw=0.0, input_on=False)


READ = ":MEAS:POW?;:MEAS:VOLT?;:MEAS:CURR?;:MEAS:ENER?;:INP?;:FUNC?;:POW?"
OPEN = [("*CLS", None), ("*IDN?", "P2P-Testbed,EL-AC-3000,SN1,0.1")]


async def test_the_driver_reads_an_answer_that_arrives_in_pieces():
    script = [
        *OPEN,
        (READ, "0.0000;230.0000;0.0000;10.0000;0;LIST;0.0000"),
        (READ, ("1500.0000;229.", "8000;6.5", "200;12.5000;1;POW;1500.0000")),
        (READ, "1400.0000;230.1000;6.0800;12.9000;1;POW;1400.0000"),
    ]
    with ExpectedProtocol(script) as responder:
        load = ProgrammableLoad(ProgrammableLoadConfig(port=responder.port, timeout_s=2))
        await load.connect()
        pieces = await load.read()
        whole = await load.read()
        await load.close()
    responder.check()
    assert (pieces.power_kw, pieces.voltage_v, pieces.current_a) == (-1.5, 229.8, 6.52)
    assert (whole.power_kw, whole.energy_kwh) == (-1.4, 0.0129)


async def test_a_refused_apply_names_the_commands_and_leaves_the_queue_empty():
    script = [
        *OPEN,
        (READ, "0.0000;230.0000;0.0000;10.0000;0;POW;0.0000"),
        (
            ":POW 900.0;:INP ON;*OPC?;:SYST:ERR?;:POW?;:INP?;:FUNC?",
            '1;-221,"Settings conflict";0.0000;0;POW',
        ),
        (":SYST:ERR?", '-222,"Data out of range"'),  # the driver drains the queue
        (":SYST:ERR?", NO_ERROR),
        (READ, "0.0000;230.0000;0.0000;10.0000;0;POW;0.0000"),  # and goes on
    ]
    with ExpectedProtocol(script) as responder:
        load = ProgrammableLoad(ProgrammableLoadConfig(port=responder.port, timeout_s=2))
        await load.connect()
        with pytest.raises(DeviceError) as caught:
            await load.apply(LoadSetpoint(power_kw=-0.9))
        after = await load.read()
        await load.close()
    responder.check()
    assert caught.value.code == -221 and ":POW 900.0;:INP ON" in str(caught.value)
    assert after.input_on is False and load.last_confirmed is None
