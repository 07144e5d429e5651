"""A peer's metered history, kept by its agent, as regular power series for the forecasters."""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from peers.interface import IntervalObservation


def power_series(
    starts: list[datetime], values_kw: np.ndarray | list[float], interval_s: float
) -> pd.Series:
    """A series on a regular UTC grid of interval starts (missing intervals become NaN)."""
    if not starts:
        return pd.Series([], dtype=float, index=pd.DatetimeIndex([], tz="UTC"))
    index = pd.DatetimeIndex(pd.to_datetime(starts, utc=True))
    series = pd.Series(np.asarray(values_kw, dtype=float), index=index)
    series = series[~series.index.duplicated(keep="last")].sort_index()
    grid = pd.date_range(
        series.index[0], series.index[-1], freq=pd.Timedelta(seconds=interval_s), tz="UTC"
    )
    return series.reindex(grid)


class MeterHistory:
    """The last `max_intervals` observations, one per interval start (a repeat replaces)."""

    def __init__(self, interval_s: float = 900.0, max_days: float = 28.0) -> None:
        self.interval_s = interval_s
        self.max_intervals = max(1, int(max_days * 86400 / interval_s))
        self._observations: OrderedDict[datetime, IntervalObservation] = OrderedDict()

    def __len__(self) -> int:
        return len(self._observations)

    def add(self, obs: IntervalObservation) -> None:
        self._observations[obs.interval_start] = obs
        self._observations.move_to_end(obs.interval_start)
        while len(self._observations) > self.max_intervals:
            self._observations.popitem(last=False)

    def latest(self) -> IntervalObservation | None:
        if not self._observations:
            return None
        return self._observations[max(self._observations)]

    def _series(self, attribute: str, before: datetime | None) -> pd.Series:
        observations = sorted(self._observations.values(), key=lambda o: o.interval_start)
        if before is not None:
            observations = [o for o in observations if o.interval_start < before]
        starts = [o.interval_start for o in observations]
        values = [getattr(o, attribute) for o in observations]
        return power_series(starts, values, self.interval_s)

    def load_kw(self, before: datetime | None = None) -> pd.Series:
        """Mean house load per interval (kW, >= 0), observations strictly before `before`."""
        return self._series("load_kw", before)

    def pv_kw(self, before: datetime | None = None) -> pd.Series:
        """Mean PV output per interval (kW, >= 0)."""
        return self._series("pv_kw", before)

    def span(self) -> timedelta:
        if not self._observations:
            return timedelta(0)
        return max(self._observations) - min(self._observations)
