"""The Plant interface the protocol servers rely on: time, writes, read-backs and state_dict."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from hil_sim.config import PlantConfig
from hil_sim.plant import Plant, SetpointRejected


def test_time_starts_at_the_configured_instant_and_advances_in_plant_seconds() -> None:
    plant = Plant()
    assert plant.now == datetime(2026, 3, 20, 18, 30, tzinfo=UTC)
    assert plant.now.tzinfo is not None and plant.now.utcoffset().total_seconds() == 0
    plant.advance(2.5)
    plant.advance(0.5)
    assert plant.elapsed_s == 3.0
    assert plant.now == datetime(2026, 3, 20, 18, 30, 3, tzinfo=UTC)
    for _ in range(70):
        plant.advance(0.1)  # small steps add up as written, no drift
    assert plant.elapsed_s == 10.0


@pytest.mark.parametrize("dt_s", [0.0, -1.0, float("nan"), float("inf"), "1", True])
def test_advance_refuses_a_step_that_is_not_a_positive_finite_time(dt_s: object) -> None:
    plant = Plant()
    with pytest.raises(ValueError, match="dt_s"):
        plant.advance(dt_s)  # type: ignore[arg-type]
    assert plant.elapsed_s == 0.0


def test_writes_read_back_at_once() -> None:
    plant = Plant()
    plant.write_inverter_wset(-2.5)
    plant.write_inverter_revert_timeout(60.0)
    plant.write_inverter_wset_enabled(True)
    plant.write_ev_setpoint(1.2)
    plant.write_ev_enabled(False)
    plant.write_load_function("POW")
    plant.write_load_power(900.0)
    plant.write_load_input(False)
    assert plant.inverter.wset_kw == -2.5
    assert plant.inverter.wset_enabled
    assert plant.inverter.wset_revert_timeout_s == 60.0
    assert plant.inverter.wset_revert_remaining_s == 60.0
    assert plant.ev.setpoint_kw == 1.2 and not plant.ev.enabled
    assert plant.load_c.function == "POW" and plant.load_c.power_setpoint_w == 900.0
    assert not plant.load_c.input_on


REJECTED = [
    ("write_inverter_wset", 5.01, r"inverter WSet power_kw = 5.01 kW: must be within \[-5, 5\] kW"),
    ("write_inverter_wset", float("-inf"), "must be finite"),
    ("write_inverter_wset", None, "must be a number"),
    ("write_inverter_wset_enabled", 1, "inverter WSetEna enabled = 1: must be true or false"),
    ("write_inverter_revert_timeout", -1.0, r"WSetRvrtTms seconds = -1 s: must be within \[0,"),
    ("write_inverter_revert_timeout", float("nan"), "must be finite"),
    ("write_ev_setpoint", -2.5, r"EV power setpoint_kw = -2.5 kW: must be within \[-2, 1.5\] kW"),
    ("write_ev_setpoint", 0.2, "deadband"),
    ("write_ev_enabled", "yes", "EV enabled = 'yes': must be true or false"),
]


@pytest.mark.parametrize(("write", "value", "message"), REJECTED)
def test_a_rejected_write_names_quantity_value_and_range_and_changes_nothing(
    write: str, value: object, message: str
) -> None:
    plant = Plant()
    plant.write_inverter_wset_enabled(True)
    plant.write_inverter_wset(1.0)
    plant.advance(10.0)
    before = plant.state_dict()
    with pytest.raises(SetpointRejected, match=message):
        getattr(plant, write)(value)
    assert plant.state_dict() == before


def test_state_dict_is_the_whole_truth_as_json() -> None:
    plant = Plant(PlantConfig.from_mapping({"start": "2026-03-21T10:00:00+05:30"}))
    plant.advance(5.0)
    state = json.loads(json.dumps(plant.state_dict()))
    assert state["now"] == "2026-03-21T04:30:05+00:00"
    assert state["elapsed_s"] == 5.0
    assert state["ev"]["departure_time"] == "2026-03-21T12:00:00+00:00"
    assert set(state["meters"]) == {"A", "B", "C"}
    assert state["inverter"]["soc_pct"] == plant.inverter.soc_pct
    assert state["meters"]["B"]["power_kw"] == plant.meters["B"].power_kw
    assert state["feeder"]["bus_voltage_v"]["LV"] == 232.0
    assert set(state["house_loads"]) == {"A", "B", "C"}


def test_midnight_passes_without_a_jump() -> None:
    plant = Plant(PlantConfig.from_mapping({"start": "2026-03-21T23:59:50+05:30"}))
    before = dict(plant.house_loads)
    plant.advance(20.0)
    assert plant.now == datetime(2026, 3, 21, 18, 30, 10, tzinfo=UTC)
    assert plant.ev.plugged  # the overnight window wraps midnight
    assert plant.ev.departure_time == datetime(2026, 3, 22, 2, 30, tzinfo=UTC)
    for peer, power in plant.house_loads.items():
        assert abs(power - before[peer]) < 0.5  # days are drawn apart, but nights are quiet
    assert plant.inverter.pv_available_kw == 0.0
