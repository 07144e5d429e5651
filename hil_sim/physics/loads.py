"""Daily house-load profiles: morning and evening peaks, a fridge, appliances and slow noise.

A profile depends only on its random generator (seeded from the plant seed, the peer and the local
date), so the same seed and day reproduce it exactly.
"""

from __future__ import annotations

import numpy as np

from labspec.site import HouseLoad


def _bump(hours: np.ndarray, centre_h: float, width_h: float) -> np.ndarray:
    return np.exp(-0.5 * ((hours - centre_h) / width_h) ** 2)


def house_load_day_kw(
    load: HouseLoad, rng: np.random.Generator, n: int, step_s: float
) -> np.ndarray:
    """Consumption (kW, > 0) at n samples step_s apart from local midnight."""
    hours = np.arange(n) * step_s / 3600.0
    span = load.peak_kw - load.base_kw
    # Daily routine, shifted and scaled a little from day to day.
    morning = _bump(hours, 7.5 + rng.normal(0, 0.3), 1.0) * 0.55 * rng.uniform(0.85, 1.1)
    midday = _bump(hours, 13.5 + rng.normal(0, 0.5), 2.0) * 0.25 * rng.uniform(0.7, 1.2)
    evening = _bump(hours, 20.3 + rng.normal(0, 0.3), 1.4) * 0.7 * rng.uniform(0.9, 1.05)
    routine = load.base_kw + span * (morning + midday + evening)

    # Slow multiplicative noise: AR(1) at one-minute resolution, about 15 minutes' memory.
    minutes = int(np.ceil(n * step_s / 60.0)) + 2
    phi = np.exp(-1.0 / 15.0)
    shocks = rng.normal(0.0, load.noise_pct / 100.0 * np.sqrt(1 - phi**2), minutes)
    slow = np.empty(minutes)
    slow[0] = rng.normal(0.0, load.noise_pct / 100.0)
    for k in range(1, minutes):
        slow[k] = phi * slow[k - 1] + shocks[k]
    slow_at = np.interp(hours * 60.0, np.arange(minutes), slow)

    # Fridge compressor: on about 40 % of a ~40-minute cycle.
    period_s = rng.uniform(35, 45) * 60.0
    phase_s = rng.uniform(0, period_s)
    fridge = (((hours * 3600.0 + phase_s) % period_s) < 0.4 * period_s) * 0.06 * load.peak_kw

    # Appliances (kettle, iron, pump, washer): a few blocks, likelier when people are active.
    appliances = np.zeros(n)
    activity = (morning + midday + evening) + 0.05
    weights = activity / activity.sum()
    for _ in range(rng.poisson(8)):
        start = rng.choice(n, p=weights)
        length = int(rng.uniform(2, 25) * 60.0 / step_s)
        appliances[start : start + length] += rng.uniform(0.1, 0.3) * load.peak_kw

    # Fast flicker (lights, electronics), a percent or so.
    flicker = rng.normal(0.0, 0.01, n)
    total = routine * (1.0 + slow_at + flicker) + fridge + appliances
    consumption_kw: np.ndarray = np.maximum(total, 0.25 * load.base_kw)
    return consumption_kw


def frequency_day_hz(
    nominal_hz: float, noise_hz: float, rng: np.random.Generator, n: int, step_s: float
) -> np.ndarray:
    """Grid frequency wandering around nominal (AR(1), about five minutes' memory)."""
    phi = np.exp(-step_s / 300.0)
    values = np.empty(n)
    values[0] = rng.normal(0.0, noise_hz)
    shocks = rng.normal(0.0, noise_hz * np.sqrt(1 - phi**2), n)
    for k in range(1, n):
        values[k] = phi * values[k - 1] + shocks[k]
    return nominal_hz + np.clip(values, -4 * noise_hz, 4 * noise_hz)
