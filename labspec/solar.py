"""Clear-sky irradiance on a tilted panel: the one model the plant's PV and the agents' PV
forecasts share (pvlib: Ineichen clear sky with the Linke turbidity lookup, Hay-Davies
transposition onto the panel's tilt and azimuth)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pvlib


def clear_sky_poa_w_m2(
    latitude_deg: float,
    longitude_deg: float,
    altitude_m: float,
    tilt_deg: float,
    azimuth_deg: float,
    times_utc: pd.DatetimeIndex,
) -> np.ndarray:
    """Plane-of-array irradiance (W/m², >= 0) under a clear sky at each of `times_utc`."""
    location = pvlib.location.Location(latitude_deg, longitude_deg, tz="UTC", altitude=altitude_m)
    solar_position = location.get_solarposition(times_utc)
    clear = location.get_clearsky(times_utc, model="ineichen", solar_position=solar_position)
    poa = pvlib.irradiance.get_total_irradiance(
        surface_tilt=tilt_deg,
        surface_azimuth=azimuth_deg,
        solar_zenith=solar_position["apparent_zenith"],
        solar_azimuth=solar_position["azimuth"],
        dni=clear["dni"],
        ghi=clear["ghi"],
        dhi=clear["dhi"],
        dni_extra=pvlib.irradiance.get_extra_radiation(times_utc),
        model="haydavies",
    )
    irradiance: np.ndarray = np.nan_to_num(poa["poa_global"].to_numpy(dtype=float), nan=0.0)
    return irradiance.clip(min=0.0)
