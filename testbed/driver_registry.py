"""The registry of driver kinds: how the controller builds each device the site declares.

A site device names its driver kind (`driver = "sunspec_meter"`; without it, the default of its
device kind, `labspec.site.DEFAULT_DRIVER`). Each entry here names the driver class (its `build`),
the driver's typed configuration model, the site device kinds it can serve, and its role for the
controller, which fixes the reading (and setpoint) the controller uses:

    role      channel       reading the controller uses           setpoint
    meter     meter         MeterReading (power, import/export)   none
    pv        pv_inverter   PvReading (PV power)                  none
    storage   inverter      instruments.InverterSnapshot          InverterSetpoint
    ev        ev_charger    instruments.EvChargerSnapshot         EvSetpoint
    load      load          instruments.LoadSnapshot              LoadSetpoint

A new vendor's device is one driver file (a class with the `testbed.drivers.DeviceDriver`
methods, its pydantic configuration model) plus one `register(...)` call, here or in a package of
its own found through the `testbed.drivers` entry point group (`load_plugins`); the site then
names it (docs/site.md, "Adding another vendor's device"). A driver's configuration is built
from the site device (`site_fields`), its endpoint (the site's, or the emulated plant's endpoints
file: `endpoint_fields`) and the site's `driver_settings`, which win over both.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import entry_points
from typing import ClassVar, Generic, Literal, Never, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from instruments.config import (
    EvChargerConfig,
    ProgrammableLoadConfig,
    SunSpecInverterConfig,
    SunSpecMeterConfig,
    SunSpecPvInverterConfig,
)
from instruments.ev_charger import EvCharger, EvChargerSnapshot, EvSetpoint
from instruments.inverter import InverterSetpoint, InverterSnapshot, SunSpecInverter
from instruments.meter import SunSpecMeter
from instruments.programmable_load import LoadSetpoint, LoadSnapshot, ProgrammableLoad
from instruments.pv_inverter import SunSpecPvInverter
from labspec.endpoints import DeviceEndpoint, ModbusEndpoint, OpcUaEndpoint, ScpiEndpoint
from labspec.site import (
    DEFAULT_DRIVER,
    DEVICE_KINDS,
    AnyDevice,
    BatteryInverter,
    HybridInverter,
    PccMeter,
    Site,
    SiteError,
)
from labspec.site import (
    EvCharger as SiteEvCharger,
)
from labspec.validation import fmt
from testbed.drivers import DeviceDriver, DeviceReading

Role = Literal["meter", "pv", "storage", "ev", "load"]
Protocols = Literal["modbus", "opcua", "scpi"]
Clock = Callable[[], datetime]

# The channel (the device's name within its peer, what the run records) of each role, and the
# site device kinds a role can serve.
ROLE_CHANNEL: dict[Role, str] = {
    "meter": "meter",
    "pv": "pv_inverter",
    "storage": "inverter",
    "ev": "ev_charger",
    "load": "load",
}
ROLE_KINDS: dict[Role, frozenset[str]] = {
    "meter": frozenset({"pcc_meter"}),
    "pv": frozenset({"pv_inverter"}),
    "storage": frozenset({"hybrid_inverter", "battery_inverter"}),
    "ev": frozenset({"ev_charger"}),
    "load": frozenset({"programmable_load"}),
}


class MeterReading(DeviceReading, Protocol):
    """What the controller uses of a PCC meter's snapshot (+ = export)."""

    @property
    def power_kw(self) -> float: ...

    @property
    def import_kwh(self) -> float: ...

    @property
    def export_kwh(self) -> float: ...


class PvReading(DeviceReading, Protocol):
    """What the controller uses of a PV inverter's snapshot (its AC power is `ac_power_kw`)."""

    @property
    def pv_power_kw(self) -> float: ...


MeterDriver = DeviceDriver[MeterReading, Never]
PvDriver = DeviceDriver[PvReading, Never]
StorageDriver = DeviceDriver[InverterSnapshot, InverterSetpoint]
EvDriver = DeviceDriver[EvChargerSnapshot, EvSetpoint]
LoadDriver = DeviceDriver[LoadSnapshot, LoadSetpoint]


class DeviceSlots(Protocol):
    """Where a peer takes each device the registry builds (testbed.devices.PeerDevices)."""

    def add_meter(self, device_id: str, driver: MeterDriver) -> None: ...

    def add_pv(self, device_id: str, driver: PvDriver) -> None: ...

    def add_storage(self, device_id: str, driver: StorageDriver) -> None: ...

    def add_ev(self, device_id: str, driver: EvDriver) -> None: ...

    def add_load(self, device_id: str, driver: LoadDriver) -> None: ...


