"""The emulated plant behind its servers, in one asyncio event loop.

`HilSim` owns one `Plant` built from a site, a protocol server for every device the site declares
(SunSpec inverters and PCC meters on Modbus TCP, each on its own port or several behind one
gateway port by unit id; EV chargers on OPC UA; programmable loads on SCPI), the
simulation-control endpoint and the fault board. Time moves only by `advance` (lockstep, the
default) or, with `realtime`, by one step every `step_s` seconds of wall time. Every advance
refreshes every server's image once.
When the lockstep controller's connection closes (it stopped or was killed), plant time stands
still but the devices' watchdogs (every inverter's WSet revert, every charger's setpoint watchdog)
go on counting on wall time, as a real plant's would, until a controller speaks again.

    async with HilSim() as sim:          # serves on free loopback ports
        endpoints = sim.endpoints         # PlantEndpoints
        await sim.advance(1.0)
        await sim.set_fault("meter_A", "freeze")
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hil_sim.config import ConfigError, PlantConfig
from hil_sim.faults import FaultBoard, FaultError
from hil_sim.plant import InverterState, Plant
from hil_sim.servers.control import CommandError, ControlServer
from hil_sim.servers.modbus import SunSpecModbusServer, SunSpecUnit
from hil_sim.servers.opcua import URL_PATH, EvChargerOpcUaServer, OpcUaSecurity
from hil_sim.servers.scpi import ScpiLoadServer
from hil_sim.servers.settings import (
    ServersConfig,
    charger_security,
    load_config,
)
from hil_sim.servers.sunspec_devices import (
    INVERTER_WRITABLE,
    METER_POINTS,
    InverterRatings,
    inverter_image,
    inverter_points,
    inverter_values,
    inverter_write_handler,
    meter_image,
    meter_values,
)
from labspec.endpoints import (
    ControlEndpoint,
    DeviceEndpoint,
    ModbusEndpoint,
    OpcUaEndpoint,
    PlantEndpoints,
    ScpiEndpoint,
)
from labspec.ev_charger import NAMESPACE_URI
from labspec.site import (
    MODBUS_KINDS,
    BatteryInverter,
    EvCharger,
    HybridInverter,
    PccMeter,
    ProgrammableLoad,
    PvInverter,
    Site,
)

log = logging.getLogger(__name__)

__all__ = ["HilSim", "load_config"]

MAX_ADVANCE_S = 7 * 86400.0
WATCHDOG_TICK_S = 0.5  # how often the watchdogs count wall time while no controller is connected
_CONTROLLER_COMMANDS = ("advance", "reset", "time")  # a controller speaking again


def modbus_listeners(site: Site) -> dict[str, list[str]]:
    """The Modbus TCP listeners the plant serves: name -> the device ids behind it.

    A device with port 0 and no gateway gets a listener of its own (named after the device); the
    devices behind a gateway share its listener (named after the gateway); devices that give the
    same non-zero port without a gateway share one too (named `modbus:<port>`).
    """
    listeners: dict[str, list[str]] = {}
    for device_id, device in site.devices.items():
        if device.kind not in MODBUS_KINDS:
            continue
        _, port, gateway = site.modbus_address(device_id)
        if gateway is not None:
            name = gateway
        elif port:
            name = f"modbus:{port}"
        else:
            name = device_id
        listeners.setdefault(name, []).append(device_id)
    for name, devices in list(listeners.items()):  # a shared port with one device: its own name
        if name.startswith("modbus:") and len(devices) == 1:
            listeners[devices[0]] = listeners.pop(name)
    return listeners


class HilSim:
    """One emulated plant served over Modbus TCP, OPC UA and SCPI, with its control endpoint."""

    def __init__(
        self,
        plant_config: PlantConfig | None = None,
        servers: ServersConfig | None = None,
        *,
        opcua_password: str | None = None,
    ):
        self.plant_config = plant_config or PlantConfig()
        self.plant = Plant(self.plant_config)
        self.site = site = self.plant_config.site
        self.config = servers = servers or ServersConfig()
        self._listeners = modbus_listeners(site)
        gateways = tuple(name for name, ids in self._listeners.items() if name not in ids)
        modbus_ids = tuple(d for d, dev in site.devices.items() if dev.kind in MODBUS_KINDS)
        meter_ids = tuple(d for d, dev in site.devices.items() if dev.kind == "pcc_meter")
        self.faults = FaultBoard((*site.devices, *gateways), (*modbus_ids, *gateways), meter_ids)
        self._lock = asyncio.Lock()
        self._realtime_task: asyncio.Task[None] | None = None
        self._watchdog_task: asyncio.Task[None] | None = None
        self._temp_dir: tempfile.TemporaryDirectory[str] | None = None
        self.endpoints: PlantEndpoints | None = None
        host = servers.host
        plant = self.plant

        # Modbus TCP: one unit per device, one listener per port.
        self.modbus_units: dict[str, SunSpecUnit] = {}
        self.modbus_servers: dict[str, SunSpecModbusServer] = {}  # device id -> its listener
        self._unit_kinds: dict[str, str] = {}
        servers_by_name: dict[str, SunSpecModbusServer] = {}
        for name, device_ids in self._listeners.items():
            units = [self._modbus_unit(device_id) for device_id in device_ids]
            _, port, _ = site.modbus_address(device_ids[0])
            faults = self.faults[name]
            server = SunSpecModbusServer.gateway(name, units, host=host, port=port, faults=faults)
            servers_by_name[name] = server
            for device_id in device_ids:
                self.modbus_servers[device_id] = server
        self._modbus_servers = list(servers_by_name.values())
        inverters = [d for d in plant.inverters]
        self.inverter: SunSpecModbusServer | None = (
            self.modbus_servers[inverters[0]] if inverters else None
        )
        self.meters: dict[str, SunSpecModbusServer] = {
            peer: self.modbus_servers[site.meter_of(peer)] for peer in site.peers
        }
        self._meter_peers = dict(plant.meter_peers)

        # OPC UA chargers and SCPI loads: a server each.
        self.ev_chargers: dict[str, EvChargerOpcUaServer] = {}
        self.loads: dict[str, ScpiLoadServer] = {}
        for device_id, device in site.devices.items():
            if isinstance(device, EvCharger):
                self.ev_chargers[device_id] = EvChargerOpcUaServer(
                    plant,
                    host=host,
                    port=device.opcua.port,
                    faults=self.faults[device_id],
                    security=self._opcua_security(device, opcua_password),
                    device=device_id,
                    path=urlsplit(device.opcua.url).path or URL_PATH,
                )
            elif isinstance(device, ProgrammableLoad):
                self.loads[device_id] = ScpiLoadServer(
                    plant, host=host, port=device.visa.port, faults=self.faults[device_id],
                    device=device_id,
                )  # fmt: skip
        self.ev_charger = next(iter(self.ev_chargers.values()), None)
        self.load = next(iter(self.loads.values()), None)
        self.control = ControlServer(
            self.handle_command,
            host=host,
            port=servers.control.port,
            on_controller_gone=self._controller_gone,
        )
        self._publish_modbus()

    def _modbus_unit(self, device_id: str) -> SunSpecUnit:
        device = self.site.devices[device_id]
        if not isinstance(device, PccMeter | HybridInverter | BatteryInverter | PvInverter):
            raise ValueError(f"device {device_id!r} ({device.kind}) is not served over Modbus")
        endpoint = device.modbus
        faults = self.faults[device_id]
        self._unit_kinds[device_id] = device.kind
        if device.kind == "pcc_meter":
            unit = SunSpecUnit(
                device_id,
                meter_image(device.peer, endpoint.sunspec_base, endpoint.unit_id),
                unit_id=endpoint.unit_id,
                faults=faults,
                published=METER_POINTS,
            )
        else:
            state: InverterState = self.plant.inverters[device_id]
            kind = device.kind
            unit = SunSpecUnit(
                device_id,
                inverter_image(
                    InverterRatings.from_state(state),
                    endpoint.sunspec_base,
                    endpoint.unit_id,
                    kind,
                    serial=device.peer,
                ),
                unit_id=endpoint.unit_id,
                faults=faults,
                writable=INVERTER_WRITABLE if kind != "pv_inverter" else (),
                on_write=inverter_write_handler(lambda: self.plant, device_id),
                published=inverter_points(kind),
            )
        self.modbus_units[device_id] = unit
        return unit

    def _opcua_security(self, device: EvCharger, password: str | None) -> OpcUaSecurity:
        mode, username, password_env = charger_security(self.config, device.opcua)
        if mode == "none":
            return OpcUaSecurity()
        password = password or os.environ.get(password_env)
        if not password:
            raise ConfigError(
                f"the emulated charger {device.opcua.url} is secured: it needs a password in "
                f"the environment variable {password_env}"
            )
        ev = self.config.ev_charger
        cert_dir = ev.cert_dir
        if cert_dir is None and (ev.certificate is None or ev.private_key is None):
            if self._temp_dir is None:
                self._temp_dir = tempfile.TemporaryDirectory(prefix="hil_sim-opcua-")
            cert_dir = Path(self._temp_dir.name)
        return OpcUaSecurity(
            mode="sign_and_encrypt",
            username=username,
            password=password,
            certificate=ev.certificate,
            private_key=ev.private_key,
            cert_dir=cert_dir,
            trusted_clients=ev.trusted_clients,
        )

    # -- life cycle -----------------------------------------------------------------------------
    async def start(self) -> PlantEndpoints:
        """Start every server (free ports where 0) and, in realtime mode, the clock."""
        try:
            for server in self._modbus_servers:
                await server.start()
            for charger in self.ev_chargers.values():
                await charger.start()
            for load in self.loads.values():
                await load.start()
            await self.control.start()
        except BaseException:
            await self.stop()
            raise
        self.endpoints = self._describe_endpoints()
        if self.config.realtime:
            self._realtime_task = asyncio.create_task(self._run_realtime())
        return self.endpoints

    async def stop(self) -> None:
        """Stop the clock and every server; safe to call twice."""
        await self._stop_watchdogs()
        if self._realtime_task is not None:
            self._realtime_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._realtime_task
            self._realtime_task = None
        await self.control.stop()
        for load in self.loads.values():
            await load.stop()
        for charger in self.ev_chargers.values():
            await charger.stop()
        for server in self._modbus_servers:
            await server.stop()
        if self._temp_dir is not None:
            self._temp_dir.cleanup()
            self._temp_dir = None

    async def __aenter__(self) -> HilSim:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _describe_endpoints(self) -> PlantEndpoints:
        host = self.config.host
        devices: dict[str, DeviceEndpoint] = {}
        for device_id in self.site.devices:
            if device_id in self.modbus_units:
                unit = self.modbus_units[device_id]
                devices[device_id] = ModbusEndpoint(
                    host=host,
                    port=self.modbus_servers[device_id].port,
                    unit=unit.unit_id,
                    base_address=unit.image.base_address,
                )
            elif device_id in self.ev_chargers:
                charger = self.ev_chargers[device_id]
                security = charger.security
                certificate = charger.certificate_path
                devices[device_id] = OpcUaEndpoint(
                    host=host,
                    port=charger.port,
                    url=charger.url,
                    namespace_uri=NAMESPACE_URI,
                    security=security.mode,
                    username=security.username if security.mode != "none" else None,
                    server_certificate=str(certificate) if certificate else None,
                )
            else:
                load = self.loads[device_id]
                devices[device_id] = ScpiEndpoint(
                    host=host, port=load.port, resource=f"TCPIP0::{host}::{load.port}::SOCKET"
                )
        return PlantEndpoints(
            devices=devices,
            meters={peer: self.site.meter_of(peer) for peer in self.site.peers},
            control=ControlEndpoint(host=host, port=self.control.port),
            mode="realtime" if self.config.realtime else "lockstep",
            pid=os.getpid(),
        )

    # -- time -----------------------------------------------------------------------------------
    @property
    def now(self) -> datetime:
        return self.plant.now

    async def advance(self, dt_s: float) -> datetime:
        """Step the plant by dt_s seconds and refresh every server's image; returns plant time."""
        if (
            isinstance(dt_s, bool)
            or not isinstance(dt_s, int | float)
            or not math.isfinite(dt_s)
            or not 0 < dt_s <= MAX_ADVANCE_S
        ):
            raise ValueError(
                f"dt_s = {dt_s!r}: must be a number of seconds in (0, {MAX_ADVANCE_S:g}]"
            )
        async with self._lock:
            self.plant.advance(float(dt_s))
            await self.publish()
        return self.plant.now

    async def publish(self) -> None:
        """Refresh every server's image from the plant (each skips it while frozen)."""
        self._publish_modbus()
        now = self.plant.now
        for charger in self.ev_chargers.values():
            await charger.publish(now)

    def _publish_modbus(self) -> None:
        plant = self.plant
        inverters, meters, peers = plant.inverters, plant.meters, self._meter_peers
        for device_id, unit in self.modbus_units.items():
            out_of_range = unit.faults.out_of_range
            if device_id in peers:
                garbage = unit.faults.garbage
                unit.publish(meter_values(meters[peers[device_id]], out_of_range, garbage))
            else:
                kind = self._unit_kinds[device_id]
                unit.publish(inverter_values(inverters[device_id], out_of_range, kind))

    async def _run_realtime(self) -> None:
        """Free-running clock: one plant step of step_s every step_s seconds of wall time."""
        loop = asyncio.get_running_loop()
        step_s = self.config.step_s
        deadline = loop.time()
        while True:
            deadline += step_s
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            try:
                async with self._lock:
                    self.plant.advance(step_s)
                    await self.publish()
            except Exception:  # keep the clock running; the log says what went wrong
                log.exception("realtime step failed")
            if loop.time() - deadline > 10 * step_s:
                log.warning(
                    "realtime clock is %.1f s behind; skipping ahead", loop.time() - deadline
                )
                deadline = loop.time()

    # -- without a controller ----------------------------------------------------------------------
    def _controller_gone(self) -> None:
        """The lockstep controller's connection closed: count the watchdogs on wall time."""
        if self.config.realtime or self._watchdog_task is not None:
            return
        log.warning("the lockstep controller is gone; device watchdogs run on wall time")
        self._watchdog_task = asyncio.get_running_loop().create_task(self._run_watchdogs())

    async def _run_watchdogs(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(WATCHDOG_TICK_S)
            now = loop.time()
            async with self._lock:
                self.plant.run_watchdogs(now - last)
                self._publish_modbus()
                for charger in self.ev_chargers.values():
                    await charger.publish(self.plant.now)
            last = now

    @property
    def watchdogs_on_wall_time(self) -> bool:
        """True while no lockstep controller is connected and the watchdogs count wall time."""
        return self._watchdog_task is not None

    async def _stop_watchdogs(self) -> None:
        task, self._watchdog_task = self._watchdog_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def reset(self) -> datetime:
        """A fresh plant from the same configuration (time back to its start), faults cleared;
        servers and their connections stay up. Returns plant time."""
        async with self._lock:
            await self.faults.clear()
            plant = Plant(self.plant_config)
            self.plant = plant
            for charger in self.ev_chargers.values():
                charger.plant = plant
            for load in self.loads.values():
                load.instrument.bind(plant)
            for server in self._modbus_servers:
                server.forget_cache()
            await self.publish()
        return self.plant.now

    # -- faults ---------------------------------------------------------------------------------
    async def set_fault(self, device: str, kind: str, **params: Any) -> dict[str, Any]:
        """Activate a fault on a device (see hil_sim.faults); returns it as a dict."""
        fault = await self.faults.set_fault(device, kind, **params)
        await self._after_fault_change()
        return fault.as_dict()

    async def clear_faults(self, device: str | None = None, kind: str | None = None) -> None:
        """Clear one kind or every fault, on one device or on all."""
        await self.faults.clear(device, kind)
        await self._after_fault_change()

    async def _after_fault_change(self) -> None:
        # out-of-range values appear (or go) at once, not at the next advance
        async with self._lock:
            for server in self._modbus_servers:
                server.forget_cache()
            await self.publish()

    # -- control endpoint -----------------------------------------------------------------------
    def _time_reply(self) -> dict[str, Any]:
        return {"ok": True, "time": self.plant.now.isoformat(), "elapsed_s": self.plant.elapsed_s}

    async def handle_command(self, request: dict[str, Any]) -> dict[str, Any]:
        """Carry out one control request (see hil_sim.servers.control)."""
        command = request.get("cmd")
        if command in _CONTROLLER_COMMANDS and self._watchdog_task is not None:
            await self._stop_watchdogs()
        if command == "advance":
            if self.config.realtime:
                raise CommandError(
                    "advance is refused in realtime mode: the wall clock drives time"
                )
            if "dt_s" not in request:
                raise CommandError("advance needs dt_s (seconds of plant time)")
            await self.advance(request["dt_s"])
            return self._time_reply()
        if command == "time":
            return self._time_reply()
        if command == "ping":
            return {"ok": True}
        if command == "state":
            state = self.plant.state_dict()
            state["watchdogs_on_wall_time"] = self.watchdogs_on_wall_time
            return {"ok": True, "state": state}
        if command == "faults":
            return {"ok": True, "faults": [f.as_dict() for f in self.faults.active()]}
        if command == "fault":
            return await self._fault_command(request)
        if command == "reset":
            await self.reset()
            return self._time_reply()
        if command == "endpoints":
            endpoints = self.endpoints.model_dump(mode="json") if self.endpoints else None
            return {"ok": True, "endpoints": endpoints}
        known = "advance, time, state, fault, faults, reset, endpoints, ping"
        raise CommandError(f"unknown cmd {command!r}; commands are {known}")

    async def _fault_command(self, request: dict[str, Any]) -> dict[str, Any]:
        params = {k: v for k, v in request.items() if k not in ("cmd", "id")}
        device = params.pop("device", None)
        try:
            if params.pop("clear", False):
                kind = params.pop("kind", None)
                if params:
                    raise CommandError(
                        f"fault clear takes device and kind, not {sorted(params)[0]!r}"
                    )
                await self.clear_faults(device, kind)
                return {"ok": True, "faults": [f.as_dict() for f in self.faults.active()]}
            if device is None:
                raise CommandError("fault needs device (or clear: true to clear every device)")
            kind = params.pop("kind", None)
            if kind is None:
                raise CommandError("fault needs kind (or clear: true)")
            return {"ok": True, "fault": await self.set_fault(device, kind, **params)}
        except FaultError as exc:
            raise CommandError(str(exc)) from None
