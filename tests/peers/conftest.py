"""Shared inputs for the agent tests: a UTC start, tariffs and metered history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from peers.assets import PeerAssets, default_assets
from peers.interface import IntervalObservation, MarketContext
from peers.synthetic import synthetic_load_kw, synthetic_pv_kw

START = datetime(2026, 6, 1, 0, 0, tzinfo=UTC)  # 05:30 IST
RETAIL = 8.0
FEED_IN = 3.0


def context(start: datetime = START, **overrides) -> MarketContext:
    options = {"retail_tariff": RETAIL, "feed_in_tariff": FEED_IN, "network_charge": 0.5}
    options.update(overrides)
    return MarketContext(interval_start=start, **options)


def history(assets: PeerAssets, days: float, end: datetime = START, seed: int = 1):
    """Metered observations for `days` before `end` from the synthetic profiles."""
    begin = end - timedelta(days=days)
    load = synthetic_load_kw(
        begin, days, typical_kw=assets.typical_load_kw, peak_kw=assets.peak_load_kw, seed=seed
    )
    pv = synthetic_pv_kw(begin, days, seed=seed)
    if assets.pv is None:
        pv = pv * 0.0
    return [
        IntervalObservation(
            interval_start=t.to_pydatetime(),
            interval_s=900.0,
            load_kwh=float(load_kw) * 0.25,
            pv_kwh=float(pv_kw) * 0.25,
            net_kwh=float(pv_kw - load_kw) * 0.25,
        )
        for t, load_kw, pv_kw in zip(load.index, load.to_numpy(), pv.to_numpy(), strict=True)
    ]


def forecasts(assets: PeerAssets, start: datetime = START, seed: int = 7):
    """A day of load and PV (kW per 15 min step) to plan with."""
    load = synthetic_load_kw(
        start, 1, typical_kw=assets.typical_load_kw, peak_kw=assets.peak_load_kw, seed=seed
    ).to_numpy()
    pv = synthetic_pv_kw(start, 1, seed=seed).to_numpy() if assets.pv else np.zeros(96)
    return load, pv


@pytest.fixture(params=["A", "B", "C"])
def peer_assets(request) -> PeerAssets:
    return default_assets(request.param)
