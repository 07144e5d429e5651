"""Deterministic synthetic load and PV series, for tests and for backtests without the plant.

A house load with morning and evening peaks plus noise, and a clear-sky PV bell scaled by a daily
cloudiness and short-term cloud noise; times are UTC, shapes follow local time in `timezone`.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd


def _grid(start: datetime, days: float, interval_s: float) -> pd.DatetimeIndex:
    steps = round(days * 86400 / interval_s)
    return pd.date_range(
        pd.Timestamp(start).tz_convert("UTC"), periods=steps, freq=pd.Timedelta(seconds=interval_s)
    )


def _local_hours(index: pd.DatetimeIndex, timezone: str) -> np.ndarray:
    local = index.tz_convert(timezone)
    return np.asarray(local.hour + local.minute / 60.0 + local.second / 3600.0, dtype=float)


def synthetic_load_kw(
    start: datetime,
    days: float,
    interval_s: float = 900.0,
    typical_kw: float = 0.8,
    peak_kw: float = 2.0,
    seed: int = 0,
    timezone: str = "Asia/Kolkata",
) -> pd.Series:
    """Mean house load per interval (kW, >= 0)."""
    rng = np.random.default_rng(seed)
    index = _grid(start, days, interval_s)
    hours = _local_hours(index, timezone)
    base = 0.5 * typical_kw
    morning = 0.6 * np.exp(-0.5 * ((hours - 7.5) / 1.2) ** 2)
    evening = 1.0 * np.exp(-0.5 * ((hours - 20.0) / 1.8) ** 2)
    shape = base + (peak_kw - base) * (0.45 * morning + 0.75 * evening)
    day_level = rng.normal(1.0, 0.08, size=int(np.ceil(days)) + 1)
    day_of = ((index - index[0]).total_seconds() // 86400).astype(int)
    noise = rng.normal(0.0, 0.08 * typical_kw, size=len(index))
    values = np.clip(shape * day_level[day_of] + noise, 0.05, peak_kw * 1.2)
    return pd.Series(values, index=index, name="load_kw")


def synthetic_pv_kw(
    start: datetime,
    days: float,
    interval_s: float = 900.0,
    peak_power_kw: float = 3.5,
    seed: int = 0,
    timezone: str = "Asia/Kolkata",
) -> pd.Series:
    """Mean PV output per interval (kW, >= 0): zero at night, a bell around local noon."""
    rng = np.random.default_rng(seed + 10_000)
    index = _grid(start, days, interval_s)
    hours = _local_hours(index, timezone)
    daylight = np.clip(np.sin(np.pi * (hours - 6.5) / 12.0), 0.0, None) ** 1.3
    clear_fraction = rng.uniform(0.55, 1.0, size=int(np.ceil(days)) + 1)
    day_of = ((index - index[0]).total_seconds() // 86400).astype(int)
    clouds = np.clip(1.0 - np.abs(rng.normal(0.0, 0.12, size=len(index))), 0.3, 1.0)
    values = 0.82 * peak_power_kw * daylight * clear_fraction[day_of] * clouds
    return pd.Series(values, index=index, name="pv_kw")
