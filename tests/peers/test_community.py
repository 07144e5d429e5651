"""The community agent: clear-sky PV warm start, book depth, and P2P sales spread over demand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from peers import DeviceState, MarketContext, MarketOutcome, default_assets, make_agent
from peers.clearsky import ClearSkyIndexForecaster, clear_sky_pv_kw
from peers.interface import OrderIntent, OrderSide
from peers.market_depth import MarketDepth

MIDNIGHT_IST = datetime(2026, 3, 20, 18, 30, tzinfo=UTC)
NINE_IST = MIDNIGHT_IST + timedelta(hours=9)


def ctx(start: datetime) -> MarketContext:
    return MarketContext(
        interval_start=start,
        retail_tariff=8.0,
        feed_in_tariff=3.0,
        network_charge=0.5,
        deviation_penalty=2.0,
    )


def test_clear_sky_pv_follows_the_sun_at_the_site():
    pv = default_assets("A").pv
    kw = clear_sky_pv_kw(pv, MIDNIGHT_IST, 96, 900.0)
    hours = np.arange(96) / 4
    assert kw[hours < 6].max() == 0.0 and kw[hours > 19.5].max() == 0.0
    noon = kw[(hours >= 12) & (hours < 13)].mean()
    assert 0.75 * pv.peak_power_kw < noon <= pv.peak_power_kw
    assert np.argmax(kw) / 4 == pytest.approx(12.5, abs=1.0)  # solar noon at 72.7 E: ~12:35 IST


def test_clear_sky_index_of_the_last_hour_scales_the_coming_steps():
    pv = default_assets("A").pv
    forecaster = ClearSkyIndexForecaster(pv, 900.0)
    index = pd.date_range(MIDNIGHT_IST, NINE_IST, freq="15min", inclusive="left")
    clear = clear_sky_pv_kw(pv, MIDNIGHT_IST, len(index), 900.0)
    forecaster.fit(pd.Series(0.5 * clear, index=index))  # a cloudy morning: half the clear sky
    forecast = forecaster.predict(NINE_IST, 96)
    ahead = clear_sky_pv_kw(pv, NINE_IST, 96, 900.0)
    assert forecast.mean_kw[0] == pytest.approx(0.5 * ahead[0], rel=0.02)
    assert np.all(forecast.quantiles_kw[0.1] <= forecast.mean_kw + 1e-12)
    assert np.all(forecast.mean_kw <= forecast.quantiles_kw[0.9] + 1e-12)


def test_book_depth_is_the_other_peers_volume_per_time_of_day():
    depth = MarketDepth(900.0, default_assets("A").zone, margin_kw=0.0)
    assert depth.caps_kw([NINE_IST]) == (None, None)
    depth.record((OrderIntent(OrderSide.SELL, 0.3, 4.0),))
    depth.learn(MarketOutcome(NINE_IST, 5.0, bid_volume_kwh=0.2, ask_volume_kwh=0.3))
    buy_cap, sell_cap = depth.caps_kw([NINE_IST, NINE_IST + timedelta(hours=3)])
    assert sell_cap.tolist() == pytest.approx([0.8, 0.8])  # 0.2 kWh of others' bids per 15 min
    assert buy_cap.tolist() == pytest.approx([0.0, 0.0])  # the only ask was its own


def test_first_interval_is_planned_from_the_clear_sky_not_skipped():
    agent = make_agent("community", "A", default_assets("A"))
    decision = agent.decide(ctx(NINE_IST), DeviceState(time=NINE_IST, battery_soc_pct=50.0))
    assert decision.fallback_reason is None
    noon = decision.forecast[12].pv_kw  # 12:00 IST
    assert noon > 2.0  # a flat first-day profile would say 0


def test_sales_are_spread_over_the_neighbours_demand():
    """With 0.15 kWh of demand per interval seen in the book, the plan sells that much from the
    first sunny interval and charges the battery with the rest, instead of exporting all of it
    now (nobody would buy it) or filling the battery first and selling when nobody is left."""
    agent = make_agent("community", "A", default_assets("A"), {"depth_margin_kw": 0.0})
    before = NINE_IST - timedelta(minutes=15)
    agent.decide(ctx(before), DeviceState(time=before, battery_soc_pct=40.0))
    agent.learn(MarketOutcome(before, 5.0, (), None, None, 0.15, 0.0))
    decision = agent.decide(ctx(NINE_IST), DeviceState(time=NINE_IST, battery_soc_pct=40.0))
    assert decision.fallback_reason is None
    (order,) = decision.orders
    assert order.side is OrderSide.SELL and order.quantity_kwh == pytest.approx(0.15, abs=0.01)
    morning = decision.plan[:8]  # 09:00-11:00
    assert all(step.net_kw == pytest.approx(0.6, abs=0.02) for step in morning)
    assert morning[-1].soc_pct > 45.0  # the rest charges the battery


def test_no_p2p_purchase_is_planned_where_no_neighbour_sells():
    """The margin over the book's depth applies only where the other side is expected at all:
    the community's only seller plans no P2P purchase at night (it would buy at retail)."""
    depth = MarketDepth(900.0, default_assets("A").zone, margin_kw=0.4)
    depth.record((OrderIntent(OrderSide.SELL, 0.3, 4.0),))
    depth.learn(MarketOutcome(NINE_IST, 5.0, bid_volume_kwh=0.2, ask_volume_kwh=0.3))
    buy_cap, sell_cap = depth.caps_kw([NINE_IST])
    assert buy_cap.tolist() == [0.0]  # only its own ask: nobody else sells
    assert sell_cap.tolist() == pytest.approx([1.2])  # 0.8 kW of others' bids + 0.4


def test_a_seller_serves_its_neighbours_demand_before_filling_its_battery():
    """With a surplus that fills the battery by the afternoon anyway, the community agent sells
    the neighbours' demand from the first sunny interval; breaking the tie the other way (store
    first, sell later) leaves its neighbours buying at retail in the morning and the afternoon's
    surplus beyond their demand going to the grid at the feed-in tariff."""
    sold_now = {}
    for first in (True, False):
        agent = make_agent("community", "A", default_assets("A"), {"p2p_sales_first": first})
        before = NINE_IST - timedelta(minutes=15)
        agent.decide(ctx(before), DeviceState(time=before, battery_soc_pct=60.0))
        agent.learn(MarketOutcome(before, 5.0, (), None, None, 0.15, 0.0))
        decision = agent.decide(ctx(NINE_IST), DeviceState(time=NINE_IST, battery_soc_pct=60.0))
        assert decision.fallback_reason is None
        sold_now[first] = sum(o.quantity_kwh for o in decision.orders if o.side is OrderSide.SELL)
    assert sold_now[True] >= 0.15 - 0.01
    assert sold_now[True] > sold_now[False] + 0.05
