"""The site as data: one file declares the feeder, every peer with its assets, and every device.

The emulated plant (`hil_sim`) and the controller (`testbed`) both read the same `Site`, so they
cannot disagree. A site file is TOML with the tables `[site]`, `[weather]`, `[feeder]`,
`[peers.<id>]` and `[devices.<id>]` (docs/site.md); `load_site` validates it with pydantic and
cross-checks it (buses, meters, assets behind devices, device limits within asset ratings,
endpoints unique), and any problem raises one `SiteError` naming the file, the key, the value and
what is allowed:

    sites/x.toml: peers.D.bus = 'J9': not a bus of the feeder; buses: LV, J1, J2, A, B, C

Units are in the names (kW, kWh, %, V, A, m, Ω/km); power magnitudes are >= 0 and directions are
named; times of day are local "HH:MM" in the site's `timezone`. The IIT Gandhinagar three-peer
testbed (seed paper, section 5.4) is `DEFAULT_SITE_PATH`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Iterator
from datetime import time
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from labspec import endpoints
from labspec import ev_charger as ev_nodes
from labspec.programmable_load import MAX_POWER_W
from labspec.sunspec_layout import DEFAULT_BASE_ADDRESS
from labspec.validation import describe_validation_error, fmt

SITES_DIR = Path(__file__).resolve().parent / "sites"
DEFAULT_SITE_PATH = SITES_DIR / "iitgn.toml"
COMMUNITY_SITE_PATH = SITES_DIR / "community12.toml"


class SiteError(ValueError):
    """A site that cannot be used; the message names the file, the key, the value and what is
    allowed."""


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _above(value: float, info: ValidationInfo, other: str) -> float:
    low = info.data.get(other)
    if low is not None and value <= low:
        raise PydanticCustomError("order", f"must be > {other} ({fmt(low)})")
    return value


def _percent(value: float) -> float:
    """A SoC limit in percent; a top of the window at or below 1 % is a fraction written by
    mistake (0.95 for 95 %), which would leave the battery a sliver of its capacity."""
    if value <= 1:
        raise PydanticCustomError(
            "percent",
            f"a percentage (0-100): {fmt(value)} reads as a fraction; write {fmt(value * 100)}",
        )
    return value


def _in_window(value: float, info: ValidationInfo) -> float:
    low, high = info.data.get("soc_min_pct"), info.data.get("soc_max_pct")
    if low is not None and high is not None and not low <= value <= high:
        raise PydanticCustomError(
            "window", f"must be within [soc_min_pct, soc_max_pct] = [{fmt(low)}, {fmt(high)}]"
        )
    return value


def parse_hhmm(text: str) -> time:
    """A local time of day "HH:MM"; raises a pydantic error naming the format otherwise."""
    try:
        hours, minutes = text.split(":")
        return time(int(hours), int(minutes))
    except (ValueError, TypeError):
        raise PydanticCustomError(
            "time", f"{text!r} is not a time of day HH:MM (00:00-23:59)"
        ) from None


def plug_seconds(windows: Iterable[tuple[str, str]]) -> list[tuple[int, int]]:
    """Plug windows as (arrival, departure) seconds after local midnight."""
    out = []
    for arrive, leave in windows:
        a, b = parse_hhmm(arrive), parse_hhmm(leave)
        out.append((a.hour * 3600 + a.minute * 60, b.hour * 3600 + b.minute * 60))
    return out


def _overlap(a0: int, a1: int, b0: int, b1: int) -> bool:
    def spans(s: int, e: int) -> list[tuple[int, int]]:
        return [(s, e)] if s < e else [(s, 86400), (0, e)]

    return any(x0 < y1 and y0 < x1 for x0, x1 in spans(a0, a1) for y0, y1 in spans(b0, b1))


# -- where: the site and its weather ------------------------------------------------------------
class SiteInfo(_Table):
    """Where the site is and its local clock."""

    name: str = Field("site", min_length=1)
    latitude_deg: float = Field(ge=-90, le=90)
    longitude_deg: float = Field(ge=-180, le=180)
    altitude_m: float = Field(0.0, ge=-500, le=9000)
    timezone: str = Field(min_length=1, description="IANA zone, e.g. Asia/Kolkata")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise PydanticCustomError(
                "zone", "must be an IANA time zone such as Asia/Kolkata or Europe/Berlin"
            ) from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class Weather(_Table):
    """The site's weather: a daily temperature cycle and clouds passing over every array alike."""

    ambient_min_c: float = Field(20.0, ge=-40, le=60)  # daily minimum near 03:00 local
    ambient_max_c: float = Field(34.0, ge=-40, le=60)  # daily maximum near 15:00 local
    cloud_cover: float = Field(0.2, ge=0, le=1)  # share of daylight time shaded; 0 = clear sky
    cloud_transmittance_min: float = Field(0.25, gt=0, le=1)  # thickest cloud passes this much
    cloud_mean_duration_s: float = Field(240.0, gt=0, le=86400)

    @field_validator("ambient_max_c")
    @classmethod
    def _max_above_min(cls, v: float, info: ValidationInfo) -> float:
        return _above(v, info, "ambient_min_c")


# -- the feeder ---------------------------------------------------------------------------------
class LineType(_Table):
    """A cable: impedance per km of the single-phase loop (go and return) and its rating."""

    r_ohm_per_km: float = Field(gt=0, le=1000)
    x_ohm_per_km: float = Field(ge=0, le=1000)
    max_current_a: float = Field(gt=0, le=10000)


