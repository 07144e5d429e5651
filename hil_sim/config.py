"""Configuration of the emulated plant: one pydantic model, read from a TOML file's `[plant]` table.

Every default matches the IIT Gandhinagar testbed (seed paper, section 5.4). Power in kW, energy in
kWh, state of charge in %, times of day as local "HH:MM" strings, datetimes timezone-aware and
stored as UTC. `PlantConfig.from_toml` turns any problem into one `ConfigError` whose message names
the key, the value and what is allowed, e.g. `plant.battery.capacity_kwh = -3: must be > 0`.
"""

from __future__ import annotations

import math
import tomllib
from datetime import UTC, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

IST = timezone(timedelta(hours=5, minutes=30), "IST")
DEFAULT_START = datetime(2026, 3, 21, 0, 0, tzinfo=IST).astimezone(UTC)


class ConfigError(ValueError):
    """An unusable plant configuration; the message names the key, the value and what is allowed."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _check_above(value: float, info: Any, other: str) -> float:
    """Reject `value` unless it is above the already-validated sibling field `other`."""
    low = info.data.get(other)
    if low is not None and value <= low:
        raise PydanticCustomError("order", f"must be > {other} ({low:g})")
    return value


class SiteConfig(_Section):
    """Where the testbed is (IIT Gandhinagar) and its local clock (IST, no daylight saving)."""

    latitude_deg: float = Field(23.21, ge=-90, le=90)
    longitude_deg: float = Field(72.68, ge=-180, le=180)
    altitude_m: float = Field(80.0, ge=-500, le=9000)
    utc_offset_minutes: int = Field(330, ge=-720, le=840)
    ambient_min_c: float = Field(20.0, ge=-40, le=60)  # daily minimum near 06:00 local
    ambient_max_c: float = Field(34.0, ge=-40, le=60)  # daily maximum near 15:00 local

    @field_validator("ambient_max_c")
    @classmethod
    def _max_above_min(cls, v: float, info: Any) -> float:
        return _check_above(v, info, "ambient_min_c")


class PvConfig(_Section):
    """Peer A's rooftop array."""

    peak_kw: float = Field(3.5, gt=0, le=1000)  # kWp at standard test conditions
    tilt_deg: float = Field(23.0, ge=0, le=90)
    azimuth_deg: float = Field(180.0, ge=0, lt=360)  # 180 = facing south
    temperature_coefficient_per_c: float = Field(-0.0035, ge=-0.02, le=0)
    system_loss_pct: float = Field(3.0, ge=0, lt=100)  # wiring, soiling, mismatch
    cloud_cover: float = Field(0.2, ge=0, le=1)  # share of daylight time shaded; 0 = clear sky
    cloud_transmittance_min: float = Field(0.25, gt=0, le=1)  # thickest cloud passes this much
    cloud_mean_duration_s: float = Field(240.0, gt=0, le=86400)


class BatteryConfig(_Section):
    """Peer A's stationary battery behind the hybrid inverter (DC side)."""

    capacity_kwh: float = Field(7.5, gt=0, le=10000)
    max_charge_kw: float = Field(3.75, gt=0, le=10000)  # DC, magnitude
    max_discharge_kw: float = Field(3.75, gt=0, le=10000)
    charge_efficiency: float = Field(0.96, gt=0, le=1)
    discharge_efficiency: float = Field(0.96, gt=0, le=1)
    soc_min_pct: float = Field(10.0, ge=0, lt=100)
    soc_max_pct: float = Field(95.0, gt=0, le=100)
    initial_soc_pct: float = Field(50.0, ge=0, le=100)

    @field_validator("soc_max_pct")
    @classmethod
    def _max_above_min(cls, v: float, info: Any) -> float:
        return _check_above(v, info, "soc_min_pct")

    @field_validator("initial_soc_pct")
    @classmethod
    def _initial_in_window(cls, v: float, info: Any) -> float:
        low, high = info.data.get("soc_min_pct"), info.data.get("soc_max_pct")
        if low is not None and high is not None and not low <= v <= high:
            raise PydanticCustomError(
                "window", f"must be within [soc_min_pct, soc_max_pct] = [{low:g}, {high:g}]"
            )
        return v


