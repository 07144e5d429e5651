"""Configuration of the emulated plant: a site (labspec.site) plus the seed and the start time.

The site file says what the plant is (feeder, peers, assets, devices); the `[plant]` table of a
plant TOML file only says which site, which seed and when the day starts:

    [plant]
    seed = 7
    start = 2026-06-01T06:00:00+05:30    # default: 2026-03-21 00:00 on the site's clock
    site = "my-site.toml"                # default: the IIT Gandhinagar testbed; relative paths
                                         # are taken from this file's folder

`PlantConfig.from_toml` turns any problem into one `ConfigError` naming the key, the value and
what is allowed, e.g. `plant.seed = 1.5: must be an integer`; a problem in the site file names the
site file and the site's key.
"""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from labspec.site import (
    Ev,
    HouseLoad,
    Pv,
    ResolvedLine,
    Site,
    SiteError,
    SiteInfo,
    Weather,
    default_site,
    load_site,
    parse_hhmm,
    plug_seconds,
)
from labspec.validation import describe_validation_error

__all__ = [
    "DEFAULT_START_LOCAL",
    "ConfigError",
    "Ev",
    "HouseLoad",
    "PlantConfig",
    "Pv",
    "ResolvedLine",
    "SiteInfo",
    "Weather",
    "describe_validation_error",
    "parse_hhmm",
    "plug_seconds",
]

DEFAULT_START_LOCAL = datetime(2026, 3, 21, 0, 0)  # an equinox day, midnight on the site's clock


class ConfigError(ValueError):
    """An unusable plant configuration; the message names the key, the value and what is allowed."""


def default_start(site: Site) -> datetime:
    """Local midnight of DEFAULT_START_LOCAL's day on the site's clock, as UTC."""
    return DEFAULT_START_LOCAL.replace(tzinfo=site.site.zone).astimezone(UTC)


class PlantConfig(BaseModel):
    """What the emulated plant needs: the site, the seed of every random profile, the start."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    seed: int = Field(0, ge=0, le=2**63 - 1)
    start: datetime | None = None  # timezone-aware; stored as UTC; None = default_start(site)
    site: Site = Field(default_factory=default_site)

    @field_validator("start")
    @classmethod
    def _aware_utc(cls, v: datetime | None) -> datetime | None:
        if v is None:
            return None
        if v.tzinfo is None or v.utcoffset() is None:
            from pydantic_core import PydanticCustomError

            raise PydanticCustomError(
                "naive", "must carry a UTC offset, e.g. 2026-03-21T00:00:00+05:30"
            )
        return v.astimezone(UTC)

    @property
    def start_utc(self) -> datetime:
        """When the plant's clock starts (UTC)."""
        return self.start if self.start is not None else default_start(self.site)

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
            return cls.from_mapping(plant, base_dir=path.parent)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    @classmethod
    def from_mapping(
        cls, data: dict[str, Any], prefix: str = "plant", base_dir: Path | None = None
    ) -> PlantConfig:
        """Validate an already-parsed `[plant]` table; `site` may be a path or a Site."""
        data = dict(data)
        dot = "" if prefix.endswith("-") else "."  # "plant.site", or "--site" for an option
        site = data.get("site")
        if isinstance(site, str | Path):
            site_path = Path(site)
            if not site_path.is_absolute() and base_dir is not None:
                site_path = base_dir / site_path
            try:
                data["site"] = load_site(site_path)
            except SiteError as exc:
                raise ConfigError(f"{prefix}{dot}site: {exc}") from None
        elif site is not None and not isinstance(site, Site):
            raise ConfigError(f"{prefix}{dot}site = {site!r}: must be the path of a site file")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            message = describe_validation_error(exc, "" if dot == "" else prefix, cls)
            raise ConfigError(f"{prefix}{message}" if dot == "" else message) from None