class Line(_Table):
    """One feeder section from `from_bus` (toward the transformer) to `to_bus`: either a `type`
    from `[feeder.line_types]` or its own impedance and rating."""

    from_bus: str = Field(min_length=1)
    to_bus: str = Field(min_length=1)
    length_m: float = Field(gt=0, le=100000)
    type: str | None = None
    r_ohm_per_km: float | None = Field(None, gt=0, le=1000)
    x_ohm_per_km: float | None = Field(None, ge=0, le=1000)
    max_current_a: float | None = Field(None, gt=0, le=10000)


class ResolvedLine(_Table):
    """A line with its impedance and rating filled in from its type."""

    from_bus: str
    to_bus: str
    length_m: float
    r_ohm_per_km: float
    x_ohm_per_km: float
    max_current_a: float


class Transformer(_Table):
    """The distribution transformer; its low-voltage bus is the feeder's slack bus."""

    bus: str = Field("LV", min_length=1)
    rated_kva: float = Field(100.0, gt=0, le=100000)
    lv_voltage_v: float = Field(232.0, gt=0, le=1000)  # phase-to-neutral at the LV bus


class Feeder(_Table):
    """The radial low-voltage feeder: buses, lines and the transformer at its root."""

    nominal_frequency_hz: float = Field(50.0, gt=0, le=400)
    frequency_noise_hz: float = Field(0.02, ge=0, le=1)  # standard deviation of the slow wander
    transformer: Transformer = Transformer()
    buses: tuple[str, ...] = Field(min_length=1)
    line_types: dict[str, LineType] = Field(default_factory=dict)
    lines: tuple[Line, ...] = Field(min_length=1)

    def resolved_lines(self) -> tuple[ResolvedLine, ...]:
        out = []
        for line in self.lines:
            base = self.line_types.get(line.type) if line.type else None
            out.append(
                ResolvedLine(
                    from_bus=line.from_bus,
                    to_bus=line.to_bus,
                    length_m=line.length_m,
                    r_ohm_per_km=_pick(line.r_ohm_per_km, base, "r_ohm_per_km"),
                    x_ohm_per_km=_pick(line.x_ohm_per_km, base, "x_ohm_per_km"),
                    max_current_a=_pick(line.max_current_a, base, "max_current_a"),
                )
            )
        return tuple(out)

    @property
    def slack_bus(self) -> str:
        return self.transformer.bus


def _pick(value: float | None, base: LineType | None, name: str) -> float:
    if value is not None:
        return value
    assert base is not None, f"line without {name} nor type (checked by load_site)"
    return float(getattr(base, name))


# -- a peer's assets ----------------------------------------------------------------------------
class HouseLoad(_Table):
    """A house's daily consumption profile (kW): standby, morning and evening peaks, noise."""

    peak_kw: float = Field(gt=0, le=1000)  # typical evening peak
    base_kw: float = Field(gt=0, le=1000)  # night-time standby
    typical_kw: float = Field(ge=0, le=1000)  # mean load an agent assumes before it has history
    power_factor: float = Field(0.95, gt=0, le=1)  # lagging
    noise_pct: float = Field(8.0, ge=0, le=50)  # standard deviation of the slow noise

    @model_validator(mode="after")
    def _base_below_peak(self) -> HouseLoad:
        if self.base_kw >= self.peak_kw:
            raise PydanticCustomError(
                "order", f"base_kw ({fmt(self.base_kw)}) must be < peak_kw ({fmt(self.peak_kw)})"
            )
        if self.typical_kw > self.peak_kw:  # a mean above the peak: W written for kW?
            raise PydanticCustomError(
                "order",
                f"typical_kw ({fmt(self.typical_kw)}) must be <= peak_kw ({fmt(self.peak_kw)}): "
                "it is the mean load the agent assumes",
            )
        return self


class Pv(_Table):
    """A rooftop array: rating and orientation."""

    peak_kw: float = Field(gt=0, le=1000)  # kWp at standard test conditions
    tilt_deg: float = Field(23.0, ge=0, le=90)
    azimuth_deg: float = Field(180.0, ge=0, lt=360)  # 180 = facing south
    temperature_coefficient_per_c: float = Field(-0.0035, ge=-0.02, le=0)
    system_loss_pct: float = Field(3.0, ge=0, lt=100)  # wiring, soiling, mismatch
    levelised_cost_per_kwh: float = Field(0.0, ge=0)  # in the agents' objective; 0 = sunk cost


class Battery(_Table):
    """A stationary battery: capacity, DC power limits, efficiencies and its SoC window."""

    capacity_kwh: float = Field(gt=0, le=10000)
    max_charge_kw: float = Field(gt=0, le=10000)  # DC, magnitude
    max_discharge_kw: float = Field(gt=0, le=10000)
    charge_efficiency: float = Field(0.95, gt=0, le=1)
    discharge_efficiency: float = Field(0.95, gt=0, le=1)
    soc_min_pct: float = Field(10.0, ge=0, lt=100)
    soc_max_pct: float = Field(95.0, gt=0, le=100)
    initial_soc_pct: float = Field(50.0, ge=0, le=100)
    depreciation_per_kwh: float = Field(0.5, ge=0)  # per kWh of AC throughput

    @field_validator("soc_max_pct")
    @classmethod
    def _max_above_min(cls, v: float, info: ValidationInfo) -> float:
        return _above(_percent(v), info, "soc_min_pct")

    @field_validator("initial_soc_pct")
    @classmethod
    def _initial_in_window(cls, v: float, info: ValidationInfo) -> float:
        return _in_window(v, info)


