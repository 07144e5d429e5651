"""A plan's bill under the settlement rules, and the baseline's rule-based schedule."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from peers import DeviceState, PlanStep, default_assets, plan_bill
from peers.horizon import horizon_inputs
from peers.rules import rule_based_schedule
from tests.peers.conftest import FEED_IN, RETAIL, START, context, forecasts


def steps(net_kw: list[float], battery_kw: float = 0.0) -> list[PlanStep]:
    return [
        PlanStep(
            start=START + timedelta(minutes=15 * k),
            load_kw=1.0,
            pv_kw=0.0,
            battery_kw=battery_kw,
            ev_kw=0.0,
            net_kw=net,
        )
        for k, net in enumerate(net_kw)
    ]


def test_grid_only_bill_buys_at_retail_and_sells_at_feed_in():
    assets = default_assets("C")
    bill = plan_bill(steps([-2.0, -2.0, 4.0]), assets, 900.0, RETAIL, FEED_IN)
    assert bill.grid_import_kwh == pytest.approx(1.0)
    assert bill.grid_export_kwh == pytest.approx(1.0)
    assert bill.total == pytest.approx(1.0 * RETAIL - 1.0 * FEED_IN)
    assert bill.total == pytest.approx(bill.grid_only_total)


def test_p2p_trades_network_charge_and_undelivered_energy():
    assets = default_assets("A")
    # step 0: bought 0.5 kWh P2P, consumed 0.5; step 1: sold 1 kWh, delivered 0.25
    bill = plan_bill(
        steps([-2.0, 1.0], battery_kw=1.0),
        assets,
        900.0,
        RETAIL,
        FEED_IN,
        p2p_bought_kwh=[0.5, 0.0],
        p2p_sold_kwh=[0.0, 1.0],
        p2p_price=5.0,
        network_charge=0.5,
        deviation_penalty=2.0,
    )
    assert bill.p2p_cost == pytest.approx(2.5) and bill.p2p_revenue == pytest.approx(5.0)
    assert bill.network_charge == pytest.approx(0.25)  # the buyer pays it
    assert bill.undelivered_kwh == pytest.approx(0.75)
    assert bill.grid_cost == pytest.approx(0.75 * RETAIL)  # the shortfall comes from the grid
    assert bill.penalty == pytest.approx(1.5)
    assert bill.total == pytest.approx(2.5 - 5.0 + 0.25 + 0.75 * RETAIL + 1.5)
    # the seed's objective adds battery depreciation: 0.5 kWh of throughput at 0.5 per kWh
    assert bill.objective == pytest.approx(bill.total + 0.25)


def test_bill_rejects_negative_volumes():
    with pytest.raises(ValueError, match="p2p_bought_kwh"):
        plan_bill(steps([-1.0]), default_assets("C"), 900.0, RETAIL, FEED_IN, p2p_bought_kwh=-1)


def test_rule_based_battery_stays_in_its_window_and_follows_surplus():
    assets = default_assets("A")
    load, pv = forecasts(assets)
    inputs = horizon_inputs(
        assets, context(), DeviceState(time=START, battery_soc_pct=20.0), load, pv
    )
    plan = rule_based_schedule(inputs, assets)
    battery = assets.battery
    soc = 100 * plan.battery_kwh / battery.capacity_kwh
    assert np.all(soc >= battery.soc_min_pct - 1e-9) and np.all(soc <= battery.soc_max_pct + 1e-9)
    assert np.all(np.abs(plan.battery_kw) <= battery.max_charge_kw + 1e-9)
    surplus = pv - load
    # charging only from surplus, discharging only into deficit
    assert np.all(plan.battery_kw[surplus > 0] <= 1e-12)
    assert np.all(plan.battery_kw[surplus < 0] >= -1e-12)
    assert np.all(plan.net_kw[surplus > 0] >= -1e-9)  # never imports to charge
    np.testing.assert_allclose(plan.net_kw, pv - load + plan.battery_kw)


def test_rule_based_ev_reaches_its_plug_out_energy_and_helps_the_evening_peak():
    assets = default_assets("B")
    ev = assets.ev
    load, pv = forecasts(assets)
    start = START + timedelta(hours=13)  # 18:30 IST, the cart just came back for the night
    state = DeviceState(time=start, ev_soc_pct=70.0, ev_plugged=True)
    inputs = horizon_inputs(assets, context(start), state, load, pv)
    plan = rule_based_schedule(inputs, assets)
    departures = np.flatnonzero(inputs.ev.required_kwh)
    assert departures.size >= 1
    for k in departures:
        assert plan.ev_kwh[k + 1] >= ev.departure_kwh - 1e-9
    evening = plan.ev_kw[:14]  # 18:30-22:00 IST
    assert evening.max() > 0  # V2G into the house
    assert np.all(plan.ev_kwh[1:][inputs.ev.available] >= ev.reserve_kwh - 1e-9)
    power = np.abs(plan.ev_kw)
    assert np.all((power == 0) | (power >= ev.min_power_kw - 1e-9))
    assert np.all(plan.ev_kw <= ev.max_discharge_kw + 1e-9)
    assert np.all(plan.ev_kw >= -ev.max_charge_kw - 1e-9)
