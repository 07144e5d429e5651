"""Peer A's hybrid inverter: WSet semantics, curtailment, revert timeout, battery energy balance."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hil_sim.plant import Plant
from tests.hil_sim.plants import make_plant

NOON_START = "2026-03-21T12:00:00+05:30"


def noon_plant(**battery: float) -> Plant:
    return make_plant(start=NOON_START, weather={"cloud_cover": 0.0}, battery=battery)


def test_with_wset_disabled_the_battery_idles_and_ac_is_pv() -> None:
    plant = noon_plant()
    plant.advance(60.0)
    inverter = plant.inverter
    assert not inverter.wset_enabled
    assert inverter.pv_available_kw > 2.5
    assert inverter.battery_power_kw == 0.0
    assert inverter.ac_power_kw == inverter.pv_power_kw == inverter.pv_available_kw
    assert inverter.soc_pct == 50.0


def test_the_battery_covers_the_target_minus_pv() -> None:
    plant = noon_plant()
    plant.write_inverter_wset(4.5)
    plant.write_inverter_wset_enabled(True)
    plant.advance(5.0)
    inverter = plant.inverter
    assert inverter.ac_power_kw == pytest.approx(4.5, abs=1e-12)
    assert inverter.battery_power_kw == pytest.approx(4.5 - inverter.pv_available_kw, abs=1e-12)
    assert inverter.soc_pct < 50.0

    plant.write_inverter_wset(-0.5)  # import: all PV plus 0.5 kW from the grid into the battery
    plant.advance(5.0)
    assert inverter.ac_power_kw == pytest.approx(-0.5, abs=1e-12)
    assert inverter.pv_power_kw == inverter.pv_available_kw
    assert inverter.battery_power_kw == pytest.approx(-0.5 - inverter.pv_available_kw, abs=1e-12)

    plant.write_inverter_wset(-2.0)  # more than the battery's 3.75 kW can take with the PV: curtail
    plant.advance(1.0)
    assert inverter.battery_power_kw == -3.75
    assert inverter.pv_power_kw == pytest.approx(1.75, abs=1e-12)
    assert inverter.ac_power_kw == pytest.approx(-2.0, abs=1e-12)


def test_pv_is_curtailed_when_the_battery_cannot_absorb_the_rest() -> None:
    plant = noon_plant(initial_soc_pct=95.0)  # full: it takes nothing
    plant.write_inverter_wset(1.0)
    plant.write_inverter_wset_enabled(True)
    plant.advance(10.0)
    inverter = plant.inverter
    assert inverter.pv_available_kw > 2.5
    assert inverter.battery_power_kw == 0.0
    assert inverter.pv_power_kw == pytest.approx(1.0, abs=1e-12)
    assert inverter.ac_power_kw == pytest.approx(1.0, abs=1e-12)

    plant.write_inverter_wset(-2.0)  # cannot import into a full battery: AC goes to zero, no lower
    plant.advance(1.0)
    assert inverter.pv_power_kw == 0.0
    assert inverter.ac_power_kw == 0.0


def test_an_empty_battery_cannot_make_up_the_target() -> None:
    plant = make_plant(
        start="2026-03-21T02:00:00+05:30", battery={"initial_soc_pct": 10.0}
    )  # night: no PV
    plant.write_inverter_wset(3.0)
    plant.write_inverter_wset_enabled(True)
    plant.advance(10.0)
    assert plant.inverter.ac_power_kw == 0.0
    assert plant.inverter.soc_pct == 10.0


def test_wset_reverts_after_the_timeout_of_plant_time_without_a_new_write() -> None:
    plant = noon_plant()
    plant.write_inverter_revert_timeout(30.0)
    plant.write_inverter_wset(-1.0)
    plant.write_inverter_wset_enabled(True)
    assert plant.inverter.wset_revert_remaining_s == 30.0
    plant.advance(20.0)
    plant.write_inverter_wset(-1.5)  # a new write restarts the timer
    plant.advance(29.0)
    assert plant.inverter.wset_enabled
    assert plant.inverter.ac_power_kw == pytest.approx(-1.5, abs=1e-12)
    assert plant.inverter.wset_revert_remaining_s == pytest.approx(1.0)
    plant.advance(1.0)
    assert not plant.inverter.wset_enabled
    plant.advance(1.0)
    assert plant.inverter.battery_power_kw == 0.0
    assert plant.inverter.ac_power_kw == plant.inverter.pv_available_kw


def test_the_ac_rating_bounds_the_output() -> None:
    plant = make_plant(
        start=NOON_START, weather={"cloud_cover": 0.0}, inverter={"rated_power_kw": 2.0}
    )
    plant.advance(1.0)
    assert plant.inverter.pv_available_kw > 2.5
    assert plant.inverter.ac_power_kw == 2.0  # disabled: PV clipped to the rating
    plant.write_inverter_wset(-2.0)
    plant.write_inverter_wset_enabled(True)
    plant.advance(1.0)
    assert plant.inverter.ac_power_kw == pytest.approx(-2.0, abs=1e-12)


def test_stored_energy_follows_the_efficiencies_exactly() -> None:
    plant = noon_plant(charge_efficiency=0.9, discharge_efficiency=0.8)
    plant.write_inverter_wset_enabled(True)
    charged = discharged = 0.0
    for target in (-3.0, 5.0, 0.5, -0.5, 5.0):
        plant.write_inverter_wset(target)
        for _ in range(600):
            plant.advance(1.0)
            power = plant.inverter.battery_power_kw
            charged += max(-power, 0.0) / 3600.0
            discharged += max(power, 0.0) / 3600.0
    inverter = plant.inverter
    assert charged > 0.3 and discharged > 0.3
    assert inverter.battery_charged_kwh == pytest.approx(charged, rel=1e-12)
    assert inverter.battery_discharged_kwh == pytest.approx(discharged, rel=1e-12)
    stored_change = (inverter.soc_pct - 50.0) / 100.0 * 7.5
    assert stored_change == pytest.approx(charged * 0.9 - discharged / 0.8, abs=1e-9)
    assert inverter.ac_injected_kwh - inverter.ac_absorbed_kwh == pytest.approx(
        inverter.pv_energy_kwh + discharged - charged, abs=1e-9
    )


actions = st.lists(
    st.tuples(
        st.floats(-1.0, 1.0),  # WSet as a share of the rating
        st.booleans(),  # WSetEna
        st.sampled_from([0.0, 3.0, 20.0]),  # revert timeout
        st.integers(1, 40),  # seconds to run
        st.sampled_from([1.0, 0.25, 0.7]),  # dt of each advance
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    actions=actions,
    initial_soc=st.floats(10.0, 95.0),
    capacity_kwh=st.sampled_from([0.02, 0.1, 7.5]),
    hour=st.sampled_from(["06:30", "12:00", "17:45", "23:00"]),
)
def test_limits_hold_under_any_sequence_of_setpoints(
    actions: list[tuple[float, bool, float, int, float]],
    initial_soc: float,
    capacity_kwh: float,
    hour: str,
) -> None:
    plant = make_plant(
        start=f"2026-03-21T{hour}:00+05:30",
        battery={"initial_soc_pct": initial_soc, "capacity_kwh": capacity_kwh},
    )
    inverter = plant.inverter
    config = plant.site.peers["A"].battery
    for share, enabled, timeout, seconds, dt in actions:
        plant.write_inverter_revert_timeout(timeout)
        plant.write_inverter_wset(share * inverter.rated_power_kw)
        plant.write_inverter_wset_enabled(enabled)
        for _ in range(round(seconds / dt)):
            wset_in_force = inverter.wset_enabled  # the state during the coming step
            plant.advance(dt)
            assert config.soc_min_pct - 1e-9 <= inverter.soc_pct <= config.soc_max_pct + 1e-9
            assert -config.max_charge_kw - 1e-12 <= inverter.battery_power_kw
            assert inverter.battery_power_kw <= config.max_discharge_kw + 1e-12
            assert abs(inverter.ac_power_kw) <= inverter.rated_power_kw + 1e-12
            assert 0.0 <= inverter.pv_power_kw <= inverter.pv_available_kw + 1e-12
            assert inverter.ac_power_kw == inverter.pv_power_kw + inverter.battery_power_kw
            if not wset_in_force:
                assert inverter.battery_power_kw == 0.0
            elif inverter.ac_power_kw > inverter.wset_kw + 1e-9:
                # Above target: only when PV is fully curtailed and the battery charges its utmost.
                assert inverter.pv_power_kw == 0.0
                assert (
                    inverter.battery_power_kw == -config.max_charge_kw
                    or inverter.soc_pct >= config.soc_max_pct - 1e-9
                )
            elif inverter.ac_power_kw < inverter.wset_kw - 1e-9:
                # Below target: only with all PV in use and the battery discharging its utmost.
                assert inverter.pv_power_kw == inverter.pv_available_kw
                assert (
                    inverter.battery_power_kw == config.max_discharge_kw
                    or inverter.soc_pct <= config.soc_min_pct + 1e-9
                )
    stored = (inverter.soc_pct - initial_soc) / 100.0 * capacity_kwh
    expected = (
        inverter.battery_charged_kwh * config.charge_efficiency
        - inverter.battery_discharged_kwh / config.discharge_efficiency
    )
    assert stored == pytest.approx(expected, abs=1e-9)
