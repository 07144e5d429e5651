"""The MILP home energy management: every constraint holds, prices come out right."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import numpy as np
import pytest

from peers.assets import default_assets
from peers.hems import Hems, HemsError, HemsSettings
from peers.horizon import ev_horizon, horizon_inputs
from peers.interface import DeviceState
from tests.peers.conftest import RETAIL, START, context, forecasts

TOL = 1e-5


def plan_for(peer: str, state: DeviceState, settings: HemsSettings | None = None, **ctx_options):
    """(assets, planning inputs, schedule) for one peer with the test's forecasts."""
    assets = default_assets(peer)
    ctx = context(**ctx_options)
    load, pv = forecasts(assets)
    inputs = horizon_inputs(assets, ctx, state, load, pv)
    hems = Hems(assets, ctx.horizon, ctx.dt_h, settings)
    return assets, inputs, hems.solve(inputs)


def test_battery_plan_honours_soc_window_power_limits_and_power_balance():
    state = DeviceState(time=START, battery_soc_pct=50.0)
    assets, inputs, plan = plan_for("A", state)
    battery = assets.battery
    soc = 100 * plan.battery_kwh / battery.capacity_kwh
    assert np.all(soc >= battery.soc_min_pct - TOL) and np.all(soc <= battery.soc_max_pct + TOL)
    assert np.all(plan.battery_kw <= battery.max_discharge_kw + TOL)
    assert np.all(plan.battery_kw >= -battery.max_charge_kw - TOL)
    assert np.all(plan.pv_used_kw <= inputs.pv_kw + TOL) and np.all(plan.pv_used_kw >= -TOL)
    # what leaves the PCC is PV + battery - house load, step by step
    balance = plan.pv_used_kw + plan.battery_kw - inputs.load_kw
    np.testing.assert_allclose(plan.net_kw, balance, atol=1e-6)
    assert np.all(plan.net_kw <= assets.grid_export_limit_kw + TOL)
    assert np.all(plan.net_kw >= -assets.grid_import_limit_kw - TOL)
    # the battery moves: it stores midday surplus or covers the evening, not idle all day
    assert np.abs(plan.battery_kw).max() > 0.5


def test_battery_never_charges_and_discharges_in_the_same_step():
    state = DeviceState(time=START, battery_soc_pct=50.0)
    *_, plan = plan_for("A", state, HemsSettings(relaxation_first=False))
    charge, discharge = plan.detail["battery_charge_kw"], plan.detail["battery_discharge_kw"]
    assert np.all(np.minimum(charge, discharge) <= TOL)


def test_battery_stored_energy_follows_efficiencies():
    state = DeviceState(time=START, battery_soc_pct=40.0)
    assets, inputs, plan = plan_for("A", state)
    battery = assets.battery
    charge, discharge = plan.detail["battery_charge_kw"], plan.detail["battery_discharge_kw"]
    stored = plan.battery_kwh[0] + np.cumsum(
        inputs.dt_h
        * (battery.charge_efficiency * charge - discharge / battery.discharge_efficiency)
    )
    np.testing.assert_allclose(plan.battery_kwh[1:], stored, atol=1e-6)


@pytest.mark.parametrize("soc_pct", [35.0, 60.0])
def test_ev_plan_reaches_plug_out_energy_within_limits(soc_pct):
    state = DeviceState(
        time=START,
        ev_soc_pct=soc_pct,
        ev_plugged=True,
        ev_departure_time=START + timedelta(hours=2, minutes=30),
    )
    settings = HemsSettings()
    assets, inputs, plan = plan_for("B", state, settings)
    ev, horizon = assets.ev, inputs.ev
    # plug-outs: at 2.5 h (the charger's departure time) and at the daily 17:30 IST window end
    assert len(horizon.departures) >= 2
    assert horizon.departures[0] == START + timedelta(hours=2, minutes=30)
    for k in np.flatnonzero(horizon.required_kwh):
        assert plan.ev_kwh[k + 1] >= ev.departure_kwh - TOL
    away = ~horizon.available
    assert np.all(np.abs(plan.ev_kw[away]) <= TOL)
    assert np.all(plan.ev_kw <= ev.max_discharge_kw + TOL)
    assert np.all(plan.ev_kw >= -ev.max_charge_kw - TOL)
    plugged_energy = plan.ev_kwh[1:][horizon.available]
    assert np.all(plugged_energy <= ev.energy_max_kwh + TOL)
    assert np.all(plugged_energy >= ev.energy_min_kwh - TOL)
    charge, discharge = plan.detail["ev_charge_kw"], plan.detail["ev_discharge_kw"]
    assert np.all(np.minimum(charge, discharge) <= TOL)
    # the deadband holds where the plan carries binaries (the steps that run soon)
    head = settings.ev_integer_steps
    power = np.abs(plan.ev_kw[:head])
    assert np.all((power <= TOL) | (power >= ev.min_power_kw - TOL))
    # no discharge that ends below the reserve
    discharging = plan.ev_kw[:head] > TOL
    assert np.all(plan.ev_kwh[1 : head + 1][discharging] >= ev.reserve_kwh - TOL)


