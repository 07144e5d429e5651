"""PV forecasts from what an agent knows without history: its array and the site's clear sky.

`clear_sky_pv_kw` is the array's mean AC power per interval under a clear sky (pvlib: Ineichen
clear sky with the Linke turbidity lookup, Hay-Davies transposition onto the panel's tilt and
azimuth, a flat derate for temperature and system losses). `ClearSkyIndexForecaster` scales it by
the clear-sky index (metered PV / clear-sky PV): for the coming steps the index of the last metered
hour, relaxing with the lead time toward the index of the whole history (or a prior before any).
So a first day is forecast from the sun's path and the morning's clouds, not a flat profile.

An array behind a PV-only inverter rated below its kWp (`PvAsset.ac_limit_kw`) is clipped there,
as the plant clips it: the forecast never exceeds the limit, and a metered interval at the limit
(within `CLIPPED_SHARE`) only says the sky was at least that clear, so its index counts as a clear
sky's (1) unless its ratio to the unclipped clear sky is higher.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from labspec import fast_paths
from labspec.solar import clear_sky_poa_w_m2
from peers.assets import PvAsset
from peers.forecast import Forecast

DERATE = 0.9  # temperature and system losses at the array's usual operating point
SUBSTEPS = 3  # clear-sky samples per interval (start, middle, end thirds)
MEMO_SAMPLES = 100_000  # a memo of clear-sky samples starts over beyond this many (a year of 5 min)
CLIPPED_SHARE = 0.98  # a metered interval at this share of the AC limit or above was clipped


def clear_sky_pv_kw(
    pv: PvAsset,
    start: datetime,
    steps: int,
    interval_s: float,
    memo: dict[int, float] | None = None,
    clipped: bool = True,
) -> np.ndarray:
    """Mean clear-sky AC power (kW) of the array per interval from `start` (UTC), each sample
    clipped at the inverter's `ac_limit_kw` (with `clipped=False`: what the array could give).

    `memo` (optional, kept by the caller for one array): plane-of-array irradiance by sample time
    (ns), so overlapping horizons compute only their new samples. pvlib's model is computed
    sample by sample, so the values are the same with or without it."""
    times = _sample_times(start, steps, interval_s)
    if memo is None:
        kw = _poa_w_m2(pv, times)
    else:
        keys = times.asi8.tolist()
        if any(key not in memo for key in keys):
            if len(memo) > MEMO_SAMPLES:
                memo.clear()
            # the next horizons overlap this one: fill a day beyond it in the same pvlib call
            ahead = _sample_times(start, steps + round(86400.0 / interval_s), interval_s)
            missing = [i for i, key in enumerate(ahead.asi8.tolist()) if key not in memo]
            values = _poa_w_m2(pv, ahead[missing]).tolist()
            memo.update(zip(ahead.asi8[missing].tolist(), values, strict=True))
        kw = np.array([memo[key] for key in keys], dtype=float)
    kw = kw / 1000.0 * pv.peak_power_kw * DERATE
    if clipped and pv.ac_limit_kw is not None:
        kw = np.minimum(kw, pv.ac_limit_kw)
    mean_kw: np.ndarray = kw.reshape(steps, SUBSTEPS).mean(axis=1)
    return mean_kw


def _sample_times(start: datetime, steps: int, interval_s: float) -> pd.DatetimeIndex:
    offsets = (np.arange(steps * SUBSTEPS) + 0.5) * interval_s / SUBSTEPS
    return pd.DatetimeIndex(pd.Timestamp(start).tz_convert("UTC") + pd.to_timedelta(offsets, "s"))


def _poa_w_m2(pv: PvAsset, times: pd.DatetimeIndex) -> np.ndarray:
    return clear_sky_poa_w_m2(
        pv.latitude_deg, pv.longitude_deg, pv.altitude_m, pv.tilt_deg, pv.azimuth_deg, times
    )


class ClearSkyIndexForecaster:
    """Clear-sky PV times a clear-sky index from recent metering (see the module docstring)."""

    name = "clearsky"

    def __init__(
        self,
        pv: PvAsset,
        interval_s: float,
        prior_index: float = 0.8,
        recent_h: float = 1.0,
        relax_h: float = 3.0,
    ) -> None:
        self.pv = pv
        self.interval_s = interval_s
        self.prior_index = prior_index
        self.recent_h = recent_h
        self.relax_h = relax_h
        self.recent_index: float | None = None
        self.mean_index = prior_index
        self.spread = 0.25
        self._cache: dict[tuple[datetime, int], np.ndarray] = {}
        # irradiance by sample time (clear_sky_pv_kw); none with TESTBED_FAST_PATHS=0
        self._samples: dict[int, float] | None = {} if fast_paths.enabled() else None

    def _clear(self, start: datetime, steps: int) -> np.ndarray:
        key = (start, steps)
        if key not in self._cache:
            if len(self._cache) > 512:
                self._cache.clear()
            self._cache[key] = clear_sky_pv_kw(
                self.pv, start, steps, self.interval_s, self._samples, clipped=False
            )
        return self._cache[key]

    def fit(self, history: pd.Series) -> ClearSkyIndexForecaster:
        """`history`: metered mean PV (kW) per interval, UTC index (NaN where missing)."""
        self.recent_index = None
        data = history.dropna()
        if data.empty:
            return self
        recent = data[data.index >= data.index[-1] - timedelta(hours=max(self.recent_h, 24.0))]
        start = recent.index[0].to_pydatetime()
        steps = round((recent.index[-1] - recent.index[0]).total_seconds() / self.interval_s) + 1
        clear = pd.Series(
            self._clear(start, steps),
            index=pd.date_range(
                recent.index[0], periods=steps, freq=pd.Timedelta(seconds=self.interval_s)
            ),
        ).reindex(recent.index)
        sunny = clear > 0.1 * self.pv.peak_power_kw
        if sunny.sum() == 0:
            return self
        index = recent[sunny] / clear[sunny]
        limit_kw = self.pv.ac_limit_kw
        if limit_kw is not None:  # at the clip the sky was at least clear: not a cloud
            at_clip = recent[sunny] >= CLIPPED_SHARE * limit_kw
            index = index.where(~at_clip, index.clip(lower=1.0))
        index = index.clip(0.0, 1.2)
        self.mean_index = float(index.mean()) if len(index) >= 4 else self.prior_index
        self.spread = float(max(index.std(), 0.1)) if len(index) >= 4 else 0.25
        last = index[index.index >= index.index[-1] - timedelta(hours=self.recent_h)]
        self.recent_index = float(last.mean())
        return self

    def predict(self, start: datetime, steps: int) -> Forecast:
        clear = self._clear(start, steps)
        lead_h = np.arange(steps) * self.interval_s / 3600.0
        if self.recent_index is None:
            index = np.full(steps, self.mean_index)
        else:
            weight = np.exp(-lead_h / self.relax_h)
            index = weight * self.recent_index + (1.0 - weight) * self.mean_index
        limit_kw = np.inf if self.pv.ac_limit_kw is None else self.pv.ac_limit_kw
        mean = np.minimum(clear * index, limit_kw)
        low = np.minimum(clear * np.clip(index - 1.3 * self.spread, 0.0, None), limit_kw)
        high = np.minimum(
            clear * np.clip(index + 1.3 * self.spread, None, 1.1),
            min(self.pv.peak_power_kw, limit_kw),
        )
        return Forecast(start, self.interval_s, mean, {0.1: low, 0.9: high})
