"""Rolling-origin backtest of the forecasters: MAE and RMSE per lead time.

At every origin (every `origin_every` intervals once `min_history_days` of data exist) a forecaster
is fitted on the data strictly before the origin and predicts the next `max_horizon` intervals,
exactly as an agent does before gate closure. Errors are grouped by lead time (1 = the coming
interval, 96 = a day ahead at 15 min).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd

from peers.forecast import Forecaster


@dataclass(frozen=True, slots=True)
class BacktestScore:
    """Errors of one method on one series at one lead time (kW, mean power per interval)."""

    series: str
    method: str
    lead_steps: int
    mae_kw: float
    rmse_kw: float
    origins: int


def lead_errors(
    series: pd.Series,
    make_forecaster: Callable[[], Forecaster],
    max_horizon: int = 96,
    origin_every: int = 4,
    min_history_days: float = 2.0,
) -> np.ndarray:
    """Forecast errors (forecast - actual), one row per origin, one column per lead time.

    NaN where the actual value is missing or past the end of the data.
    """
    series = series.astype(float)
    interval_s = (series.index[1] - series.index[0]).total_seconds()
    first = int(min_history_days * 86400 / interval_s)
    if first >= len(series):
        raise ValueError(
            f"series has {len(series)} intervals; the backtest needs more than {first} "
            f"({min_history_days} days of history)"
        )
    forecaster = make_forecaster()
    values = series.to_numpy()
    rows = []
    for origin in range(first, len(series), origin_every):
        forecaster.fit(series.iloc[:origin])
        forecast = forecaster.predict(series.index[origin].to_pydatetime(), max_horizon)
        actual = np.full(max_horizon, np.nan)
        available = values[origin : origin + max_horizon]
        actual[: len(available)] = available
        rows.append(forecast.mean_kw - actual)
    return np.vstack(rows)


def score(
    errors: np.ndarray, lead_steps: Iterable[int], series: str, method: str
) -> list[BacktestScore]:
    """MAE and RMSE at each requested lead time (1-based); `0` means the mean over all leads."""
    scores = []
    for lead in lead_steps:
        column = errors.ravel() if lead == 0 else errors[:, lead - 1]
        column = column[np.isfinite(column)]
        if column.size == 0:
            continue
        scores.append(
            BacktestScore(
                series=series,
                method=method,
                lead_steps=lead,
                mae_kw=float(np.mean(np.abs(column))),
                rmse_kw=float(np.sqrt(np.mean(column**2))),
                origins=int(column.size if lead else errors.shape[0]),
            )
        )
    return scores


def backtest(
    series_by_name: Mapping[str, pd.Series],
    forecasters: Mapping[str, Callable[[str], Forecaster]],
    lead_steps: Sequence[int] = (1, 4, 24, 96, 0),
    max_horizon: int = 96,
    origin_every: int = 4,
    min_history_days: float = 2.0,
) -> list[BacktestScore]:
    """Score every method on every series; `forecasters` maps a method to a factory taking the
    series name (so a factory can pick a fallback level or cap per series)."""
    results: list[BacktestScore] = []
    for name, series in series_by_name.items():
        for method, factory in forecasters.items():
            errors = lead_errors(
                series,
                partial(factory, name),
                max_horizon=max_horizon,
                origin_every=origin_every,
                min_history_days=min_history_days,
            )
            results.extend(score(errors, lead_steps, name, method))
    return results


def scores_table(scores: Iterable[BacktestScore]) -> str:
    """A Markdown table: one row per series and method, MAE / RMSE per lead time."""
    scores = list(scores)
    leads = sorted({s.lead_steps for s in scores}, key=lambda lead: (lead == 0, lead))
    header = "| series | method | " + " | ".join(
        "all leads" if lead == 0 else f"lead {lead}" for lead in leads
    )
    lines = [header + " |", "|---|---|" + "---|" * len(leads)]
    keys = list(dict.fromkeys((s.series, s.method) for s in scores))
    for series, method in keys:
        cells = []
        for lead in leads:
            match = [
                s
                for s in scores
                if s.series == series and s.method == method and s.lead_steps == lead
            ]
            cells.append(f"{match[0].mae_kw:.3f} / {match[0].rmse_kw:.3f}" if match else "-")
        lines.append(f"| {series} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
