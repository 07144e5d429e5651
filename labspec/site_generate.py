"""Sites for scale tests: N homes of a radial feeder, a mix of PV-only, PV + battery, battery-only,
EV and plain consumer homes, drawn from a seed (`testbed site generate`).

The feeder is radial: the transformer's LV bus feeds branches of trunk junctions, each junction
serving up to four homes over service cables. Every PCC meter sits behind one Modbus TCP gateway
(unit ids 1-247 per gateway); inverters have a port each, EV chargers an OPC UA server each and
programmable loads a SCPI socket each (ports 0: the emulated plant picks free ones).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any, Literal

from labspec.site import Site, default_site, parse_site

HomeKind = Literal["pv", "pv_battery", "battery", "ev", "pv_ev", "consumer", "consumer_load"]
HOME_KINDS: tuple[HomeKind, ...] = (
    "pv",
    "pv_battery",
    "battery",
    "ev",
    "pv_ev",
    "consumer",
    "consumer_load",
)
# The share of each kind in a generated community.
KIND_WEIGHTS: dict[HomeKind, float] = {
    "pv": 0.25,
    "pv_battery": 0.25,
    "battery": 0.05,
    "ev": 0.1,
    "pv_ev": 0.05,
    "consumer": 0.25,
    "consumer_load": 0.05,
}
HOMES_PER_JUNCTION = 4
JUNCTIONS_PER_BRANCH = 3
METERS_PER_GATEWAY = 200


def _home_id(index: int, count: int) -> str:
    return f"H{index + 1:0{max(2, len(str(count)))}d}"


def _load(rng: random.Random) -> dict[str, float]:
    peak = round(rng.uniform(1.0, 2.5), 2)
    return {
        "peak_kw": peak,
        "base_kw": round(peak * rng.uniform(0.1, 0.2), 2),
        "typical_kw": round(peak * rng.uniform(0.35, 0.45), 2),
        "power_factor": 0.95,
    }


def _peer(kind: HomeKind, bus: str, name: str, agent: str, rng: random.Random) -> dict[str, Any]:
    prosumer = kind not in ("consumer", "consumer_load")
    peer: dict[str, Any] = {
        "name": name,
        "role": "prosumer" if prosumer else "consumer",
        "bus": bus,
        "agent": agent,
        "load": _load(rng),
    }
    if "pv" in kind:
        peer["pv"] = {
            "peak_kw": round(rng.uniform(2.0, 5.0), 1),
            "tilt_deg": 23,
            "azimuth_deg": rng.choice((150, 180, 180, 210)),
        }
    if "battery" in kind:
        capacity = rng.choice((5.0, 7.5, 10.0))
        power = capacity / 2
        peer["battery"] = {
            "capacity_kwh": capacity,
            "max_charge_kw": power,
            "max_discharge_kw": power,
            "charge_efficiency": 0.96,
            "discharge_efficiency": 0.96,
            "soc_min_pct": 10,
            "soc_max_pct": 95,
            "initial_soc_pct": rng.choice((30, 50, 70)),
        }
    if "ev" in kind:
        peer["ev"] = {
            "capacity_kwh": rng.choice((4.608, 10.0, 30.0)),
            "max_charge_kw": 3.3,
            "max_discharge_kw": 2.0,
            "initial_soc_pct": rng.choice((40, 60, 70)),
            "plug_windows": [["18:00", "08:00"]]
            if rng.random() < 0.5
            else [["09:00", "17:30"], ["19:00", "08:00"]],
        }
    return peer


def _devices(
    peer_id: str, kind: HomeKind, peer: dict[str, Any], gateway: str, unit: int
) -> dict[str, dict[str, Any]]:
    devices: dict[str, dict[str, Any]] = {
        f"{peer_id}_meter": {
            "kind": "pcc_meter",
            "peer": peer_id,
            "modbus": {"gateway": gateway, "unit_id": unit},
        }
    }
    if "battery" in kind:
        battery = peer["battery"]
        devices[f"{peer_id}_inverter"] = {
            "kind": "hybrid_inverter" if "pv" in kind else "battery_inverter",
            "peer": peer_id,
            "modbus": {"port": 0, "unit_id": 1},
            "rated_power_kw": max(5.0, math.ceil(peer.get("pv", {}).get("peak_kw", 0.0))),
            "max_charge_kw": battery["max_charge_kw"],
            "max_discharge_kw": battery["max_discharge_kw"],
            "revert_timeout_s": 30,
            "control_ramp_kw_per_s": 2.0,
        }
    elif "pv" in kind:
        devices[f"{peer_id}_pv_inverter"] = {
            "kind": "pv_inverter",
            "peer": peer_id,
            "modbus": {"port": 0, "unit_id": 1},
            "rated_power_kw": max(3.0, math.ceil(peer["pv"]["peak_kw"])),
        }
    if "ev" in kind:
        devices[f"{peer_id}_ev_charger"] = {
            "kind": "ev_charger",
            "peer": peer_id,
            "opcua": {"url": "opc.tcp://127.0.0.1:0/p2p-testbed/ev-charger"},
            "watchdog_timeout_s": 30,
            "control_ramp_kw_per_s": 1.0,
        }
    if kind == "consumer_load":
        devices[f"{peer_id}_load"] = {
            "kind": "programmable_load",
            "peer": peer_id,
            "visa": {"resource": "TCPIP0::127.0.0.1::0::SOCKET"},
            "max_power_kw": 3.0,
        }
    return devices


def draw_kinds(count: int, seed: int) -> list[HomeKind]:
    """`count` home kinds in the proportions of KIND_WEIGHTS (rounded), shuffled by `seed`."""
    kinds: list[HomeKind] = []
    for kind, weight in KIND_WEIGHTS.items():
        kinds += [kind] * round(weight * count)
    rng = random.Random(seed)
    while len(kinds) < count:
        kinds.append(rng.choices(list(KIND_WEIGHTS), list(KIND_WEIGHTS.values()))[0])
    kinds = kinds[:count]
    rng.shuffle(kinds)
    return kinds


def community_data(
    kinds: Sequence[HomeKind],
    seed: int = 1,
    name: str | None = None,
    agent: str = "optimising",
) -> dict[str, Any]:
    """A site (plain data) with one home of each given kind, on the default site's location and
    weather, its buses on a radial feeder."""
    rng = random.Random(seed)
    base = default_site()
    count = len(kinds)
    junctions = math.ceil(count / HOMES_PER_JUNCTION)
    buses = ["LV"]
    lines: list[dict[str, Any]] = []
    for j in range(junctions):
        bus = f"J{j + 1}"
        upstream = "LV" if j % JUNCTIONS_PER_BRANCH == 0 else f"J{j}"
        lines.append({"from_bus": upstream, "to_bus": bus, "length_m": 80, "type": "trunk"})
        buses.append(bus)
    peers: dict[str, Any] = {}
    devices: dict[str, Any] = {}
    gateways: dict[str, Any] = {}
    for index, kind in enumerate(kinds):
        peer_id = _home_id(index, count)
        junction = f"J{index // HOMES_PER_JUNCTION + 1}"
        buses.append(peer_id)
        lines.append(
            {
                "from_bus": junction,
                "to_bus": peer_id,
                "length_m": rng.randint(15, 45),
                "type": "service",
            }
        )
        gateway = f"meters{index // METERS_PER_GATEWAY + 1}"
        gateways.setdefault(gateway, {"host": "127.0.0.1", "port": 0})
        peer = _peer(kind, peer_id, f"Home {index + 1}", agent, rng)
        peers[peer_id] = peer
        devices.update(_devices(peer_id, kind, peer, gateway, index % METERS_PER_GATEWAY + 1))
    info = base.site.model_dump(mode="json")
    info["name"] = name or f"Community of {count} homes (seed {seed})"
    return {
        "site": info,
        "weather": base.weather.model_dump(mode="json"),
        "feeder": {
            "nominal_frequency_hz": base.feeder.nominal_frequency_hz,
            "frequency_noise_hz": base.feeder.frequency_noise_hz,
            "buses": buses,
            "transformer": {"bus": "LV", "rated_kva": max(100, 5 * count), "lv_voltage_v": 232},
            "line_types": {
                "trunk": {"r_ohm_per_km": 0.32, "x_ohm_per_km": 0.08, "max_current_a": 400},
                "service": {"r_ohm_per_km": 2.3, "x_ohm_per_km": 0.18, "max_current_a": 80},
            },
            "lines": lines,
        },
        "modbus_gateways": gateways,
        "peers": peers,
        "devices": devices,
    }


def generate_site(peers: int, seed: int, agent: str = "optimising") -> Site:
    """A validated community of `peers` homes drawn from `seed`."""
    if peers < 1:
        raise ValueError(f"peers = {peers}: must be at least 1")
    return parse_site(community_data(draw_kinds(peers, seed), seed, agent=agent), "generated site")
