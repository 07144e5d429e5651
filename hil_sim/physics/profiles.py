"""A day's profiles on one 10-second grid, built once per local day and cached; cheap to sample."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

import numpy as np

from hil_sim.config import HouseLoadConfig, PlantConfig, PvConfig, SiteConfig
from hil_sim.physics.loads import frequency_day_hz, house_load_day_kw
from hil_sim.physics.solar import pv_day_kw

STEP_S = 10.0
# Both midnights included, so interpolation never runs off the end.
SAMPLES = int(86400 / STEP_S) + 1

# Random streams, one per quantity, so changing one model does not reshuffle the others.
STREAM_PV, STREAM_FREQUENCY = 1, 2
STREAM_LOAD = {"A": 11, "B": 12, "C": 13}


@dataclass(frozen=True, slots=True)
class DayProfiles:
    """A local day's profiles sampled every STEP_S seconds from local midnight (plain lists: fast
    to index from Python)."""

    local_date: date
    pv_kw: list[float]
    house_load_kw: dict[str, list[float]]  # consumption, > 0
    frequency_hz: list[float]


def local_midnight_utc(site: SiteConfig, local_date: date) -> datetime:
    """The UTC instant of local midnight starting `local_date`."""
    offset = timedelta(minutes=site.utc_offset_minutes)
    return datetime(local_date.year, local_date.month, local_date.day, tzinfo=UTC) - offset


def build_day(config: PlantConfig, local_date: date) -> DayProfiles:
    """Every profile of one local day; depends only on the config and the date.

    Each profile is cached under just the settings it depends on, so plants whose configs differ
    only in device parameters share them (the lists are never written to).
    """
    loads = {
        peer: _house_load(getattr(config.house_loads, peer), config.seed, stream, local_date)
        for peer, stream in STREAM_LOAD.items()
    }
    return DayProfiles(
        local_date=local_date,
        pv_kw=_pv(config.site, config.pv, config.seed, local_date),
        house_load_kw=loads,
        frequency_hz=_frequency(
            config.feeder.nominal_frequency_hz,
            config.feeder.frequency_noise_hz,
            config.seed,
            local_date,
        ),
    )


def _rng(seed: int, stream: int, local_date: date) -> np.random.Generator:
    return np.random.default_rng([seed, stream, local_date.toordinal()])


@lru_cache(maxsize=16)
def _pv(site: SiteConfig, pv: PvConfig, seed: int, local_date: date) -> list[float]:
    start = local_midnight_utc(site, local_date)
    return pv_day_kw(site, pv, start, SAMPLES, STEP_S, _rng(seed, STREAM_PV, local_date)).tolist()


@lru_cache(maxsize=48)
def _house_load(load: HouseLoadConfig, seed: int, stream: int, local_date: date) -> list[float]:
    rng = _rng(seed, stream, local_date)
    return house_load_day_kw(load, rng, SAMPLES, STEP_S).tolist()


@lru_cache(maxsize=16)
def _frequency(nominal_hz: float, noise_hz: float, seed: int, local_date: date) -> list[float]:
    rng = _rng(seed, STREAM_FREQUENCY, local_date)
    return frequency_day_hz(nominal_hz, noise_hz, rng, SAMPLES, STEP_S).tolist()


class ProfileBook:
    """Builds days on first use and keeps the last few."""

    def __init__(self, config: PlantConfig, keep_days: int = 3) -> None:
        self.config = config
        self.keep_days = keep_days
        self._days: dict[date, DayProfiles] = {}

    def day(self, local_date: date) -> DayProfiles:
        profiles = self._days.get(local_date)
        if profiles is None:
            profiles = build_day(self.config, local_date)
            self._days[local_date] = profiles
            while len(self._days) > self.keep_days:
                del self._days[next(iter(self._days))]  # the one built longest ago
        return profiles


def clear_profile_caches() -> None:
    """Forget every cached day (tests use it to show a day is rebuilt identically)."""
    for cached in (_pv, _house_load, _frequency):
        cached.cache_clear()
