"""The experiment configuration: one TOML file, validated by pydantic.

Secrets (InfluxDB token, OPC UA passwords) are never in the file: the file names the environment
variable that holds them. An invalid file gives one `ConfigError` naming the key, the value and what
is allowed.
"""

from __future__ import annotations

import json
import tomllib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)

from peers.agents import agent_kinds, agent_params
from peers.assets import PeerAssets, default_assets
from testbed.ledger.config import LedgerConfig
from testbed.messages import bounded, quoted
from testbed.platform.registry import RegistryError, check_peer_id
from testbed.platform.settings import PlatformConfig
from testbed.telemetry.config import InfluxConfig

if TYPE_CHECKING:
    from labspec.endpoints import PlantEndpoints
    from labspec.site import Site

IST = timezone(timedelta(hours=5, minutes=30))


class ConfigError(ValueError):
    """A configuration file that cannot be used, with the reason."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class DeviceEntry(_Strict):
    """One device of a peer: its driver kind (`testbed.driver_registry`), the device's id in the
    site (where the plant serves it, what messages name), the driver's typed configuration, and
    the site's driver settings (kept over the plant's endpoints)."""

    driver: str
    name: str
    config: SerializeAsAny[BaseModel]
    settings: dict[str, JsonValue] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _typed_config(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "driver" not in data:
            return data
        from testbed.driver_registry import driver_kind

        kind = driver_kind(str(data["driver"]))
        config = data.get("config", {})
        if isinstance(config, BaseModel):
            config = config.model_dump()
        try:
            typed = kind.config_model.model_validate(config)
        except ValidationError as error:
            raise ValueError(
                f"config ({kind.config_model.__name__}): {describe_validation_error(error)}"
            ) from None
        return {**data, "config": typed, "name": data.get("name", getattr(typed, "name", ""))}

    @property
    def channel(self) -> str:
        """The device's name within its peer: its driver kind's role channel."""
        from testbed.driver_registry import driver_kind

        return driver_kind(self.driver).channel


# The device sections a peer table may give by their channel, and the driver each one takes
# (`[peers.A.meter]` is `[peers.A.devices.meter]` with driver "sunspec_meter").
DEVICE_SECTIONS = {
    "meter": "sunspec_meter",
    "inverter": "sunspec_inverter",
    "pv_inverter": "sunspec_pv_inverter",
    "ev_charger": "opcua_ev_charger",
    "load": "scpi_load",
}


class PeerConfig(_Strict):
    """One peer: its role, its agent, its assets and how to reach its devices.

    `devices` maps each device's channel to its driver kind and the driver's own configuration
    model (`testbed.driver_registry`); a section named after a channel (`[peers.C.meter]`) is
    the built-in driver of that channel. The assets are `peers.assets.PeerAssets` without the
    peer name (defaults: the section 5.4 testbed).
    """

    role: Literal["prosumer", "consumer"]
    agent: str = "baseline"
    agent_params: dict[str, Any] = Field(default_factory=dict)
    assets: dict[str, Any] = Field(default_factory=dict)
    ramp_kw_per_s: PositiveFloat = 1.0  # controller-side ramp limit of the flexible device
    devices: dict[str, DeviceEntry]

    @model_validator(mode="before")
    @classmethod
    def _device_sections(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not any(key in data for key in DEVICE_SECTIONS):
            return data
        data = dict(data)
        devices = dict(data.get("devices") or {})
        for channel, driver in DEVICE_SECTIONS.items():
            if channel in data:
                section = data.pop(channel)
                if channel in devices:
                    raise ValueError(f"{channel}: given twice (also in devices.{channel})")
                devices[channel] = {"driver": driver, "config": section}
        data["devices"] = devices
        return data

    def peer_assets(self, name: str) -> PeerAssets:
        """The peer's assets: the file's `assets` table, else the testbed's defaults for `name`."""
        if not self.assets:
            return default_assets(name)
        return PeerAssets.model_validate({"peer": name, "role": self.role, **self.assets})

    @model_validator(mode="after")
    def _devices_by_channel(self) -> PeerConfig:
        for channel, entry in self.devices.items():
            if entry.channel != channel:
                raise ValueError(
                    f"devices.{channel}.driver = {entry.driver!r}: a {entry.channel} driver; "
                    f"its channel is devices.{entry.channel}"
                )
        if "meter" not in self.devices:
            raise ValueError("meter: required (the peer's PCC meter, devices.meter)")
        if "inverter" in self.devices and "ev_charger" in self.devices:
            raise ValueError("a peer has one flexible device: an inverter or an ev_charger")
        return self

    def device_config(self, channel: str) -> BaseModel | None:
        entry = self.devices.get(channel)
        return entry.config if entry is not None else None

    @property
    def meter(self) -> BaseModel:
        """The PCC meter's driver configuration."""
        return self.devices["meter"].config

    @property
    def inverter(self) -> BaseModel | None:
        return self.device_config("inverter")

    @property
    def pv_inverter(self) -> BaseModel | None:
        return self.device_config("pv_inverter")

    @property
    def ev_charger(self) -> BaseModel | None:
        return self.device_config("ev_charger")

    @property
    def load(self) -> BaseModel | None:
        return self.device_config("load")