class Ev(_Table):
    """A vehicle on a bidirectional charger: its battery, the charger's limits and plug windows.

    Powers are AC at the charger (+ = V2G discharge); the efficiencies lie between AC and stored
    energy. Below `reserve_soc_pct` the charger does not discharge; a non-zero power below
    `min_power_kw` is not possible (deadband). At each departure the vehicle needs
    `departure_soc_pct`; while away it draws `drive_kw` from its battery.
    """

    capacity_kwh: float = Field(gt=0, le=1000)
    max_charge_kw: float = Field(gt=0, le=1000)  # magnitude
    max_discharge_kw: float = Field(ge=0, le=1000)  # 0: a vehicle without V2G
    min_power_kw: float = Field(0.3, ge=0, le=1000)
    ramp_kw_per_s: float = Field(0.5, gt=0, le=1000)
    charge_efficiency: float = Field(0.95, gt=0, le=1)
    discharge_efficiency: float = Field(0.95, gt=0, le=1)
    soc_min_pct: float = Field(10.0, ge=0, lt=100)
    soc_max_pct: float = Field(95.0, gt=0, le=100)
    reserve_soc_pct: float = Field(30.0, ge=0, le=100)
    departure_soc_pct: float = Field(80.0, ge=0, le=100)
    initial_soc_pct: float = Field(60.0, ge=0, le=100)
    drive_kw: float = Field(0.6, ge=0, le=1000)
    depreciation_per_kwh: float = Field(0.5, ge=0)
    plug_windows: tuple[tuple[str, str], ...] = Field(
        (("09:00", "17:30"), ("19:00", "08:00")), min_length=1
    )

    @field_validator("soc_max_pct")
    @classmethod
    def _max_above_min(cls, v: float, info: ValidationInfo) -> float:
        return _above(_percent(v), info, "soc_min_pct")

    @field_validator("reserve_soc_pct", "departure_soc_pct", "initial_soc_pct")
    @classmethod
    def _within(cls, v: float, info: ValidationInfo) -> float:
        return _in_window(v, info)

    @field_validator("min_power_kw")
    @classmethod
    def _deadband_below_max(cls, v: float, info: ValidationInfo) -> float:
        given = [info.data.get("max_charge_kw"), info.data.get("max_discharge_kw")]
        highs: list[float] = [h for h in given if h]  # a max_discharge_kw of 0: no V2G
        if highs and v > min(highs):
            raise PydanticCustomError(
                "deadband",
                f"must be <= the smaller non-zero power limit (max_charge_kw or "
                f"max_discharge_kw) = {fmt(min(highs))}",
            )
        return v

    @field_validator("plug_windows", mode="before")
    @classmethod
    def _window_shape(cls, v: Any) -> Any:
        pair = isinstance(v, (list, tuple)) and all(
            isinstance(w, (list, tuple)) and len(w) == 2 and all(isinstance(t, str) for t in w)
            for w in v
        )
        if not pair:
            raise PydanticCustomError(
                "windows", 'must be a list of ["HH:MM", "HH:MM"] pairs (arrival, departure)'
            )
        return v

    @field_validator("plug_windows")
    @classmethod
    def _windows(cls, v: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        for window in v:
            for text in window:
                parse_hhmm(text)
            if window[0] == window[1]:
                raise PydanticCustomError("window", "a window's arrival and departure must differ")
        seconds = plug_seconds(v)
        for i, (a0, a1) in enumerate(seconds):
            for b0, b1 in seconds[i + 1 :]:
                if _overlap(a0, a1, b0, b1):
                    raise PydanticCustomError("overlap", "plug windows must not overlap")
        return v

    @property
    def plug_windows_local(self) -> tuple[tuple[time, time], ...]:
        return tuple((parse_hhmm(a), parse_hhmm(b)) for a, b in self.plug_windows)


class Peer(_Table):
    """One peer: who it is, where it connects, what it owns and which agent plans for it."""

    name: str = Field("", description="Display name (default: the peer's id)")
    role: Literal["prosumer", "consumer"]
    bus: str = Field(min_length=1)
    agent: str = "baseline"
    agent_params: dict[str, Any] = Field(default_factory=dict)
    grid_import_limit_kw: float = Field(10.0, gt=0)
    grid_export_limit_kw: float = Field(10.0, ge=0)
    load: HouseLoad
    pv: Pv | None = None
    battery: Battery | None = None
    ev: Ev | None = None


# -- devices ------------------------------------------------------------------------------------
class ModbusEndpoint(_Table):
    """A Modbus TCP device laid out as SunSpec models from `sunspec_base`.

    `port = 0` asks the emulated plant for a free port (the controller then takes the port from the
    plant's endpoints file). Devices behind one gateway share its host and port and differ by
    `unit_id`, as several devices behind a real Modbus TCP gateway do.
    """

    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535)
    gateway: str | None = None
    unit_id: int = Field(1, ge=1, le=247)
    sunspec_base: int = Field(DEFAULT_BASE_ADDRESS, ge=0, le=65000)


class OpcUaEndpoint(_Table):
    """An OPC UA server and the node table of the device on it (labspec.ev_charger)."""

    url: str = Field("opc.tcp://127.0.0.1:0/p2p-testbed/ev-charger", min_length=1)
    security: Literal["none", "Basic256Sha256"] = "none"
    username: str | None = None
    password_env: str | None = None  # the password comes from this environment variable
    namespace_uri: str = ev_nodes.NAMESPACE_URI
    object_node_id: str = ev_nodes.OBJECT_NODE_ID

    @field_validator("url")
    @classmethod
    def _opc_tcp(cls, v: str) -> str:
        parts = urlsplit(v)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme != "opc.tcp" or not parts.hostname or port is None or port < 0:
            raise PydanticCustomError(
                "url", "must be opc.tcp://HOST:PORT/PATH (PORT 0 = a free port, emulated plant)"
            )
        return v

    @model_validator(mode="after")
    def _secure_needs_user(self) -> OpcUaEndpoint:
        if self.security != "none" and (self.username is None or self.password_env is None):
            raise PydanticCustomError(
                "security", f"security = {self.security!r} needs username and password_env"
            )
        return self

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 0


