"""A day's profiles on one 10-second grid, built once per local day and cached; cheap to sample."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np

from hil_sim.config import PlantConfig
from hil_sim.physics.loads import frequency_day_hz, house_load_day_kw
from hil_sim.physics.solar import pv_day_kw

STEP_S = 10.0
SAMPLES = (
    int(86400 / STEP_S) + 1
)  # both midnights included, so interpolation never runs off the end

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


def local_midnight_utc(config: PlantConfig, local_date: date) -> datetime:
    """The UTC instant of local midnight starting `local_date`."""
    offset = timedelta(minutes=config.site.utc_offset_minutes)
    return datetime(local_date.year, local_date.month, local_date.day, tzinfo=UTC) - offset


def build_day(config: PlantConfig, local_date: date) -> DayProfiles:
    """Every profile of one local day; depends only on the config and the date."""

    def rng(stream: int) -> np.random.Generator:
        return np.random.default_rng([config.seed, stream, local_date.toordinal()])

    pv = pv_day_kw(
        config.site,
        config.pv,
        local_midnight_utc(config, local_date),
        SAMPLES,
        STEP_S,
        rng(STREAM_PV),
    )
    loads = {
        peer: house_load_day_kw(getattr(config.house_loads, peer), rng(stream), SAMPLES, STEP_S)
        for peer, stream in STREAM_LOAD.items()
    }
    frequency = frequency_day_hz(
        config.feeder.nominal_frequency_hz,
        config.feeder.frequency_noise_hz,
        rng(STREAM_FREQUENCY),
        SAMPLES,
        STEP_S,
    )
    return DayProfiles(
        local_date=local_date,
        pv_kw=pv.tolist(),
        house_load_kw={peer: values.tolist() for peer, values in loads.items()},
        frequency_hz=frequency.tolist(),
    )


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
