"""The registry of driver kinds: a driver from outside the built-in set, registered here and named
by the site file alone, runs a peer's PCC meter on the emulated plant and its readings are
settled; a site naming an unknown driver, or one that cannot serve the device, is refused."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from instruments.config import SunSpecMeterConfig
from instruments.device import Clock, Instrument
from instruments.errors import BadReading
from instruments.link import Link
from instruments.meter import SunSpecMeter
from labspec.endpoints import ModbusEndpoint
from testbed.config import ConfigError, load_config, parse_config
from testbed.driver_registry import MeterKind, modbus_fields, register, unregister
from testbed.experiment import run_experiment, with_plant_endpoints, with_site
from testbed.runstore import RunReader
from tests.fixtures.ports import free_port, wait_until
from tests.fixtures.sites import write_site

REPO = Path(__file__).resolve().parents[2]
EMULATED = REPO / "configs" / "emulated.toml"

# "Acme" meter's register map (holding registers, big-endian words): its own, not SunSpec.
FIRST = 100
POWER_W = 0  # int32, + = import (the vendor's sign)
IMPORT_WH = 2  # uint32
EXPORT_WH = 4  # uint32
VOLTAGE_DV = 6  # uint16, 0.1 V
COUNT = 7


class AcmeMeterConfig(BaseModel):
    """The Acme meter driver's settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = "acme_meter"
    host: str = "127.0.0.1"
    port: int = Field(502, ge=1, le=65535)
    device_id: int = Field(1, ge=0, le=255)
    timeout_s: float = Field(1.0, gt=0)
    first_register: int = Field(FIRST, ge=0, le=65535)


@dataclass(frozen=True, slots=True)
class AcmeReading:
    time: datetime
    power_kw: float  # + = export (the controller's convention)
    voltage_v: float
    import_kwh: float
    export_kwh: float

    @property
    def ac_power_kw(self) -> float:
        return self.power_kw

    @property
    def delivered_kwh(self) -> float:
        return self.export_kwh - self.import_kwh

    @property
    def throughput_kwh(self) -> float:
        return self.import_kwh + self.export_kwh


class AcmeMeter(Instrument[AcmeReading]):
    """A meter of another vendor: a plain holding-register map read with pymodbus's client."""

    def __init__(self, config: AcmeMeterConfig, clock: Clock) -> None:
        self.config, self.name, self.clock = config, config.name, clock
        self.client = AsyncModbusTcpClient(
            config.host, port=config.port, timeout=config.timeout_s, retries=0
        )
        self.link = Link(config.name, self._open, self._close, timeout_s=config.timeout_s)

    async def _open(self) -> None:
        self.client.close()
        if not await self.client.connect():
            where = f"{self.config.host}:{self.config.port}"
            raise ConnectionError(f"{self.name}: no answer at {where}")

    async def _close(self) -> None:
        self.client.close()

    async def connect(self) -> None:
        await self.link.connect()
        await self.read()

    async def read(self) -> AcmeReading:
        await self.link.ensure()
        answer = await self.link.run(
            lambda: self.client.read_holding_registers(
                self.config.first_register, count=COUNT, device_id=self.config.device_id
            ),
            "read the register map",
        )
        if answer.isError():
            raise BadReading(self.name, "registers", str(answer), "a register map")
        regs, types = answer.registers, self.client.DATATYPE

        def number(offset: int, kind: AsyncModbusTcpClient.DATATYPE) -> float:
            size = 2 if kind in (types.INT32, types.UINT32) else 1
            value = self.client.convert_from_registers(regs[offset : offset + size], kind)
            assert isinstance(value, int)
            return float(value)

        return AcmeReading(
            time=self.clock(),
            power_kw=-number(POWER_W, types.INT32) / 1000.0,
            voltage_v=number(VOLTAGE_DV, types.UINT16) / 10.0,
            import_kwh=number(IMPORT_WH, types.UINT32) / 1000.0,
            export_kwh=number(EXPORT_WH, types.UINT32) / 1000.0,
        )


ACME = MeterKind[AcmeMeterConfig](
    name="acme_meter",
    kinds=frozenset({"pcc_meter"}),
    config_model=AcmeMeterConfig,
    protocol="modbus",
    build=lambda config, clock: AcmeMeter(config, clock),
    endpoint_fields=modbus_fields,
    description="Acme meter: a plain holding-register map over Modbus TCP",
)


@pytest.fixture
def acme_registered() -> Iterator[None]:
    register(ACME)
    yield
    unregister(ACME.name)


def _words(value: int) -> list[int]:
    value &= 0xFFFFFFFF
    return [value >> 16, value & 0xFFFF]


