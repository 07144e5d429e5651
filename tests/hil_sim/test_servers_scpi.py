"""The emulated programmable load over SCPI, driven by pyvisa with the pyvisa-py backend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import pyvisa

from labspec.endpoints import PlantEndpoints
from labspec.plant_control import SyncPlantControl
from labspec.programmable_load import ERROR_QUEUE_SIZE, IDN_MANUFACTURER, IDN_MODEL


@pytest.fixture(scope="module")
def visa() -> Iterator[pyvisa.ResourceManager]:
    manager = pyvisa.ResourceManager("@py")
    yield manager
    manager.close()


def open_load(visa: pyvisa.ResourceManager, endpoints: PlantEndpoints):
    return visa.open_resource(
        endpoints.load.resource, read_termination="\n", write_termination="\n", timeout=5000
    )


@pytest.fixture
def load(visa, fresh_plant: PlantEndpoints):
    session = open_load(visa, fresh_plant)
    yield session
    session.close()


@pytest.fixture
def control(fresh_plant: PlantEndpoints) -> Iterator[SyncPlantControl]:
    with SyncPlantControl.from_endpoints(fresh_plant) as client:
        yield client


def errors(load) -> list[int]:
    """Drain the error queue; the codes in the order they happened."""
    codes = []
    while True:
        code = int(load.query("SYST:ERR?").split(",")[0])
        if code == 0:
            return codes
        codes.append(code)


def test_identity_and_the_empty_error_queue(load):
    maker, model, serial, firmware = load.query("*IDN?").split(",")
    assert (maker, model) == (IDN_MANUFACTURER, IDN_MODEL)
    assert serial and firmware
    assert load.query("SYST:ERR?") == '0,"No error"'
    assert load.query("*OPC?") == "1"


def test_power_setpoint_reads_back_and_moves_the_measurement_after_advance(load, control):
    load.write("FUNC POW")
    load.write("POW 1200")
    load.write("INP ON")
    assert load.query("FUNC?") == "POW"
    assert float(load.query("POW?")) == 1200.0
    assert load.query("INP?") == "1"
    assert errors(load) == []

    control.advance(5)
    truth = control.state()["load_c"]
    assert float(load.query("MEAS:POW?")) == pytest.approx(1200.0, abs=1e-3)
    assert float(load.query("MEAS:VOLT?")) == pytest.approx(truth["voltage_v"], abs=1e-3)
    assert float(load.query("MEAS:CURR?")) == pytest.approx(truth["current_a"], abs=1e-3)
    energy_wh = float(load.query("MEAS:ENER?"))
    assert energy_wh == pytest.approx(truth["energy_wh"], abs=1e-3)
    assert energy_wh > 0

    load.write("INP OFF")
    control.advance(5)
    assert float(load.query("MEAS:POW?")) == 0.0
    assert float(load.query("MEAS:ENER?")) == pytest.approx(energy_wh, abs=1e-3)


def test_long_and_short_forms_in_any_case_and_several_commands_per_line(load):
    load.write("function power;:power:level 750.5;:input:state 1")
    assert load.query("FUNCtion?;POWer?;inp?") == "POW;750.5000;1"
    assert load.query(":SYSTem:ERRor:NEXT?") == '0,"No error"'
    load.write("POW 1.2KW")
    assert float(load.query("pow:lev:imm:ampl?")) == 1200.0


def test_out_of_range_power_goes_to_the_error_queue_and_the_setpoint_is_kept(load, control):
    load.write("POW 900")
    load.write("POW 5000")  # beyond the 3 kW instrument
    load.write("POW -1")
    assert float(load.query("POW?")) == 900.0
    assert errors(load) == [-222, -222]
    assert control.advance(1.0).elapsed_s == pytest.approx(1.0)
    assert load.query("*IDN?").startswith(IDN_MANUFACTURER)


def test_errors_come_out_first_in_first_out(load):
    load.write("FOO:BAR 1")  # undefined header
    load.write("POW abc")  # data type
    load.write("INP MAYBE")  # data type
    load.write("POW 99999")  # out of range
    assert load.query("SYST:ERR?") == '-113,"Undefined header"'
    assert load.query("SYST:ERR?") == '-104,"Data type error"'
    assert errors(load) == [-104, -222]


def test_error_queue_overflow_and_clear_status(load):
    for _ in range(ERROR_QUEUE_SIZE + 5):
        load.write("NOT:A:COMMAND")
    codes = errors(load)
    assert len(codes) == ERROR_QUEUE_SIZE
    assert codes[:-1] == [-113] * (ERROR_QUEUE_SIZE - 1)
    assert codes[-1] == -350  # the newest entry says the queue overflowed

    load.write("NOT:A:COMMAND")
    load.write("*CLS")
    assert errors(load) == []


def test_reset_puts_the_load_in_a_safe_state(load):
    load.write("FUNC LIST;INP ON;POW 1000")
    load.write("*RST")
    assert load.query("INP?;FUNC?;POW?") == "0;POW;0.0000"
    assert errors(load) == []


def test_the_same_program_message_sent_every_step_answers_each_steps_values(load, control):
    """The server keeps how a repeated message parses; its answers and errors do not repeat."""
    message = ":MEAS:POW?;:MEAS:VOLT?;:MEAS:ENER?;:NOT:A:QUERY?;:POW?"
    load.write("FUNC POW;INP ON")
    energies = []
    for setpoint_w in (500, 1500, 900):
        load.write(f"POW {setpoint_w}")
        control.advance(5)
        truth = control.state()["load_c"]
        power, voltage, energy, setpoint = (float(v) for v in load.query(message).split(";"))
        assert power == pytest.approx(setpoint_w, abs=1e-3)
        assert voltage == pytest.approx(truth["voltage_v"], abs=1e-3)
        assert energy == pytest.approx(truth["energy_wh"], abs=1e-3)
        assert setpoint == setpoint_w
        assert errors(load) == [-113]  # the undefined header, once per message
        energies.append(energy)
    assert energies[0] < energies[1] < energies[2]


def test_header_paths_after_a_semicolon_follow_scpi_1999(load, control):
    """SCPI-1999 6.2.4: after ";" a header continues from the previous header's path; a leading
    ":" starts at the root; common commands leave the path alone. The plant is as strict as
    other makers' instruments, so a driver that relies on every header starting at the root fails
    here as it would in the lab."""
    load.write(":FUNC POW;:POW 700;:INP ON")
    control.advance(1.0)
    # relative to MEAS: after MEAS:POW?, and the path survives *OPC?
    power, voltage, done, current = load.query("MEAS:POW?;VOLT?;*OPC?;CURR?").split(";")
    assert float(power) == 700.0 and float(voltage) > 100 and done == "1" and float(current) > 0
    assert errors(load) == []
    # the same header twice reads MEAS:MEAS:VOLT? the second time: undefined, no answer
    assert load.query("MEAS:POW?;MEAS:VOLT?;:INP?") == "700.0000;1"
    assert errors(load) == [-113]
    # after SYST:ERR? a bare POW? is SYST:POW?; fully qualified headers always work
    assert load.query("SYST:ERR?;POW?") == '0,"No error"'
    assert errors(load) == [-113]
    assert load.query(":SYST:ERR?;:POW?;:MEAS:POW?") == '0,"No error";700.0000;700.0000'
