"""The site file: the default site describes the testbed once; bad input is refused by key."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest

from labspec.site import DEFAULT_SITE_PATH, SiteError, default_site, load_site, parse_site
from peers import assets_from_site, default_assets


def default_data() -> dict[str, Any]:
    return tomllib.loads(DEFAULT_SITE_PATH.read_text(encoding="utf-8"))


def test_the_default_site_is_the_three_peer_testbed() -> None:
    site = default_site()
    assert site.peer_ids == ("A", "B", "C")
    assert site.site.timezone == "Asia/Kolkata"
    assert site.peers["A"].battery is not None and site.peers["A"].pv is not None
    assert site.peers["B"].ev is not None and site.peers["B"].ev.capacity_kwh == 4.608
    assert {site.meter_of(p) for p in "ABC"} == {"meter_A", "meter_B", "meter_C"}
    assert [site.channel(d) for d in site.devices_of("C")] == ["load", "meter"]
    lines = site.feeder.resolved_lines()
    assert (lines[1].to_bus, lines[1].r_ohm_per_km, lines[1].max_current_a) == ("A", 2.3, 80)


def test_the_agents_plan_for_what_the_plant_emulates() -> None:
    """One description: the battery's charge limit is the same for the agent and the plant."""
    site = default_site()
    assets = default_assets("A")
    assert assets.battery is not None and site.peers["A"].battery is not None
    assert assets.battery.max_charge_kw == site.peers["A"].battery.max_charge_kw == 3.75
    assert default_assets("B").ev.plug_windows_local[0][0].hour == 9  # type: ignore[union-attr]
    assert default_assets("C").timezone == site.site.timezone


def test_the_agents_plan_within_the_caps_the_plant_applies() -> None:
    """An inverter's or charger's caps below its battery's ratings (a charger without V2G) bind
    the agent's plan as they bind the plant: the agent used to plan (and sell) with the battery's
    own ratings, beyond what the plant and the dispatcher would deliver."""
    from hil_sim.config import PlantConfig
    from hil_sim.plant import Plant

    site = default_site().with_changes(
        {
            "devices": {
                "inverter": {"max_charge_kw": 2.0, "max_discharge_kw": 1.5},
                "ev_charger": {"max_charge_kw": 1.2, "max_discharge_kw": 0.0},
            }
        }
    )
    plant = Plant(PlantConfig(site=site))
    inverter, charger = plant.inverters["inverter"], plant.evs["ev_charger"]
    battery = assets_from_site(site, "A").battery
    ev = assets_from_site(site, "B").ev
    assert battery is not None and ev is not None
    assert (battery.max_charge_kw, battery.max_discharge_kw) == (2.0, 1.5)
    assert (battery.max_charge_kw, battery.max_discharge_kw) == (
        inverter.battery_max_charge_kw,
        inverter.battery_max_discharge_kw,
    )
    assert (ev.max_charge_kw, ev.max_discharge_kw) == (1.2, 0.0)
    assert (ev.max_charge_kw, ev.max_discharge_kw) == (
        charger.max_charge_kw,
        charger.max_discharge_kw,
    )


def test_a_vehicle_without_v2g_is_written_on_its_ev() -> None:
    """`max_discharge_kw = 0` on the vehicle (it used to be refused as "must be > 0", though a
    charger's cap of 0 was taken): its deadband is checked against the charging limit alone, and
    the agent and the plant both see no V2G."""
    from hil_sim.config import PlantConfig
    from hil_sim.plant import Plant

    site = default_site().with_changes({"peers": {"B": {"ev": {"max_discharge_kw": 0.0}}}})
    ev = assets_from_site(site, "B").ev
    assert ev is not None and ev.max_discharge_kw == 0.0 and ev.max_charge_kw == 2.0
    assert Plant(PlantConfig(site=site)).evs["ev_charger"].max_discharge_kw == 0.0
    with pytest.raises(SiteError, match=r"peers\.B\.ev\.min_power_kw = 2\.5: must be <= the "):
        default_site().with_changes(
            {"peers": {"B": {"ev": {"max_discharge_kw": 0.0, "min_power_kw": 2.5}}}}
        )


