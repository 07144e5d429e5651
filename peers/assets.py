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

from labspec.site import EvCharger, PvInverter, Site, StorageInverter, default_site


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PvAsset(_Model):
    """A rooftop PV array behind the peer's inverter."""

    peak_power_kw: float = Field(gt=0, description="Rated DC peak power (kWp)")
    ac_limit_kw: float | None = Field(
        default=None,
        gt=0,
        description="AC rating of the PV-only inverter behind the array when below its kWp: the "
        "inverter clips the array's output there (None: no clipping of its own; behind a hybrid "
        "inverter the battery can take the surplus)",
    )
    tilt_deg: float = Field(default=23.0, ge=0, le=90, description="Panel tilt from horizontal")
    azimuth_deg: float = Field(
        default=180.0, ge=0, lt=360, description="Panel azimuth, 180 = facing south"
    )
    latitude_deg: float = Field(default=23.21, ge=-90, le=90, description="Site (IIT Gandhinagar)")
    longitude_deg: float = Field(default=72.68, ge=-180, le=180)
    altitude_m: float = Field(default=80.0, ge=-500, le=9000)
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
    timezone: str = Field(
        default_factory=lambda: default_site().site.timezone, description="IANA zone of the site"
    )
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


def assets_from_site(site: Site, peer: str) -> PeerAssets:
    """What peer `peer` of `site` owns, as its agent plans for it (the site file says it once)."""
    try:
        spec = site.peers[peer]
    except KeyError:
        raise ValueError(f"no peer {peer!r} in the site; peers: {', '.join(site.peers)}") from None
    pv = spec.pv
    battery = spec.battery
    ev = spec.ev
    battery_kw = ev_kw = (0.0, 0.0)
    if battery is not None:
        battery_kw = _capped(site, peer, battery.max_charge_kw, battery.max_discharge_kw, False)
    if ev is not None:
        ev_kw = _capped(site, peer, ev.max_charge_kw, ev.max_discharge_kw, True)
    return PeerAssets(
        peer=peer,
        role=spec.role,
        timezone=site.site.timezone,
        typical_load_kw=spec.load.typical_kw,
        peak_load_kw=spec.load.peak_kw,
        grid_import_limit_kw=spec.grid_import_limit_kw,
        grid_export_limit_kw=spec.grid_export_limit_kw,
        pv=None
        if pv is None
        else PvAsset(
            peak_power_kw=pv.peak_kw,
            ac_limit_kw=_pv_ac_limit_kw(site, peer, pv.peak_kw),
            levelised_cost_per_kwh=pv.levelised_cost_per_kwh,
            tilt_deg=pv.tilt_deg,
            azimuth_deg=pv.azimuth_deg,
            latitude_deg=site.site.latitude_deg,
            longitude_deg=site.site.longitude_deg,
            altitude_m=site.site.altitude_m,
        ),
        battery=None
        if battery is None
        else BatteryAsset(
            capacity_kwh=battery.capacity_kwh,
            max_charge_kw=battery_kw[0],
            max_discharge_kw=battery_kw[1],
            soc_min_pct=battery.soc_min_pct,
            soc_max_pct=battery.soc_max_pct,
            charge_efficiency=battery.charge_efficiency,
            discharge_efficiency=battery.discharge_efficiency,
            depreciation_per_kwh=battery.depreciation_per_kwh,
        ),
        ev=None
        if ev is None
        else EvAsset(
            capacity_kwh=ev.capacity_kwh,
            max_charge_kw=ev_kw[0],
            max_discharge_kw=ev_kw[1],
            min_power_kw=ev.min_power_kw,
            soc_min_pct=ev.soc_min_pct,
            soc_max_pct=ev.soc_max_pct,
            reserve_soc_pct=ev.reserve_soc_pct,
            departure_soc_pct=ev.departure_soc_pct,
            charge_efficiency=ev.charge_efficiency,
            discharge_efficiency=ev.discharge_efficiency,
            depreciation_per_kwh=ev.depreciation_per_kwh,
            drive_kw=ev.drive_kw,
            plug_windows_local=ev.plug_windows_local,
        ),
    )


def _pv_ac_limit_kw(site: Site, peer: str, peak_kw: float) -> float | None:
    """The AC rating of the PV-only inverter behind the peer's array when it is below the
    array's kWp (the plant clips the array there); None otherwise. A hybrid inverter's rating
    does not clip the array alone: its battery can store what the AC side cannot take."""
    for device in site.devices_of(peer).values():
        if isinstance(device, PvInverter) and device.rated_power_kw < peak_kw:
            return device.rated_power_kw
    return None


def _capped(
    site: Site, peer: str, charge_kw: float, discharge_kw: float, ev: bool
) -> tuple[float, float]:
    """A battery's (or with `ev` an EV's) power limits within the caps of the inverter (charger)
    that serves it, `max_charge_kw` and `max_discharge_kw`, and an inverter's AC rating, as the
    plant and the dispatcher apply them."""
    for device in site.devices_of(peer).values():
        if isinstance(device, StorageInverter) and not ev:
            charge_kw = min(charge_kw, device.rated_power_kw)
            discharge_kw = min(discharge_kw, device.rated_power_kw)
        if isinstance(device, StorageInverter | EvCharger) and isinstance(device, EvCharger) == ev:
            if device.max_charge_kw is not None:
                charge_kw = min(charge_kw, device.max_charge_kw)
            if device.max_discharge_kw is not None:
                discharge_kw = min(discharge_kw, device.max_discharge_kw)
    return charge_kw, discharge_kw


def default_assets(peer: str) -> PeerAssets:
    """The assets of peer `peer` of the default site (the IIT Gandhinagar testbed: A, B, C)."""
    return assets_from_site(default_site(), peer)