class InverterConfig(_Section):
    """Peer A's hybrid inverter (SunSpec models 701/702/704/713/714)."""

    rated_power_kw: float = Field(5.0, gt=0, le=10000)  # AC apparent-power rating, magnitude
    wset_revert_timeout_s: float = Field(0.0, ge=0, le=4294967295)  # 0 = no revert (power-on)


class EvConfig(_Section):
    """Peer B's campus cart (90 Ah, 51.2 V LFP) on a bidirectional charger."""

    capacity_ah: float = Field(90.0, gt=0, le=10000)
    nominal_voltage_v: float = Field(51.2, gt=0, le=1500)
    max_charge_kw: float = Field(2.0, gt=0, le=1000)  # AC, magnitude
    max_discharge_kw: float = Field(1.5, gt=0, le=1000)
    min_power_kw: float = Field(0.3, ge=0, le=1000)  # deadband: 0 < |setpoint| < this is refused
    ramp_kw_per_s: float = Field(0.5, gt=0, le=1000)
    charger_efficiency: float = Field(0.95, gt=0, le=1)  # each way, between AC and stored energy
    soc_min_pct: float = Field(10.0, ge=0, lt=100)
    soc_max_pct: float = Field(95.0, gt=0, le=100)
    reserve_soc_pct: float = Field(30.0, ge=0, le=100)  # no discharge at or below this
    initial_soc_pct: float = Field(60.0, ge=0, le=100)
    watchdog_timeout_s: float = Field(30.0, ge=0, le=86400)  # 0 = no watchdog
    drive_power_kw: float = Field(0.6, ge=0, le=1000)  # drawn from the battery while away
    # Local plug-in windows ["HH:MM", "HH:MM"] (arrival, departure); a window may wrap midnight.
    plug_windows: tuple[tuple[str, str], ...] = (("09:00", "17:30"), ("19:00", "08:00"))

    @field_validator("soc_max_pct")
    @classmethod
    def _max_above_min(cls, v: float, info: Any) -> float:
        return _check_above(v, info, "soc_min_pct")

    @field_validator("reserve_soc_pct", "initial_soc_pct")
    @classmethod
    def _in_window(cls, v: float, info: Any) -> float:
        low, high = info.data.get("soc_min_pct"), info.data.get("soc_max_pct")
        if low is not None and high is not None and not low <= v <= high:
            raise PydanticCustomError(
                "window", f"must be within [soc_min_pct, soc_max_pct] = [{low:g}, {high:g}]"
            )
        return v

    @field_validator("min_power_kw")
    @classmethod
    def _below_max(cls, v: float, info: Any) -> float:
        highs = [info.data.get("max_charge_kw"), info.data.get("max_discharge_kw")]
        highs = [h for h in highs if h is not None]
        if highs and v > min(highs):
            raise PydanticCustomError(
                "deadband", f"must be <= min(max_charge_kw, max_discharge_kw) = {min(highs):g}"
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
    def capacity_kwh(self) -> float:
        return self.capacity_ah * self.nominal_voltage_v / 1000.0


class HouseLoadConfig(_Section):
    """One peer's daily house-load profile (consumption, kW)."""

    peak_kw: float = Field(gt=0, le=1000)  # typical evening peak
    base_kw: float = Field(gt=0, le=1000)  # night-time standby
    power_factor: float = Field(0.95, gt=0, le=1)  # lagging
    noise_pct: float = Field(8.0, ge=0, le=50)  # standard deviation of the slow noise

    @model_validator(mode="after")
    def _base_below_peak(self) -> HouseLoadConfig:
        if self.base_kw >= self.peak_kw:
            raise PydanticCustomError(
                "order", f"base_kw ({self.base_kw:g}) must be < peak_kw ({self.peak_kw:g})"
            )
        return self


class HouseLoadsConfig(_Section):
    """The three houses; peer C's profile is the programmable load's stored LIST program."""

    A: HouseLoadConfig = HouseLoadConfig(peak_kw=2.0, base_kw=0.3)
    B: HouseLoadConfig = HouseLoadConfig(peak_kw=1.0, base_kw=0.15)
    C: HouseLoadConfig = HouseLoadConfig(peak_kw=1.5, base_kw=0.2, power_factor=1.0)


class ProgrammableLoadConfig(_Section):
    """Peer C's programmable AC electronic load at power-on."""

    input_on: bool = True
    function: Literal["POW", "LIST"] = "LIST"
    power_setpoint_w: float = Field(0.0, ge=0, le=3000)


class LineConfig(_Section):
    """One feeder section; impedances are per km of the single-phase loop (go and return)."""

    from_bus: str = Field(min_length=1)
    to_bus: str = Field(min_length=1)
    length_m: float = Field(gt=0, le=100000)
    r_ohm_per_km: float = Field(gt=0, le=1000)
    x_ohm_per_km: float = Field(ge=0, le=1000)


def _default_lines() -> tuple[LineConfig, ...]:
    trunk = {"r_ohm_per_km": 0.64, "x_ohm_per_km": 0.16}  # 95 mm² Al, loop
    service = {"r_ohm_per_km": 2.3, "x_ohm_per_km": 0.18}  # 16 mm² Cu, loop
    return (
        LineConfig(from_bus="LV", to_bus="J1", length_m=120.0, **trunk),
        LineConfig(from_bus="J1", to_bus="A", length_m=30.0, **service),
        LineConfig(from_bus="J1", to_bus="J2", length_m=80.0, **trunk),
        LineConfig(from_bus="J2", to_bus="B", length_m=25.0, **service),
        LineConfig(from_bus="J2", to_bus="C", length_m=40.0, **service),
    )


class FeederConfig(_Section):
    """The radial low-voltage feeder: the transformer's LV bus "LV" is the slack, "A", "B" and "C"
    are the peers' points of common coupling; other bus names are junctions."""

    lv_bus_voltage_v: float = Field(232.0, gt=0, le=1000)
    nominal_frequency_hz: float = Field(50.0, gt=0, le=400)
    frequency_noise_hz: float = Field(0.02, ge=0, le=1)  # standard deviation of the slow wander
    lines: tuple[LineConfig, ...] = Field(default_factory=_default_lines)

    @field_validator("lines")
    @classmethod
    def _radial(cls, lines: tuple[LineConfig, ...]) -> tuple[LineConfig, ...]:
        parent: dict[str, str] = {}
        for line in lines:
            if line.to_bus == "LV":
                raise PydanticCustomError("radial", "the LV bus is the root: no line may end at it")
            if line.to_bus in parent:
                raise PydanticCustomError(
                    "radial", f"bus {line.to_bus!r} is fed twice: the feeder must be radial"
                )
            parent[line.to_bus] = line.from_bus
        for bus in parent:
            seen = {bus}
            node = bus
            while node != "LV":
                if node not in parent:
                    raise PydanticCustomError("radial", f"bus {node!r} is not connected to 'LV'")
                node = parent[node]
                if node in seen:
                    raise PydanticCustomError("radial", f"the lines form a loop through {node!r}")
                seen.add(node)
        missing = [peer for peer in ("A", "B", "C") if peer not in parent]
        if missing:
            raise PydanticCustomError("radial", f"no line reaches the PCC bus(es) {missing}")
        return lines


class PlantConfig(_Section):
    """Everything the emulated plant needs; defaults describe the IIT Gandhinagar testbed."""

    seed: int = Field(0, ge=0, le=2**63 - 1)
    start: datetime = DEFAULT_START  # timezone-aware; stored as UTC
    site: SiteConfig = SiteConfig()
    pv: PvConfig = PvConfig()
    battery: BatteryConfig = BatteryConfig()
    inverter: InverterConfig = InverterConfig()
    ev: EvConfig = EvConfig()
    house_loads: HouseLoadsConfig = HouseLoadsConfig()
    load_c: ProgrammableLoadConfig = ProgrammableLoadConfig()
    feeder: FeederConfig = FeederConfig()

    @field_validator("start")
    @classmethod
    def _aware_utc(cls, v: datetime) -> datetime:
        if v.tzinfo is None or v.utcoffset() is None:
            raise PydanticCustomError(
                "naive", "must carry a UTC offset, e.g. 2026-03-21T00:00:00+05:30"
            )
        return v.astimezone(UTC)

    @classmethod
    def from_toml(cls, path: str | Path) -> PlantConfig:
        """Read the `[plant]` table of a TOML file; any problem raises one `ConfigError`."""
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the plant configuration: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
        unknown = sorted(set(data) - {"plant"})
        if unknown:
            raise ConfigError(f"{path}: {unknown[0]}: unknown key; allowed: plant")
        plant = data.get("plant", {})
        if not isinstance(plant, dict):
            raise ConfigError(f"{path}: plant = {plant!r}: must be a table")
        try:
            return cls.from_mapping(plant)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    @classmethod
    def from_mapping(cls, data: dict[str, Any], prefix: str = "plant") -> PlantConfig:
        """Validate an already-parsed mapping (the `[plant]` table), naming keys under `prefix`."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(describe_validation_error(exc, prefix, cls)) from None


def describe_validation_error(exc: ValidationError, prefix: str, model: type[BaseModel]) -> str:
    """One line per problem: `<dotted key> = <value>: <what is allowed>`."""
    lines = []
    for error in exc.errors(include_url=False):
        key = ".".join([prefix, *(str(part) for part in error["loc"])])
        lines.append(f"{key}{_shown_value(error)}: {_allowed(error, model)}")
    if len(lines) == 1:
        return lines[0]
    return f"{lines[0]} (and {len(lines) - 1} more: " + "; ".join(lines[1:]) + ")"


def _shown_value(error: dict[str, Any]) -> str:
    if error["type"] in ("missing",):
        return ""
    value = error.get("input")
    if isinstance(value, dict):
        return ""
    if isinstance(value, datetime):
        return f" = {value.isoformat()}"
    return f" = {value!r}" if isinstance(value, str) else f" = {_fmt(value)}"


def _fmt(value: Any) -> str:
    """A value as TOML would spell it: -3 rather than -3.0, true rather than True."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if (
        isinstance(value, float)
        and math.isfinite(value)
        and value.is_integer()
        and abs(value) < 1e15
    ):
        return str(int(value))
    if isinstance(value, (int, float)):
        return str(value)
    return repr(value)


