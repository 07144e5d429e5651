"""Agents driving the emulated plant's physics in closed loop (in-process, no protocols).

The agent's first planned step becomes the device setpoint (peer A: inverter WSet = available PV +
planned battery power; peer B: the charger's power setpoint), the plant advances 15 min, and the
metered interval goes back to the agent. The plant refuses setpoints outside a device's limits
(`SetpointRejected`), so a plan that broke a limit would fail the run.
"""

from __future__ import annotations

import itertools

import pytest

from hil_sim.config import PlantConfig
from hil_sim.plant import Plant
from peers import DeviceState, IntervalObservation, MarketContext, default_assets, make_agent
from tests.peers.conftest import history

WRITE_EVERY_S = 20.0


def drive(kind: str, peer: str, intervals: int):
    plant = Plant(PlantConfig(seed=3))
    assets = default_assets(peer)
    agent = make_agent(kind, peer, assets, seed=3)
    for obs in history(assets, 1.0, end=plant.now):
        agent.observe(obs)
    meter = plant.meters[peer]
    decisions, departures = [], []
    for _ in range(intervals):
        start = plant.now
        state = DeviceState(
            time=start,
            battery_soc_pct=plant.inverter.soc_pct if assets.battery else None,
            ev_soc_pct=plant.ev.soc_pct if assets.ev else None,
            ev_plugged=plant.ev.plugged if assets.ev else None,
            ev_departure_time=plant.ev.departure_time if assets.ev else None,
        )
        decision = agent.decide(MarketContext(start, 8.0, 3.0, network_charge=0.5), state)
        decisions.append((state, decision))
        step = decision.plan[0]
        imported, exported = meter.import_kwh, meter.export_kwh
        pv_kwh = plant.inverter.pv_energy_kwh
        load_kwh = 0.0
        for _ in range(int(900 / WRITE_EVERY_S)):
            if assets.battery is not None:
                plant.write_inverter_wset_enabled(True)
                plant.write_inverter_wset(plant.inverter.pv_available_kw + step.battery_kw)
            if assets.ev is not None and plant.ev.plugged and step.ev_plugged:
                plant.write_ev_setpoint(step.ev_kw)  # raises on a deadband or limit violation
            was_plugged = plant.ev.plugged
            plant.advance(WRITE_EVERY_S)
            if was_plugged and not plant.ev.plugged:
                departures.append(plant.ev.soc_pct)
            load_kwh -= plant.house_load_profiles_kw[peer] * WRITE_EVERY_S / 3600.0
        agent.observe(
            IntervalObservation(
                interval_start=start,
                interval_s=900.0,
                load_kwh=load_kwh,
                pv_kwh=plant.inverter.pv_energy_kwh - pv_kwh if assets.pv else 0.0,
                net_kwh=(meter.export_kwh - exported) - (meter.import_kwh - imported),
                soc_pct=plant.inverter.soc_pct if assets.battery else None,
                ev_soc_pct=plant.ev.soc_pct if assets.ev else None,
                ev_plugged=plant.ev.plugged if assets.ev else None,
            )
        )
    return plant, decisions, departures


@pytest.mark.parametrize("kind", ["baseline", "optimising"])
def test_cart_leaves_with_its_plug_out_energy(kind):
    # the plant starts at 00:00 IST with the cart plugged in at 60 %; it leaves at 08:00 IST
    _, decisions, departures = drive(kind, "B", intervals=33)
    assert all(decision.fallback_reason is None for _, decision in decisions)
    assert len(departures) == 1
    assert departures[0] >= default_assets("B").ev.departure_soc_pct - 0.5
    for _, decision in decisions:
        for order in decision.orders:
            assert 3.0 <= order.limit_price <= 8.0 and order.quantity_kwh > 0


def test_battery_follows_the_plan_within_its_window():
    # 00:00-10:00 IST: the battery covers the night load, then the morning PV refills it
    _, decisions, _ = drive("optimising", "A", intervals=40)
    battery = default_assets("A").battery
    socs = [state.battery_soc_pct for state, _ in decisions]
    assert all(battery.soc_min_pct - 0.5 <= soc <= battery.soc_max_pct + 0.5 for soc in socs)
    assert min(socs) < socs[0] - 10  # discharged overnight
    assert socs[-1] > min(socs) + 5  # recharged from the morning PV
    # the plan's SoC for the interval's end matches the plant's within a couple of points
    for (_, decision), (next_state, _) in itertools.pairwise(decisions):
        assert decision.plan[0].soc_pct == pytest.approx(next_state.battery_soc_pct, abs=2.5)
