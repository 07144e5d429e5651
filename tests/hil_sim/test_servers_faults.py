"""Fault injection through the control endpoint, seen by stock protocol clients."""

from __future__ import annotations

import math
import socket
import time
from collections.abc import Iterator

import pytest
import pyvisa
from asyncua import Client, ua
from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ModbusException
from sunspec2.modbus.client import SunSpecModbusClientDeviceTCP

from labspec.endpoints import ModbusEndpoint, PlantEndpoints
from labspec.ev_charger import NAMESPACE_URI, Var, node_id
from labspec.plant_control import ControlError, PlantControl, SyncPlantControl

F32 = ModbusTcpClient.DATATYPE.FLOAT32


@pytest.fixture
def control(fresh_plant: PlantEndpoints) -> Iterator[SyncPlantControl]:
    with SyncPlantControl.from_endpoints(fresh_plant) as client:
        yield client


def point_address(endpoint: ModbusEndpoint, model_id: int, point: str) -> int:
    device = SunSpecModbusClientDeviceTCP(
        slave_id=endpoint.unit, ipaddr=endpoint.host, ipport=endpoint.port, timeout=5
    )
    device.scan()
    device.disconnect()
    model = device.models[model_id][0]
    return model.model_addr + model.points[point].offset


def modbus_client(endpoint: ModbusEndpoint, timeout_s: float = 5.0) -> ModbusTcpClient:
    return ModbusTcpClient(endpoint.host, port=endpoint.port, timeout=timeout_s, retries=0)


