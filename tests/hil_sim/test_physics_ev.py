"""Peer B's bidirectional charger: plug windows, ramp, deadband, reserve, watchdog, energy."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hil_sim.plant import Plant, SetpointRejected
from tests.hil_sim.plants import make_plant


def ev_plant(local_time: str = "10:00:00", **ev: object) -> Plant:
    return make_plant(start=f"2026-03-21T{local_time}+05:30", ev=ev)


def test_the_cart_is_plugged_in_its_windows_and_says_when_it_leaves() -> None:
    plant = ev_plant("08:59:58")
    assert not plant.ev.plugged
    assert plant.ev.status == "unplugged"
    assert plant.ev.departure_time is None
    plant.advance(2.0)
    assert plant.ev.plugged
    assert plant.ev.departure_time == datetime(2026, 3, 21, 12, 0, tzinfo=UTC)  # 17:30 IST

    overnight = ev_plant("23:00:00")
    assert overnight.ev.plugged
    assert overnight.ev.departure_time == datetime(2026, 3, 22, 2, 30, tzinfo=UTC)  # 08:00 IST


def test_power_ramps_toward_the_setpoint() -> None:
    plant = ev_plant()  # ramp 0.5 kW/s
    plant.write_ev_setpoint(-2.0)
    seen = []
    for _ in range(6):
        plant.advance(1.0)
        seen.append(plant.ev.power_kw)
    assert seen == [-0.5, -1.0, -1.5, -2.0, -2.0, -2.0]
    assert plant.ev.status == "charging"
    plant.write_ev_setpoint(1.5)
    plant.advance(2.0)
    assert plant.ev.power_kw == pytest.approx(-1.0)
    plant.advance(0.5)
    assert plant.ev.power_kw == pytest.approx(-0.75)


@pytest.mark.parametrize("setpoint", [0.1, -0.29, 1.6, -2.1, float("nan"), float("inf"), True, "1"])
def test_a_setpoint_outside_the_limits_is_rejected_and_changes_nothing(setpoint: object) -> None:
    plant = ev_plant()
    plant.write_ev_setpoint(-1.0)
    plant.advance(3.0)
    before = plant.state_dict()
    with pytest.raises(SetpointRejected, match="EV power setpoint_kw"):
        plant.write_ev_setpoint(setpoint)  # type: ignore[arg-type]
    assert plant.state_dict() == before


def test_deadband_message_names_the_allowed_ranges() -> None:
    plant = ev_plant()
    with pytest.raises(SetpointRejected, match=r"= 0.1 kW: inside the deadband.*0.3 to 1.5 kW"):
        plant.write_ev_setpoint(0.1)


def test_no_discharge_below_the_reserve() -> None:
    plant = ev_plant(initial_soc_pct=31.0, watchdog_timeout_s=0.0)
    plant.write_ev_setpoint(1.5)
    plant.advance(200.0)
    assert plant.ev.soc_pct == pytest.approx(30.0, abs=1e-9)
    assert plant.ev.power_kw == 0.0
    assert plant.ev.status == "idle"
    assert plant.ev.setpoint_kw == 1.5
    plant.write_ev_setpoint(-1.0)  # charging is still allowed
    plant.advance(2.0)
    assert plant.ev.power_kw == -1.0


def test_charging_stops_at_the_top_of_the_window() -> None:
    plant = ev_plant(initial_soc_pct=94.5, watchdog_timeout_s=0.0)
    plant.write_ev_setpoint(-2.0)
    plant.advance(120.0)
    assert plant.ev.soc_pct == pytest.approx(95.0, abs=1e-9)
    assert plant.ev.power_kw == 0.0


def test_the_watchdog_reverts_an_unrefreshed_setpoint_to_zero() -> None:
    plant = ev_plant()  # watchdog 30 s of plant time
    plant.write_ev_setpoint(-1.0)
    plant.advance(29.0)
    assert plant.ev.setpoint_kw == -1.0
    plant.write_ev_setpoint(-1.0)  # refreshed
    plant.advance(29.5)
    assert plant.ev.setpoint_kw == -1.0
    plant.advance(0.5)
    assert plant.ev.setpoint_kw == 0.0
    assert plant.ev.power_kw == -1.0  # the last second still ran at the old setpoint
    plant.advance(1.0)
    assert plant.ev.power_kw == -0.5  # ramping down
    plant.advance(1.0)
    assert plant.ev.power_kw == 0.0


def test_disabling_stops_transfer_at_once_and_enabling_ramps_again() -> None:
    plant = ev_plant(watchdog_timeout_s=0.0)
    plant.write_ev_setpoint(1.5)
    plant.advance(10.0)
    assert plant.ev.power_kw == 1.5
    plant.write_ev_enabled(False)
    plant.advance(1.0)
    assert plant.ev.power_kw == 0.0
    assert plant.ev.status == "idle"
    plant.write_ev_enabled(True)
    plant.advance(1.0)
    assert plant.ev.power_kw == 0.5


def test_leaving_cuts_the_power_and_driving_drains_the_battery() -> None:
    plant = ev_plant("17:29:50", watchdog_timeout_s=0.0)
    plant.write_ev_setpoint(-2.0)
    plant.advance(9.0)
    assert plant.ev.power_kw == -2.0
    plant.advance(1.0)  # 17:30:00, departure
    assert not plant.ev.plugged
    assert plant.ev.power_kw == 0.0
    assert plant.ev.status == "unplugged"
    soc = plant.ev.soc_pct
    plant.advance(3600.0)  # an hour's driving at 0.6 kW
    assert plant.ev.soc_pct == pytest.approx(soc - 0.6 / 4.608 * 100.0, abs=1e-9)


def test_stored_energy_follows_the_charger_efficiency_exactly() -> None:
    plant = ev_plant(
        "08:45:00", charge_efficiency=0.9, discharge_efficiency=0.9, watchdog_timeout_s=0.0
    )
    start_soc = plant.ev.soc_pct
    charged = discharged = 0.0
    for setpoint in (-2.0, -2.0, 1.5, 0.0, -0.7, 1.0):
        plant.write_ev_setpoint(setpoint)
        for _ in range(900):  # crosses the 09:00 arrival
            plant.advance(1.0)
            power = plant.ev.power_kw
            charged += max(-power, 0.0) / 3600.0
            discharged += max(power, 0.0) / 3600.0
    ev = plant.ev
    assert charged > 0.2 and discharged > 0.2
    assert ev.energy_charged_kwh == pytest.approx(charged, rel=1e-12)
    assert ev.energy_discharged_kwh == pytest.approx(discharged, rel=1e-12)
    drive_kwh = plant.state_dict()["ev"]["drive_energy_kwh"]
    # Away at 0.6 kW from 08:45 until the arrival sampled at 09:00:00 (899 one-second steps).
    assert drive_kwh == pytest.approx(0.6 * 899 / 3600, abs=1e-12)
    stored_change = (ev.soc_pct - start_soc) / 100.0 * ev.capacity_kwh
    assert stored_change == pytest.approx(charged * 0.9 - discharged / 0.9 - drive_kwh, abs=1e-9)


actions = st.lists(
    st.tuples(
        st.floats(-2.5, 2.0, allow_nan=False),  # setpoint, some rejected
        st.booleans(),  # enabled
        st.integers(1, 40),  # seconds to run
        st.sampled_from([1.0, 0.5, 0.3]),  # dt of each advance
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    actions=actions,
    initial_soc=st.floats(10.0, 95.0),
    capacity_kwh=st.sampled_from([0.3 * 0.0512, 2.0 * 0.0512, 90 * 0.0512]),
    local_time=st.sampled_from(["10:00:00", "17:29:40", "08:59:40"]),
    watchdog_s=st.sampled_from([0.0, 5.0, 30.0]),
)
def test_limits_hold_under_any_sequence_of_setpoints(
    actions: list[tuple[float, bool, int, float]],
    initial_soc: float,
    capacity_kwh: float,
    local_time: str,
    watchdog_s: float,
) -> None:
    plant = ev_plant(
        local_time,
        initial_soc_pct=initial_soc,
        capacity_kwh=capacity_kwh,
        watchdog_timeout_s=watchdog_s,
        reserve_soc_pct=max(30.0, initial_soc - 5.0),
    )
    ev = plant.ev
    config = plant.site.peers["B"].ev
    floor_pct = max(config.reserve_soc_pct, config.soc_min_pct)
    for setpoint, enabled, seconds, dt in actions:
        valid = setpoint == 0.0 or (
            config.min_power_kw <= abs(setpoint)
            and -config.max_charge_kw <= setpoint <= config.max_discharge_kw
        )
        before = plant.state_dict()
        if valid:
            plant.write_ev_setpoint(setpoint)
            assert ev.setpoint_kw == setpoint and ev.seconds_since_setpoint == 0.0
        else:
            with pytest.raises(SetpointRejected):
                plant.write_ev_setpoint(setpoint)
            assert plant.state_dict() == before
        plant.write_ev_enabled(enabled)
        for _ in range(round(seconds / dt)):
            previous_power, previous_soc = ev.power_kw, ev.soc_pct
            plant.advance(dt)
            assert config.soc_min_pct - 1e-9 <= ev.soc_pct <= config.soc_max_pct + 1e-9
            assert -config.max_charge_kw <= ev.power_kw <= config.max_discharge_kw
            if ev.power_kw > 0.0:
                assert ev.soc_pct >= floor_pct - 1e-9 and previous_soc > floor_pct
            if not (ev.enabled and ev.plugged):
                assert ev.power_kw == 0.0
            if watchdog_s and ev.seconds_since_setpoint >= watchdog_s:
                assert ev.setpoint_kw == 0.0
            if abs(ev.power_kw - previous_power) > config.ramp_kw_per_s * dt + 1e-9:
                # Only a protective cut-off may move faster than the ramp.
                cut = not (ev.enabled and ev.plugged)
                at_top = ev.soc_pct >= config.soc_max_pct - 1e-9
                at_floor = ev.soc_pct <= floor_pct + 1e-9
                assert cut or at_top or at_floor
                assert abs(ev.power_kw) < abs(previous_power)
            expected_status = (
                "unplugged"
                if not ev.plugged
                else "charging"
                if ev.power_kw < 0
                else "discharging"
                if ev.power_kw > 0
                else "idle"
            )
            assert ev.status == expected_status