def changed(edit: Any) -> dict[str, Any]:
    data = copy.deepcopy(default_data())
    edit(data)
    return data


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda d: d["devices"]["inverter"].update(kind="flux_capacitor"),
            "devices.inverter.kind = 'flux_capacitor': unknown kind; allowed: 'pcc_meter', "
            "'hybrid_inverter'",
        ),
        (
            lambda d: (
                d["devices"]["meter_B"].update(modbus={"port": 1502, "unit_id": 3})
                or d["devices"]["meter_C"].update(modbus={"port": 1502, "unit_id": 3})
            ),
            "devices.meter_C.modbus.unit_id = 3: device 'meter_B' is already on this port and "
            "unit id",
        ),
        (
            lambda d: d["peers"]["C"].update(bus="J9"),
            "peers.C.bus = 'J9': not a load bus of the feeder; buses: J1, J2, A, B, C",
        ),
        (
            lambda d: d["peers"]["A"]["battery"].update(soc_min_pct=60, soc_max_pct=50),
            "peers.A.battery.soc_max_pct = 50: must be > soc_min_pct (60)",
        ),
        (  # a window written as fractions of the capacity
            lambda d: d["peers"]["A"]["battery"].update(
                soc_min_pct=0.1, soc_max_pct=0.95, initial_soc_pct=0.5
            ),
            "peers.A.battery.soc_max_pct = 0.95: a percentage (0-100): 0.95 reads as a fraction; "
            "write 95",
        ),
        (
            lambda d: d["devices"]["inverter"].update(max_charge_kw=5.0),
            "devices.inverter.max_charge_kw = 5: must be <= the battery's rating "
            "peers.A.battery.max_charge_kw = 3.75",
        ),
        (
            lambda d: d["devices"]["ev_charger"].update(max_discharge_kw=2.5),
            "devices.ev_charger.max_discharge_kw = 2.5: must be <= the ev's rating",
        ),
        (  # ohms per metre written for ohms per km: the plant's power flow could not converge
            lambda d: d["feeder"]["line_types"]["trunk"].update(r_ohm_per_km=640),
            "feeder.line_types.trunk.r_ohm_per_km = 640: the feeder cannot carry peer 'A' at "
            "5.75 kW: 76.9 ohm of line from 'LV' to bus 'A' (most in feeder.lines[0], 120 m) would "
            "take ~",
        ),
        (  # watts for kilowatts: the agent would plan for an 800 kW house
            lambda d: d["peers"]["A"]["load"].update(typical_kw=800),
            "peers.A.load: typical_kw (800) must be <= peak_kw (2): it is the mean load the agent",
        ),
        (  # the charger could not run the vehicle at any power above its deadband
            lambda d: d["devices"]["ev_charger"].update(max_discharge_kw=0.2),
            "devices.ev_charger.max_discharge_kw = 0.2: must be >= the ev's deadband "
            "peers.B.ev.min_power_kw = 0.3 (or 0: no V2G)",
        ),
        (
            lambda d: d["devices"]["load"].update(max_power_kw=1.0),
            "devices.load.max_power_kw = 1: must be >= the house load it draws, "
            "peers.C.load.peak_kw = 1.5",
        ),
        (
            lambda d: d["devices"]["inverter"].update(rated_power_kw=-5),
            "devices.inverter.rated_power_kw = -5: must be > 0",
        ),
        (
            lambda d: d["devices"]["inverter"].update(rated_powr_kw=5),
            "devices.inverter.rated_powr_kw = 5: unknown key; allowed: peer, channel, driver",
        ),
        (
            lambda d: d["peers"]["B"]["ev"].update(reserve_soc_pct=5),
            "peers.B.ev.reserve_soc_pct = 5: must be within [soc_min_pct, soc_max_pct] = [10, 95]",
        ),
        (
            lambda d: d["peers"]["B"]["ev"].update(plug_windows=[["09:00", "25:00"]]),
            "peers.B.ev.plug_windows = [['09:00', '25:00']]: '25:00' is not a time of day",
        ),
        (lambda d: d["site"].update(timezone="Mars/Olympus"), "site.timezone = 'Mars/Olympus'"),
        (
            lambda d: d["devices"]["meter_A"].update(peer="Z"),
            "devices.meter_A.peer = 'Z': no such peer; peers: A, B, C",
        ),
        (
            lambda d: d["devices"].pop("meter_B"),
            "peers.B: needs exactly one pcc_meter device (has 0: none)",
        ),
        (
            lambda d: d["peers"]["A"].pop("battery"),
            "devices.inverter.kind = 'hybrid_inverter': peer 'A' has no battery",
        ),
        (
            lambda d: d["feeder"]["lines"][4].update(to_bus="B"),
            "feeder.lines[4].to_bus = 'B': this bus is fed twice (also by feeder.lines[3] from "
            "'J2'): the feeder must be radial, each line from the transformer's side (from_bus)",
        ),
        (
            lambda d: d["feeder"]["lines"].pop(4),
            "feeder.buses = 'C': no line connects this bus to 'LV'",
        ),
        (
            lambda d: d["devices"]["meter_A"]["modbus"].update(gateway="gw9"),
            "devices.meter_A.modbus.gateway = 'gw9': no such gateway",
        ),
        (  # the plant could not listen twice on one port
            lambda d: d.update(modbus_gateways={"gw": {"port": 1502}, "gw2": {"port": 1502}}),
            "modbus_gateways.gw2.port = 1502: gateway 'gw' already listens on 127.0.0.1:1502",
        ),
        (
            lambda d: (
                d.update(modbus_gateways={"gw": {"port": 1502}})
                or d["devices"]["meter_A"].update(modbus={"gateway": "gw", "unit_id": 1})
                or d["devices"]["meter_B"].update(modbus={"port": 1502, "unit_id": 2})
            ),
            "devices.meter_B.modbus.port = 1502: gateway 'gw' listens on 127.0.0.1:1502; put the "
            'device behind it: modbus = { gateway = "gw", unit_id = ... }',
        ),
        (  # the plant names its Modbus listeners by gateway or device id
            lambda d: (
                d.update(modbus_gateways={"inverter": {"port": 0}})
                or d["devices"]["meter_A"].update(modbus={"gateway": "inverter", "unit_id": 2})
            ),
            "modbus_gateways.inverter: 'inverter' is also a device's id (devices.inverter); give "
            "the gateway its own id",
        ),
        (  # a second battery inverter: the asset's rule, not a clash of channel names
            lambda d: d["devices"].update(
                battery_2={
                    "kind": "battery_inverter",
                    "peer": "A",
                    "modbus": {"port": 0},
                    "rated_power_kw": 3.0,
                }
            ),
            "peers.A.battery: needs exactly one device of kind hybrid_inverter or "
            "battery_inverter (has 2: inverter, battery_2)",
        ),
        (
            lambda d: d["feeder"]["lines"][0].update(lenght_m=5),
            "feeder.lines.0.lenght_m = 5: unknown key; allowed: from_bus, to_bus, length_m, type",
        ),
        (  # the meter driver would take the charger's 2 kW + the load for a fault and trip
            lambda d: d["devices"]["meter_B"].update(rated_power_kw=2.5),
            "devices.meter_B.rated_power_kw = 2.5: must be >= what peer 'B' can draw through it, "
            "3 kW (load peak 1 + ev_charger 2)",
        ),
        (
            lambda d: d["devices"]["meter_A"].update(rated_power_kw=5.0),
            "devices.meter_A.rated_power_kw = 5: must be >= what peer 'A' can draw through it, "
            "5.75 kW (load peak 2 + inverter 3.75)",
        ),
        (
            lambda d: d["peers"]["B"]["ev"].update(plug_windows=[]),
            "peers.B.ev.plug_windows = []: must not be empty",
        ),
    ],
)
def test_bad_input_is_refused_with_the_key_named(edit: Any, message: str) -> None:
    with pytest.raises(SiteError) as caught:
        parse_site(changed(edit), "site.toml")
    assert f"site.toml: {message}" in str(caught.value)


