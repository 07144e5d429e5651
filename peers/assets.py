"""What a peer owns, as data an agent plans for (seed paper, section 5.4).

Units are in the names; power magnitudes are >= 0 and directions are named (`max_charge_kw`,
`max_discharge_kw`); where a signed power appears elsewhere it follows the generator convention
(positive = delivered toward the grid). Times of day are local wall-clock times in the peer's
`timezone`; everything an agent exchanges with the orchestrator is timezone-aware UTC.

The models are pydantic so the orchestrator's TOML configuration can embed them and an invalid file
gives one error naming the key, the value and what is allowed.
"""

from __future__ import annotations

from datetime import time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from labspec.site import SITE_TIMEZONE


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PvAsset(_Model):
    """A rooftop PV array behind the peer's inverter."""

    peak_power_kw: float = Field(gt=0, description="Rated DC peak power (kWp)")
    levelised_cost_per_kwh: float = Field(
        default=0.0,
        ge=0,
        description="Levelised cost of PV energy in the HEMS objective (currency per kWh); "
        "0 treats the array as sunk cost",
    )


class BatteryAsset(_Model):
    """A stationary battery behind a hybrid inverter."""

    capacity_kwh: float = Field(gt=0)
    max_charge_kw: float = Field(gt=0)
    max_discharge_kw: float = Field(gt=0)
    soc_min_pct: float = Field(default=10.0, ge=0, le=100)
    soc_max_pct: float = Field(default=95.0, ge=0, le=100)
    charge_efficiency: float = Field(default=0.95, gt=0, le=1)
    discharge_efficiency: float = Field(default=0.95, gt=0, le=1)
    depreciation_per_kwh: float = Field(
        default=0.5,
        ge=0,
        description="Battery depreciation per kWh of AC throughput, charge plus discharge "
        "(currency per kWh)",
    )

    @model_validator(mode="after")
    def _window(self) -> BatteryAsset:
        if self.soc_min_pct >= self.soc_max_pct:
            raise ValueError(
                f"soc_min_pct ({self.soc_min_pct}) must be below soc_max_pct ({self.soc_max_pct})"
            )
        return self

    def energy_kwh(self, soc_pct: float) -> float:
        return self.capacity_kwh * soc_pct / 100.0

    def soc_pct(self, energy_kwh: float) -> float:
        return 100.0 * energy_kwh / self.capacity_kwh

    @property
    def energy_min_kwh(self) -> float:
        return self.energy_kwh(self.soc_min_pct)

    @property
    def energy_max_kwh(self) -> float:
        return self.energy_kwh(self.soc_max_pct)


class EvAsset(_Model):
    """A vehicle on a bidirectional (V2G/G2V) charger, plugged in only some hours of the day.

    `plug_windows_local` lists the daily (arrival, departure) local times (a window may cross
    midnight). At each departure the vehicle needs `departure_soc_pct`; while away it draws
    `drive_kw` from its battery. Below `reserve_soc_pct` the charger does not discharge, and a
    non-zero power below `min_power_kw` is not possible (deadband). Powers are AC at the charger;
    the efficiencies lie between AC and stored energy.
    """

    capacity_kwh: float = Field(gt=0)
    max_charge_kw: float = Field(gt=0)
    max_discharge_kw: float = Field(ge=0)
    min_power_kw: float = Field(default=0.3, ge=0)
    soc_min_pct: float = Field(default=10.0, ge=0, le=100)
    soc_max_pct: float = Field(default=95.0, ge=0, le=100)
    reserve_soc_pct: float = Field(default=30.0, ge=0, le=100)
    departure_soc_pct: float = Field(default=80.0, ge=0, le=100)
    charge_efficiency: float = Field(default=0.95, gt=0, le=1)
    discharge_efficiency: float = Field(default=0.95, gt=0, le=1)
    depreciation_per_kwh: float = Field(default=0.5, ge=0)
    drive_kw: float = Field(default=0.6, ge=0, description="Drawn from the battery while away")
    plug_windows_local: tuple[tuple[time, time], ...] = Field(
        default=((time(9, 0), time(17, 30)), (time(19, 0), time(8, 0))), min_length=1
    )

    @model_validator(mode="after")
    def _window(self) -> EvAsset:
        if self.soc_min_pct >= self.soc_max_pct:
            raise ValueError(
                f"soc_min_pct ({self.soc_min_pct}) must be below soc_max_pct ({self.soc_max_pct})"
            )
        for name in ("reserve_soc_pct", "departure_soc_pct"):
            value = getattr(self, name)
            if not self.soc_min_pct <= value <= self.soc_max_pct:
                raise ValueError(
                    f"{name} ({value}) must lie in the SoC window "
                    f"[{self.soc_min_pct}, {self.soc_max_pct}]"
                )
        limit = min(self.max_charge_kw, self.max_discharge_kw or self.max_charge_kw)
        if self.min_power_kw > limit:
            raise ValueError(f"min_power_kw ({self.min_power_kw}) must not exceed {limit} kW")
        for arrival, departure in self.plug_windows_local:
            if arrival == departure:
                raise ValueError(
                    f"plug window ({arrival}, {departure}): arrival and departure must differ"
                )
        return self

    def plugged_at(self, local_time: time) -> bool:
        """Whether the daily schedule has the vehicle plugged in at this local time."""
        for arrival, departure in self.plug_windows_local:
            if arrival < departure:
                if arrival <= local_time < departure:
                    return True
            elif local_time >= arrival or local_time < departure:
                return True
        return False

    def energy_kwh(self, soc_pct: float) -> float:
        return self.capacity_kwh * soc_pct / 100.0

    def soc_pct(self, energy_kwh: float) -> float:
        return 100.0 * energy_kwh / self.capacity_kwh

    @property
    def energy_min_kwh(self) -> float:
        return self.energy_kwh(self.soc_min_pct)

    @property
    def energy_max_kwh(self) -> float:
        return self.energy_kwh(self.soc_max_pct)

    @property
    def reserve_kwh(self) -> float:
        return self.energy_kwh(self.reserve_soc_pct)

    @property
    def departure_kwh(self) -> float:
        return min(self.energy_kwh(self.departure_soc_pct), self.energy_max_kwh)


