"""The SunSpec drivers against another Modbus TCP stack (pyModbusTCP) serving pysunspec2-built
images, with the habits of real devices: busy answers, other unit ids in answers, function 23
ignored, reads refused across model boundaries, silence."""

from __future__ import annotations

import pytest

from instruments.config import SunSpecInverterConfig, SunSpecMeterConfig, SunSpecPvInverterConfig
from instruments.errors import DeviceUnavailable, ProtocolMismatch, SetpointRefused
from instruments.inverter import InverterSetpoint, SunSpecInverter
from instruments.meter import SunSpecMeter
from instruments.pv_inverter import SunSpecPvInverter
from tests.conformance.modbus_device import PyModbusTcpSunSpecDevice
from tests.instruments.test_sunspec import COMMON, INVERTER_MODELS, METER_201

FAST = {"timeout_s": 0.3, "backoff_initial_s": 0.05, "backoff_max_s": 0.2}


@pytest.fixture
def device(request):
    base, models, habits = request.param
    served = PyModbusTcpSunSpecDevice(base, models, **habits).start()
    yield served
    served.stop()


def inverter_on(device: PyModbusTcpSunSpecDevice, **config) -> SunSpecInverter:
    return SunSpecInverter(SunSpecInverterConfig(port=device.port, **{**FAST, **config}))


async def read_and_apply(inverter: SunSpecInverter):
    await inverter.connect()
    try:
        snapshot = await inverter.read()
        confirmation = await inverter.apply(InverterSetpoint(-1.234))
    finally:
        await inverter.close()
    return snapshot, confirmation


def expect_standard_values(snapshot, confirmation) -> None:
    assert snapshot.ac_power_kw == 2.5 and snapshot.soc_pct == 50.5
    assert (snapshot.pv_power_kw, snapshot.battery_power_kw) == (3.0, -0.5)
    assert confirmation.read_back == InverterSetpoint(-1.234, enabled=True)


@pytest.mark.parametrize(
    "device",
    [(0, INVERTER_MODELS, {}), (40000, INVERTER_MODELS, {}), (50000, INVERTER_MODELS, {})],
    indirect=True,
    ids=["base-0", "base-40000", "base-50000"],
)
async def test_the_inverter_works_on_another_stack_at_every_base(device):
    snapshot, confirmation = await read_and_apply(inverter_on(device))
    expect_standard_values(snapshot, confirmation)
    assert 23 in device.functions  # write and read-back in one request


@pytest.mark.parametrize(
    "device", [(40000, INVERTER_MODELS, {"busy_answers": 3})], indirect=True, ids=["busy"]
)
async def test_a_busy_device_is_asked_again_before_the_scan_gives_up(device):
    snapshot, confirmation = await read_and_apply(inverter_on(device))
    expect_standard_values(snapshot, confirmation)
    assert device.reads[:4] == [(40000, 2)] * 4  # three busy answers, then the marker


@pytest.mark.parametrize(
    "device", [(40000, INVERTER_MODELS, {"busy_answers": 10_000})], indirect=True
)
async def test_a_device_that_stays_busy_is_unavailable_not_a_sunspec_mismatch(device):
    inverter = inverter_on(device)
    with pytest.raises(DeviceUnavailable, match="exception 6") as caught:
        await inverter.connect()
    await inverter.close()
    assert not isinstance(caught.value, ProtocolMismatch)


@pytest.mark.parametrize("device", [(40000, INVERTER_MODELS, {"silent": True})], indirect=True)
async def test_a_silent_device_is_no_answer_not_no_sunspec(device):
    inverter = inverter_on(device)
    with pytest.raises(DeviceUnavailable, match="no answer to the SunS marker read"):
        await inverter.connect()
    await inverter.close()


@pytest.mark.parametrize("device", [(40000, [COMMON], {})], indirect=True)
async def test_a_device_without_sunspec_is_named_with_what_each_base_answered(device):
    device._server.data_bank.set_holding_registers(40000, [0x4E6F, 0x5065])  # "NoPe"
    inverter = inverter_on(device)
    with pytest.raises(ProtocolMismatch) as caught:
        await inverter.connect()
    await inverter.close()
    message = str(caught.value)
    assert "40000: registers 0x4E6F 0x5065" in message
    assert "0: exception 2" in message and "50000: exception 2" in message