def test_devices_behind_one_gateway_share_a_port_and_differ_by_unit_id() -> None:
    def gateway(d: dict[str, Any]) -> None:
        d["modbus_gateways"] = {"gw": {"port": 1502}}
        for unit, device in enumerate(("inverter", "meter_A", "meter_B", "meter_C"), start=1):
            d["devices"][device]["modbus"] = {"gateway": "gw", "unit_id": unit}

    site = parse_site(changed(gateway))
    assert site.modbus_address("meter_C") == ("127.0.0.1", 1502, "gw")
    clash = changed(gateway)
    clash["devices"]["meter_C"]["modbus"]["unit_id"] = 1
    with pytest.raises(SiteError, match=r"meter_C\.modbus\.unit_id = 1: device .inverter. is"):
        parse_site(clash)


def test_a_file_problem_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(SiteError, match="cannot read the site file"):
        load_site(tmp_path / "absent.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[site\n", encoding="utf-8")
    with pytest.raises(SiteError, match=f"{broken}: not valid TOML"):
        load_site(broken)


def test_peers_written_as_an_array_of_tables_are_named_briefly(tmp_path: Path) -> None:
    """`[[peers]]` for `[peers.<id>]`: one short line that says which form is expected, not the
    whole array echoed back."""
    text = DEFAULT_SITE_PATH.read_text(encoding="utf-8")
    for peer in "ABC":
        text = text.replace(f"[peers.{peer}]", '[[peers]]\nid = "' + peer + '"')
        text = text.replace(f"[peers.{peer}.", "[peers.")
    wrong = tmp_path / "array.toml"
    wrong.write_text(text, encoding="utf-8")
    with pytest.raises(SiteError) as caught:
        load_site(wrong)
    message = str(caught.value)
    assert "peers = [{" in message
    assert message.endswith(
        "must be a table ([peers] or [peers.<id>]), not an array of tables ([[peers]])"
    )
    assert len(message) < len(str(wrong)) + 260
