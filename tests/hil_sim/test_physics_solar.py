"""PV: dark at night, near the array's rating around local noon on a clear day."""

from __future__ import annotations

from datetime import date

import numpy as np

from hil_sim.config import PlantConfig
from hil_sim.physics.profiles import STEP_S, build_day
from tests.hil_sim.plants import site_with

DAY = date(2026, 3, 21)


WEATHER = ("cloud_cover", "cloud_transmittance_min", "cloud_mean_duration_s")


def pv_day(**pv: float) -> np.ndarray:
    """Peer A's array on DAY, with its settings or the site's weather changed."""
    weather = {k: v for k, v in pv.items() if k in WEATHER}
    array = {k: v for k, v in pv.items() if k not in WEATHER}
    config = PlantConfig(site=site_with(pv=array, weather=weather))
    return np.array(build_day(config, DAY, 5.5 * 3600).pv_kw["A"])


def local_hour(index: np.ndarray | int) -> np.ndarray | float:
    return np.asarray(index) * STEP_S / 3600.0


def test_pv_is_zero_at_night_and_peaks_near_rating_around_local_noon_on_a_clear_day() -> None:
    pv = pv_day(cloud_cover=0.0)
    hours = local_hour(np.arange(pv.size))
    night = (hours < 6.0) | (hours > 19.5)  # sunrise ~06:50, sunset ~18:55 IST in late March
    assert np.all(pv[night] == 0.0)
    assert np.all(pv >= 0.0)
    peak = pv.max()
    assert 0.8 * 3.5 <= peak <= 3.5  # hot cells and wiring losses keep it under the 3.5 kWp
    peak_hour = local_hour(int(pv.argmax()))
    assert 12.0 <= peak_hour <= 13.5  # solar noon at 72.7 E is about 12:45 IST
    daily_kwh = pv.sum() * STEP_S / 3600.0
    assert 18.0 <= daily_kwh <= 26.0  # ~5-7 kWh per kWp on a clear March day in Gujarat


def test_a_clear_day_is_smooth_and_a_cloudy_day_dips_below_it() -> None:
    clear = pv_day(cloud_cover=0.0)
    cloudy = pv_day(cloud_cover=0.5)
    assert np.all(cloudy <= clear + 1e-9)
    assert cloudy.sum() < 0.85 * clear.sum()
    daylight = clear > 0.5
    assert np.max(np.abs(np.diff(clear[daylight]))) < 0.05  # no jumps without clouds
    assert np.max(np.abs(np.diff(cloudy[daylight]))) > 0.1  # cloud edges make ramps


def test_a_bigger_array_gives_proportionally_more() -> None:
    small = pv_day(cloud_cover=0.0)
    large = pv_day(cloud_cover=0.0, peak_kw=7.0)
    assert np.allclose(large, 2.0 * small, rtol=1e-12, atol=0.0)
