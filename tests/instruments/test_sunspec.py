"""SunSpec layout from pysunspec2's definitions, decoding, and the Modbus drivers against a small
device whose register image pysunspec2 builds (any base address, integer and float meters)."""

from __future__ import annotations

import pytest
import sunspec2.device as sunspec_device

from instruments.config import SunSpecInverterConfig, SunSpecMeterConfig
from instruments.errors import DeviceError, ProtocolMismatch, ReadbackMismatch, SetpointRefused
from instruments.inverter import InverterSetpoint, SunSpecInverter
from instruments.meter import SunSpecMeter
from instruments.sunspec_codec import PointReader, RegisterImage, decode_raw, encode_raw
from instruments.sunspec_models import layout_model, plan_reads
from tests.instruments.sunspec_device import SunSpecTestDevice

COMMON = (1, {"Mn": "Acme", "Md": "Hybrid", "SN": "42", "DA": 1})
INVERTER_MODELS = [
    COMMON,
    (701, {"ACType": 0, "W": 250, "W_SF": 1, "Hz": 4998, "Hz_SF": -2, "LNV": 2301, "V_SF": -1,
           "A": 1087, "A_SF": -2, "TotWhInj": 12345, "TotWhAbs": 100, "TotWh_SF": 0}),
    (702, {"WMaxRtg": 500, "WChaRteMaxRtg": 300, "WDisChaRteMaxRtg": 300, "W_SF": 1}),
    (704, {"WSetEna": 0, "WSetMod": 1, "WSet": 0, "WSetRvrtTms": 0, "WSet_SF": 0, "PF_SF": -3,
           "WMaxLimPct_SF": 0, "WSetPct_SF": -1, "VarSet_SF": 0, "VarSetPct_SF": -1}),
    (713, {"WHRtg": 7500, "SoC": 505, "WH_SF": 0, "Pct_SF": -1}),
    # ESS port first: the driver must go by PrtTyp, not by position
    (714, {"NPrt": 2, "DCW_SF": 0, "DCV_SF": -1, "DCA_SF": -2, "DCWH_SF": 0, "Tmp_SF": -1,
           "Prt": [{"PrtTyp": 1, "DCW": -500, "DCV": 512},
                   {"PrtTyp": 0, "DCW": 3000, "DCV": 3600}]}),
]  # fmt: skip
METER_201 = [
    COMMON,
    (201, {"A": 500, "AphA": 500, "A_SF": -2, "PhV": 2300, "PhVphA": 2300, "V_SF": -1,
           "Hz": 5000, "Hz_SF": -2, "W": 1150, "WphA": 1150, "W_SF": 0,
           "TotWhExp": 10, "TotWhImp": 2000, "TotWh_SF": 0, "Evt": 0}),
]  # fmt: skip


@pytest.mark.parametrize("model_id", [1, 201, 211, 701, 702, 704, 713])
def test_point_offsets_are_those_of_pysunspec2(model_id):
    layout = layout_model(model_id)
    reference = sunspec_device.Model(model_id=model_id)
    assert layout.length + 2 == reference.len  # L counts the registers after ID and L
    assert {n: p.offset for n, p in reference.points.items()} == {
        n: layout.points[n].offset for n in reference.points
    }