def refused(endpoint) -> bool:
    """A plain TCP connect to the endpoint is refused."""
    try:
        socket.create_connection((endpoint.host, endpoint.port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def read_meter_w(client: ModbusTcpClient, address: int) -> float:
    reply = client.read_holding_registers(address, count=2)
    assert not reply.isError(), reply
    return client.convert_from_registers(reply.registers, F32)


def test_refuse_keeps_open_connections_and_refuses_new_ones(fresh_plant, control):
    meter = fresh_plant.meter_A
    w = point_address(meter, 211, "W")
    connected = modbus_client(meter)
    assert connected.connect()
    read_meter_w(connected, w)  # served: the plant has accepted this connection
    control.set_fault("meter_A", kind="refuse")
    assert refused(meter)
    assert not modbus_client(meter).connect()
    read_meter_w(connected, w)  # the connection made before the fault still works
    control.clear_faults("meter_A")
    fresh = modbus_client(meter)
    assert fresh.connect()
    read_meter_w(fresh, w)
    fresh.close()
    connected.close()


async def test_refuse_on_the_opc_ua_charger(fresh_plant):
    async with await PlantControl.from_endpoints(fresh_plant) as control:
        await control.set_fault("ev_charger", kind="refuse")
        with pytest.raises((OSError, TimeoutError)):
            async with Client(fresh_plant.ev_charger.url, timeout=2):
                pass
        await control.clear_faults("ev_charger")
        async with Client(fresh_plant.ev_charger.url, timeout=10) as client:
            idx = await client.get_namespace_index(NAMESPACE_URI)
            soc = await client.get_node(ua.NodeId(node_id(Var.SOC_PCT), idx)).read_value()
            assert soc == (await control.state())["ev"]["soc_pct"]


def test_drop_closes_the_scpi_session_and_refuses_reconnection(fresh_plant, control):
    visa = pyvisa.ResourceManager("@py")
    resource = fresh_plant.load.resource
    options = {"read_termination": "\n", "write_termination": "\n", "timeout": 2000}
    try:
        load = visa.open_resource(resource, **options)
        assert load.query("*OPC?") == "1"
        control.set_fault("load", kind="drop")
        with pytest.raises((pyvisa.VisaIOError, OSError)):
            load.query("*IDN?")
        load.close()
        assert refused(fresh_plant.load)
        control.clear_faults("load")
        again = visa.open_resource(resource, **options)
        assert again.query("*OPC?") == "1"
        again.close()
    finally:
        visa.close()


def test_drop_closes_open_modbus_connections(fresh_plant, control):
    inverter = fresh_plant.inverter
    client = modbus_client(inverter, timeout_s=2)
    assert client.connect()
    assert not client.read_holding_registers(inverter.base_address, count=2).isError()
    control.set_fault("inverter", kind="drop")
    with pytest.raises((ModbusException, ConnectionError)):
        reply = client.read_holding_registers(inverter.base_address, count=2)
        if reply.isError():  # some pymodbus versions answer with an error object
            raise ModbusException(str(reply))
    client.close()
    control.clear_faults()
    assert control.faults() == []
    fresh = modbus_client(inverter)
    assert fresh.connect()
    marker = fresh.read_holding_registers(inverter.base_address, count=2).registers
    assert marker == [0x5375, 0x6E53]  # "SunS"
    fresh.close()


def test_delay_holds_every_answer_back(fresh_plant, control):
    inverter = fresh_plant.inverter
    control.set_fault("inverter", kind="delay", delay_ms=300)
    client = modbus_client(inverter)
    assert client.connect()
    started = time.monotonic()
    marker = client.read_holding_registers(inverter.base_address, count=2).registers
    assert time.monotonic() - started >= 0.3  # held back, then answered correctly
    assert marker == [0x5375, 0x6E53]
    client.close()

    control.set_fault("inverter", kind="delay", delay_ms=3000)
    impatient = modbus_client(inverter, timeout_s=0.5)
    assert impatient.connect()
    with pytest.raises(ModbusException):
        reply = impatient.read_holding_registers(inverter.base_address, count=2)
        if reply.isError():
            raise ModbusException(str(reply))
    impatient.close()
    control.clear_faults("inverter", kind="delay")
    assert control.faults() == []


def test_delay_makes_a_scpi_query_time_out(fresh_plant, control):
    visa = pyvisa.ResourceManager("@py")
    options = {"read_termination": "\n", "write_termination": "\n", "timeout": 300}
    try:
        control.set_fault("load", kind="delay", delay_ms=2000)
        load = visa.open_resource(fresh_plant.load.resource, **options)
        with pytest.raises(pyvisa.VisaIOError):
            load.query("*IDN?")
        load.close()
    finally:
        visa.close()


def test_freeze_keeps_the_values_of_the_moment_it_was_set(fresh_plant, control):
    control.advance(19 * 3600)  # evening: houses import
    meter = fresh_plant.meter_B
    imported = point_address(meter, 211, "TotWhImp")
    client = modbus_client(meter)
    assert client.connect()
    frozen_wh = read_meter_w(client, imported)
    control.set_fault("meter_B", kind="freeze")
    control.advance(600)
    truth_wh = control.state()["meters"]["B"]["import_kwh"] * 1000
    assert truth_wh > frozen_wh + 10
    assert read_meter_w(client, imported) == frozen_wh
    control.clear_faults("meter_B")
    assert read_meter_w(client, imported) == pytest.approx(truth_wh, rel=1e-6)
    client.close()


async def test_freeze_on_the_charger_and_the_load(fresh_plant):
    visa = pyvisa.ResourceManager("@py")
    load = visa.open_resource(
        fresh_plant.load.resource, read_termination="\n", write_termination="\n", timeout=5000
    )
    async with (
        await PlantControl.from_endpoints(fresh_plant) as control,
        Client(fresh_plant.ev_charger.url, timeout=10) as client,
    ):
        idx = await client.get_namespace_index(NAMESPACE_URI)
        setpoint = client.get_node(ua.NodeId(node_id(Var.POWER_SETPOINT_KW), idx))
        soc = client.get_node(ua.NodeId(node_id(Var.SOC_PCT), idx))
        await setpoint.write_value(-2.0)
        load.write("FUNC POW;POW 1000;INP ON")
        await control.advance(10)
        await control.set_fault("ev_charger", kind="freeze")
        await control.set_fault("load", kind="freeze")
        frozen_soc = await soc.read_value()
        frozen_energy = load.query("MEAS:ENER?")
        await control.advance(300)
        assert await soc.read_value() == frozen_soc
        assert load.query("MEAS:ENER?") == frozen_energy
        # writes still work while measurements are frozen
        await setpoint.write_value(-1.0)
        assert await setpoint.read_value() == -1.0
        load.write("POW 500")
        assert float(load.query("POW?")) == 500.0

        await control.clear_faults()
        state = await control.state()
        assert await soc.read_value() == state["ev"]["soc_pct"] > frozen_soc
        assert float(load.query("MEAS:ENER?")) == pytest.approx(state["load_c"]["energy_wh"])
    load.close()
    visa.close()


def test_exception_answers_every_modbus_request(fresh_plant, control):
    meter = fresh_plant.meter_C
    control.set_fault("meter_C", kind="exception", code=6)  # server device busy
    control.set_fault("inverter", kind="exception")  # default: server device failure
    client = modbus_client(meter)
    inverter = modbus_client(fresh_plant.inverter)
    assert client.connect() and inverter.connect()
    busy = client.read_holding_registers(meter.base_address, count=2)
    assert busy.isError() and busy.exception_code == 6
    failure = inverter.read_holding_registers(fresh_plant.inverter.base_address, count=2)
    assert failure.isError() and failure.exception_code == 4
    control.clear_faults()
    assert client.read_holding_registers(meter.base_address, count=2).registers == [
        0x5375,
        0x6E53,
    ]
    client.close()
    inverter.close()


async def test_out_of_range_values_on_every_device_kind(fresh_plant):
    inverter = fresh_plant.inverter
    soc_address = point_address(inverter, 713, "SoC")
    voltage_address = point_address(inverter, 701, "LNV")
    meter_w = point_address(fresh_plant.meter_A, 211, "W")
    meter_v = point_address(fresh_plant.meter_A, 211, "PhV")
    modbus = modbus_client(inverter)
    meter = modbus_client(fresh_plant.meter_A)
    assert modbus.connect() and meter.connect()
    visa = pyvisa.ResourceManager("@py")
    load = visa.open_resource(
        fresh_plant.load.resource, read_termination="\n", write_termination="\n", timeout=5000
    )
    async with (
        await PlantControl.from_endpoints(fresh_plant) as control,
        Client(fresh_plant.ev_charger.url, timeout=10) as client,
    ):
        idx = await client.get_namespace_index(NAMESPACE_URI)
        ev_soc = client.get_node(ua.NodeId(node_id(Var.SOC_PCT), idx))
        for device in ("inverter", "meter_A", "ev_charger", "load"):
            await control.set_fault(device, kind="out_of_range")

        assert modbus.read_holding_registers(soc_address, count=1).registers == [2500]  # 250.0 %
        assert modbus.read_holding_registers(voltage_address, count=1).registers == [0]
        assert read_meter_w(meter, meter_v) == 0.0
        assert read_meter_w(meter, meter_w) >= 1e6
        assert await ev_soc.read_value() == 250.0
        assert float(load.query("MEAS:VOLT?")) == 0.0
        assert float(load.query("MEAS:POW?")) > 3000.0

        await control.clear_faults()
        state = await control.state()
        soc = modbus.read_holding_registers(soc_address, count=1).registers[0] / 10
        assert soc == pytest.approx(state["inverter"]["soc_pct"], abs=0.05)
        assert await ev_soc.read_value() == state["ev"]["soc_pct"]
        assert float(load.query("MEAS:VOLT?")) == pytest.approx(state["load_c"]["voltage_v"])
    load.close()
    visa.close()
    modbus.close()
    meter.close()


def test_garbage_fills_a_meters_float_registers(fresh_plant, control):
    """NaN or inf in every measurement and register, or an import register a million kWh ahead
    (a glitch within any range check), as a stock Modbus client reads them."""
    meter = fresh_plant.meter_A
    addresses = {p: point_address(meter, 211, p) for p in ("W", "PhV", "TotWhImp", "TotWhExp")}
    client = modbus_client(meter)
    assert client.connect()
    control.advance(60.0)
    before = {p: read_meter_w(client, a) for p, a in addresses.items()}
    control.set_fault("meter_A", kind="garbage", value="nan")
    assert all(math.isnan(read_meter_w(client, a)) for a in addresses.values())
    control.set_fault("meter_A", kind="garbage", value="inf")
    assert all(read_meter_w(client, a) == math.inf for a in addresses.values())
    control.set_fault("meter_A", kind="garbage", value="huge")
    huge = {p: read_meter_w(client, a) for p, a in addresses.items()}
    assert huge["TotWhImp"] == pytest.approx(before["TotWhImp"] + 1e9, abs=100)
    assert huge["TotWhExp"] == pytest.approx(before["TotWhExp"])
    assert huge["W"] == pytest.approx(before["W"]) and huge["PhV"] == pytest.approx(before["PhV"])
    assert control.faults() == [{"device": "meter_A", "kind": "garbage", "value": "huge"}]
    control.clear_faults("meter_A")
    assert read_meter_w(client, addresses["TotWhImp"]) == pytest.approx(before["TotWhImp"])
    client.close()


@pytest.mark.parametrize(
    ("request_fields", "error"),
    [
        ({"device": "toaster", "kind": "drop"}, "unknown device 'toaster'"),
        ({"device": "load", "kind": "melt"}, "unknown fault kind 'melt'"),
        ({"device": "load", "kind": "exception"}, "applies to Modbus devices"),
        ({"device": "meter_A", "kind": "exception", "code": 99}, "needs code in"),
        ({"device": "meter_A", "kind": "delay"}, "needs delay_ms"),
        ({"device": "meter_A", "kind": "delay", "delay_ms": -5}, "needs delay_ms"),
        ({"device": "meter_A", "kind": "refuse", "delay_ms": 5}, "takes no parameter"),
        ({"device": "inverter", "kind": "garbage"}, "applies to PCC meters"),
        ({"device": "meter_A", "kind": "garbage", "value": "zero"}, "needs value in"),
    ],
)
def test_bad_fault_requests_are_refused_with_a_reason(control, request_fields, error):
    with pytest.raises(ControlError, match=error):
        control.request("fault", **request_fields)
    assert control.faults() == []
    assert control.advance(1.0).elapsed_s == pytest.approx(1.0)


def test_active_faults_are_listed_and_cleared_one_kind_at_a_time(control):
    control.set_fault("meter_A", kind="delay", delay_ms=10)
    control.set_fault("meter_A", kind="freeze")
    control.set_fault("load", kind="out_of_range")
    assert control.faults() == [
        {"device": "meter_A", "kind": "delay", "delay_ms": 10.0},
        {"device": "meter_A", "kind": "freeze"},
        {"device": "load", "kind": "out_of_range"},
    ]
    control.clear_faults("meter_A", kind="freeze")
    assert [f["kind"] for f in control.faults()] == ["delay", "out_of_range"]
    control.clear_faults()
    assert control.faults() == []
