"""Delivery: the PCC follows the contract plus the plan's grid import; the EV's departure need
outranks the market."""

from datetime import UTC, datetime, timedelta

import pytest

from testbed.dispatch import (
    MobilityNeed,
    battery_command,
    ev_command,
    pcc_target_kw,
    tracking_request_kw,
)
from testbed.safety import StorageLimits

NOW = datetime(2026, 3, 21, 1, 0, tzinfo=UTC)
EV = StorageLimits(2.0, 1.5, 30.0, 95.0, ramp_kw_per_s=10.0, min_power_kw=0.3)
NEED = MobilityNeed(
    capacity_kwh=4.608, departure_soc_pct=80.0, charge_efficiency=0.95, max_charge_kw=2.0
)


def test_a_buyer_imports_what_its_plan_imports_whatever_its_bid_won():
    # plan: import 1.2 kW (house load and charging); the bid won 0.4 kW, or nothing
    assert pcc_target_kw(-0.4, -1.2) == pytest.approx(-1.2)
    assert pcc_target_kw(0.0, -1.2) == pytest.approx(-1.2)
    # the old rule held the PCC at the contract: storage covered the rest of the load
    assert pcc_target_kw(0.0, -1.2, rule="contract") == 0.0


def test_a_seller_exports_what_it_sold_not_what_it_planned_to_sell():
    assert pcc_target_kw(0.6, 1.0) == pytest.approx(0.6)  # the unsold 0.4 kW stays home
    assert pcc_target_kw(0.0, 1.0) == 0.0
    assert pcc_target_kw(0.3, None) == 0.3  # no plan for the interval: the contract
    assert pcc_target_kw(0.3, float("nan")) == 0.3
    with pytest.raises(ValueError, match="'grid'"):
        pcc_target_kw(0.3, 1.0, rule="grid")


def test_tracking_moves_the_device_by_the_pcc_error():
    # contract: export 1 kW; PCC imports 0.5 kW while the device gives 0.2 kW
    assert tracking_request_kw(1.0, -0.5, 0.2) == pytest.approx(1.7)


def test_battery_target_adds_pv_and_respects_the_soc_window():
    wset, command = battery_command(
        contract_kw=2.0,
        pcc_kw=0.0,
        ac_power_kw=1.0,
        pv_power_kw=1.0,
        soc_pct=10.0,
        previous_battery_kw=0.0,
        limits=StorageLimits(3.0, 3.0, 10.0, 95.0, 5.0),
        dt_s=1.0,
    )
    assert command.storage_kw == 0.0  # the battery is empty: no discharge
    assert wset == pytest.approx(1.0)  # PV alone
    assert [hit.kind for hit in command.hits] == ["soc_limit"]


def test_departure_need_starts_only_when_time_runs_short():
    # 70 -> 80 % of 4.608 kWh at 2 kW x 0.95 takes 0.24 h; with the 0.25 h margin: 0.49 h
    assert not NEED.must_charge(70.0, NOW, NOW + timedelta(hours=1))
    assert NEED.must_charge(70.0, NOW, NOW + timedelta(hours=0.45))
    assert not NEED.must_charge(80.0, NOW, NOW + timedelta(minutes=1))
    assert not NEED.must_charge(50.0, NOW, None)


def test_must_charge_overrides_a_selling_contract():
    command = ev_command(
        contract_kw=1.5,
        pcc_kw=0.0,
        ev_power_kw=0.0,
        soc_pct=60.0,
        previous_kw=0.0,
        limits=EV,
        dt_s=1.0,
        must_charge=True,
        mobility=NEED,
        departure=NOW,
    )
    assert command.storage_kw == -2.0
    assert "mobility" in [hit.kind for hit in command.hits]


def test_small_ev_requests_fall_in_the_deadband():
    command = ev_command(0.1, 0.0, 0.0, 60.0, 0.0, EV, 1.0)
    assert command.storage_kw == 0.0
