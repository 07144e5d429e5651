"""Load and PV forecasters with one interface: fit on metered history, predict the next steps.

History is a `pandas.Series` of mean power (kW, >= 0) per interval, indexed by UTC interval
starts on a regular grid, NaN where an interval is missing (see `peers.history.power_series`).
`predict(start, steps)` returns the mean forecast for `steps` intervals from `start`, plus quantiles
where the method gives them. Every forecaster works with no history at all (a flat profile at its
`fallback_kw`), never returns NaN, and clips to [0, `max_kw`].
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from statistics import NormalDist
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

DAY_S = 86400.0


@dataclass(frozen=True, slots=True)
class Forecast:
    """Mean power per step (kW) and, where the method gives them, quantiles (level -> kW)."""

    start: datetime
    interval_s: float
    mean_kw: np.ndarray
    quantiles_kw: Mapping[float, np.ndarray] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return len(self.mean_kw)


class Forecaster(Protocol):
    """One method; `fit` may be called every interval (costly methods throttle refits)."""

    name: str

    def fit(self, history: pd.Series) -> None: ...

    def predict(self, start: datetime, steps: int) -> Forecast: ...


def _step_index(start: datetime, steps: int, interval_s: float) -> pd.DatetimeIndex:
    return pd.date_range(
        pd.Timestamp(start).tz_convert("UTC"),
        periods=steps,
        freq=pd.Timedelta(seconds=interval_s),
    )


class _Base:
    name = "base"

    def __init__(
        self,
        interval_s: float = 900.0,
        fallback_kw: float = 0.0,
        max_kw: float = math.inf,
        timezone: str = "UTC",
        seed: int = 0,
    ) -> None:
        if interval_s <= 0 or DAY_S % interval_s:
            raise ValueError(f"interval_s must divide a day evenly, got {interval_s}")
        self.interval_s = float(interval_s)
        self.fallback_kw = float(fallback_kw)
        self.max_kw = float(max_kw)
        self.zone = ZoneInfo(timezone)
        self.seed = seed
        self.history = pd.Series([], dtype=float, index=pd.DatetimeIndex([], tz="UTC"))

    @property
    def steps_per_day(self) -> int:
        return int(DAY_S // self.interval_s)

    def fit(self, history: pd.Series) -> None:
        self.history = history.astype(float)

    def _flat_level(self) -> float:
        values = self.history.to_numpy(dtype=float)
        if values.size and np.isfinite(values).any():
            return float(np.nanmean(values))
        return self.fallback_kw

    def _clip(self, values: np.ndarray) -> np.ndarray:
        values = np.where(np.isfinite(values), values, self._flat_level())
        clipped: np.ndarray = np.clip(values, 0.0, self.max_kw)
        return clipped

    def _slot(self, index: pd.DatetimeIndex) -> np.ndarray:
        seconds = index.hour * 3600 + index.minute * 60 + index.second
        return (np.asarray(seconds) // int(self.interval_s)).astype(int)


class SeasonalPersistence(_Base):
    """Tomorrow looks like today: the value one day earlier at the same time of day.

    Looks back up to `max_lookback_days` days for a metered value; with none, a flat profile at the
    history's mean (or `fallback_kw` when there is no history). No quantiles.
    """

    name = "persistence"

    def __init__(self, *args: Any, max_lookback_days: int = 7, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_lookback_days = max_lookback_days

    def predict(self, start: datetime, steps: int) -> Forecast:
        index = _step_index(start, steps, self.interval_s)
        result = np.full(steps, np.nan)
        history = self.history.dropna()
        for days in range(1, self.max_lookback_days + 1):
            missing = np.isnan(result)
            if not missing.any() or history.empty:
                break
            lagged = history.reindex(index[missing] - pd.Timedelta(days=days))
            result[missing] = lagged.to_numpy(dtype=float)
        return Forecast(start, self.interval_s, self._clip(result))


def _step_noise(values: np.ndarray) -> float:
    """The noise about a smooth profile: std of consecutive changes / sqrt 2 (NaN below 3)."""
    if len(values) < 3:
        return float("nan")
    return float(np.std(np.diff(values)) / np.sqrt(2.0))


class EwmaProfile(_Base):
    """An exponentially weighted daily profile: per time-of-day slot, recent days weigh more.

    Quantiles from the weighted mean and spread of each slot (normal approximation, clipped at 0).
    A slot seen fewer than twice (the first day of a run) takes the spread of the history's
    interval-to-interval changes (their standard deviation / sqrt 2: the noise about a smooth
    profile), so a forecast from thin history is not taken as certain.
    """

    name = "ewma"

    def __init__(
        self,
        *args: Any,
        halflife_days: float = 3.0,
        quantiles: Sequence[float] = (0.1, 0.9),
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.halflife_days = halflife_days
        self.quantiles = tuple(quantiles)
        self._mean = np.full(self.steps_per_day, np.nan)
        self._std = np.full(self.steps_per_day, np.nan)

    def fit(self, history: pd.Series) -> None:
        super().fit(history)
        history = self.history.dropna()
        self._mean = np.full(self.steps_per_day, np.nan)
        self._std = np.full(self.steps_per_day, np.nan)
        if history.empty:
            return
        age_days = (history.index[-1] - history.index).total_seconds().to_numpy() / DAY_S
        weights = 0.5 ** (age_days / self.halflife_days)
        slots = self._slot(history.index)
        values = history.to_numpy(dtype=float)
        weight_sum = np.bincount(slots, weights=weights, minlength=self.steps_per_day)
        weighted = weights * values
        mean: np.ndarray = np.bincount(slots, weights=weighted, minlength=self.steps_per_day)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = mean / weight_sum
            square = np.bincount(slots, weights=weights * values**2, minlength=self.steps_per_day)
            variance = np.maximum(square / weight_sum - mean**2, 0.0)
        has_data = weight_sum > 0
        self._mean[has_data] = mean[has_data]
        self._std[has_data] = np.sqrt(variance[has_data])
        thin = np.bincount(slots, minlength=self.steps_per_day) < 2
        self._std[thin] = _step_noise(values)

    def predict(self, start: datetime, steps: int) -> Forecast:
        index = _step_index(start, steps, self.interval_s)
        slots = self._slot(index)
        mean = self._clip(self._mean[slots])
        std = np.nan_to_num(self._std[slots], nan=0.0)
        quantiles = {
            q: np.clip(mean + NormalDist().inv_cdf(q) * std, 0.0, self.max_kw)
            for q in self.quantiles
        }
        return Forecast(start, self.interval_s, mean, quantiles)


class GradientBoosted(_Base):
    """Gradient-boosted trees (scikit-learn HistGradientBoostingRegressor) on calendar and lag
    features: local time of day (sine, cosine), day of week, and the values 1, 2 and 7 days earlier
    (missing lags are NaN, which the trees handle). Quantiles from models with quantile loss.

    Refits only when `refit_every` new intervals have arrived since the last fit (predictions
    always use the newest lags); below `min_train_days` of data it predicts by seasonal persistence.
    """

    name = "gbm"
    LAG_DAYS = (1, 2, 7)

    def __init__(
        self,
        *args: Any,
        quantiles: Sequence[float] = (0.1, 0.9),
        refit_every: int = 96,
        min_train_days: float = 2.0,
        max_iter: int = 50,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.quantiles = tuple(quantiles)
        self.refit_every = refit_every
        self.min_train_days = min_train_days
        self.max_iter = max_iter
        self._models: dict[str, HistGradientBoostingRegressor] = {}
        self._fitted_on: pd.Timestamp | None = None
        self._columns = np.ones(3 + len(self.LAG_DAYS), dtype=bool)
        self._persistence = SeasonalPersistence(
            interval_s=self.interval_s, fallback_kw=self.fallback_kw, max_kw=self.max_kw
        )

    def _features(self, index: pd.DatetimeIndex, history: pd.Series) -> np.ndarray:
        local = index.tz_convert(self.zone)
        seconds = np.asarray(local.hour * 3600 + local.minute * 60 + local.second, dtype=float)
        angle = 2 * np.pi * seconds / DAY_S
        columns = [np.sin(angle), np.cos(angle), np.asarray(local.dayofweek, dtype=float)]
        for days in self.LAG_DAYS:
            columns.append(history.reindex(index - pd.Timedelta(days=days)).to_numpy(dtype=float))
        return np.column_stack(columns)

    def _new_model(self, loss: str, quantile: float | None = None) -> HistGradientBoostingRegressor:
        options = {"quantile": quantile} if quantile is not None else {}
        return HistGradientBoostingRegressor(
            loss=loss,
            max_iter=self.max_iter,
            learning_rate=0.15,
            max_leaf_nodes=15,
            min_samples_leaf=10,
            early_stopping=False,
            random_state=self.seed,
            **options,
        )

    def fit(self, history: pd.Series) -> None:
        super().fit(history)
        self._persistence.fit(history)
        observed = self.history.dropna()
        if observed.size < self.min_train_days * self.steps_per_day:
            self._models = {}
            self._fitted_on = None
            return
        newest = observed.index[-1]
        if self._fitted_on is not None and self._models:
            new_intervals = (newest - self._fitted_on).total_seconds() / self.interval_s
            if new_intervals < self.refit_every:
                return
        features = self._features(observed.index, self.history)
        # a lag with no data at all yet (e.g. 7 days on a 3-day history) is left out
        self._columns = np.isfinite(features).any(axis=0)
        features = features[:, self._columns]
        targets = observed.to_numpy(dtype=float)
        models = {"mean": self._new_model("squared_error")}
        for q in self.quantiles:
            models[f"q{q}"] = self._new_model("quantile", q)
        with threadpool_limits(1):  # OpenMP threads thrash on a busy machine; one is faster
            for model in models.values():
                model.fit(features, targets)
        self._models = models
        self._fitted_on = newest

    def predict(self, start: datetime, steps: int) -> Forecast:
        if not self._models:
            return self._persistence.predict(start, steps)
        index = _step_index(start, steps, self.interval_s)
        features = self._features(index, self.history)[:, self._columns]
        levels = sorted(self.quantiles)
        with threadpool_limits(1):
            mean = self._clip(self._models["mean"].predict(features))
            predicted = [self._models[f"q{q}"].predict(features) for q in levels]
        if levels:
            stacked = np.vstack(predicted)
            stacked = np.sort(np.clip(stacked, 0.0, self.max_kw), axis=0)  # no crossing
            quantiles = {q: stacked[i] for i, q in enumerate(levels)}
        else:
            quantiles = {}
        return Forecast(start, self.interval_s, mean, quantiles)


FORECASTERS: dict[str, Callable[..., Forecaster]] = {
    SeasonalPersistence.name: SeasonalPersistence,
    EwmaProfile.name: EwmaProfile,
    GradientBoosted.name: GradientBoosted,
}


def make_forecaster(method: str, **options: Any) -> Forecaster:
    """A forecaster by name (`persistence`, `ewma`, `gbm`) with its constructor options."""
    try:
        factory = FORECASTERS[method]
    except KeyError:
        raise ValueError(
            f"unknown forecast method {method!r}; choose one of {sorted(FORECASTERS)}"
        ) from None
    return factory(**options)
