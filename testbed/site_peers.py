"""The controller's peers from the site file: every peer, its assets and its devices, for any
number of peers.

The site says once what each peer owns and which devices it has; this module turns that into the
experiment configuration's `[peers.<id>]` tables (role, agent, assets, the PCC meter and the one
flexible device or programmable load the controller drives). A device's driver `name` is its id
in the site (what its messages name), so `with_plant_endpoints` finds its endpoint in the plant's
endpoints file; the PCC meter is found by peer. A PV inverter is not read by the controller: a
PV-only home's PV shows in its metered net load (docs/site.md).
"""

from __future__ import annotations

from typing import Any

from labspec.site import (
    BatteryInverter,
    EvCharger,
    HybridInverter,
    ProgrammableLoad,
    Site,
)
from peers.assets import assets_from_site


def peer_table(site: Site, peer_id: str) -> dict[str, Any]:
    """The `[peers.<peer_id>]` table of the experiment configuration for one site peer."""
    spec = site.peers[peer_id]
    assets = assets_from_site(site, peer_id).model_dump(
        mode="json", exclude={"peer", "role"}, exclude_none=True
    )
    table: dict[str, Any] = {
        "role": spec.role,
        "agent": spec.agent,
        "agent_params": dict(spec.agent_params),
        "assets": assets,
        "meter": {"name": site.meter_of(peer_id)},
    }
    for device_id, device in site.devices_of(peer_id).items():
        if isinstance(device, HybridInverter | BatteryInverter):
            inverter: dict[str, Any] = {"name": device_id}
            if device.revert_timeout_s is not None:
                inverter["revert_timeout_s"] = device.revert_timeout_s
            if device.max_charge_kw is not None:
                inverter["max_import_kw"] = device.max_charge_kw
            if device.max_discharge_kw is not None:
                inverter["max_export_kw"] = device.max_discharge_kw
            table["inverter"] = inverter
            table["ramp_kw_per_s"] = device.control_ramp_kw_per_s
        elif isinstance(device, EvCharger):
            table["ev_charger"] = {"name": device_id}
            table["ramp_kw_per_s"] = device.control_ramp_kw_per_s
        elif isinstance(device, ProgrammableLoad):
            table["load"] = {"name": device_id}
    return table


def peers_from_site(site: Site) -> dict[str, dict[str, Any]]:
    """The `[peers]` tables for every peer of the site, in file order."""
    return {peer_id: peer_table(site, peer_id) for peer_id in site.peers}