ConfigT = TypeVar("ConfigT", bound=BaseModel)
DriverT = TypeVar("DriverT")


def _named(device_id: str, device: AnyDevice) -> dict[str, object]:
    """The driver's `name` is the site's device id (what its messages name)."""
    return {"name": device_id}


@dataclass(frozen=True, kw_only=True)
class DriverKind(ABC, Generic[ConfigT, DriverT]):
    """One registry entry; `build(config, clock)` makes the driver."""

    role: ClassVar[Role]
    name: str
    kinds: frozenset[str]
    config_model: type[ConfigT]
    protocol: Protocols
    build: Callable[[ConfigT, Clock], DriverT]
    endpoint_fields: Callable[[DeviceEndpoint], Mapping[str, object]]
    site_fields: Callable[[str, AnyDevice], Mapping[str, object]] = field(default=_named)
    description: str = ""

    @property
    def channel(self) -> str:
        return ROLE_CHANNEL[self.role]

    def configure(
        self,
        device_id: str,
        device: AnyDevice | None,
        endpoint: DeviceEndpoint | None,
        settings: Mapping[str, object],
        base: BaseModel | None = None,
    ) -> ConfigT:
        """The driver's configuration: `base` (or the site device's fields), the endpoint's
        fields, then the site's driver settings on top. Raises pydantic's ValidationError, or
        ValueError for an endpoint of another protocol."""
        data: dict[str, object] = dict(base.model_dump() if base is not None else {})
        if device is not None:
            data.update(self.site_fields(device_id, device))
        if endpoint is not None:
            if endpoint.protocol != self.protocol:
                raise ValueError(
                    f"driver {self.name!r} speaks {self.protocol}, the device is served over "
                    f"{endpoint.protocol}"
                )
            data.update(self.endpoint_fields(endpoint))
        data.update(settings)
        return self.config_model.model_validate(data)

    def typed(self, config: BaseModel) -> ConfigT:
        """`config` as this kind's model (as validated by the configuration)."""
        if isinstance(config, self.config_model):
            return config
        return self.config_model.model_validate(config.model_dump())

    @abstractmethod
    def install(self, slots: DeviceSlots, device_id: str, config: BaseModel, clock: Clock) -> None:
        """Build the driver and give it to the peer's slot of this role."""


@dataclass(frozen=True, kw_only=True)
class MeterKind(DriverKind[ConfigT, MeterDriver]):
    role: ClassVar[Role] = "meter"

    def install(self, slots: DeviceSlots, device_id: str, config: BaseModel, clock: Clock) -> None:
        slots.add_meter(device_id, self.build(self.typed(config), clock))


@dataclass(frozen=True, kw_only=True)
class PvKind(DriverKind[ConfigT, PvDriver]):
    role: ClassVar[Role] = "pv"

    def install(self, slots: DeviceSlots, device_id: str, config: BaseModel, clock: Clock) -> None:
        slots.add_pv(device_id, self.build(self.typed(config), clock))


@dataclass(frozen=True, kw_only=True)
class StorageKind(DriverKind[ConfigT, StorageDriver]):
    role: ClassVar[Role] = "storage"

    def install(self, slots: DeviceSlots, device_id: str, config: BaseModel, clock: Clock) -> None:
        slots.add_storage(device_id, self.build(self.typed(config), clock))


@dataclass(frozen=True, kw_only=True)
class EvKind(DriverKind[ConfigT, EvDriver]):
    role: ClassVar[Role] = "ev"

    def install(self, slots: DeviceSlots, device_id: str, config: BaseModel, clock: Clock) -> None:
        slots.add_ev(device_id, self.build(self.typed(config), clock))


@dataclass(frozen=True, kw_only=True)
class LoadKind(DriverKind[ConfigT, LoadDriver]):
    role: ClassVar[Role] = "load"

    def install(self, slots: DeviceSlots, device_id: str, config: BaseModel, clock: Clock) -> None:
        slots.add_load(device_id, self.build(self.typed(config), clock))


class AnyKind(Protocol):
    """A registry entry as the controller uses it, whatever its configuration model."""

    @property
    def role(self) -> Role: ...

    @property
    def name(self) -> str: ...

    @property
    def kinds(self) -> frozenset[str]: ...

    @property
    def config_model(self) -> type[BaseModel]: ...

    @property
    def channel(self) -> str: ...

    def configure(
        self,
        device_id: str,
        device: AnyDevice | None,
        endpoint: DeviceEndpoint | None,
        settings: Mapping[str, object],
        base: BaseModel | None = None,
    ) -> BaseModel: ...

    def install(
        self, slots: DeviceSlots, device_id: str, config: BaseModel, clock: Clock
    ) -> None: ...


