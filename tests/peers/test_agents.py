"""The agents as the orchestrator uses them: orders, fallbacks, determinism, learning."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pytest

from peers import (
    Agent,
    DeviceState,
    Fill,
    MarketOutcome,
    OrderSide,
    agent_kinds,
    default_assets,
    make_agent,
)
from peers.assets import PeerAssets
from peers.interface import ForecastStep
from tests.peers.conftest import FEED_IN, RETAIL, START, context, history

KINDS = ["baseline", "optimising", "zip"]


def state_for(assets: PeerAssets, when=START, **overrides) -> DeviceState:
    values = {"time": when}
    if assets.battery is not None:
        values["battery_soc_pct"] = 50.0
    if assets.ev is not None:
        plugged = assets.ev.plugged_at(when.astimezone(assets.zone).time())
        values.update(ev_soc_pct=60.0, ev_plugged=plugged)
    values.update(overrides)
    return DeviceState(**values)


def warmed(kind: str, assets: PeerAssets, days: float = 2.0, seed: int = 3, **params) -> Agent:
    agent = make_agent(kind, assets.peer, assets, params=params, seed=seed)
    for obs in history(assets, days):
        agent.observe(obs)
    return agent


def test_registry_lists_the_kinds_and_names_bad_input():
    assert set(KINDS) <= set(agent_kinds())
    assets = default_assets("A")
    with pytest.raises(ValueError, match="unknown agent kind 'smart'"):
        make_agent("smart", "A", assets)
    with pytest.raises(ValueError, match="forecast_method='crystal-ball'"):
        make_agent("optimising", "A", assets, params={"forecast_method": "crystal-ball"})
    with pytest.raises(ValueError, match=r"bid_fraction=1\.5"):
        make_agent("baseline", "A", assets, params={"bid_fraction": 1.5})
    with pytest.raises(ValueError, match="horizon_hours"):
        make_agent("baseline", "A", assets, params={"horizon_hours": 12})


def firm_spread_kwh(step: ForecastStep, buying: bool) -> float:
    """kWh by which less load and more PV (buying), or the reverse (selling), may miss the plan."""
    load_q = step.load_quantiles_kw[0.1 if buying else 0.9]
    pv_q = step.pv_quantiles_kw.get(0.9 if buying else 0.1, step.pv_kw)
    return (abs(step.load_kw - load_q) + abs(step.pv_kw - pv_q)) * 0.25


@pytest.mark.parametrize("kind", KINDS)
def test_orders_over_a_day_are_within_the_tariff_band_and_sized_by_the_plan(kind, peer_assets):
    agent = warmed(kind, peer_assets)
    assert isinstance(agent, Agent)
    sides = set()
    for step in range(0, 96, 8):
        when = START + timedelta(minutes=15 * step)
        decision = agent.decide(context(when), state_for(peer_assets, when))
        assert decision.fallback_reason is None
        assert len(decision.plan) == 96 and len(decision.forecast) == 96
        net_kwh = decision.plan[0].net_kw * 0.25
        assert len(decision.orders) <= 1
        for order in decision.orders:
            assert FEED_IN <= order.limit_price <= RETAIL
            assert math.isfinite(order.quantity_kwh) and order.quantity_kwh > 0
            # the order is the coming interval's planned net position; the optimising kinds
            # shade it by at most the forecast's spread to its 10 % / 90 % quantiles
            if kind == "baseline":
                assert order.quantity_kwh == pytest.approx(abs(net_kwh), abs=1e-6)
            else:
                spread = firm_spread_kwh(decision.forecast[0], buying=net_kwh < 0)
                assert abs(net_kwh) - spread - 1e-6 <= order.quantity_kwh <= abs(net_kwh) + 1e-6
                if peer_assets.peer == "C":  # no storage to absorb a forecast error
                    assert order.quantity_kwh == pytest.approx(abs(net_kwh) - spread, abs=1e-6)
            assert order.side == (OrderSide.SELL if net_kwh > 0 else OrderSide.BUY)
            sides.add(order.side)
    if peer_assets.peer == "C":
        assert sides == {OrderSide.BUY}  # a consumer only ever buys


@pytest.mark.parametrize("kind", KINDS)
def test_prosumer_with_a_full_battery_sells_its_midday_surplus(kind):
    assets = default_assets("A")
    agent = warmed(kind, assets)
    noon = START + timedelta(hours=6, minutes=30)  # 12:00 IST
    decision = agent.decide(context(noon), state_for(assets, noon, battery_soc_pct=95.0))
    (order,) = decision.orders
    assert order.side == OrderSide.SELL
    assert decision.plan[0].pv_kw > decision.plan[0].load_kw


def test_baseline_prices_follow_the_documented_band_rule():
    assets = default_assets("C")
    agent = warmed("baseline", assets)
    order = agent.decide(context(), state_for(assets)).orders[0]
    assert order.side == OrderSide.BUY
    assert order.limit_price == pytest.approx(FEED_IN + 0.75 * (RETAIL - FEED_IN))


def test_optimising_consumer_bids_its_reservation_price_less_the_delivery_risk():
    assets = default_assets("C")
    agent = warmed("optimising", assets, delivery_risk_share=0.0)
    decision = agent.decide(context(network_charge=0.5), state_for(assets))
    # it would otherwise buy at retail, and pays the network charge on top of a P2P price
    assert decision.orders[0].limit_price == pytest.approx(RETAIL - 0.5)
    assert decision.plan[0].value_per_kwh == pytest.approx(RETAIL)
    # by default a tenth of each kWh is valued as if unused: sold back at the feed-in tariff
    risky = warmed("optimising", assets).decide(context(network_charge=0.5), state_for(assets))
    assert risky.orders[0].limit_price == pytest.approx(0.9 * (RETAIL - 0.5) + 0.1 * FEED_IN)


def test_optimising_seller_asks_more_for_the_risk_of_a_shortfall():
    assets = default_assets("A")
    noon = START + timedelta(hours=6, minutes=30)  # 12:00 IST, battery full: it sells
    state = state_for(assets, noon, battery_soc_pct=95.0)
    ctx = context(noon, network_charge=0.5, deviation_penalty=2.0)
    plain = warmed("optimising", assets, delivery_risk_share=0.0).decide(ctx, state)
    risky = warmed("optimising", assets).decide(ctx, state)
    (ask,) = plain.orders
    (risky_ask,) = risky.orders
    assert ask.side == risky_ask.side == OrderSide.SELL
    # an undelivered kWh is bought at retail plus the deviation penalty
    assert risky_ask.limit_price == pytest.approx(
        min(0.9 * ask.limit_price + 0.1 * (RETAIL + 2.0), RETAIL)
    )
    assert risky_ask.quantity_kwh == pytest.approx(ask.quantity_kwh)


def test_firm_quantile_none_offers_the_whole_plan():
    assets = default_assets("B")
    agent = warmed("optimising", assets, firm_quantile=None)
    decision = agent.decide(context(), state_for(assets))
    (order,) = decision.orders
    assert order.quantity_kwh == pytest.approx(abs(decision.plan[0].net_kw) * 0.25, abs=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_same_inputs_give_the_same_decision(kind):
    assets = default_assets("B")
    decisions = [
        warmed(kind, assets, seed=11).decide(context(), state_for(assets)) for _ in range(2)
    ]
    assert decisions[0].orders == decisions[1].orders
    assert decisions[0].plan == decisions[1].plan
    assert decisions[0].forecast == decisions[1].forecast


@pytest.mark.parametrize("kind", KINDS)
def test_no_history_gives_the_safe_plan_with_a_reason(kind):
    assets = default_assets("A")
    agent = make_agent(kind, "A", assets)
    decision = agent.decide(context(), state_for(assets))
    assert decision.orders == ()
    assert "history" in decision.fallback_reason
    assert all(step.battery_kw == 0.0 and step.ev_kw == 0.0 for step in decision.plan)
    assert all(step.soc_pct == 50.0 for step in decision.plan)  # battery idle at its SoC


@pytest.mark.parametrize("kind", KINDS)
def test_ev_that_cannot_reach_its_plug_out_energy_falls_back(kind):
    assets = default_assets("B")
    agent = warmed(kind, assets, days=1)
    state = state_for(
        assets,
        ev_soc_pct=20.0,
        ev_plugged=True,
        ev_departure_time=START + timedelta(minutes=45),
    )
    decision = agent.decide(context(), state)
    assert decision.orders == ()
    assert "EV cannot reach its plug-out energy" in decision.fallback_reason
    # no trading, but the cart charges flat out until it leaves, then the plan idles
    plugged = [step for step in decision.plan if step.ev_plugged]
    assert [step.ev_kw for step in plugged[:3]] == [-assets.ev.max_charge_kw] * 3
    assert decision.plan[3].ev_kw == 0.0 and not decision.plan[3].ev_plugged
    assert all(step.battery_kw == 0.0 for step in decision.plan)


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_battery_soc_falls_back(kind):
    assets = default_assets("A")
    agent = warmed(kind, assets, days=1)
    decision = agent.decide(context(), DeviceState(time=START))
    assert decision.orders == ()
    assert "battery SoC unknown" in decision.fallback_reason


def test_solver_that_fails_gives_the_safe_plan_and_the_next_interval_recovers():
    assets = default_assets("A")
    agent = warmed("optimising", assets, days=1)
    # HiGHS treats a 1e300 cost as infinite and refuses the model
    bad = agent.decide(context(retail_tariff=1e300), state_for(assets))
    assert bad.orders == ()
    assert "HiGHS failed" in bad.fallback_reason
    good = agent.decide(context(), state_for(assets))
    assert good.fallback_reason is None


def test_gaps_in_history_do_not_stop_the_agent():
    assets = default_assets("A")
    agent = make_agent("optimising", "A", assets, params={"forecast_method": "gbm"})
    for index, obs in enumerate(history(assets, 3)):
        if index % 7 and not 100 <= index < 160:  # every 7th interval and 15 h missing
            agent.observe(obs)
    decision = agent.decide(context(), state_for(assets))
    assert decision.fallback_reason is None
    assert all(np.isfinite(step.load_kw) and step.load_kw >= 0 for step in decision.forecast)
    assert decision.forecast[0].load_quantiles_kw  # the gbm gives quantiles


def test_zip_seller_raises_its_ask_after_trades_and_lowers_it_after_misses():
    assets = default_assets("A")
    noon = START + timedelta(hours=6)  # 11:30 IST, PV surplus
    agent = warmed("zip", assets, days=2)

    def ask() -> tuple[float, float]:
        decision = agent.decide(context(noon), state_for(assets, noon, battery_soc_pct=95.0))
        order = decision.orders[0]
        assert order.side == OrderSide.SELL
        return order.limit_price, order.quantity_kwh

    first, quantity = ask()
    for _ in range(5):
        agent.learn(MarketOutcome(noon, first + 1.0, (Fill(OrderSide.SELL, quantity, first + 1),)))
        raised, quantity = ask()
    assert raised > first
    for _ in range(8):
        agent.learn(MarketOutcome(noon, FEED_IN + 0.2, ()))
        lowered, quantity = ask()
    assert lowered < raised
    assert FEED_IN <= lowered <= RETAIL


def test_prosumer_stores_pv_when_its_asks_do_not_trade_and_sells_when_they_do():
    assets = default_assets("A")
    noon = START + timedelta(hours=6, minutes=30)  # 12:00 IST
    full = state_for(assets, noon, battery_soc_pct=95.0)  # a full battery: the surplus is offered
    sold_out = warmed("optimising", assets)
    unsold = warmed("optimising", assets)
    for _ in range(30):
        for agent, trades in ((sold_out, True), (unsold, False)):
            decision = agent.decide(context(noon), full)
            (ask,) = decision.orders
            fills = (Fill(OrderSide.SELL, ask.quantity_kwh, 7.0),) if trades else ()
            agent.learn(MarketOutcome(noon, 7.0 if trades else None, fills))
    assert sold_out.market.fill[OrderSide.SELL] > 0.9
    assert sold_out.market.price == pytest.approx(7.0)
    assert unsold.market.fill[OrderSide.SELL] < 0.1

    def stored_by_evening(agent) -> float:
        plan = agent.decide(context(noon), state_for(assets, noon, battery_soc_pct=30.0)).plan
        return plan[24].soc_pct - plan[0].soc_pct  # 12:00 -> 18:00 IST

    # asks that never trade earn only the feed-in tariff: the surplus goes into the battery for
    # the evening; asks that trade at 7.0 earn more than the stored kWh saves later
    assert stored_by_evening(unsold) > stored_by_evening(sold_out) + 20