def test_ev_deadband_and_reserve_hold_over_the_whole_horizon_with_full_binaries():
    state = DeviceState(time=START, ev_soc_pct=45.0, ev_plugged=True)
    settings = HemsSettings(ev_integer_steps=None, relaxation_first=False, time_limit_s=5.0)
    assets, _, plan = plan_for("B", state, settings)
    ev = assets.ev
    power = np.abs(plan.ev_kw)
    assert np.all((power <= TOL) | (power >= ev.min_power_kw - TOL))
    discharging = plan.ev_kw > TOL
    assert np.all(plan.ev_kwh[1:][discharging] >= ev.reserve_kwh - TOL)


def test_relaxation_shortcut_gives_the_branch_and_bound_optimum():
    state = DeviceState(time=START, battery_soc_pct=30.0)
    *_, fast = plan_for("A", state)
    *_, exact = plan_for("A", state, HemsSettings(relaxation_first=False, mip_rel_gap=1e-6))
    assert fast.objective == pytest.approx(exact.objective, abs=1e-3)


def test_consumer_values_energy_at_retail_and_the_plan_is_its_load():
    state = DeviceState(time=START)
    _, inputs, plan = plan_for("C", state)
    np.testing.assert_allclose(plan.net_kw, -inputs.load_kw, atol=1e-6)
    np.testing.assert_allclose(plan.value_per_kwh, RETAIL, atol=1e-6)


def test_battery_shifts_energy_into_the_dear_evening_hours():
    # time of use (steps from 05:30 IST): cheap morning, dear 18:00-22:00 IST; no P2P market
    retail = tuple([4.0] * 24 + [8.0] * 26 + [12.0] * 16 + [8.0] * 30)
    state = DeviceState(time=START, battery_soc_pct=20.0)
    *_, plan = plan_for("A", state, HemsSettings(p2p_limit_kw=0.0), retail_tariff_profile=retail)
    assert np.all(plan.p2p_kw == 0.0)
    assert plan.battery_kwh[50] > plan.battery_kwh[0] + 2.0  # stored before the dear hours
    assert plan.battery_kw[50:66].sum() * 0.25 > 2.0  # and spent in them
    # energy is worth more to the peer in the dear hours than in the cheap ones
    assert plan.value_per_kwh[:24].mean() < plan.value_per_kwh[50:66].mean()


def test_unreachable_ev_target_makes_the_solver_fail_with_hems_error():
    assets = default_assets("B")
    state = DeviceState(
        time=START,
        ev_soc_pct=15.0,
        ev_plugged=True,
        ev_departure_time=START + timedelta(minutes=30),
    )
    load, pv = forecasts(assets)
    # build the inputs by hand, past the agent's reachability check
    good = horizon_inputs(
        assets, context(), DeviceState(time=START, ev_soc_pct=79.0, ev_plugged=True), load, pv
    )
    unreachable = ev_horizon(assets.ev, assets.zone, list(good.starts), 900.0, state)
    inputs = replace(good, ev=unreachable)
    hems = Hems(assets, 96, 0.25)
    with pytest.raises(HemsError, match="infeasible"):
        hems.solve(inputs)


def test_binaries_stop_the_battery_burning_energy_when_consumption_is_paid():
    # Retail below zero for three hours (paid to consume) and no depreciation: without the
    # binaries, charging and discharging at once would burn energy in the losses so the house could
    # import more; the MILP's plan must not do it.
    base = default_assets("A")
    battery = base.battery.model_copy(update={"depreciation_per_kwh": 0.0})
    # a 7 kW connection: the house cannot simply import all it is paid to
    assets = base.model_copy(
        update={"battery": battery, "grid_import_limit_kw": 7.0, "grid_export_limit_kw": 5.0}
    )
    load, pv = forecasts(assets)
    state = DeviceState(time=START, battery_soc_pct=80.0)
    inputs = horizon_inputs(assets, context(), state, load, pv)
    retail = inputs.retail.copy()
    retail[:12] = -5.0
    inputs = replace(inputs, retail=retail, p2p_buy_price=retail + 10.0)
    hems = Hems(assets, 96, 0.25)
    # the scenario is a real test: the LP relaxation does charge and discharge at once
    hems._load(hems.relaxed, inputs, p2p=True)
    hems._solve(hems.relaxed, milp=False)
    relaxed_ch = hems.relaxed.var["battery_charge_kw"].value
    relaxed_dis = hems.relaxed.var["battery_discharge_kw"].value
    assert np.max(np.minimum(relaxed_ch, relaxed_dis)) > 0.1
    plan = hems.solve(inputs)
    assert plan.info["method"] == "branch and bound"
    charge, discharge = plan.detail["battery_charge_kw"], plan.detail["battery_discharge_kw"]
    assert np.all(np.minimum(charge, discharge) <= TOL)
    # it empties the battery first (exporting), then imports while paid to
    assert plan.net_kw[0] > 0 and np.all(plan.net_kw[3:12] < 0)