class AcmeServer:
    """The Acme meter as pymodbus's own server: on every read it measures the plant's PCC of one
    peer (the plant's SunSpec meter stands for the current transformers) and answers in its map."""

    def __init__(self, plant_meter: ModbusEndpoint, port: int) -> None:
        self.port = port
        self.meter = SunSpecMeter(
            SunSpecMeterConfig(
                name="acme-ct", host=plant_meter.host, port=plant_meter.port,
                device_id=plant_meter.unit, base_addresses=(plant_meter.base_address,),
                timeout_s=5.0,
            )
        )  # fmt: skip
        self.served: list[float] = []  # import Wh served
        self.loop = asyncio.new_event_loop()
        self.server: ModbusTcpServer | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        self.loop.run_until_complete(self._run())

    async def _run(self) -> None:
        device = SimDevice(
            id=1,
            simdata=[SimData(FIRST, count=COUNT, values=0, datatype=DataType.REGISTERS)],
            action=self._action,
        )
        self.server = ModbusTcpServer(device, address=("127.0.0.1", self.port))
        await self.server.serve_forever()

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        if values is not None:
            return ExcCodes.ILLEGAL_FUNCTION  # a meter takes no writes
        now = await self.meter.read()
        base = FIRST - start_address
        registers[base + POWER_W : base + POWER_W + 2] = _words(round(-now.power_kw * 1000))
        registers[base + IMPORT_WH : base + IMPORT_WH + 2] = _words(round(now.import_kwh * 1000))
        registers[base + EXPORT_WH : base + EXPORT_WH + 2] = _words(round(now.export_kwh * 1000))
        registers[base + VOLTAGE_DV] = round(now.voltage_v * 10)
        self.served.append(now.import_kwh)
        return None

    def __enter__(self) -> AcmeServer:
        self.thread.start()

        def listening() -> bool:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True

        wait_until(listening, 10.0, "the Acme meter's server")
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(timeout=10)
        self.thread.join(timeout=10)

    async def _stop(self) -> None:
        await self.meter.close()
        if self.server is not None:
            await self.server.shutdown()


def test_another_vendors_meter_is_built_from_the_site_and_its_readings_settled(
    tmp_path, acme_registered
):
    from testbed.plant_process import emulated_plant

    port = free_port()
    changes = {
        "devices": {
            "meter_C": {
                "driver": "acme_meter",
                "driver_settings": {"port": port, "device_id": 1, "timeout_s": 2.0},
            }
        }
    }
    site_file = write_site(tmp_path / "acme.toml", changes)
    config = with_site(load_config(EMULATED), site_file)
    entry = config.peers["C"].devices["meter"]
    assert (entry.driver, entry.name, type(entry.config)) == (
        "acme_meter",
        "meter_C",
        AcmeMeterConfig,
    )
    data = config.model_dump(mode="json", exclude_none=True)
    data["experiment"]["hours"] = 0.25
    data["market"].update({"interval_s": 300.0, "gate_closure_s": 30.0})
    config = parse_config(data)
    with emulated_plant(3, site=config.site_model()) as endpoints:
        config = with_plant_endpoints(config, endpoints)
        acme = config.peers["C"].meter
        assert isinstance(acme, AcmeMeterConfig) and acme.port == port  # the site's setting won
        with AcmeServer(endpoints.meter("C"), port) as server:
            result = asyncio.run(run_experiment(config, tmp_path / "run"))
    assert result.finished.status == "finished"
    run = RunReader(tmp_path / "run")
    samples = run.samples("C", "meter")
    assert set(samples.columns) >= {"power_kw", "voltage_v", "import_kwh", "export_kwh"}
    assert samples["frequency_hz"].isna().all()  # the Acme map has none: not a SunSpec meter
    assert len(samples) > 800 and samples["power_kw"].max() < -0.05  # C draws its load
    assert server.served and samples["import_kwh"].iloc[-1] == pytest.approx(
        server.served[-1], abs=1e-3
    )  # what the controller recorded is what the plant's meter measured, to the watt-hour
    settled = run.settlements("C").sort_values("interval_start")
    assert len(settled) == 3  # every interval of C settled from the Acme registers
    imported = samples["import_kwh"].iloc[-1] - samples["import_kwh"].iloc[0]
    assert imported > 0.05
    assert -settled["metered_kwh"].sum() == pytest.approx(imported, abs=2e-3)
    summary = result.finished.summary  # the balance closes to the map's 1 Wh resolution
    assert abs(summary["energy_balance_error_kwh"]) < 2e-3


@pytest.mark.parametrize(
    ("device", "driver", "expected"),
    [
        (
            "meter_C",
            "nope_meter",
            "devices.meter_C.driver = 'nope_meter': no such driver; drivers: sunspec_meter, "
            "sunspec_inverter, sunspec_pv_inverter, opcua_ev_charger, scpi_load",
        ),
        (
            "inverter",
            "sunspec_meter",
            "devices.inverter.driver = 'sunspec_meter': cannot serve a hybrid_inverter (it serves "
            "pcc_meter); drivers for hybrid_inverter: sunspec_inverter",
        ),
    ],
)
def test_a_site_naming_a_driver_that_cannot_serve_its_device_is_refused(
    tmp_path, device, driver, expected
):
    site_file = write_site(tmp_path / "bad.toml", {"devices": {device: {"driver": driver}}})
    with pytest.raises(ConfigError) as caught:
        with_site(load_config(EMULATED), site_file)
    assert expected in " ".join(str(caught.value).split())
    assert str(site_file) in str(caught.value)


def test_driver_settings_that_the_driver_does_not_take_are_refused(tmp_path):
    changes = {"devices": {"meter_A": {"driver_settings": {"timeout_s": -1}}}}
    site_file = write_site(tmp_path / "bad.toml", changes)
    with pytest.raises(ConfigError) as caught:
        with_site(load_config(EMULATED), site_file)
    message = " ".join(str(caught.value).split())
    key = "devices.meter_A.driver_settings.timeout_s = -1"
    assert f"{key}: Input should be greater than 0" in message
    assert "SunSpecMeterConfig" in message


def test_site_check_names_an_unknown_driver(tmp_path):
    import subprocess
    import sys

    site_file = write_site(tmp_path / "bad.toml", {"devices": {"load": {"driver": "acme_load"}}})
    done = subprocess.run(
        [sys.executable, "-m", "testbed", "site", "check", str(site_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    output = " ".join(done.stdout.split())
    assert done.returncode == 2
    assert "devices.load.driver = 'acme_load': no such driver" in output
    assert "scpi_load" in output  # what is allowed
