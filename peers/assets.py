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

    The daily plug window runs from `plug_in_local` to `plug_out_local` (local time; a window that
    crosses midnight is allowed). At plug-out the vehicle needs `departure_soc_pct`. Below
    `reserve_soc_pct` the charger does not discharge. A non-zero power below `min_power_kw` is not
    possible (deadband).
    """

    capacity_kwh: float = Field(gt=0)
    max_charge_kw: float = Field(gt=0)
    max_discharge_kw: float = Field(ge=0)
    min_power_kw: float = Field(default=0.2, ge=0)
    soc_min_pct: float = Field(default=10.0, ge=0, le=100)
    soc_max_pct: float = Field(default=100.0, ge=0, le=100)
    reserve_soc_pct: float = Field(default=30.0, ge=0, le=100)
    departure_soc_pct: float = Field(default=80.0, ge=0, le=100)
    arrival_soc_pct: float = Field(
        default=40.0, ge=0, le=100, description="Expected SoC when the vehicle comes back"
    )
    charge_efficiency: float = Field(default=0.95, gt=0, le=1)
    discharge_efficiency: float = Field(default=0.95, gt=0, le=1)
    depreciation_per_kwh: float = Field(default=0.5, ge=0)
    plug_in_local: time = Field(default=time(17, 0))
    plug_out_local: time = Field(default=time(8, 0))

    @model_validator(mode="after")
    def _window(self) -> EvAsset:
        if self.soc_min_pct >= self.soc_max_pct:
            raise ValueError(
                f"soc_min_pct ({self.soc_min_pct}) must be below soc_max_pct ({self.soc_max_pct})"
            )
        for name in ("reserve_soc_pct", "departure_soc_pct", "arrival_soc_pct"):
            value = getattr(self, name)
            if not self.soc_min_pct <= value <= self.soc_max_pct:
                raise ValueError(
                    f"{name} ({value}) must lie in the SoC window "
                    f"[{self.soc_min_pct}, {self.soc_max_pct}]"
                )
        if self.min_power_kw > min(self.max_charge_kw, self.max_discharge_kw or self.max_charge_kw):
            raise ValueError(f"min_power_kw ({self.min_power_kw}) must not exceed the power limits")
        if self.plug_in_local == self.plug_out_local:
            raise ValueError("plug_in_local and plug_out_local must differ")
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


class PeerAssets(_Model):
    """Everything one peer owns behind its point of common coupling (PCC)."""

    peer: str = Field(min_length=1)
    role: str = Field(default="prosumer", pattern="^(prosumer|consumer)$")
    timezone: str = Field(default="Asia/Kolkata", description="IANA zone of the site")
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
    """Peer A: prosumer, 3.5 kWp PV, 7.5 kWh battery behind a ~3 kW hybrid inverter, ~2 kW load."""
    return PeerAssets(
        peer="A",
        role="prosumer",
        typical_load_kw=0.8,
        peak_load_kw=2.0,
        grid_import_limit_kw=7.0,
        grid_export_limit_kw=5.0,
        pv=PvAsset(peak_power_kw=3.5),
        battery=BatteryAsset(capacity_kwh=7.5, max_charge_kw=3.0, max_discharge_kw=3.0),
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
            max_charge_kw=1.5,
            max_discharge_kw=1.5,
            min_power_kw=0.2,
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