class VisaEndpoint(_Table):
    """A SCPI instrument on a raw TCP socket: `TCPIP0::HOST::PORT::SOCKET` (PORT 0 = free)."""

    resource: str = "TCPIP0::127.0.0.1::0::SOCKET"

    @field_validator("resource")
    @classmethod
    def _socket_resource(cls, v: str) -> str:
        parts = v.split("::")
        if (
            len(parts) != 4
            or not parts[0].upper().startswith("TCPIP")
            or parts[3].upper() != "SOCKET"
            or not parts[2].isdigit()
            or int(parts[2]) > 65535
        ):
            raise PydanticCustomError("resource", "must be TCPIP0::HOST::PORT::SOCKET")
        return v

    @property
    def host(self) -> str:
        return self.resource.split("::")[1]

    @property
    def port(self) -> int:
        return int(self.resource.split("::")[2])


class _Device(_Table):
    peer: str = Field(min_length=1)
    channel: str | None = Field(None, min_length=1, description="Name within the peer")
    driver: str | None = Field(
        None,
        min_length=1,
        description="The controller's driver kind for this device (default: DEFAULT_DRIVER of "
        "its kind); the controller's registry checks that it exists and serves the kind",
    )
    driver_settings: dict[str, Any] = Field(
        default_factory=dict,
        description="Fields of the driver's configuration model (timeouts, plausibility ranges, "
        "an address of its own ...); they win over what the site and the plant give",
    )


class PccMeter(_Device):
    """The meter at a peer's point of common coupling (SunSpec model 211 or 201)."""

    kind: Literal["pcc_meter"]
    modbus: ModbusEndpoint
    rated_power_kw: float = Field(25.0, gt=0, le=10000)  # the connection's rating


class _Inverter(_Device):
    modbus: ModbusEndpoint
    rated_power_kw: float = Field(gt=0, le=10000)  # AC rating (magnitude)


class _StorageInverter(_Inverter):
    max_charge_kw: float | None = Field(None, gt=0, description="Cap on charging (<= battery)")
    max_discharge_kw: float | None = Field(None, gt=0, description="Cap on discharging")
    revert_timeout_s: int | None = Field(
        None, ge=0, description="WSetRvrtTms the controller writes at connect (0 = never revert)"
    )
    power_on_revert_timeout_s: float = Field(0.0, ge=0, le=4294967295)  # the device's own default
    control_ramp_kw_per_s: float = Field(1.0, gt=0, description="Controller-side ramp limit")


class HybridInverter(_StorageInverter):
    """PV and battery behind one inverter (SunSpec 1, 701, 702, 704, 713, 714 with two DC ports)."""

    kind: Literal["hybrid_inverter"]


class BatteryInverter(_StorageInverter):
    """A battery behind its own inverter (SunSpec 1, 701, 702, 704, 713, 714 with an ESS port)."""

    kind: Literal["battery_inverter"]


class PvInverter(_Inverter):
    """A PV array behind its own inverter (SunSpec 1, 701, 702, 714 with a PV port); read only."""

    kind: Literal["pv_inverter"]


class EvCharger(_Device):
    """A bidirectional EV charger on OPC UA (node table labspec.ev_charger)."""

    kind: Literal["ev_charger"]
    opcua: OpcUaEndpoint = OpcUaEndpoint()
    max_charge_kw: float | None = Field(None, gt=0, description="Cap on charging (<= the EV's)")
    max_discharge_kw: float | None = Field(None, ge=0, description="Cap on V2G (<= the EV's)")
    watchdog_timeout_s: float = Field(30.0, ge=0, le=86400)  # 0 = no watchdog
    control_ramp_kw_per_s: float = Field(1.0, gt=0, description="Controller-side ramp limit")


class ProgrammableLoad(_Device):
    """A programmable AC electronic load on SCPI; it draws the peer's house load (its LIST
    program) or a constant power."""

    kind: Literal["programmable_load"]
    visa: VisaEndpoint = VisaEndpoint()
    max_power_kw: float = Field(MAX_POWER_W / 1000.0, gt=0, le=MAX_POWER_W / 1000.0)
    power_on_input_on: bool = True
    power_on_function: Literal["POW", "LIST"] = "LIST"
    power_on_power_w: float = Field(0.0, ge=0, le=MAX_POWER_W)


Device = Annotated[
    PccMeter | HybridInverter | BatteryInverter | PvInverter | EvCharger | ProgrammableLoad,
    Field(discriminator="kind"),
]
DEVICE_KINDS = (
    "pcc_meter",
    "hybrid_inverter",
    "battery_inverter",
    "pv_inverter",
    "ev_charger",
    "programmable_load",
)
MODBUS_KINDS = ("pcc_meter", "hybrid_inverter", "battery_inverter", "pv_inverter")
DEFAULT_CHANNEL = {
    "pcc_meter": "meter",
    "hybrid_inverter": "inverter",
    "battery_inverter": "inverter",  # the controller records every storage inverter so
    "pv_inverter": "pv_inverter",
    "ev_charger": "ev_charger",
    "programmable_load": "load",
}
# The controller's driver kind for each device kind when a device names none (testbed's
# driver registry holds them; the plant does not care which driver the controller uses).
DEFAULT_DRIVER = {
    "pcc_meter": "sunspec_meter",
    "hybrid_inverter": "sunspec_inverter",
    "battery_inverter": "sunspec_inverter",
    "pv_inverter": "sunspec_pv_inverter",
    "ev_charger": "opcua_ev_charger",
    "programmable_load": "scpi_load",
}
StorageInverter = HybridInverter | BatteryInverter
AnyDevice = PccMeter | HybridInverter | BatteryInverter | PvInverter | EvCharger | ProgrammableLoad