class PricesConfig(_Strict):
    currency: str = "INR"
    retail_tariff: NonNegativeFloat = 8.0  # per kWh bought from the grid
    feed_in_tariff: NonNegativeFloat = 3.0  # per kWh sold to the grid
    deviation_penalty: NonNegativeFloat = 2.0  # per kWh of sold energy not delivered
    network_charge: NonNegativeFloat = 0.5  # per kWh of P2P energy, paid by the buyer

    @model_validator(mode="after")
    def _tariffs_ordered(self) -> PricesConfig:
        if self.feed_in_tariff > self.retail_tariff:
            raise ValueError(
                f"prices.feed_in_tariff = {self.feed_in_tariff} must not exceed "
                f"prices.retail_tariff = {self.retail_tariff}"
            )
        return self


class MarketConfig(_Strict):
    mechanism: str = "uniform"
    params: dict[str, Any] = Field(default_factory=dict)
    interval_s: PositiveFloat = 900.0
    gate_closure_s: NonNegativeFloat = 60.0  # orders close this long before the interval starts
    balancing: Literal["none", "local"] = "none"  # settle deviations among peers before the grid

    @field_validator("interval_s")
    @classmethod
    def _whole_seconds(cls, value: float) -> float:
        if value != int(value) or value < 60:
            raise ValueError(f"market.interval_s = {value}: must be whole seconds, at least 60")
        return value

    @model_validator(mode="after")
    def _mechanism_builds(self) -> MarketConfig:
        """The mechanism and its params are checked when the file is read, not at the first
        interval (a bad feeder file, an unknown parameter, a value out of range)."""
        if self.mechanism == "none":
            return self
        from testbed.market.registry import get_mechanism, mechanism_parameters

        try:
            params = dict(self.params)
            if "interval_s" in mechanism_parameters(self.mechanism):
                params.setdefault("interval_s", self.interval_s)
            get_mechanism(self.mechanism, **params)
        except ValueError as error:
            raise ValueError(f"mechanism = {self.mechanism!r}, params: {error}") from None
        return self


class ControlConfig(_Strict):
    step_s: PositiveFloat = 1.0
    stale_after_steps: int = Field(3, ge=1)  # a measurement older than this is stale
    lost_after_failures: int = Field(5, ge=1)  # consecutive failed reads before safe state
    setpoint_deadband_kw: NonNegativeFloat = 0.02  # smaller changes are not sent
    refresh_s: PositiveFloat = 10.0  # re-send an unchanged setpoint this often (watchdogs)
    io_timeout_s: PositiveFloat = 1.0
    # the PCC target: "plan" = the contract plus the plan's grid import; "contract" = alone
    dispatch: Literal["plan", "contract"] = "plan"


class PlantLink(_Strict):
    """How the controller reaches the emulated plant's simulation-control endpoint."""

    control_host: str = "127.0.0.1"
    control_port: int = Field(0, ge=0, le=65535)
    endpoints_json: Path | None = None  # fills device endpoints from `python -m hil_sim` output


class ClockConfig(_Strict):
    mode: Literal["lockstep", "wall"] = "lockstep"
    start: datetime | None = None  # lockstep: taken from the plant when absent

    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError(f"clock.start = {value.isoformat()}: give a UTC offset, e.g. +05:30")
        return value.astimezone(UTC) if value is not None else None