# -- how an endpoint fills a driver's configuration, per protocol --------------------------------
def modbus_fields(endpoint: DeviceEndpoint) -> dict[str, object]:
    """Host, port and unit id of a Modbus TCP endpoint."""
    assert isinstance(endpoint, ModbusEndpoint)
    return {"host": endpoint.host, "port": endpoint.port, "device_id": endpoint.unit}


def sunspec_fields(endpoint: DeviceEndpoint) -> dict[str, object]:
    """A SunSpec device's Modbus endpoint, its base address the only one to scan."""
    assert isinstance(endpoint, ModbusEndpoint)
    return {**modbus_fields(endpoint), "base_addresses": [endpoint.base_address]}


def opcua_fields(endpoint: DeviceEndpoint) -> dict[str, object]:
    assert isinstance(endpoint, OpcUaEndpoint)
    return {"url": endpoint.url}


def scpi_fields(endpoint: DeviceEndpoint) -> dict[str, object]:
    assert isinstance(endpoint, ScpiEndpoint)
    return {"host": endpoint.host, "port": endpoint.port}


# -- what a site device says to its built-in driver ---------------------------------------------
def _meter_fields(device_id: str, device: AnyDevice) -> dict[str, object]:
    assert isinstance(device, PccMeter)
    return {"name": device_id, "rated_power_kw": device.rated_power_kw}


def _inverter_fields(device_id: str, device: AnyDevice) -> dict[str, object]:
    assert isinstance(device, HybridInverter | BatteryInverter)
    fields: dict[str, object] = {"name": device_id}
    if device.revert_timeout_s is not None:
        fields["revert_timeout_s"] = device.revert_timeout_s
    if device.max_charge_kw is not None:
        fields["max_import_kw"] = device.max_charge_kw
    if device.max_discharge_kw is not None:
        fields["max_export_kw"] = device.max_discharge_kw
    return fields


def _charger_fields(device_id: str, device: AnyDevice) -> dict[str, object]:
    assert isinstance(device, SiteEvCharger)
    fields: dict[str, object] = {"name": device_id}
    opcua = device.opcua
    if opcua.security != "none":
        fields.update(
            security=opcua.security, username=opcua.username, password_env=opcua.password_env
        )
    return fields


# -- the registry --------------------------------------------------------------------------------
_REGISTRY: dict[str, AnyKind] = {}
PLUGIN_GROUP = "testbed.drivers"
_plugins_loaded = False


class DriverPluginError(SiteError):
    """An installed driver plugin (entry point group `testbed.drivers`) that failed to load."""


