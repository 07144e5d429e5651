"""PV arrays: clear-sky irradiance at the site (pvlib, once per day) times the site's seeded clouds.

The clouds are the weather of the whole site (one clear-sky index per day, shared by every array);
each array has its own rating and orientation.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pvlib

from labspec.site import Pv, SiteInfo, Weather
from labspec.solar import clear_sky_poa_w_m2


def clear_sky_poa(site: SiteInfo, pv: Pv, times_utc: pd.DatetimeIndex) -> np.ndarray:
    """Plane-of-array irradiance (W/m²) under a clear sky (labspec.solar)."""
    return clear_sky_poa_w_m2(
        site.latitude_deg,
        site.longitude_deg,
        site.altitude_m,
        pv.tilt_deg,
        pv.azimuth_deg,
        times_utc,
    )


def cloud_index(weather: Weather, rng: np.random.Generator, n: int, step_s: float) -> np.ndarray:
    """Clear-sky index (0..1] per sample: alternating clear spells and clouds of random thickness.

    Cloud and clear spell lengths are exponential; `cloud_cover` is the expected shaded share of
    time. Edges are softened over about a minute, as a cloud's shadow takes that long to pass.
    """
    index = np.ones(n)
    if weather.cloud_cover <= 0.0:
        return index
    mean_cloud_s = weather.cloud_mean_duration_s
    mean_clear_s = mean_cloud_s * (1.0 - weather.cloud_cover) / weather.cloud_cover
    t = 0.0
    total = n * step_s
    cloudy = rng.random() < weather.cloud_cover
    while t < total:
        if cloudy:
            length = rng.exponential(mean_cloud_s)
            transmittance = rng.uniform(weather.cloud_transmittance_min, 0.85)
            first, last = int(t / step_s), int(min(total, t + length) / step_s)
            index[first:last] = transmittance
        else:
            length = rng.exponential(mean_clear_s) if mean_clear_s > 0 else 0.0
        t += max(length, step_s)
        cloudy = not cloudy
    width = max(1, round(60.0 / step_s))
    if width > 1:
        padded = np.concatenate([np.full(width - 1, index[0]), index])
        index = np.convolve(padded, np.ones(width) / width, mode="valid")
    return index


def ambient_temperature_c(weather: Weather, local_hours: np.ndarray) -> np.ndarray:
    """A daily cycle: warmest at 15:00 local, coolest twelve hours earlier."""
    mid = (weather.ambient_max_c + weather.ambient_min_c) / 2.0
    amplitude = (weather.ambient_max_c - weather.ambient_min_c) / 2.0
    return mid + amplitude * np.cos(2.0 * np.pi * (local_hours - 15.0) / 24.0)


def pv_day_kw(
    site: SiteInfo,
    weather: Weather,
    pv: Pv,
    day_start_utc: datetime,
    step_s: float,
    clouds: np.ndarray,
) -> np.ndarray:
    """The array's available AC power (kW, >= 0) at len(clouds) samples step_s apart from
    day_start_utc, under the day's clear-sky index `clouds` (`cloud_index`)."""
    n = len(clouds)
    times = pd.date_range(day_start_utc, periods=n, freq=pd.Timedelta(seconds=step_s))
    poa = clear_sky_poa(site, pv, times) * clouds
    local_hours = np.arange(n) * step_s / 3600.0
    temp_cell = pvlib.temperature.faiman(
        poa, ambient_temperature_c(weather, local_hours), wind_speed=1.0
    )
    dc_w = pvlib.pvsystem.pvwatts_dc(
        poa, temp_cell, pdc0=pv.peak_kw * 1000.0, gamma_pdc=pv.temperature_coefficient_per_c
    )
    ac_kw = np.asarray(dc_w, dtype=float) * (1.0 - pv.system_loss_pct / 100.0) / 1000.0
    return np.nan_to_num(ac_kw, nan=0.0).clip(min=0.0)