class RunStoreConfig(_Strict):
    root: Path = Path("runs")


class SinksConfig(_Strict):
    run_store: RunStoreConfig = RunStoreConfig()
    influx: dict[str, Any] | None = None  # validated by testbed.telemetry's InfluxConfig


class ExperimentConfig(_Strict):
    name: str = "experiment"
    hours: PositiveFloat = 24.0
    seed: int = 1
    # a finished earlier run whose metering and market each agent learns before its first
    # interval (a warm start, `testbed.agent_history`); None: the agents start with no history
    agent_history: Path | None = None

    @field_validator("agent_history")
    @classmethod
    def _history_is_a_run(cls, value: Path | None) -> Path | None:
        if value is not None and not (value / "meta.json").is_file():
            raise ValueError(
                f"agent_history = {str(value)!r} is not a run directory (no meta.json there); "
                "give a finished run of the same peers, e.g. runs/<name>-<time>"
            )
        return value


def _check_ev_can_start(name: str, peer: PeerConfig, step_s: float) -> None:
    """The ramp allows a step of at least the EV's minimum power, else the EV never starts: a
    ramp step below the minimum power is set to 0 (`testbed.safety`), step after step."""
    ev = peer.peer_assets(name).ev if "ev_charger" in peer.devices else None
    step_kw = peer.ramp_kw_per_s * step_s
    if ev is not None and step_kw < ev.min_power_kw:
        raise ValueError(
            f"peers.{name}.ramp_kw_per_s = {peer.ramp_kw_per_s:g}: times control.step_s = "
            f"{step_s:g} s it allows {step_kw:g} kW per step, below the EV's min_power_kw = "
            f"{ev.min_power_kw:g}: the EV could never start (a step below the minimum power is "
            "0); raise the ramp (the site's control_ramp_kw_per_s) or lower min_power_kw"
        )


