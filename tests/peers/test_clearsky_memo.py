"""The clear-sky forecast's memo of irradiance samples changes no value, only the work."""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from peers import clearsky
from peers.assets import default_assets
from peers.clearsky import ClearSkyIndexForecaster, clear_sky_pv_kw
from tests.peers.conftest import START


def test_memo_gives_the_values_of_a_fresh_computation_for_every_window(monkeypatch):
    pv = default_assets("A").pv
    windows = []
    for k in range(0, 40, 3):  # rolling horizons, growing history windows, a day back
        start = START + timedelta(minutes=15 * k)
        windows += [(start, 96), (START, k + 1), (start - timedelta(days=1), 96)]
    fresh = [clear_sky_pv_kw(pv, begin, steps, 900.0) for begin, steps in windows]
    calls: list[int] = []
    original = clearsky._poa_w_m2
    monkeypatch.setattr(
        clearsky, "_poa_w_m2", lambda pv, times: calls.append(len(times)) or original(pv, times)
    )
    memo: dict[int, float] = {}
    for (begin, steps), expected in zip(windows, fresh, strict=True):
        assert np.array_equal(clear_sky_pv_kw(pv, begin, steps, 900.0, memo), expected)
    # pvlib ran twice for 42 windows (the first horizon and a day ahead, the day before it)
    assert len(calls) == 2 and calls[0] == 2 * 96 * 3


def test_forecaster_predicts_the_same_with_its_memo():
    pv = default_assets("A").pv
    forecaster = ClearSkyIndexForecaster(pv, 900.0)
    for k in range(6):
        start = START + timedelta(hours=2 * k)
        expected = clear_sky_pv_kw(pv, start, 96, 900.0) * forecaster.mean_index
        assert np.array_equal(forecaster.predict(start, 96).mean_kw, expected)


def test_switch_off_computes_every_window_afresh(monkeypatch):
    monkeypatch.setenv("TESTBED_FAST_PATHS", "0")
    pv = default_assets("A").pv
    calls: list[int] = []
    original = clearsky._poa_w_m2
    monkeypatch.setattr(
        clearsky, "_poa_w_m2", lambda pv, times: calls.append(len(times)) or original(pv, times)
    )
    forecaster = ClearSkyIndexForecaster(pv, 900.0)
    for k in range(3):
        forecaster.predict(START + timedelta(minutes=15 * k), 96)
    assert calls == [96 * 3] * 3