class ModbusGateway(_Table):
    """A Modbus TCP gateway: one host and port in front of several unit ids."""

    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535)  # 0 = a free port (emulated plant)


class Site(_Table):
    """A whole site; see the module docstring. Build it with `load_site` or `parse_site`."""

    site: SiteInfo
    weather: Weather = Weather()
    feeder: Feeder
    modbus_gateways: dict[str, ModbusGateway] = Field(default_factory=dict)
    peers: dict[str, Peer] = Field(min_length=1)
    devices: dict[str, Device] = Field(min_length=1)

    # -- questions both sides ask --------------------------------------------------------------
    @property
    def peer_ids(self) -> tuple[str, ...]:
        return tuple(self.peers)

    def display_name(self, peer: str) -> str:
        return self.peers[peer].name or peer

    def devices_of(self, peer: str) -> dict[str, AnyDevice]:
        """The peer's devices by id, in file order."""
        return {d: dev for d, dev in self.devices.items() if dev.peer == peer}

    def channel(self, device_id: str) -> str:
        """The device's name within its peer in the site (unique per peer). The controller
        records a device under its driver role's channel, which the defaults here match."""
        device = self.devices[device_id]
        return device.channel or DEFAULT_CHANNEL[device.kind]

    def driver_of(self, device_id: str) -> str:
        """The name of the driver kind the controller uses for the device."""
        device = self.devices[device_id]
        return device.driver or DEFAULT_DRIVER[device.kind]

    def meter_of(self, peer: str) -> str:
        """The id of the peer's PCC meter."""
        return next(d for d, dev in self.devices_of(peer).items() if dev.kind == "pcc_meter")

    def modbus_address(self, device_id: str) -> tuple[str, int, str | None]:
        """(host, port, gateway) of a Modbus device; the gateway's when it sits behind one."""
        device = self.devices[device_id]
        endpoint = getattr(device, "modbus", None)
        assert isinstance(endpoint, ModbusEndpoint), f"{device_id} is not a Modbus device"
        if endpoint.gateway is not None:
            gateway = self.modbus_gateways[endpoint.gateway]
            return gateway.host, gateway.port, endpoint.gateway
        return endpoint.host, endpoint.port, None

    def endpoint_of(self, device_id: str) -> endpoints.DeviceEndpoint | None:
        """Where the device is served, as the site says; None for a free port (port 0: the
        emulated plant picks it and writes it in its endpoints file)."""
        device = self.devices[device_id]
        if isinstance(device, EvCharger):
            opcua = device.opcua
            if not opcua.port:
                return None
            return endpoints.OpcUaEndpoint(
                host=opcua.host,
                port=opcua.port,
                url=opcua.url,
                namespace_uri=opcua.namespace_uri,
                security="none" if opcua.security == "none" else "sign_and_encrypt",
                username=opcua.username,
            )
        if isinstance(device, ProgrammableLoad):
            visa = device.visa
            if not visa.port:
                return None
            return endpoints.ScpiEndpoint(host=visa.host, port=visa.port, resource=visa.resource)
        host, port, _ = self.modbus_address(device_id)
        if not port:
            return None
        return endpoints.ModbusEndpoint(
            host=host,
            port=port,
            unit=device.modbus.unit_id,
            base_address=device.modbus.sunspec_base,
        )

    def zone(self) -> ZoneInfo:
        return self.site.zone

    def to_toml_dict(self) -> dict[str, Any]:
        """The site as plain data (JSON types), as a run directory records it."""
        return self.model_dump(mode="json", exclude_none=True)

    def with_changes(self, changes: dict[str, Any], source: str = "site") -> Site:
        """A copy with `changes` merged in table by table (a None value removes a key),
        validated and cross-checked like a file."""
        return parse_site(merged(self.to_toml_dict(), changes), source)


def merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`base` with `changes` merged in, table by table; a None value removes the key."""
    out = dict(base)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


# -- loading and cross-checks -------------------------------------------------------------------
class _Problem(Exception):
    def __init__(self, key: str, value: Any, allowed: str) -> None:
        shown = (
            ""
            if value is _NO_VALUE
            else f" = {fmt(value) if not isinstance(value, str) else repr(value)}"
        )
        super().__init__(f"{key}{shown}: {allowed}")


_NO_VALUE = object()


def parse_site(data: dict[str, Any], source: str = "site") -> Site:
    """Validate already-parsed site data; any problem raises one SiteError naming the key."""
    try:
        site = Site.model_validate(data)
    except ValidationError as exc:
        raise SiteError(f"{source}: {describe_validation_error(exc, '', Site)}") from None
    try:
        check_site(site)
    except _Problem as problem:
        raise SiteError(f"{source}: {problem}") from None
    return site


def load_site(path: str | Path) -> Site:
    """Read and validate a site file; any problem raises one SiteError naming file and key."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SiteError(f"{path}: cannot read the site file ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SiteError(f"{path}: not valid TOML ({exc})") from None
    return parse_site(data, str(path))