def _allowed(error: dict[str, Any], model: type[BaseModel]) -> str:
    kind, ctx = error["type"], error.get("ctx", {})
    bounds = {
        "greater_than": ("> ", "gt"),
        "greater_than_equal": (">= ", "ge"),
        "less_than": ("< ", "lt"),
        "less_than_equal": ("<= ", "le"),
    }
    if kind in bounds:
        symbol, name = bounds[kind]
        return f"must be {symbol}{_fmt(ctx[name])}"
    if kind == "extra_forbidden":
        return f"unknown key; allowed: {', '.join(_allowed_keys(model, error['loc'][:-1]))}"
    if kind == "missing":
        return "required key is missing"
    if kind in ("float_type", "float_parsing", "finite_number", "int_type", "int_parsing"):
        what = "an integer" if kind.startswith("int") else "a finite number"
        return f"must be {what}"
    if kind == "int_from_float":
        return "must be an integer"
    if kind in ("bool_type", "bool_parsing"):
        return "must be true or false"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}"
    if kind in ("datetime_type", "datetime_parsing", "datetime_from_date_parsing"):
        return "must be a datetime with a UTC offset, e.g. 2026-03-21T00:00:00+05:30"
    if kind in ("tuple_type", "list_type"):
        return "must be a list"
    if kind == "model_type" or kind == "dict_type":
        return "must be a table"
    return error["msg"]


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names of the (nested) model at `loc`, for an unknown-key error."""
    current: Any = model
    for part in loc:
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            current = annotation
        else:
            args = getattr(annotation, "__args__", ())
            inner = next(
                (a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), None
            )
            if inner is None:
                return []
            current = inner
    return list(getattr(current, "model_fields", {}))


def parse_hhmm(text: str) -> time:
    """A local time of day "HH:MM"; raises a pydantic error naming the format otherwise."""
    try:
        hours, minutes = text.split(":")
        return time(int(hours), int(minutes))
    except (ValueError, TypeError):
        raise PydanticCustomError(
            "time", f"{text!r} is not a time of day HH:MM (00:00-23:59)"
        ) from None


def plug_seconds(windows: tuple[tuple[str, str], ...]) -> list[tuple[int, int]]:
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