class PeerAssets(_Model):
    """Everything one peer owns behind its point of common coupling (PCC)."""

    peer: str = Field(min_length=1)
    role: str = Field(default="prosumer", pattern="^(prosumer|consumer)$")
    timezone: str = Field(default=SITE_TIMEZONE, description="IANA zone of the site")
    typical_load_kw: float = Field(
        ge=0, description="Mean house load, used when there is no metered history yet"
    )
    peak_load_kw: float = Field(gt=0)
    grid_import_limit_kw: float = Field(default=10.0, gt=0)
    grid_export_limit_kw: float = Field(default=10.0, ge=0)
    pv: PvAsset | None = None
    battery: BatteryAsset | None = None
    ev: EvAsset | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {value!r} (use an IANA name)") from exc
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def has_flexibility(self) -> bool:
        return self.battery is not None or self.ev is not None


def peer_a_assets() -> PeerAssets:
    """Peer A: prosumer, 3.5 kWp PV, 7.5 kWh battery (3.5 kW each way), ~2 kW peak house load."""
    return PeerAssets(
        peer="A",
        role="prosumer",
        typical_load_kw=0.8,
        peak_load_kw=2.0,
        grid_import_limit_kw=7.0,
        grid_export_limit_kw=5.0,
        pv=PvAsset(peak_power_kw=3.5),
        battery=BatteryAsset(
            capacity_kwh=7.5,
            max_charge_kw=3.5,
            max_discharge_kw=3.5,
            charge_efficiency=0.96,
            discharge_efficiency=0.96,
        ),
    )


def peer_b_assets() -> PeerAssets:
    """Peer B: prosumer, ~1 kW load, V2G campus cart 90 Ah x 51.2 V LFP (~4.6 kWh), no PV."""
    return PeerAssets(
        peer="B",
        role="prosumer",
        typical_load_kw=0.5,
        peak_load_kw=1.0,
        grid_import_limit_kw=5.0,
        grid_export_limit_kw=5.0,
        ev=EvAsset(
            capacity_kwh=90 * 51.2 / 1000.0,
            max_charge_kw=2.0,
            max_discharge_kw=1.5,
            min_power_kw=0.3,
            reserve_soc_pct=30.0,
            departure_soc_pct=80.0,
        ),
    )


def peer_c_assets() -> PeerAssets:
    """Peer C: consumer, ~1.5 kW house load, no flexibility."""
    return PeerAssets(
        peer="C",
        role="consumer",
        typical_load_kw=0.7,
        peak_load_kw=1.5,
        grid_import_limit_kw=5.0,
        grid_export_limit_kw=0.0,
    )


def default_assets(peer: str) -> PeerAssets:
    """The section 5.4 assets of peer `peer` (A, B or C)."""
    builders = {"A": peer_a_assets, "B": peer_b_assets, "C": peer_c_assets}
    try:
        return builders[peer]()
    except KeyError:
        raise ValueError(f"no default assets for peer {peer!r}; known: A, B, C") from None