@pytest.mark.parametrize(
    "device",
    [
        (40000, INVERTER_MODELS, {"answer_unit_id": 255}),
        (40000, INVERTER_MODELS, {"answer_unit_id": 0}),
    ],
    indirect=True,
    ids=["answers-255", "answers-0"],
)
async def test_answers_with_another_unit_id_are_matched_by_transaction_id(device):
    inverter = inverter_on(device)
    snapshot, confirmation = await read_and_apply(inverter)
    expect_standard_values(snapshot, confirmation)
    assert inverter.session.answered_unit_ids == {device.answer_unit_id}


@pytest.mark.parametrize("device", [(40000, METER_201, {})], indirect=True)
@pytest.mark.parametrize("unit_id", [255, 0])
async def test_unit_id_255_and_0_address_a_device_directly(device, unit_id):
    meter = SunSpecMeter(SunSpecMeterConfig(port=device.port, device_id=unit_id, **FAST))
    await meter.connect()
    snapshot = await meter.read()
    await meter.close()
    assert snapshot.power_kw == -1.15 and snapshot.voltage_v == 230.0
    assert device.request_unit_ids == {unit_id}


@pytest.mark.parametrize(
    "device",
    [
        (40000, INVERTER_MODELS, {"function_23": "ignore"}),
        (40000, INVERTER_MODELS, {"function_23": "refuse"}),
    ],
    indirect=True,
    ids=["ignores-23", "refuses-23"],
)
async def test_function_23_is_probed_once_and_remembered(device):
    inverter = inverter_on(device)
    await inverter.connect()
    await inverter.link.close()  # a reconnect: the models are scanned again, 23 is not probed
    await inverter.link.connect()
    confirmation = await inverter.apply(InverterSetpoint(-1.234))
    await inverter.close()
    assert device.functions.count(23) == 1
    assert confirmation.read_back == InverterSetpoint(-1.234, enabled=True)
    assert device.functions[-2:] == [16, 3]  # write, then read back


@pytest.mark.parametrize(
    "device", [(40000, INVERTER_MODELS, {"reads_across_models": False})], indirect=True
)
async def test_step_reads_are_split_at_model_boundaries_when_the_device_asks(device):
    inverter = inverter_on(device)
    snapshot, confirmation = await read_and_apply(inverter)
    expect_standard_values(snapshot, confirmation)
    starts = sorted(device.model_starts.values())
    for address, count in inverter._read_plan:  # no read crosses a model header now
        assert not any(address < start < address + count for start in starts)


PV_INVERTER_MODELS = [
    (1, {"Mn": "Acme", "Md": "PV", "SN": "43", "DA": 1}),
    INVERTER_MODELS[1],  # 701: 2.5 kW AC, 230.1 V, 49.98 Hz, 12.345 kWh injected, 0.1 absorbed
    (702, {"WMaxRtg": 400, "W_SF": 1}),
    (714, {"NPrt": 1, "DCW_SF": 0, "DCV_SF": -1, "DCA_SF": -2, "DCWH_SF": 0, "Tmp_SF": -1,
           "Prt": [{"PrtTyp": 0, "DCW": 2600, "DCV": 3600}]}),
]  # fmt: skip


@pytest.mark.parametrize(
    "device",
    [(40000, PV_INVERTER_MODELS, {}), (0, PV_INVERTER_MODELS, {"answer_unit_id": 255})],
    indirect=True,
    ids=["base-40000", "base-0-unit-255"],
)
async def test_the_pv_inverter_reads_its_production_on_another_stack(device):
    pv = SunSpecPvInverter(SunSpecPvInverterConfig(port=device.port, **FAST))
    await pv.connect()
    try:
        snapshot = await pv.read()
        refused = None
        try:
            await pv.apply(InverterSetpoint(1.0))
        except SetpointRefused as error:
            refused = error
    finally:
        await pv.close()
    assert (snapshot.ac_power_kw, snapshot.pv_power_kw, snapshot.rated_power_kw) == (2.5, 2.6, 4.0)
    assert (snapshot.voltage_v, snapshot.frequency_hz) == (230.1, 49.98)
    assert (snapshot.ac_injected_kwh, snapshot.ac_absorbed_kwh) == (12.345, 0.1)
    assert refused is not None  # read only: nothing was written
    assert not device.writes