@cache
def default_site() -> Site:
    """The IIT Gandhinagar three-peer testbed (the default site)."""
    return load_site(DEFAULT_SITE_PATH)


def check_site(site: Site) -> None:
    """The checks that span tables; raises _Problem naming the first bad key."""
    _check_feeder(site.feeder)
    load_buses = [b for b in site.feeder.buses if b != site.feeder.slack_bus]
    for peer_id, peer in site.peers.items():
        if peer.bus not in load_buses:
            raise _Problem(
                f"peers.{peer_id}.bus",
                peer.bus,
                f"not a load bus of the feeder; buses: {', '.join(load_buses)}",
            )
    for device_id, device in site.devices.items():
        if device.peer not in site.peers:
            raise _Problem(
                f"devices.{device_id}.peer",
                device.peer,
                f"no such peer; peers: {', '.join(site.peers)}",
            )
    peer_kw = {
        peer_id: _check_peer_devices(site, peer_id, peer) for peer_id, peer in site.peers.items()
    }
    _check_feeder_carries(site, peer_kw)
    _check_endpoints(site)


def _check_feeder(feeder: Feeder) -> None:
    buses = feeder.buses
    seen: set[str] = set()
    for i, bus in enumerate(buses):
        if bus in seen:
            raise _Problem(f"feeder.buses[{i}]", bus, "listed twice; each bus once")
        seen.add(bus)
    root = feeder.slack_bus
    if root not in seen:
        raise _Problem("feeder.transformer.bus", root, f"not in feeder.buses ({', '.join(buses)})")
    parent: dict[str, str] = {}
    fed_by: dict[str, int] = {}  # bus -> the index of the line that feeds it
    for i, line in enumerate(feeder.lines):
        key = f"feeder.lines[{i}]"
        for end in ("from_bus", "to_bus"):
            bus = getattr(line, end)
            if bus not in seen:
                raise _Problem(f"{key}.{end}", bus, f"not in feeder.buses ({', '.join(buses)})")
        if line.type is not None:
            if line.type not in feeder.line_types:
                allowed = ", ".join(feeder.line_types) or "none declared"
                raise _Problem(f"{key}.type", line.type, f"no such line type; types: {allowed}")
        else:
            for name in ("r_ohm_per_km", "x_ohm_per_km", "max_current_a"):
                if getattr(line, name) is None:
                    raise _Problem(f"{key}.{name}", _NO_VALUE, "required without a line type")
        if line.to_bus == root:
            raise _Problem(
                f"{key}.to_bus",
                line.to_bus,
                "the transformer's bus is the root: no line may end at it",
            )
        if line.to_bus in parent:
            first = fed_by[line.to_bus]
            raise _Problem(
                f"{key}.to_bus",
                line.to_bus,
                f"this bus is fed twice (also by feeder.lines[{first}] from "
                f"{parent[line.to_bus]!r}): the feeder must be radial, each line from the "
                "transformer's side (from_bus) to the far side (to_bus)",
            )
        parent[line.to_bus] = line.from_bus
        fed_by[line.to_bus] = i
    for bus in buses:
        if bus == root:
            continue
        node, path = bus, {bus}
        while node != root:
            if node not in parent:
                raise _Problem("feeder.buses", bus, f"no line connects this bus to {root!r}")
            node = parent[node]
            if node in path:
                raise _Problem("feeder.lines", _NO_VALUE, f"the lines form a loop through {node!r}")
            path.add(node)


def _check_peer_devices(site: Site, peer_id: str, peer: Peer) -> float:
    """The peer's devices against its assets; returns the most it can draw or feed (kW)."""
    devices = site.devices_of(peer_id)
    meters = [d for d, dev in devices.items() if dev.kind == "pcc_meter"]
    if len(meters) != 1:
        raise _Problem(
            f"peers.{peer_id}",
            _NO_VALUE,
            f"needs exactly one pcc_meter device (has {len(meters)}: "
            f"{', '.join(meters) or 'none'})",
        )

    def behind(kinds: tuple[str, ...]) -> list[str]:
        return [d for d, dev in devices.items() if dev.kind in kinds]

    for asset, kinds in (
        ("pv", ("hybrid_inverter", "pv_inverter")),
        ("battery", ("hybrid_inverter", "battery_inverter")),
        ("ev", ("ev_charger",)),
    ):
        holders = behind(kinds)
        present = getattr(peer, asset) is not None
        if present and len(holders) != 1:
            raise _Problem(
                f"peers.{peer_id}.{asset}",
                _NO_VALUE,
                f"needs exactly one device of kind {' or '.join(kinds)} (has {len(holders)}: "
                f"{', '.join(holders) or 'none'})",
            )
        if not present:
            for device_id in holders:
                raise _Problem(
                    f"devices.{device_id}.kind",
                    devices[device_id].kind,
                    f"peer {peer_id!r} has no {asset} (declare peers.{peer_id}.{asset})",
                )
    flexible = behind(("hybrid_inverter", "battery_inverter", "ev_charger"))
    if len(flexible) > 1:
        raise _Problem(
            f"peers.{peer_id}",
            _NO_VALUE,
            f"has {len(flexible)} flexible devices ({', '.join(flexible)}); the controller "
            "dispatches one battery or EV per peer",
        )
    loads = behind(("programmable_load",))
    if len(loads) > 1:
        raise _Problem(f"devices.{loads[1]}.kind", "programmable_load", f"peer {peer_id!r} has one")
    channels: dict[str, str] = {}
    for device_id in devices:
        name = site.channel(device_id)
        if name in channels:
            raise _Problem(
                f"devices.{device_id}.channel",
                name,
                f"peer {peer_id!r} already has a device named so ({channels[name]}); "
                "give each device of a peer its own channel",
            )
        channels[name] = device_id
    for device_id, device in devices.items():
        _check_limits(peer_id, peer, device_id, device)
    return _check_connection(peer_id, peer, meters[0], devices)


