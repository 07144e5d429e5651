"""The emulated inverter and PCC meters over Modbus TCP, read by stock clients.

Register addresses come from pysunspec2's own scan (model address + point offset), never from the
plant's image code, so these tests check the layout independently.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pymodbus.client import ModbusTcpClient
from sunspec2.modbus.client import SunSpecModbusClientDeviceTCP

from labspec.endpoints import ModbusEndpoint, PlantEndpoints
from labspec.plant_control import SyncPlantControl

ILLEGAL_ADDRESS = 2
ILLEGAL_VALUE = 3
I32 = ModbusTcpClient.DATATYPE.INT32


def scan(endpoint: ModbusEndpoint) -> SunSpecModbusClientDeviceTCP:
    device = SunSpecModbusClientDeviceTCP(
        slave_id=endpoint.unit, ipaddr=endpoint.host, ipport=endpoint.port, timeout=5
    )
    device.scan()
    return device


def address(device: SunSpecModbusClientDeviceTCP, model: str, point: str) -> int:
    m = device.models[model][0]
    return m.model_addr + m.points[point].offset


@pytest.fixture
def control(fresh_plant: PlantEndpoints) -> Iterator[SyncPlantControl]:
    with SyncPlantControl.from_endpoints(fresh_plant) as client:
        yield client


@pytest.fixture
def modbus(fresh_plant: PlantEndpoints) -> Iterator[ModbusTcpClient]:
    ep = fresh_plant.inverter
    client = ModbusTcpClient(ep.host, port=ep.port, timeout=5)
    assert client.connect()
    yield client
    client.close()


def test_stock_sunspec_scan_decodes_every_inverter_model(fresh_plant, control):
    control.advance(12 * 3600)  # local noon: the PV array produces
    truth = control.state()["inverter"]
    device = scan(fresh_plant.inverter)
    try:
        assert [m.model_id for m in device.model_list] == [1, 701, 702, 704, 713, 714]
        assert all(not m.error_info for m in device.model_list)
        assert device.common[0].Mn.value == "P2P-Testbed"
        ac = device.DERMeasureAC[0]
        assert ac.W.cvalue == pytest.approx(truth["ac_power_kw"] * 1000, abs=1)
        assert ac.LNV.cvalue == pytest.approx(truth["voltage_v"], abs=0.1)
        assert ac.Hz.cvalue == pytest.approx(truth["frequency_hz"], abs=0.01)
        assert ac.TotWhInj.cvalue == pytest.approx(truth["ac_injected_kwh"] * 1000, abs=1)
        capacity = device.DERCapacity[0]
        assert capacity.WMaxRtg.cvalue == pytest.approx(truth["rated_power_kw"] * 1000)
        storage = device.DERStorageCapacity[0]
        assert storage.SoC.cvalue == pytest.approx(truth["soc_pct"], abs=0.05)
        assert storage.WHRtg.cvalue == pytest.approx(truth["battery_capacity_kwh"] * 1000)
        dc = device.DERMeasureDC[0]
        assert dc.NPrt.value == 2
        pv, battery = dc.Prt
        assert (pv.PrtTyp.value, battery.PrtTyp.value) == (0, 1)  # PV, ESS
        assert truth["pv_power_kw"] > 0.5
        assert pv.DCW.cvalue == pytest.approx(truth["pv_power_kw"] * 1000, abs=1)
        assert battery.DCW.cvalue == pytest.approx(truth["battery_power_kw"] * 1000, abs=1)
        assert device.DERCtlAC[0].WSetEna.value == 0
    finally:
        device.disconnect()


def test_each_pcc_meter_is_a_sunspec_211_meter_with_import_positive_watts(fresh_plant, control):
    control.advance(19 * 3600)  # evening: every house imports
    meters_truth = control.state()["meters"]
    for peer in ("A", "B", "C"):
        endpoint = fresh_plant.meter(peer)
        assert endpoint.unit == 1
        truth = meters_truth[peer]
        device = scan(endpoint)
        try:
            assert [m.model_id for m in device.model_list] == [1, 211]
            meter = device.models[211][0]
            assert truth["power_kw"] < 0  # generator convention: importing
            assert meter.W.value == pytest.approx(-truth["power_kw"] * 1000, rel=1e-6)
            assert meter.PhV.value == pytest.approx(truth["voltage_v"], rel=1e-6)
            assert meter.TotWhImp.value == pytest.approx(truth["import_kwh"] * 1000, rel=1e-6)
            assert meter.TotWhExp.value == pytest.approx(truth["export_kwh"] * 1000, rel=1e-6)
        finally:
            device.disconnect()
    ports = {fresh_plant.meter(p).port for p in "ABC"} | {fresh_plant.inverter.port}
    assert len(ports) == 4


def test_wset_written_reads_back_and_drives_the_battery_after_advance(fresh_plant, control, modbus):
    device = scan(fresh_plant.inverter)
    device.disconnect()
    wset = address(device, "DERCtlAC", "WSet")
    wset_ena = address(device, "DERCtlAC", "WSetEna")
    before = control.state()["inverter"]

    # night: no PV, so charging 2 kW from the grid is the battery's work alone
    assert not modbus.write_registers(wset, modbus.convert_to_registers(-2000, I32)).isError()
    assert not modbus.write_register(wset_ena, 1).isError()
    read = modbus.read_holding_registers(wset, count=2)
    assert modbus.convert_from_registers(read.registers, I32) == -2000

    control.advance(60)
    after = control.state()["inverter"]
    assert after["ac_power_kw"] == pytest.approx(-2.0, abs=0.01)
    assert after["soc_pct"] > before["soc_pct"]
    w = modbus.read_holding_registers(address(device, "DERMeasureAC", "W"), count=1)
    assert modbus.convert_from_registers(w.registers, ModbusTcpClient.DATATYPE.INT16) == -2000


def test_wset_revert_timeout_switches_the_setpoint_off(fresh_plant, control, modbus):
    device = scan(fresh_plant.inverter)
    device.disconnect()
    ctl = device.models[704][0]
    rvrt = ctl.model_addr + ctl.points["WSetRvrtTms"].offset
    ena = ctl.model_addr + ctl.points["WSetEna"].offset
    wset = ctl.model_addr + ctl.points["WSet"].offset
    u32 = ModbusTcpClient.DATATYPE.UINT32
    assert not modbus.write_registers(rvrt, modbus.convert_to_registers(10, u32)).isError()
    assert not modbus.write_registers(wset, modbus.convert_to_registers(-1000, I32)).isError()
    assert not modbus.write_register(ena, 1).isError()
    control.advance(5)
    assert modbus.read_holding_registers(ena, count=1).registers == [1]
    control.advance(10)
    assert modbus.read_holding_registers(ena, count=1).registers == [0]
    assert control.state()["inverter"]["ac_power_kw"] == pytest.approx(0.0, abs=1e-6)


def test_out_of_limit_write_gets_illegal_value_and_the_plant_keeps_running(
    fresh_plant, control, modbus
):
    device = scan(fresh_plant.inverter)
    device.disconnect()
    wset = address(device, "DERCtlAC", "WSet")
    assert not modbus.write_registers(wset, modbus.convert_to_registers(1500, I32)).isError()

    too_much = modbus.write_registers(wset, modbus.convert_to_registers(9000, I32))  # > 5 kW
    assert too_much.isError() and too_much.exception_code == ILLEGAL_VALUE
    bad_mode = modbus.write_register(address(device, "DERCtlAC", "WSetMod"), 0)  # W_MAX_PCT
    assert bad_mode.isError() and bad_mode.exception_code == ILLEGAL_VALUE
    bad_enum = modbus.write_register(address(device, "DERCtlAC", "WSetEna"), 7)
    assert bad_enum.isError() and bad_enum.exception_code == ILLEGAL_VALUE
    read_only = modbus.write_register(address(device, "DERMeasureAC", "W"), 1)
    assert read_only.isError() and read_only.exception_code == ILLEGAL_ADDRESS
    half_point = modbus.write_register(wset + 1, 0)  # the low word of WSet alone
    assert half_point.isError() and half_point.exception_code == ILLEGAL_ADDRESS

    # the setpoint kept its accepted value, and the plant still steps and answers
    read = modbus.read_holding_registers(wset, count=2)
    assert modbus.convert_from_registers(read.registers, I32) == 1500
    assert control.state()["inverter"]["wset_kw"] == pytest.approx(1.5)
    assert control.advance(1.0).elapsed_s == pytest.approx(1.0)


def test_reading_past_the_end_model_is_an_illegal_address(fresh_plant, modbus):
    device = scan(fresh_plant.inverter)
    device.disconnect()
    last = device.model_list[-1]
    end_model = last.model_addr + last.model_len + 2
    assert modbus.read_holding_registers(end_model, count=2).registers == [0xFFFF, 0]
    past = modbus.read_holding_registers(end_model + 2, count=1)
    assert past.isError() and past.exception_code == ILLEGAL_ADDRESS


def test_holding_reads_served_from_the_image_match_pymodbus_own_datastore(
    fresh_plant, control, modbus
):
    """Function 3 is answered from the image's bytes, function 4 by pymodbus's datastore (the
    same registers): both agree before and after a write and an advance, and both refuse the
    same addresses."""
    device = scan(fresh_plant.inverter)
    device.disconnect()
    base = fresh_plant.inverter.base_address
    size = device.model_list[-1].model_addr + device.model_list[-1].model_len + 4 - base

    def both(address: int, count: int) -> tuple[list[int], list[int]]:
        holding = modbus.read_holding_registers(address, count=count)
        inputs = modbus.read_input_registers(address, count=count)
        assert not holding.isError() and not inputs.isError()
        return holding.registers, inputs.registers

    def whole_image() -> list[int]:
        served: list[int] = []
        for start in range(base, base + size, 125):
            holding, inputs = both(start, min(125, base + size - start))
            assert holding == inputs
            served += holding
        return served

    control.advance(11 * 3600)  # late morning: PV, battery and meters all move
    before = whole_image()
    assert before[:2] == [0x5375, 0x6E53]  # "SunS"
    wset = address(device, "DERCtlAC", "WSet")
    assert not modbus.write_registers(wset, modbus.convert_to_registers(1200, I32)).isError()
    holding, inputs = both(wset, 2)
    assert holding == inputs == modbus.convert_to_registers(1200, I32)
    control.advance(1.0)
    after = whole_image()
    assert after != before  # the refresh reached both paths

    for start, count in ((base - 1, 2), (base + size - 1, 2)):  # straddling either end
        holding = modbus.read_holding_registers(start, count=count)
        inputs = modbus.read_input_registers(start, count=count)
        assert holding.isError() and holding.exception_code == ILLEGAL_ADDRESS
        assert inputs.isError() and inputs.exception_code == ILLEGAL_ADDRESS
