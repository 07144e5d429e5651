"""A plant composed from any site: a fourth peer with a battery only, a PV-only peer, many buses."""

from __future__ import annotations

import pytest

from hil_sim.config import PlantConfig
from hil_sim.physics.feeder import RadialFeeder
from hil_sim.plant import Plant
from labspec.site import Feeder, Site, default_site
from tests.hil_sim.test_physics_feeder import pandapower_solution

NOON = "2026-03-21T12:00:00+05:30"


def larger_site() -> Site:
    """The default site plus D (battery behind a battery inverter) and E (PV behind a PV
    inverter), both on a new branch from J2, their Modbus devices behind one gateway."""
    base = default_site()
    lines = [line.model_dump(exclude_none=True) for line in base.feeder.lines]
    lines += [
        {"from_bus": "J2", "to_bus": "J3", "length_m": 60, "type": "trunk"},
        {"from_bus": "J3", "to_bus": "D", "length_m": 20, "type": "service"},
        {"from_bus": "J3", "to_bus": "E", "length_m": 35, "type": "service"},
    ]
    gateway = {"gateway": "gw", "unit_id": 1}
    return base.with_changes(
        {
            "feeder": {"buses": [*base.feeder.buses, "J3", "D", "E"], "lines": lines},
            "modbus_gateways": {"gw": {"port": 0}},
            "peers": {
                "D": {
                    "role": "prosumer",
                    "bus": "D",
                    "load": {"peak_kw": 1.2, "base_kw": 0.2, "typical_kw": 0.5},
                    "battery": {"capacity_kwh": 5.0, "max_charge_kw": 2.5, "max_discharge_kw": 2.5},
                },
                "E": {
                    "role": "prosumer",
                    "bus": "E",
                    "load": {"peak_kw": 1.0, "base_kw": 0.15, "typical_kw": 0.4},
                    "pv": {"peak_kw": 4.0, "azimuth_deg": 200},
                },
            },
            "devices": {
                "battery_D": {"kind": "battery_inverter", "peer": "D", "rated_power_kw": 3.0,
                              "modbus": gateway},
                "meter_D": {"kind": "pcc_meter", "peer": "D",
                            "modbus": {**gateway, "unit_id": 2}},
                "pv_E": {"kind": "pv_inverter", "peer": "E", "rated_power_kw": 3.5,
                         "modbus": {**gateway, "unit_id": 3}},
                "meter_E": {"kind": "pcc_meter", "peer": "E",
                            "modbus": {**gateway, "unit_id": 4}},
            },
        }
    )  # fmt: skip


def test_a_fourth_peer_with_a_battery_only_follows_its_inverter_setpoint() -> None:
    plant = Plant(PlantConfig(site=larger_site(), start=NOON))
    battery = plant.inverters["battery_D"]
    assert battery.battery_capacity_kwh == 5.0 and battery.pv_power_kw == 0.0
    plant.write_inverter_wset(-2.0, "battery_D")  # charge at 2 kW
    plant.write_inverter_wset_enabled(True, "battery_D")
    soc = battery.soc_pct
    import_before = plant.meters["D"].import_kwh
    plant.advance(900.0)
    assert battery.ac_power_kw == pytest.approx(-2.0)
    assert battery.pv_power_kw == 0.0
    assert battery.soc_pct == pytest.approx(soc + 2.0 * 0.25 * 0.95 / 5.0 * 100, rel=1e-9)
    # the meter sees the battery plus the house
    d_house = -plant.house_loads["D"]
    assert plant.meters["D"].power_kw == pytest.approx(-2.0 - d_house)
    assert plant.meters["D"].import_kwh - import_before > 0.5
    # A's inverter did not move
    assert not plant.inverter.wset_enabled


def test_a_pv_only_peer_exports_its_array_at_noon_and_energy_closes() -> None:
    plant = Plant(PlantConfig(site=larger_site(), start=NOON))
    totals = {peer: 0.0 for peer in plant.meters}
    loss_kwh = 0.0
    for _ in range(600):
        plant.advance(1.0)
        for peer, meter in plant.meters.items():
            totals[peer] += meter.power_kw / 3600.0
        loss_kwh += plant.feeder.losses_kw / 3600.0
    pv = plant.inverters["pv_E"]
    assert pv.pv_power_kw > 1.0 and pv.battery_capacity_kwh == 0.0
    assert pv.ac_power_kw == pv.pv_power_kw
    assert plant.meters["E"].power_kw == pytest.approx(pv.ac_power_kw + plant.house_loads["E"])
    for peer, meter in plant.meters.items():
        assert meter.export_kwh - meter.import_kwh == pytest.approx(totals[peer], abs=1e-9)
    assert plant.feeder.loss_kwh == pytest.approx(loss_kwh, abs=1e-9)
    with pytest.raises(ValueError, match="no inverter 'pv_F'"):
        plant.write_inverter_wset(1.0, "pv_F")


def test_the_plant_on_a_larger_feeder_matches_pandapower() -> None:
    plant = Plant(PlantConfig(site=larger_site(), start=NOON))
    plant.write_inverter_wset(-2.5, "battery_D")
    plant.write_inverter_wset_enabled(True, "battery_D")
    plant.advance(10.0)
    loads = {}
    for peer, meter in plant.meters.items():
        spec = plant.site.peers[peer]
        q_var = -plant.house_loads[peer] * (1 / spec.load.power_factor**2 - 1) ** 0.5 * 1000.0
        loads[spec.bus] = complex(-meter.power_kw * 1000.0, q_var)
    expected_v, expected_loss_kw = pandapower_solution(plant.site.feeder, loads)
    for peer, meter in plant.meters.items():
        assert meter.voltage_v == pytest.approx(expected_v[plant.site.peers[peer].bus], abs=1e-6)
    assert plant.feeder.losses_kw == pytest.approx(expected_loss_kw, rel=1e-7)


def test_a_hundred_bus_radial_feeder_matches_pandapower() -> None:
    """The numpy sweep on a long feeder: a trunk of 20 poles, five houses on each."""
    site = default_site()
    buses = ["LV"]
    lines = []
    loads = {}
    for pole in range(20):
        junction = f"P{pole}"
        buses.append(junction)
        parent = f"P{pole - 1}" if pole else "LV"
        lines.append({"from_bus": parent, "to_bus": junction, "length_m": 40, "type": "trunk"})
        for house in range(5):
            bus = f"H{pole}_{house}"
            buses.append(bus)
            lines.append({"from_bus": junction, "to_bus": bus, "length_m": 15 + 5 * house,
                          "type": "service"})  # fmt: skip
            loads[bus] = complex(300 + 40 * house - 25 * pole, 50 + 10 * house)
    feeder = Feeder.model_validate({**site.feeder.model_dump(), "buses": buses, "lines": lines})
    sweep = RadialFeeder(
        feeder.resolved_lines(), feeder.transformer.lv_voltage_v, list(loads), slack_bus="LV"
    )
    sweep.solve(list(loads.values()))
    expected_v, expected_loss_kw = pandapower_solution(feeder, loads)
    for name, voltage in sweep.voltage_magnitudes().items():
        assert voltage == pytest.approx(expected_v[name], abs=1e-6), name
    assert sweep.losses_kw == pytest.approx(expected_loss_kw, rel=1e-7)