def test_repeating_dc_ports_are_laid_out_from_the_model_length():
    reference = sunspec_device.Model(
        model_id=714, data={"NPrt": 3, "Prt": [{"PrtTyp": 0}, {"PrtTyp": 1}, {"PrtTyp": 2}]}
    )
    layout = layout_model(714, model_length=len(reference.get_mb()) // 2 - 2)
    ports = layout.repeats["Prt"]
    assert len(ports) == 3
    assert [p["DCW"].offset for p in ports] == [
        g.points["DCW"].offset for g in reference.groups["Prt"]
    ]
    assert ports[2]["DCW"].sf == "DCW_SF" and "DCW_SF" in layout.points


def test_a_model_length_that_fits_no_whole_group_is_an_error():
    with pytest.raises(ValueError, match="does not fit"):
        layout_model(714, model_length=30)


def test_reads_are_merged_up_to_125_registers():
    assert plan_reads([(10, 2), (0, 2), (120, 5), (130, 2), (200, 3)]) == [(0, 125), (130, 73)]
    assert all(count <= 125 for _, count in plan_reads([(i * 7, 2) for i in range(100)]))


def test_unimplemented_patterns_decode_to_none_and_values_round_trip():
    layout = layout_model(701)
    assert decode_raw(layout.point("W"), [0x8000]) is None
    assert decode_raw(layout.point("Hz"), [0xFFFF, 0xFFFF]) is None
    assert decode_raw(layout_model(211).point("W"), [0x7FC0, 0]) is None
    wset = layout_model(704).point("WSet")
    assert decode_raw(wset, encode_raw(wset, -1234)) == -1234


@pytest.mark.parametrize("limit", [125, 7])
async def test_point_readers_decode_what_the_register_image_decodes(limit):
    """Every point of the test inverter's and meters' models (values, "not implemented"
    patterns, floats, strings, scale factors), read as one block or as many short ones."""
    most_blocks = 0
    for models in (INVERTER_MODELS, METER_201, [(211, {"W": 1500.5, "PhV": float("nan")})]):
        device = SunSpecTestDevice(40000, models)
        for model_id, start in device.model_starts.items():
            length = device.registers[start - 40000 + 1]
            layout = layout_model(model_id, model_length=length)
            points = [*layout.points.values()]
            for group in layout.repeats.values():
                points += [point for port in group for point in port.values()]
            plan = plan_reads([(start + p.offset, p.size) for p in points], limit=limit)
            most_blocks = max(most_blocks, len(plan))
            image = RegisterImage()
            for address, count in plan:
                image.store(address, device.registers[address - 40000 : address - 40000 + count])
            for point in points:
                reader = PointReader(plan, start, layout, point)
                where = f"{model_id} {point.name}"
                assert reader.raw(image) == image.raw(start, point), where
                assert reader.scaled(image) == image.scaled(start, layout, point), where
    assert most_blocks > (20 if limit < 10 else 1)


@pytest.fixture
async def inverter_device():
    device = SunSpecTestDevice(50000, INVERTER_MODELS)  # not the usual 40000: the scan must find it
    await device.start()
    yield device
    await device.stop()


@pytest.fixture
async def inverter(inverter_device):
    driver = SunSpecInverter(SunSpecInverterConfig(port=inverter_device.port, soc_min_pct=10))
    await driver.connect()
    yield driver
    await driver.close()


async def test_the_inverter_reads_scaled_values_in_the_generator_convention(inverter):
    snapshot = await inverter.read()
    assert snapshot.ac_power_kw == 2.5  # 250 * 10**1 W
    assert snapshot.pv_power_kw == 3.0 and snapshot.battery_power_kw == -0.5  # by PrtTyp
    assert snapshot.soc_pct == 50.5 and snapshot.voltage_v == 230.1
    assert snapshot.frequency_hz == 49.98 and snapshot.ac_injected_kwh == 12.345
    assert snapshot.rated_power_kw == 5.0 and snapshot.battery_max_charge_kw == 3.0
    assert snapshot.battery_capacity_kwh == 7.5
    assert snapshot.time.tzinfo is not None and snapshot.time.utcoffset().total_seconds() == 0


async def test_one_inverter_read_costs_two_requests(inverter):
    before = inverter.session.requests
    await inverter.read()
    assert inverter.session.requests - before == 2


@pytest.mark.parametrize(("mode", "functions"), [("on", [23, 23]), ("off", [16, 3])])
async def test_a_setpoint_is_written_as_one_block_and_read_back(mode, functions, inverter_device):
    inverter = SunSpecInverter(
        SunSpecInverterConfig(port=inverter_device.port, read_write_multiple=mode)
    )
    await inverter.connect()
    inverter_device.writes.clear()
    inverter_device.functions.clear()
    confirmation = await inverter.apply(InverterSetpoint(-1.234))
    await inverter.close()
    wset = inverter_device.model_starts[704] + layout_model(704).point("WSetEna").offset
    assert inverter_device.writes == [(wset, [1, 1, 0xFFFF, 0x10000 - 1234])]
    # one request: function 23 writes then reads (pymodbus shows it as two steps); else 16 + 3
    assert inverter_device.functions == functions
    assert confirmation.read_back == InverterSetpoint(-1.234, enabled=True)


async def test_the_safe_state_disables_the_target(inverter):
    safe = await inverter.safe_state()
    assert safe.read_back == InverterSetpoint(0.0, enabled=False)
    assert not (await inverter.read()).wset_enabled


async def test_a_setpoint_beyond_the_ratings_is_refused_before_sending(inverter, inverter_device):
    inverter_device.writes.clear()
    with pytest.raises(SetpointRefused, match=r"-3 to 5 kW"):
        await inverter.apply(InverterSetpoint(5.5))
    with pytest.raises(SetpointRefused):
        await inverter.apply(InverterSetpoint(-3.5))  # charging beyond WChaRteMaxRtg
    with pytest.raises(SetpointRefused):
        await inverter.apply(InverterSetpoint(float("nan")))
    assert inverter_device.writes == []


async def test_discharge_below_the_soc_window_is_refused(inverter, inverter_device):
    inverter_device.set_point(713, "SoC", 8.0)
    await inverter.read()
    with pytest.raises(SetpointRefused, match="soc_min_pct"):
        await inverter.apply(InverterSetpoint(4.0))  # more than the 3 kW of PV
    await inverter.apply(InverterSetpoint(2.0))  # PV alone covers it


async def test_a_write_the_device_does_not_take_is_a_readback_mismatch(inverter, inverter_device):
    await inverter.apply(InverterSetpoint(1.0))
    inverter_device.ignore_writes = True
    with pytest.raises(ReadbackMismatch) as caught:
        await inverter.apply(InverterSetpoint(2.0))
    assert (caught.value.quantity, caught.value.written, caught.value.read_back) == (
        "power_kw",
        2.0,
        1.0,
    )


async def test_a_modbus_exception_names_function_and_code(inverter, inverter_device):
    from pymodbus.constants import ExcCodes

    inverter_device.exception = ExcCodes.DEVICE_BUSY
    with pytest.raises(DeviceError) as caught:
        await inverter.read()
    assert caught.value.code == 6 and "DEVICE_BUSY" in str(caught.value)
    assert "function 3" in str(caught.value) and "inverter" in str(caught.value)
    inverter_device.exception = None
    assert (await inverter.read()).soc_pct == 50.5  # the session stayed usable


async def test_an_integer_meter_at_base_zero_reads_in_the_generator_convention():
    device = SunSpecTestDevice(0, METER_201)
    await device.start()
    try:
        meter = SunSpecMeter(SunSpecMeterConfig(port=device.port))
        await meter.connect()
        before = meter.session.requests
        snapshot = await meter.read()
        assert meter.session.requests - before == 1
        await meter.close()
    finally:
        await device.stop()
    assert snapshot.power_kw == -1.15  # the meter counts 1150 W imported
    assert (snapshot.voltage_v, snapshot.current_a, snapshot.frequency_hz) == (230.0, 5.0, 50.0)
    assert (snapshot.import_kwh, snapshot.export_kwh) == (2.0, 0.01)


async def test_a_device_without_the_marker_is_not_taken_for_sunspec():
    device = SunSpecTestDevice(40000, [COMMON])
    device.registers[0:2] = [0x4E6F, 0x5065]  # "NoPe"
    await device.start()
    try:
        meter = SunSpecMeter(SunSpecMeterConfig(port=device.port))
        with pytest.raises(ProtocolMismatch, match="SunS"):
            await meter.connect()
        await meter.close()
    finally:
        await device.stop()