def load_plugins() -> None:
    """Import every installed driver plugin once: each entry point of the `testbed.drivers` group
    names a module (or a callable) whose import registers its driver kinds with `register`, so a
    vendor's drivers can live in a package of their own and every `testbed` command knows them."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for entry in entry_points(group=PLUGIN_GROUP):
        try:
            loaded = entry.load()
            if callable(loaded):
                loaded()
        except Exception as error:  # any failure, reported with its origin
            raise DriverPluginError(
                f"driver plugin {entry.name!r} ({entry.value}, entry point group "
                f"{PLUGIN_GROUP!r}) failed to load: {type(error).__name__}: {error}"
            ) from error


def register(kind: AnyKind) -> AnyKind:
    """Add a driver kind (a ValueError if its name is taken or a kind is not its role's)."""
    if kind.name in _REGISTRY and _REGISTRY[kind.name] is not kind:
        raise ValueError(f"driver kind {kind.name!r} is registered already")
    allowed = ROLE_KINDS[kind.role]
    if not kind.kinds or not kind.kinds <= allowed:
        raise ValueError(
            f"driver kind {kind.name!r}: a {kind.role} driver serves "
            f"{', '.join(sorted(allowed))}, not {', '.join(sorted(kind.kinds - allowed)) or '-'}"
        )
    _REGISTRY[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    """Remove a driver kind (tests that register their own)."""
    _REGISTRY.pop(name, None)


def driver_names() -> tuple[str, ...]:
    load_plugins()
    return tuple(_REGISTRY)


def driver_kind(name: str) -> AnyKind:
    """The registered driver kind `name`; a ValueError naming the known ones otherwise."""
    load_plugins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"{name!r}: no such driver kind; drivers: {', '.join(_REGISTRY)}"
        ) from None


def drivers_for(device_kind: str) -> tuple[str, ...]:
    """The names of the driver kinds that can serve a site device kind."""
    load_plugins()
    return tuple(name for name, kind in _REGISTRY.items() if device_kind in kind.kinds)


def site_kind(site: Site, device_id: str, source: str = "site") -> AnyKind:
    """The driver kind of a site device; a SiteError naming the key, the value and what is
    allowed when it is unknown or cannot serve the device's kind."""
    load_plugins()
    device = site.devices[device_id]
    name = site.driver_of(device_id)
    key = f"{source}: devices.{device_id}.driver = {name!r}"
    kind = _REGISTRY.get(name)
    if kind is None:
        raise SiteError(f"{key}: no such driver; drivers: {', '.join(_REGISTRY)}")
    if device.kind not in kind.kinds:
        raise SiteError(
            f"{key}: cannot serve a {device.kind} (it serves {', '.join(sorted(kind.kinds))}); "
            f"drivers for {device.kind}: {', '.join(drivers_for(device.kind)) or 'none'}"
        )
    return kind


def site_config(site: Site, device_id: str, source: str = "site") -> tuple[AnyKind, BaseModel]:
    """The driver kind and configuration of a site device (its endpoint from the site); a
    SiteError naming the key when the driver settings do not fit the driver's model."""
    kind = site_kind(site, device_id, source)
    device = site.devices[device_id]
    try:
        config = kind.configure(
            device_id, device, site.endpoint_of(device_id), device.driver_settings
        )
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        value = problem.get("input")
        shown = ""
        if not isinstance(value, dict):
            shown = f" = {repr(value) if isinstance(value, str) else fmt(value)}"
        raise SiteError(
            f"{source}: devices.{device_id}.driver_settings.{where}{shown}: "
            f"{problem['msg'].removeprefix('Value error, ')} (driver {kind.name!r}, "
            f"model {kind.config_model.__name__})"
        ) from None
    return kind, config


def check_site(site: Site, source: str = "site") -> None:
    """Every device of the site has a registered driver that serves its kind and takes its
    settings; raises SiteError naming the first bad key."""
    for device_id in site.devices:
        site_config(site, device_id, source)


# -- the built-in driver kinds --------------------------------------------------------------------
BUILT_IN_KINDS: tuple[AnyKind, ...] = (
    MeterKind[SunSpecMeterConfig](
        name="sunspec_meter",
        kinds=frozenset({"pcc_meter"}),
        config_model=SunSpecMeterConfig,
        protocol="modbus",
        build=lambda config, clock: SunSpecMeter(config, clock=clock),
        endpoint_fields=sunspec_fields,
        site_fields=_meter_fields,
        description="SunSpec meter, model 211 or 201, over Modbus TCP",
    ),
    StorageKind[SunSpecInverterConfig](
        name="sunspec_inverter",
        kinds=frozenset({"hybrid_inverter", "battery_inverter"}),
        config_model=SunSpecInverterConfig,
        protocol="modbus",
        build=lambda config, clock: SunSpecInverter(config, clock=clock),
        endpoint_fields=sunspec_fields,
        site_fields=_inverter_fields,
        description="SunSpec hybrid or battery inverter (701, 702, 704, 713, 714) over Modbus TCP",
    ),
    PvKind[SunSpecPvInverterConfig](
        name="sunspec_pv_inverter",
        kinds=frozenset({"pv_inverter"}),
        config_model=SunSpecPvInverterConfig,
        protocol="modbus",
        build=lambda config, clock: SunSpecPvInverter(config, clock=clock),
        endpoint_fields=sunspec_fields,
        description="SunSpec PV inverter (701, 702, 714), read only, over Modbus TCP",
    ),
    EvKind[EvChargerConfig](
        name="opcua_ev_charger",
        kinds=frozenset({"ev_charger"}),
        config_model=EvChargerConfig,
        protocol="opcua",
        build=lambda config, clock: EvCharger(config, clock=clock),
        endpoint_fields=opcua_fields,
        site_fields=_charger_fields,
        description="Bidirectional EV charger over OPC UA (node table labspec.ev_charger)",
    ),
    LoadKind[ProgrammableLoadConfig](
        name="scpi_load",
        kinds=frozenset({"programmable_load"}),
        config_model=ProgrammableLoadConfig,
        protocol="scpi",
        build=lambda config, clock: ProgrammableLoad(config, clock=clock),
        endpoint_fields=scpi_fields,
        description="Programmable AC electronic load over SCPI (raw TCP socket)",
    ),
)
for _kind in BUILT_IN_KINDS:
    register(_kind)

assert set(DEVICE_KINDS) == {k for kind in _REGISTRY.values() for k in kind.kinds}
assert all(kind in _REGISTRY[name].kinds for kind, name in DEFAULT_DRIVER.items())