def _check_connection(
    peer_id: str, peer: Peer, meter_id: str, devices: dict[str, AnyDevice]
) -> float:
    """The PCC meter's rating covers what the peer can draw or feed through it (the meter driver
    takes a reading far above the rating for a fault, so the controller would trip); returns the
    larger of the two (kW)."""
    imports: list[tuple[str, float]] = [(f"load peak {fmt(peer.load.peak_kw)}", peer.load.peak_kw)]
    exports: list[tuple[str, float]] = []
    for device_id, device in devices.items():
        charge_kw = discharge_kw = 0.0
        if isinstance(device, HybridInverter | BatteryInverter) and peer.battery is not None:
            charge_kw = min(
                device.rated_power_kw, device.max_charge_kw or peer.battery.max_charge_kw
            )
            discharge_kw = device.max_discharge_kw or peer.battery.max_discharge_kw
            if isinstance(device, HybridInverter) and peer.pv is not None:
                discharge_kw += peer.pv.peak_kw
            discharge_kw = min(device.rated_power_kw, discharge_kw)
        elif isinstance(device, PvInverter) and peer.pv is not None:
            discharge_kw = min(device.rated_power_kw, peer.pv.peak_kw)
        elif isinstance(device, EvCharger) and peer.ev is not None:
            charge_kw = device.max_charge_kw or peer.ev.max_charge_kw
            given = device.max_discharge_kw
            discharge_kw = peer.ev.max_discharge_kw if given is None else given
        if charge_kw > 0:
            imports.append((f"{device_id} {fmt(charge_kw)}", charge_kw))
        if discharge_kw > 0:
            exports.append((f"{device_id} {fmt(discharge_kw)}", discharge_kw))
    meter = devices[meter_id]
    assert isinstance(meter, PccMeter)
    rating = meter.rated_power_kw
    for direction, parts in (("draw", imports), ("feed", exports)):
        total = sum(kw for _, kw in parts)
        if total > rating + 1e-9:
            raise _Problem(
                f"devices.{meter_id}.rated_power_kw",
                rating,
                f"must be >= what peer {peer_id!r} can {direction} through it, "
                f"{fmt(round(total, 6))} kW ({' + '.join(name for name, _ in parts)})",
            )
    return max(sum(kw for _, kw in imports), sum(kw for _, kw in exports))


# Above this share of the voltage lost in the lines (one peer at its rating, the others idle)
# the feeder's power flow does not converge (it fails near 25 %): impedances in ohms per metre
# written for ohms per km, or lengths in mm, rather than a weak feeder.
FEEDER_DROP_LIMIT = 0.25


def _check_feeder_carries(site: Site, peer_kw: dict[str, float]) -> None:
    """Each peer alone at its rating can be carried from the transformer to its bus."""
    feeder = site.feeder
    feeds: dict[str, tuple[str, float, int]] = {}  # bus -> (its parent, loop ohms, line index)
    for i, resolved in enumerate(feeder.resolved_lines()):
        ohm = resolved.r_ohm_per_km * resolved.length_m / 1000.0
        feeds[resolved.to_bus] = (resolved.from_bus, ohm, i)
    volts = feeder.transformer.lv_voltage_v
    for peer_id, peer in site.peers.items():
        bus, path_ohm, worst = peer.bus, 0.0, -1
        while bus != feeder.slack_bus:
            parent, ohm, index = feeds[bus]
            if worst < 0 or ohm > feeds[feeder.lines[worst].to_bus][1]:
                worst = index
            path_ohm += ohm
            bus = parent
        share = peer_kw[peer_id] * 1000.0 * path_ohm / volts**2
        if share <= FEEDER_DROP_LIMIT:
            continue
        line = feeder.lines[worst]
        key = f"feeder.lines[{worst}].r_ohm_per_km"
        if line.r_ohm_per_km is None:  # the line takes it from its type: fix it there
            key = f"feeder.line_types.{line.type}.r_ohm_per_km"
        raise _Problem(
            key,
            feeder.resolved_lines()[worst].r_ohm_per_km,
            f"the feeder cannot carry peer {peer_id!r} at {fmt(round(peer_kw[peer_id], 3))} kW: "
            f"{path_ohm:.3g} ohm of line from {feeder.slack_bus!r} to bus {peer.bus!r} (most in "
            f"feeder.lines[{worst}], {fmt(line.length_m)} m) would take ~{share * 100:.0f} % of "
            f"{fmt(volts)} V (at most {FEEDER_DROP_LIMIT * 100:.0f} %); impedances are ohms per "
            "km of the loop, lengths in metres",
        )


