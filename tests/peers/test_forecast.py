"""Forecasters and their backtest on metered-like series."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from peers.backtest import backtest, lead_errors, scores_table
from peers.forecast import EwmaProfile, GradientBoosted, SeasonalPersistence, make_forecaster
from peers.history import power_series
from peers.synthetic import synthetic_load_kw, synthetic_pv_kw
from tests.peers.conftest import START

METHODS = ["persistence", "ewma", "gbm"]


def load_days(days: float, seed: int = 5) -> pd.Series:
    return synthetic_load_kw(START - timedelta(days=days), days, seed=seed)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_predicts_the_horizon_without_history(method):
    forecaster = make_forecaster(method, fallback_kw=0.7, max_kw=3.0)
    forecaster.fit(power_series([], [], 900.0))
    forecast = forecaster.predict(START, 96)
    np.testing.assert_allclose(forecast.mean_kw, 0.7)  # the flat fallback profile


@pytest.mark.parametrize("method", METHODS)
def test_every_method_fits_history_and_stays_within_limits(method):
    history = load_days(4)
    forecaster = make_forecaster(method, fallback_kw=0.7, max_kw=2.2, timezone="Asia/Kolkata")
    forecaster.fit(history)
    forecast = forecaster.predict(START, 96)
    assert forecast.mean_kw.shape == (96,)
    assert np.all(np.isfinite(forecast.mean_kw))
    assert np.all((forecast.mean_kw >= 0) & (forecast.mean_kw <= 2.2))
    # the evening peak (20:00 IST = 14:30 UTC, step 58) is forecast above the night (03:00 IST)
    assert forecast.mean_kw[58] > forecast.mean_kw[86] + 0.3
    for level, values in forecast.quantiles_kw.items():
        assert values.shape == (96,) and np.all(values >= 0)
        assert 0 < level < 1
    levels = sorted(forecast.quantiles_kw)
    if levels:
        low, high = forecast.quantiles_kw[levels[0]], forecast.quantiles_kw[levels[-1]]
        assert np.all(low <= high + 1e-9)


def test_persistence_repeats_yesterday_and_looks_further_back_over_gaps():
    history = load_days(3)
    yesterday = history.iloc[-96:].to_numpy()
    forecaster = SeasonalPersistence()
    forecaster.fit(history)
    np.testing.assert_allclose(forecaster.predict(START, 96).mean_kw, yesterday)
    gappy = history.copy()
    gappy.iloc[-96:-90] = np.nan  # yesterday's first 90 minutes were not metered
    forecaster.fit(gappy)
    predicted = forecaster.predict(START, 96).mean_kw
    np.testing.assert_allclose(predicted[:6], history.iloc[-192:-186].to_numpy())
    np.testing.assert_allclose(predicted[6:], yesterday[6:])


def test_ewma_weighs_recent_days_more():
    index = pd.date_range(START - timedelta(days=4), periods=4 * 96, freq="15min")
    values = np.repeat([1.0, 1.0, 1.0, 2.0], 96)  # the last day doubled
    forecaster = EwmaProfile(halflife_days=1.0)
    forecaster.fit(pd.Series(values, index=index))
    mean = forecaster.predict(START, 96).mean_kw
    assert np.all(mean > 1.5) and np.all(mean < 2.0)


def test_ewma_from_less_than_a_day_is_unsure_where_it_saw_a_slot_once():
    history = load_days(0.5)  # the last 12 h: each slot seen once, half of them never
    forecaster = EwmaProfile(max_kw=5.0)
    forecaster.fit(history)
    forecast = forecaster.predict(START - timedelta(hours=12), 96)
    low, high = forecast.quantiles_kw[0.1], forecast.quantiles_kw[0.9]
    spread = float(np.std(np.diff(history.to_numpy())) / np.sqrt(2))  # noise, not the daily shape
    assert 0.02 < spread < float(np.std(history.to_numpy()))
    # seen once: the slot's own value, with the whole history's spread around it
    np.testing.assert_allclose(forecast.mean_kw[:48], history.to_numpy(), atol=1e-9)
    np.testing.assert_allclose(high[:48] - forecast.mean_kw[:48], 1.2816 * spread, rtol=1e-3)
    # never seen: the flat level, just as unsure
    assert np.all(high[48:] > forecast.mean_kw[48:]) and np.all(low[48:] < forecast.mean_kw[48:])


def test_gbm_quantiles_bracket_most_of_the_next_day():
    history = synthetic_pv_kw(START - timedelta(days=6), 7, seed=2)
    train, test = history.iloc[: 6 * 96], history.iloc[6 * 96 :]
    forecaster = GradientBoosted(max_kw=3.5, timezone="Asia/Kolkata")
    forecaster.fit(train)
    forecast = forecaster.predict(START, 96)
    assert set(forecast.quantiles_kw) == {0.1, 0.9}
    inside = (test.to_numpy() >= forecast.quantiles_kw[0.1] - 0.05) & (
        test.to_numpy() <= forecast.quantiles_kw[0.9] + 0.05
    )
    assert inside.mean() > 0.6
    night = forecast.mean_kw[60:80]  # 20:30-01:30 IST: no sun
    assert np.all(night < 0.05)


def test_gbm_refits_only_after_a_day_of_new_data():
    history = load_days(4)
    forecaster = GradientBoosted()
    forecaster.fit(history.iloc[:-8])
    first_model = forecaster._models["mean"]
    forecaster.fit(history)  # two hours more: same model, newest lags
    assert forecaster._models["mean"] is first_model
    forecaster.fit(
        pd.concat(
            [history, load_days(1, seed=9).set_axis(pd.date_range(START, periods=96, freq="15min"))]
        )
    )
    assert forecaster._models["mean"] is not first_model


def test_unknown_method_is_named():
    with pytest.raises(ValueError, match="unknown forecast method 'arima'"):
        make_forecaster("arima")


def test_backtest_reports_mae_and_rmse_per_lead_time():
    series = {"C load": load_days(4), "A pv": synthetic_pv_kw(START - timedelta(days=4), 4)}
    factories = {
        "persistence": lambda name: SeasonalPersistence(),
        "ewma": lambda name: EwmaProfile(),
    }
    scores = backtest(series, factories, lead_steps=(1, 96, 0), origin_every=24)
    assert {(s.series, s.method) for s in scores} == {
        (name, method) for name in series for method in factories
    }
    for s in scores:
        assert s.rmse_kw >= s.mae_kw > 0
        assert s.origins > 0
    table = scores_table(scores)
    assert "| C load | persistence |" in table and "lead 96" in table and "all leads" in table


def test_backtest_of_a_periodic_series_has_no_persistence_error():
    index = pd.date_range(START - timedelta(days=4), periods=4 * 96, freq="15min")
    daily = np.tile(np.sin(np.linspace(0, np.pi, 96)) + 0.2, 4)
    errors = lead_errors(pd.Series(daily, index=index), SeasonalPersistence, origin_every=16)
    finite = errors[np.isfinite(errors)]
    assert finite.size > 0
    np.testing.assert_allclose(finite, 0.0, atol=1e-12)