class TestbedConfig(_Strict):
    """The experiment. `site` is the site file (default: the IIT Gandhinagar testbed); without a
    `[peers]` table, the peers are built from it (`testbed.site_peers`), so a new house is
    site-file lines only."""

    __test__ = False  # not a pytest test class, despite its name
    site: Path | None = None
    experiment: ExperimentConfig = ExperimentConfig()
    market: MarketConfig = MarketConfig()
    control: ControlConfig = ControlConfig()
    prices: PricesConfig = PricesConfig()
    clock: ClockConfig = ClockConfig()
    plant: PlantLink = PlantLink()
    sinks: SinksConfig = SinksConfig()
    platform: PlatformConfig = PlatformConfig()
    ledger: LedgerConfig = LedgerConfig()
    peers: dict[str, PeerConfig]

    @model_validator(mode="before")
    @classmethod
    def _peers_from_site(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("peers"):
            return data
        from labspec.site import DEFAULT_SITE_PATH, SiteError
        from testbed.site_peers import peers_from_site

        site_path = data.get("site")
        try:
            site = load_site_file(site_path)
            peers = peers_from_site(site, str(site_path or DEFAULT_SITE_PATH))
        except SiteError as error:
            raise ValueError(str(error)) from None
        return {**data, "peers": peers}

    def site_model(self) -> Site:
        """The site this experiment runs on (the default site when `site` is not set)."""
        return load_site_file(self.site)

    @model_validator(mode="after")
    def _consistent(self) -> TestbedConfig:
        if not self.peers:
            raise ValueError("peers: at least one peer is required")
        steps = self.market.interval_s / self.control.step_s
        if abs(steps - round(steps)) > 1e-9:
            raise ValueError(
                f"control.step_s = {self.control.step_s} must divide market.interval_s = "
                f"{self.market.interval_s}"
            )
        for name, peer in self.peers.items():
            try:
                peer.peer_assets(name)
            except ValidationError as error:
                problem = describe_validation_error(error)
                raise ValueError(f"peers.{name}.assets: {problem}") from None
            except ValueError as error:
                raise ValueError(f"peers.{name}.assets: {error}") from None
            try:
                check_peer_id(name)  # its broker user and MQTT topic level on the platform
            except RegistryError as error:
                raise ValueError(f"peers: {error}") from None
            _check_agent(name, peer)
            _check_ev_can_start(name, peer, self.control.step_s)
        if self.sinks.influx is not None:
            try:
                InfluxConfig.model_validate(self.sinks.influx)
            except ValidationError as error:
                raise ValueError(f"sinks.influx: {describe_validation_error(error)}") from None
        if self.site is not None:
            site_peers = self.site_model().peers
            strangers = [name for name in self.peers if name not in site_peers]
            if strangers:
                raise ValueError(
                    f"peers.{strangers[0]}: not a peer of the site {str(self.site)!r} (its peers: "
                    f"{', '.join(site_peers)})"
                )
        unknown = sorted(set(self.ledger.kyc) - set(self.peers))
        if unknown:
            raise ValueError(
                f"ledger.kyc.{unknown[0]}: no such peer (peers: {', '.join(sorted(self.peers))})"
            )
        if self.market.gate_closure_s >= self.market.interval_s:
            raise ValueError(
                f"market.gate_closure_s = {self.market.gate_closure_s} must be shorter than "
                f"market.interval_s = {self.market.interval_s}"
            )
        return self

    def to_toml_dict(self) -> dict[str, Any]:
        """The configuration as plain data (JSON types), for the run directory."""
        data: dict[str, Any] = json.loads(self.model_dump_json(exclude_none=True))
        return data


def _check_agent(name: str, peer: PeerConfig) -> None:
    """The peer's agent is a registered kind that takes its parameters (else ValueError naming
    the key), so a bad agent stops the run before anything starts rather than mid-way."""
    if peer.agent not in agent_kinds():
        kinds = ", ".join(agent_kinds())
        raise ValueError(f"peers.{name}.agent = {peer.agent!r}: no such agent; agents: {kinds}")
    try:
        agent_params(peer.agent, name, peer.agent_params)
    except ValueError as error:
        raise ValueError(f"peers.{name}.agent_params: {error}") from None


def load_site_file(path: Path | str | None) -> Site:
    """The site at `path`, or the default site; raises `labspec.site.SiteError` naming the key."""
    from labspec.site import default_site, load_site

    return default_site() if path is None else load_site(path)


def describe_validation_error(error: ValidationError) -> str:
    """One line per problem: the key, the value (cut when long) and what is allowed."""
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if not key:
            lines.append(message)
        elif item["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown key (check its spelling)")
        elif item["type"] == "missing":
            lines.append(f"{key}: required key is missing")
        elif "input" in item and not isinstance(item["input"], dict):
            lines.append(f"{key} = {quoted(item['input'])}: {message}")
        else:
            lines.append(f"{key}: {message}")
    return "; ".join(lines)


def parse_config(data: dict[str, Any], source: str = "config") -> TestbedConfig:
    """Validate configuration data, raising one `ConfigError` that names every bad key."""
    try:
        return TestbedConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(bounded(f"{source}: {describe_validation_error(error)}")) from None


def load_config(path: Path | str) -> TestbedConfig:
    """Read and validate a TOML configuration file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the file ({error.strerror})") from None
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{path}: not a UTF-8 text file (byte 0x{error.object[error.start]:02x} at offset "
            f"{error.start}); a configuration is a TOML text file"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(bounded(f"{path}: not valid TOML ({error})")) from None
    site = data.get("site")
    if isinstance(site, str) and not Path(site).is_absolute():
        data["site"] = str(path.parent / site)  # a relative site path: from the config's folder
    return parse_config(data, str(path))


def load_plant_endpoints(path: Path | str) -> PlantEndpoints:
    """Read a running emulated plant's endpoints file (`python -m hil_sim --endpoints-json`);
    a file that cannot be used gives one `ConfigError` naming it and what was wrong."""
    from labspec.endpoints import PlantEndpoints

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the endpoints file ({error.strerror})") from None
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{path}: not a UTF-8 text file (byte 0x{error.object[error.start]:02x} at offset "
            f"{error.start}); an endpoints file is the JSON that python -m hil_sim writes"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(bounded(f"{path}: not valid JSON ({error})")) from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: an endpoints file holds a JSON object, not {type(data).__name__}"
        )
    try:
        return PlantEndpoints.model_validate(data)
    except ValidationError as error:
        problem = describe_validation_error(error)
        raise ConfigError(bounded(f"{path}: not a plant endpoints file: {problem}")) from None
