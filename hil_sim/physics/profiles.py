"""A day's profiles on one 10-second grid, built once per local day and cached; cheap to sample."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

import numpy as np

from hil_sim.config import PlantConfig
from hil_sim.physics.loads import frequency_day_hz, house_load_day_kw
from hil_sim.physics.solar import cloud_index, pv_day_kw
from labspec.site import HouseLoad, Pv, SiteInfo, Weather

STEP_S = 10.0
# Both midnights included, so interpolation never runs off the end.
SAMPLES = int(86400 / STEP_S) + 1

# Random streams, one per quantity, so changing one model does not reshuffle the others: the
# site's clouds, the grid frequency, and each peer's house load (the first peer of the site file
# draws stream 11, the next 12, ...).
STREAM_PV, STREAM_FREQUENCY = 1, 2
STREAM_LOAD_FIRST = 11


@dataclass(frozen=True, slots=True)
class DayProfiles:
    """A local day's profiles sampled every STEP_S seconds from local midnight (plain lists: fast
    to index from Python)."""

    local_date: date
    pv_kw: dict[str, list[float]]  # available AC power of each peer's array, by peer
    house_load_kw: dict[str, list[float]]  # consumption, > 0, by peer
    frequency_hz: list[float]


def local_midnight_utc(utc_offset_s: float, local_date: date) -> datetime:
    """The UTC instant of local midnight starting `local_date` on a clock `utc_offset_s` ahead."""
    midnight = datetime(local_date.year, local_date.month, local_date.day, tzinfo=UTC)
    return midnight - timedelta(seconds=utc_offset_s)


def load_stream(index: int) -> int:
    """The random stream of the house load of the site's peer number `index` (from 0)."""
    return STREAM_LOAD_FIRST + index


def build_day(config: PlantConfig, local_date: date, utc_offset_s: float) -> DayProfiles:
    """Every profile of one local day; depends only on the config and the date.

    Each profile is cached under just the settings it depends on, so plants whose sites differ
    only in device parameters share them (the lists are never written to).
    """
    site = config.site
    loads = {
        peer_id: _house_load(peer.load, config.seed, load_stream(index), local_date)
        for index, (peer_id, peer) in enumerate(site.peers.items())
    }
    pv = {
        peer_id: _pv(site.site, site.weather, peer.pv, config.seed, utc_offset_s, local_date)
        for peer_id, peer in site.peers.items()
        if peer.pv is not None
    }
    return DayProfiles(
        local_date=local_date,
        pv_kw=pv,
        house_load_kw=loads,
        frequency_hz=_frequency(
            site.feeder.nominal_frequency_hz,
            site.feeder.frequency_noise_hz,
            config.seed,
            local_date,
        ),
    )


def _rng(seed: int, stream: int, local_date: date) -> np.random.Generator:
    return np.random.default_rng([seed, stream, local_date.toordinal()])


@lru_cache(maxsize=16)
def _clouds(weather: Weather, seed: int, local_date: date) -> np.ndarray:
    """The site's clear-sky index for the day (shared by every array; never written to)."""
    index = cloud_index(weather, _rng(seed, STREAM_PV, local_date), SAMPLES, STEP_S)
    index.setflags(write=False)
    return index


def _listed(values: np.ndarray) -> list[float]:
    """A day's samples as plain floats (the plant steps on lists: faster to index)."""
    listed: list[float] = values.tolist()
    return listed


@lru_cache(maxsize=512)
def _pv(
    site: SiteInfo, weather: Weather, pv: Pv, seed: int, utc_offset_s: float, local_date: date
) -> list[float]:
    start = local_midnight_utc(utc_offset_s, local_date)
    clouds = _clouds(weather, seed, local_date)
    return _listed(pv_day_kw(site, weather, pv, start, STEP_S, clouds))


@lru_cache(maxsize=1024)
def _house_load(load: HouseLoad, seed: int, stream: int, local_date: date) -> list[float]:
    rng = _rng(seed, stream, local_date)
    return _listed(house_load_day_kw(load, rng, SAMPLES, STEP_S))


@lru_cache(maxsize=16)
def _frequency(nominal_hz: float, noise_hz: float, seed: int, local_date: date) -> list[float]:
    rng = _rng(seed, STREAM_FREQUENCY, local_date)
    return _listed(frequency_day_hz(nominal_hz, noise_hz, rng, SAMPLES, STEP_S))


class ProfileBook:
    """Builds days on first use and keeps the last few."""

    def __init__(self, config: PlantConfig, utc_offset_s: float, keep_days: int = 3) -> None:
        self.config = config
        self.utc_offset_s = utc_offset_s
        self.keep_days = keep_days
        self._days: dict[date, DayProfiles] = {}

    def day(self, local_date: date) -> DayProfiles:
        profiles = self._days.get(local_date)
        if profiles is None:
            profiles = build_day(self.config, local_date, self.utc_offset_s)
            self._days[local_date] = profiles
            while len(self._days) > self.keep_days:
                del self._days[next(iter(self._days))]  # the one built longest ago
        return profiles


def clear_profile_caches() -> None:
    """Forget every cached day (tests use it to show a day is rebuilt identically)."""
    for cached in (_clouds, _pv, _house_load, _frequency):
        cached.cache_clear()
