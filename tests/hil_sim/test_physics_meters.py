"""PCC meters, house loads and peer C's programmable load: every kW accounted for."""

from __future__ import annotations

import math
from datetime import date

import pytest

from hil_sim.config import PlantConfig
from hil_sim.physics.profiles import STEP_S, build_day
from hil_sim.plant import Plant, SetpointRejected
from tests.hil_sim.plants import make_plant


def busy_plant() -> Plant:
    """A plant at 07:00 IST with every device doing something."""
    plant = make_plant(start="2026-03-21T07:00:00+05:30", ev={"watchdog_timeout_s": 0.0})
    return plant


def scenario(plant: Plant) -> list[tuple[float, dict[str, float]]]:
    """Writes and steps across morning and noon; returns (dt, meter powers after the step)."""
    trace = []
    plan = [
        (lambda: None, 600),
        (lambda: (plant.write_inverter_wset(-1.0), plant.write_inverter_wset_enabled(True)), 900),
        (lambda: plant.write_ev_setpoint(-2.0), 1800),  # EV arrives at 09:00
        (lambda: (plant.write_ev_setpoint(1.5), plant.write_inverter_wset(3.0)), 900),
        (lambda: (plant.write_load_function("POW"), plant.write_load_power(2500.0)), 300),
        (lambda: plant.write_load_input(False), 300),
        (lambda: plant.write_inverter_wset_enabled(False), 600),
    ]
    for write, seconds in plan:
        write()
        for _ in range(seconds):
            plant.advance(1.0)
            trace.append((1.0, {peer: m.power_kw for peer, m in plant.meters.items()}))
            check_pcc_sums(plant)
    return trace


def check_pcc_sums(plant: Plant) -> None:
    meters, house = plant.meters, plant.house_loads
    assert meters["A"].power_kw == plant.inverter.ac_power_kw + house["A"]
    assert meters["B"].power_kw == plant.ev.power_kw + house["B"]
    assert meters["C"].power_kw == house["C"] == -plant.load_c.power_w / 1000.0
    assert house["A"] < 0.0 and house["B"] < 0.0 and house["C"] <= 0.0
    total = sum(m.power_kw for m in meters.values())
    assert plant.feeder.transformer_power_kw == total - plant.feeder.losses_kw


def test_each_pcc_meter_is_the_sum_of_its_peers_devices_and_loads_every_step() -> None:
    plant = busy_plant()
    trace = scenario(plant)
    assert len(trace) == 5400
    assert any(p["A"] > 0 for _, p in trace) and any(p["A"] < 0 for _, p in trace)
    assert min(p["C"] for _, p in trace) == pytest.approx(-2.5)


def test_import_and_export_registers_integrate_net_power_exactly() -> None:
    plant = busy_plant()
    start = {peer: (m.import_kwh, m.export_kwh) for peer, m in plant.meters.items()}
    losses_before = plant.feeder.loss_kwh
    trace = scenario(plant)
    for peer, meter in plant.meters.items():
        integral_kwh = math.fsum(dt * powers[peer] for dt, powers in trace) / 3600.0
        imported = meter.import_kwh - start[peer][0]
        exported = meter.export_kwh - start[peer][1]
        assert imported >= 0.0 and exported >= 0.0
        assert imported - exported == pytest.approx(-integral_kwh, abs=1e-9)
    assert plant.meters["A"].export_kwh > 0.0 and plant.meters["A"].import_kwh > 0.0
    assert plant.feeder.loss_kwh > losses_before


def test_meter_reads_voltage_current_and_frequency() -> None:
    plant = busy_plant()
    plant.write_load_function("POW")
    plant.write_load_power(2300.0)
    plant.advance(1.0)
    c = plant.meters["C"]
    assert c.current_a == pytest.approx(2300.0 / c.voltage_v)  # unity power factor
    assert plant.load_c.current_a == pytest.approx(c.current_a)
    assert plant.load_c.voltage_v == c.voltage_v
    assert 215.0 < c.voltage_v < plant.site.feeder.transformer.lv_voltage_v
    a = plant.meters["A"]
    assert a.current_a >= abs(a.power_kw) * 1000.0 / a.voltage_v  # reactive power adds current
    assert plant.inverter.voltage_v == a.voltage_v
    for meter in plant.meters.values():
        assert 49.9 < meter.frequency_hz < 50.1
        assert meter.frequency_hz == plant.inverter.frequency_hz


def test_house_loads_have_the_testbed_sizes() -> None:
    day = build_day(PlantConfig(), date(2026, 3, 21), 5.5 * 3600)
    peaks = {peer: max(values) for peer, values in day.house_load_kw.items()}
    assert 1.6 <= peaks["A"] <= 3.0  # "around 2 kW"
    assert 0.8 <= peaks["B"] <= 1.5  # "around 1 kW"
    assert 1.2 <= peaks["C"] <= 2.2  # "around 1.5 kW"
    assert 10.0 <= math.fsum(day.house_load_kw["A"]) * STEP_S / 3600.0 <= 25.0  # kWh a day
    evening = int(20.5 * 3600 / STEP_S)
    night = int(3.0 * 3600 / STEP_S)
    for values in day.house_load_kw.values():
        assert min(values) > 0.0
        assert values[evening] > 2.0 * values[night]  # the evening peak stands out


def test_the_programmable_load_plays_the_house_program_out_of_the_box() -> None:
    plant = make_plant(start="2026-03-21T20:00:00+05:30")
    load = plant.load_c
    assert load.input_on and load.function == "LIST"
    plant.advance(1.0)
    assert load.power_w > 300.0
    assert plant.house_loads["C"] == plant.house_load_profiles_kw["C"] == -load.power_w / 1000.0


def test_constant_power_mode_input_off_and_reset() -> None:
    plant = make_plant()
    load = plant.load_c
    plant.write_load_function("pow")
    plant.write_load_power(1234.0)
    assert (load.function, load.power_setpoint_w) == ("POW", 1234.0)  # read back at once
    plant.advance(3600.0)
    assert load.power_w == 1234.0
    assert load.energy_wh == pytest.approx(1234.0)
    assert plant.meters["C"].power_kw == -1.234
    plant.write_load_input(False)
    plant.advance(1.0)
    assert load.power_w == 0.0 and load.current_a == 0.0
    assert plant.meters["C"].power_kw == 0.0
    plant.write_load_input(True)
    plant.reset_load()
    assert (load.input_on, load.function, load.power_setpoint_w) == (False, "POW", 0.0)
    plant.advance(1.0)
    assert load.power_w == 0.0


@pytest.mark.parametrize(
    ("write", "value", "message"),
    [
        ("write_load_power", 3000.5, r"load power_w = 3000.5 W: must be within \[0, 3000\] W"),
        ("write_load_power", -1.0, r"must be within \[0, 3000\] W"),
        ("write_load_power", float("nan"), "must be finite"),
        ("write_load_function", "CURR", "load function = 'CURR': must be one of POW, LIST"),
        ("write_load_input", "on", "load input on = 'on': must be true or false"),
    ],
)
def test_bad_load_writes_are_rejected_and_change_nothing(
    write: str, value: object, message: str
) -> None:
    plant = make_plant()
    plant.advance(5.0)
    before = plant.state_dict()
    with pytest.raises(SetpointRejected, match=message):
        getattr(plant, write)(value)
    assert plant.state_dict() == before
