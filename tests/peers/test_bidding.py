"""Order quantities and prices under delivery risk (peers.bidding)."""

from __future__ import annotations

import pytest

from peers import default_assets
from peers.bidding import forecast_spread_kw, risk_priced, shade_position, storage_headroom_kw
from peers.interface import ForecastStep, PlanStep
from tests.peers.conftest import START

STEP = ForecastStep(
    start=START,
    load_kw=1.0,
    pv_kw=2.0,
    load_quantiles_kw={0.1: 0.7, 0.9: 1.5},
    pv_quantiles_kw={0.1: 1.2, 0.9: 2.1},
)


def plan_step(**fields) -> PlanStep:
    values = {"start": START, "load_kw": 1.0, "pv_kw": 0.0, "battery_kw": 0.0, "ev_kw": 0.0}
    values.update(fields)
    values.setdefault("net_kw", 0.0)
    return PlanStep(**values)


def test_spread_is_less_load_and_more_pv_for_a_buyer_and_the_reverse_for_a_seller():
    assert forecast_spread_kw(STEP, buying=True) == pytest.approx(0.3 + 0.1)
    assert forecast_spread_kw(STEP, buying=False) == pytest.approx(0.5 + 0.8)
    no_quantiles = ForecastStep(start=START, load_kw=1.0, pv_kw=0.0)
    assert forecast_spread_kw(no_quantiles, buying=True) == 0.0


def test_shading_moves_toward_zero_and_never_past_it():
    assert shade_position(-0.5, 0.1) == pytest.approx(-0.4)
    assert shade_position(0.5, 0.1) == pytest.approx(0.4)
    assert shade_position(0.05, 0.1) == 0.0
    assert shade_position(0.3, 0.0) == 0.3


def test_battery_headroom_is_bounded_by_power_and_by_state_of_charge():
    assets = default_assets("A")  # 7.5 kWh, 3.75 kW each way, SoC window 10-95 %
    battery = assets.battery
    # charging 1 kW, ending at 50 %: 2.75 kW more charging, or 3.75 + 1 kW more discharging
    charging = plan_step(battery_kw=-1.0, soc_pct=50.0)
    assert storage_headroom_kw(assets, charging, 0.25, buying=True) == pytest.approx(2.75)
    assert storage_headroom_kw(assets, charging, 0.25, buying=False) == pytest.approx(4.75)
    # nearly full: only the energy left to 95 % in a quarter hour
    full = plan_step(battery_kw=0.0, soc_pct=94.0)
    expected = battery.capacity_kwh * 0.01 / 0.25
    assert storage_headroom_kw(assets, full, 0.25, buying=True) == pytest.approx(expected)


def test_an_unplugged_ev_and_a_plain_consumer_have_no_headroom():
    cart = default_assets("B")
    away = plan_step(ev_plugged=False, ev_soc_pct=50.0)
    plugged = plan_step(ev_plugged=True, ev_soc_pct=50.0)
    assert storage_headroom_kw(cart, away, 0.25, buying=True) == 0.0
    assert storage_headroom_kw(cart, plugged, 0.25, buying=True) == pytest.approx(
        cart.ev.max_charge_kw
    )
    consumer = default_assets("C")
    assert storage_headroom_kw(consumer, plan_step(), 0.25, buying=True) == 0.0


def test_risk_moves_bids_toward_feed_in_and_asks_toward_retail_plus_penalty():
    bid, ask = risk_priced(7.5, 3.0, 0.1, feed_in=3.0, retail=8.0, deviation_penalty=2.0)
    assert bid == pytest.approx(0.9 * 7.5 + 0.1 * 3.0)
    assert ask == pytest.approx(0.9 * 3.0 + 0.1 * 10.0)
    # never out of the tariff band
    _, high_ask = risk_priced(7.9, 7.9, 0.5, feed_in=3.0, retail=8.0, deviation_penalty=5.0)
    assert high_ask == 8.0
    assert risk_priced(7.5, 3.0, 0.0, 3.0, 8.0, 2.0) == (7.5, 3.0)
