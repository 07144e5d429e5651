"""An array behind a PV-only inverter rated below its kWp: the agents forecast and plan the PV the
plant delivers (clipped at the inverter's AC rating), not the array's kWp; a storage inverter's
AC rating caps the battery the agent plans for, as it caps the plant's battery."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from hil_sim.config import PlantConfig
from hil_sim.plant import Plant
from labspec.site import COMMUNITY_SITE_PATH, default_site, load_site
from peers import DeviceState, MarketContext, assets_from_site, make_agent
from peers.clearsky import clear_sky_pv_kw
from peers.interface import IntervalObservation, OrderSide

MIDNIGHT_IST = datetime(2026, 3, 20, 18, 30, tzinfo=UTC)
RATED_KW = 3.0  # H02's array is 3.7 kWp: a DC/AC ratio of 1.23


def clipped_site():  # type: ignore[no-untyped-def]
    site = load_site(COMMUNITY_SITE_PATH)
    return site.with_changes({"devices": {"H02_pv_inverter": {"rated_power_kw": RATED_KW}}})


def test_the_plant_clips_the_array_at_the_pv_inverters_rating() -> None:
    """The premise: at a clear noon the array could give more than the inverter's rating."""
    site = clipped_site()
    assets = assets_from_site(site, "H02")
    assert assets.pv is not None and assets.pv.ac_limit_kw == RATED_KW
    assert assets.pv.peak_power_kw == 3.7
    unclipped = clear_sky_pv_kw(assets.pv, MIDNIGHT_IST, 96, 900.0, clipped=False)
    clipped = clear_sky_pv_kw(assets.pv, MIDNIGHT_IST, 96, 900.0)
    assert unclipped.max() > RATED_KW + 0.1
    assert clipped.max() == pytest.approx(RATED_KW)
    assert np.all(clipped <= RATED_KW + 1e-12)
    plant = Plant(PlantConfig(site=site))
    assert plant.inverters["H02_pv_inverter"].rated_power_kw == RATED_KW
    # an inverter at or above the array's kWp clips nothing: the shipped sites' assets are as before
    for peer in ("A", "B", "C"):
        pv = assets_from_site(default_site(), peer).pv
        assert pv is None or pv.ac_limit_kw is None
    assert assets_from_site(load_site(COMMUNITY_SITE_PATH), "H02").pv.ac_limit_kw is None  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", ["community", "optimising"])
def test_the_agent_forecasts_and_sells_no_more_than_the_inverter_delivers(kind: str) -> None:
    """After a clear day metered at the clip, the agent's noon forecast is the inverter's rating
    (the plant's output), its plan never uses more PV, and it offers no more than that less the
    house load: it used to forecast the array's unclipped clear sky (~3.3 kW) and over-sell."""
    site = clipped_site()
    assets = assets_from_site(site, "H02")
    assert assets.pv is not None
    agent = make_agent(kind, "H02", assets)
    start = MIDNIGHT_IST - timedelta(days=1)
    metered = np.minimum(clear_sky_pv_kw(assets.pv, start, 96 + 44, 900.0, clipped=False), RATED_KW)
    for k, pv_kw in enumerate(metered):  # yesterday and this morning to 11:00 IST, clear sky
        agent.observe(
            IntervalObservation(
                interval_start=start + timedelta(minutes=15 * k),
                interval_s=900.0,
                load_kwh=0.5 * 0.25,
                pv_kwh=float(pv_kw) * 0.25,
                net_kwh=(float(pv_kw) - 0.5) * 0.25,
            )
        )
    now = start + timedelta(minutes=15 * len(metered))
    context = MarketContext(
        interval_start=now,
        retail_tariff=8.0,
        feed_in_tariff=3.0,
        network_charge=0.5,
        deviation_penalty=2.0,
    )
    decision = agent.decide(context, DeviceState(time=now))
    assert decision.fallback_reason is None
    forecast_kw = [step.pv_kw for step in decision.forecast]
    assert max(forecast_kw) <= RATED_KW + 1e-9
    assert max(q for s in decision.forecast for q in s.pv_quantiles_kw.values()) <= RATED_KW + 1e-9
    if kind == "community":
        assert decision.forecast[2].pv_kw == pytest.approx(RATED_KW, abs=0.02)  # 11:30 IST
    assert max(step.pv_kw for step in decision.plan) <= RATED_KW + 1e-9
    offered = sum(o.quantity_kwh for o in decision.orders if o.side is OrderSide.SELL)
    assert offered <= (RATED_KW - decision.plan[0].load_kw) * 0.25 + 1e-6


def test_a_storage_inverter_rated_below_its_battery_caps_the_agents_battery() -> None:
    """The plant clamps the battery's AC power at the inverter's rating; the agent used to plan
    with the battery's own 3.75 kW."""
    site = default_site().with_changes({"devices": {"inverter": {"rated_power_kw": 3.0}}})
    battery = assets_from_site(site, "A").battery
    assert battery is not None
    assert (battery.max_charge_kw, battery.max_discharge_kw) == (3.0, 3.0)
    plant = Plant(PlantConfig(site=site))
    plant.write_inverter_wset(-3.0)
    plant.write_inverter_wset_enabled(True)
    with pytest.raises(ValueError, match="WSet"):
        plant.write_inverter_wset(-3.75)  # the plant refuses what the agent used to plan
    assert (
        assets_from_site(default_site(), "A").battery.max_charge_kw == 3.75  # type: ignore[union-attr]
    )
