"""The feeder's backward/forward sweep agrees with pandapower on the same network and loads."""

from __future__ import annotations

import pandapower as pp
import pytest

from hil_sim.physics.feeder import RadialFeeder
from labspec.site import Feeder, default_site
from tests.hil_sim.plants import make_plant

NOMINAL_KV = 0.23


def sweep_of(feeder: Feeder, buses: tuple[str, ...] = ("A", "B", "C")) -> RadialFeeder:
    return RadialFeeder(
        feeder.resolved_lines(), feeder.transformer.lv_voltage_v, buses, slack_bus=feeder.slack_bus
    )


def pandapower_solution(
    feeder: Feeder, loads_va: dict[str, complex]
) -> tuple[dict[str, float], float]:
    """Bus voltages (V) and total line losses (kW) from pandapower's Newton-Raphson."""
    net = pp.create_empty_network(sn_mva=1.0)
    bus = {name: pp.create_bus(net, vn_kv=NOMINAL_KV, name=name) for name in feeder.buses}
    lv_v = feeder.transformer.lv_voltage_v
    pp.create_ext_grid(net, bus[feeder.slack_bus], vm_pu=lv_v / (NOMINAL_KV * 1000))
    for line in feeder.resolved_lines():
        pp.create_line_from_parameters(
            net,
            bus[line.from_bus],
            bus[line.to_bus],
            length_km=line.length_m / 1000.0,
            r_ohm_per_km=line.r_ohm_per_km,
            x_ohm_per_km=line.x_ohm_per_km,
            c_nf_per_km=0.0,
            max_i_ka=1.0,
        )
    for name, s_va in loads_va.items():
        pp.create_load(net, bus[name], p_mw=s_va.real / 1e6, q_mvar=s_va.imag / 1e6)
    pp.runpp(net, algorithm="nr", tolerance_mva=1e-12, max_iteration=50, numba=False)
    voltages = {
        name: float(net.res_bus.vm_pu.at[index]) * NOMINAL_KV * 1000 for name, index in bus.items()
    }
    return voltages, float(net.res_line.pl_mw.sum()) * 1000.0


CASES = {
    "evening import": {"A": 2000 + 650j, "B": 1000 + 330j, "C": 1500 + 0j},
    "noon export at A": {"A": -4500 + 0j, "B": 300 + 100j, "C": 400 + 0j},
    "V2G and PV export": {"A": -3000 + 200j, "B": -1500 + 0j, "C": 3000 + 0j},
    "heavy import": {"A": 7000 + 2000j, "B": 3000 + 1000j, "C": 3000 + 0j},
    "no load": {"A": 0j, "B": 0j, "C": 0j},
}


@pytest.mark.parametrize("case", CASES)
def test_sweep_matches_pandapower(case: str) -> None:
    feeder_config = default_site().feeder
    loads = CASES[case]
    sweep = sweep_of(feeder_config)
    sweep.solve([loads[peer] for peer in ("A", "B", "C")])
    expected_v, expected_loss_kw = pandapower_solution(feeder_config, loads)
    for name, voltage in sweep.voltage_magnitudes().items():
        assert voltage == pytest.approx(expected_v[name], abs=1e-6), name
    assert sweep.losses_kw == pytest.approx(expected_loss_kw, rel=1e-7, abs=1e-12)
    if case == "noon export at A":
        assert (
            sweep.voltage_magnitudes()["A"] > feeder_config.transformer.lv_voltage_v
        )  # voltage rise
    if case == "heavy import":
        assert sweep.voltage_magnitudes()["C"] < feeder_config.transformer.lv_voltage_v - 5.0


def test_plant_feeder_state_matches_pandapower_and_closes_the_balance() -> None:
    plant = make_plant(start="2026-03-21T20:00:00+05:30")
    plant.write_ev_setpoint(-2.0)
    plant.advance(10.0)
    loads = {}
    for peer, meter in plant.meters.items():
        power_factor = plant.site.peers[peer].load.power_factor  # A, B: 0.95; C: 1
        q_var = -plant.house_loads[peer] * (1 / power_factor**2 - 1) ** 0.5 * 1000.0
        loads[peer] = complex(-meter.power_kw * 1000.0, q_var)
    expected_v, expected_loss_kw = pandapower_solution(plant.site.feeder, loads)
    for peer, meter in plant.meters.items():
        assert meter.voltage_v == pytest.approx(expected_v[peer], abs=1e-6)
    assert plant.feeder.losses_kw == pytest.approx(expected_loss_kw, rel=1e-7)
    total = sum(meter.power_kw for meter in plant.meters.values())
    assert plant.feeder.transformer_power_kw == pytest.approx(total - plant.feeder.losses_kw)
    assert plant.feeder.transformer_power_kw < total < 0.0  # importing: the feeder adds losses


def test_a_custom_radial_feeder_matches_pandapower() -> None:
    lines = [
        {
            "from_bus": "LV",
            "to_bus": "C",
            "length_m": 300,
            "r_ohm_per_km": 0.9,
            "x_ohm_per_km": 0.3,
        },
        {"from_bus": "C", "to_bus": "B", "length_m": 150, "r_ohm_per_km": 1.5, "x_ohm_per_km": 0.1},
        {"from_bus": "C", "to_bus": "A", "length_m": 50, "r_ohm_per_km": 3.0, "x_ohm_per_km": 0.02},
    ]
    feeder = Feeder(
        buses=("LV", "A", "B", "C"),
        lines=[{**line, "max_current_a": 100} for line in lines],
        transformer={"lv_voltage_v": 240},
    )
    loads = {"A": 2500 + 800j, "B": -1200 + 0j, "C": 1800 + 100j}
    sweep = sweep_of(feeder)
    sweep.solve([loads[peer] for peer in ("A", "B", "C")])
    expected_v, expected_loss_kw = pandapower_solution(feeder, loads)
    for name, voltage in sweep.voltage_magnitudes().items():
        assert voltage == pytest.approx(expected_v[name], abs=1e-6), name
    assert sweep.losses_kw == pytest.approx(expected_loss_kw, rel=1e-7)


def test_the_general_sweep_with_a_load_at_a_junction_matches_pandapower() -> None:
    feeder = default_site().feeder
    buses = ("A", "B", "C", "J2")  # four load buses: the general code path, not the 3-PCC one
    loads = {"A": 1800 + 500j, "B": -1500 + 0j, "C": 2500 + 300j, "J2": 900 + 400j}
    sweep = sweep_of(feeder, buses)
    sweep.solve([loads[bus] for bus in buses])
    expected_v, expected_loss_kw = pandapower_solution(feeder, loads)
    for name, voltage in sweep.voltage_magnitudes().items():
        assert voltage == pytest.approx(expected_v[name], abs=1e-6), name
    assert sweep.losses_kw == pytest.approx(expected_loss_kw, rel=1e-7)
    assert sum(sweep.branch_losses_kw().values()) == pytest.approx(sweep.losses_kw, rel=1e-12)