def _check_limits(peer_id: str, peer: Peer, device_id: str, device: AnyDevice) -> None:
    """A device's limits within the ratings of the asset behind it."""

    def cap(name: str, value: float | None, rating: float, asset: str) -> None:
        if value is not None and value > rating:
            raise _Problem(
                f"devices.{device_id}.{name}",
                value,
                f"must be <= the {asset}'s rating peers.{peer_id}.{asset}.{name} = {fmt(rating)}",
            )

    if isinstance(device, HybridInverter | BatteryInverter) and peer.battery is not None:
        cap("max_charge_kw", device.max_charge_kw, peer.battery.max_charge_kw, "battery")
        cap("max_discharge_kw", device.max_discharge_kw, peer.battery.max_discharge_kw, "battery")
    if isinstance(device, EvCharger) and peer.ev is not None:
        cap("max_charge_kw", device.max_charge_kw, peer.ev.max_charge_kw, "ev")
        cap("max_discharge_kw", device.max_discharge_kw, peer.ev.max_discharge_kw, "ev")
        for name in ("max_charge_kw", "max_discharge_kw"):
            value = getattr(device, name)
            if value and value < peer.ev.min_power_kw:  # 0: no V2G
                raise _Problem(
                    f"devices.{device_id}.{name}",
                    value,
                    f"must be >= the ev's deadband peers.{peer_id}.ev.min_power_kw = "
                    f"{fmt(peer.ev.min_power_kw)}"
                    + (" (or 0: no V2G)" if name == "max_discharge_kw" else ""),
                )
    if isinstance(device, ProgrammableLoad) and peer.load.peak_kw > device.max_power_kw:
        raise _Problem(
            f"devices.{device_id}.max_power_kw",
            device.max_power_kw,
            f"must be >= the house load it draws, peers.{peer_id}.load.peak_kw = "
            f"{fmt(peer.load.peak_kw)}",
        )


def _endpoint_key(site: Site, device_id: str, device: AnyDevice) -> tuple[str, Any, str] | None:
    """(what, address, key) of a device's endpoint; None for a free port of its own."""
    if isinstance(device, PccMeter | HybridInverter | BatteryInverter | PvInverter):
        endpoint = device.modbus
        if endpoint.gateway is not None:
            if endpoint.gateway not in site.modbus_gateways:
                raise _Problem(
                    f"devices.{device_id}.modbus.gateway",
                    endpoint.gateway,
                    "no such gateway; gateways: "
                    + (", ".join(site.modbus_gateways) or "none declared"),
                )
            return "modbus", ("gateway", endpoint.gateway, endpoint.unit_id), "modbus.unit_id"
        if endpoint.port == 0:
            return None
        return "modbus", (endpoint.host, endpoint.port, endpoint.unit_id), "modbus.unit_id"
    if isinstance(device, EvCharger):
        if device.opcua.port == 0:
            return None
        return "opcua", (device.opcua.host, device.opcua.port), "opcua.url"
    if device.visa.port == 0:
        return None
    return "visa", (device.visa.host, device.visa.port), "visa.resource"


def _check_endpoints(site: Site) -> None:
    taken: dict[Any, str] = {}
    ports: dict[tuple[str, int], tuple[str, str]] = {}  # (host, port) -> (protocol, device)
    gateway_at: dict[tuple[str, int], str] = {}  # (host, port) -> the gateway listening there
    for name, gateway in site.modbus_gateways.items():
        if name in site.devices:  # the plant names listeners and their faults by these ids
            raise _Problem(
                f"modbus_gateways.{name}",
                _NO_VALUE,
                f"{name!r} is also a device's id (devices.{name}); give the gateway its own id",
            )
        if not gateway.port:
            continue
        host_port = (gateway.host, gateway.port)
        if host_port in gateway_at:
            raise _Problem(
                f"modbus_gateways.{name}.port",
                gateway.port,
                f"gateway {gateway_at[host_port]!r} already listens on {gateway.host}:"
                f"{gateway.port}; give each gateway its own port, or put the devices behind one",
            )
        gateway_at[host_port] = name
        ports[host_port] = ("modbus", f"gateway {name}")
    for device_id, device in site.devices.items():
        found = _endpoint_key(site, device_id, device)
        if found is None:
            continue
        protocol, address, key = found
        if address in taken:
            what = "port and unit id" if protocol == "modbus" else "endpoint"
            raise _Problem(
                f"devices.{device_id}.{key}",
                _shown_address(device),
                f"device {taken[address]!r} is already on this {what}; give each device its own",
            )
        taken[address] = device_id
        if protocol == "modbus" and address[0] == "gateway":
            continue
        host_port = (address[0], address[1])
        if protocol == "modbus" and host_port in gateway_at:
            raise _Problem(
                f"devices.{device_id}.modbus.port",
                host_port[1],
                f"gateway {gateway_at[host_port]!r} listens on {host_port[0]}:{host_port[1]}; "
                f"put the device behind it: modbus = {{ gateway = "
                f'"{gateway_at[host_port]}", unit_id = ... }}',
            )
        other = ports.get(host_port)
        if other is not None and (other[0] != protocol or protocol != "modbus"):
            raise _Problem(
                f"devices.{device_id}.{key}",
                _shown_address(device),
                f"port {host_port[1]} on {host_port[0]} is already served by {other[1]} "
                f"({other[0]})",
            )
        ports.setdefault(host_port, (protocol, device_id))


def _shown_address(device: AnyDevice) -> Any:
    if isinstance(device, EvCharger):
        return device.opcua.url
    if isinstance(device, ProgrammableLoad):
        return device.visa.resource
    return device.modbus.unit_id


def iter_devices(site: Site, kinds: tuple[str, ...]) -> Iterator[tuple[str, AnyDevice]]:
    """(id, device) of every device of the given kinds, in file order."""
    for device_id, device in site.devices.items():
        if device.kind in kinds:
            yield device_id, device


def __getattr__(name: str) -> Any:
    """`SITE_TIMEZONE`: the default site's zone, read from its file (the one place it is said)."""
    if name == "SITE_TIMEZONE":
        return default_site().site.timezone
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
