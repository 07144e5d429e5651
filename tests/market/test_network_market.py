"""Network-aware clearing: the feeder from the site file, voltage band kept, charges per trade."""

from __future__ import annotations

import pytest

from labspec.site import default_site
from testbed.market import get_mechanism
from testbed.network.feeder import load_feeder
from testbed.network.powerflow import ac_check
from tests.market.books import ask, bid

# A long service cable to C: C exporting a few kW raises its voltage past +6 %.
WEAK_FEEDER = {
    "lines": [
        {"from_bus": "LV", "to_bus": "J1", "length_m": 120, "r_ohm_per_km": 0.64,
         "x_ohm_per_km": 0.16, "max_current_a": 200},
        {"from_bus": "J1", "to_bus": "A", "length_m": 30, "r_ohm_per_km": 2.3,
         "x_ohm_per_km": 0.18, "max_current_a": 80},
        {"from_bus": "J1", "to_bus": "C", "length_m": 400, "r_ohm_per_km": 2.3,
         "x_ohm_per_km": 0.18, "max_current_a": 80},
    ],
    "lv_bus_voltage_v": 232.0,
}  # fmt: skip
ORDERS = [bid("b1", 2.0, 10.0, peer="A"), ask("a1", 2.0, 2.0, peer="C")]  # 8 kW for 15 min


def injections_kw(result) -> dict[str, float]:
    out: dict[str, float] = {}
    for trade in result.trades:
        out[trade.seller] = out.get(trade.seller, 0.0) + trade.quantity_kwh * 4
        out[trade.buyer] = out.get(trade.buyer, 0.0) - trade.quantity_kwh * 4
    return out


def test_the_feeder_is_the_site_files():
    feeder = load_feeder("site")
    site = default_site()
    assert feeder.slack_bus == site.feeder.slack_bus
    assert [(line.from_bus, line.to_bus) for line in feeder.lines] == [
        (line.from_bus, line.to_bus) for line in site.feeder.resolved_lines()
    ]
    assert feeder.lines[1].max_current_a == site.feeder.resolved_lines()[1].max_current_a
    assert feeder.peer_buses == {peer: p.bus for peer, p in site.peers.items()}


def test_a_bad_feeder_is_named():
    bad = {"lines": [{"from_bus": "LV", "to_bus": "A", "length_m": -3, "r_ohm_per_km": 1}]}
    with pytest.raises(ValueError, match=r"feeder\.lines\.0\.length_m = -3"):
        get_mechanism("welfare", feeder=bad)
    with pytest.raises(ValueError, match="neither 'site', 'none' nor a TOML file"):
        get_mechanism("welfare", feeder="/no/such/site.toml")


def test_the_unconstrained_optimum_leaves_the_band_on_a_weak_feeder():
    plain = get_mechanism("welfare").clear(ORDERS)
    assert plain.volume_kwh == pytest.approx(2.0)
    check = ac_check(load_feeder(WEAK_FEEDER), injections_kw(plain), 6.0)
    assert not check.ok
    assert check.voltages_v["C"] > 230 * 1.06


@pytest.mark.parametrize("name", ["welfare", "admm", "nash"])
def test_network_aware_clearing_keeps_every_bus_in_the_band(name):
    result = get_mechanism(name, feeder=WEAK_FEEDER).clear(ORDERS)
    assert 0.1 < result.volume_kwh < 2.0  # trades as much as the feeder allows
    assert result.report["network_ok"] is True
    check = ac_check(load_feeder(WEAK_FEEDER), injections_kw(result), 6.0)
    assert check.ok
    assert min(check.voltages_v.values()) >= 230 * 0.94
    assert max(check.voltages_v.values()) <= 230 * 1.06


def test_a_peer_off_the_feeder_is_rejected_by_name():
    orders = [*ORDERS, bid("b9", 1.0, 9.0, peer="Z")]
    result = get_mechanism("welfare", feeder="site").clear(orders)
    [rejected] = result.report["rejected"]
    assert rejected["order_id"] == "b9"
    assert "peer 'Z' has no bus on the feeder" in rejected["reason"]


def test_distance_charges_make_the_far_pair_pay_more():
    orders = [
        bid("bA", 0.5, 10.0, peer="A"),
        bid("bC", 0.5, 10.0, peer="C"),
        ask("aB", 1.0, 2.0, peer="B"),
    ]
    mechanism = get_mechanism("welfare", feeder="site", charges="distance")
    result = mechanism.clear(orders)
    charge = {t.buyer: t.network_charge for t in result.trades}
    assert charge["A"] > charge["C"] > 0  # A sits across J1 from B; C shares J2 with B
    total = result.report["network"]["network_charges"]
    assert total == pytest.approx(sum(t.network_charge * t.quantity_kwh for t in result.trades))


@pytest.mark.parametrize("name", ["welfare", "admm", "nash"])
def test_conflicting_limits_fall_back_to_the_grid_with_the_reason(name):
    # the transformer already holds the LV bus above the band: no position can satisfy it
    high_slack = {**WEAK_FEEDER, "lv_bus_voltage_v": 250.0}
    result = get_mechanism(name, feeder=high_slack).clear(ORDERS)
    assert result.trades == []
    assert result.report["cleared"] is False
    assert "infeasible" in result.report["fallback"] or "cannot be met" in result.report["fallback"]


def test_a_solver_failure_falls_back_to_the_grid_with_the_reason():
    # a price HiGHS takes as infinite: the solver returns no solution
    result = get_mechanism("welfare").clear([bid("b1", 2.0, 1e21, peer="A"), *ORDERS[1:]])
    assert result.trades == []
    assert result.report["fallback"].startswith("solver HIGHS returned no solution")


def test_an_ac_violation_after_clearing_falls_back_to_the_grid():
    # stackelberg prices without the feeder's limits: the AC check before dispatch catches C
    result = get_mechanism("stackelberg", feeder=WEAK_FEEDER).clear(ORDERS)
    assert result.trades == []
    assert result.report["network_ok"] is False
    assert result.report["fallback"].startswith("network check: bus C at")
