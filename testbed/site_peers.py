"""The controller's peers from the site file: every peer, its assets and its devices, for any
number of peers.

The site says once what each peer owns and which devices it has; this module turns that into the
experiment configuration's `[peers.<id>]` tables (role, agent, assets, and every device with its
driver kind and the driver's configuration, through `testbed.driver_registry`). A driver's `name`
is the device's id in the site (what its messages name), so `with_plant_endpoints` finds its
endpoint in the plant's endpoints file.
"""

from __future__ import annotations

from typing import Any

from labspec.site import EvCharger, Site, SiteError, StorageInverter
from peers.agents import agent_kinds, agent_params
from peers.assets import assets_from_site
from testbed.driver_registry import check_site, site_config
from testbed.platform.registry import RegistryError, check_peer_id


def peer_table(site: Site, peer_id: str, source: str = "site") -> dict[str, Any]:
    """The `[peers.<peer_id>]` table of the experiment configuration for one site peer."""
    spec = site.peers[peer_id]
    assets = assets_from_site(site, peer_id).model_dump(
        mode="json", exclude={"peer", "role"}, exclude_none=True
    )
    devices: dict[str, Any] = {}
    table: dict[str, Any] = {
        "role": spec.role,
        "agent": spec.agent,
        "agent_params": dict(spec.agent_params),
        "assets": assets,
        "devices": devices,
    }
    for device_id, device in site.devices_of(peer_id).items():
        kind, config = site_config(site, device_id, source)
        devices[kind.channel] = {
            "driver": kind.name,
            "name": device_id,
            "config": config.model_dump(mode="json", exclude_none=True),
            "settings": dict(device.driver_settings),
        }
        if isinstance(device, StorageInverter | EvCharger):
            table["ramp_kw_per_s"] = device.control_ramp_kw_per_s
    return table


def check_peers(site: Site, source: str = "site") -> None:
    """Every peer's id can name it on the platform (a broker user and an MQTT topic level) and
    its agent is a registered kind that takes its `agent_params`; raises SiteError naming the
    first bad key (before a run starts the plant or builds the agents)."""
    for peer_id, peer in site.peers.items():
        try:
            check_peer_id(peer_id)
        except RegistryError as error:
            raise SiteError(f"{source}: peers: {error}") from None
        if peer.agent not in agent_kinds():
            raise SiteError(
                f"{source}: peers.{peer_id}.agent = {peer.agent!r}: no such agent; agents: "
                f"{', '.join(agent_kinds())}"
            )
        try:
            agent_params(peer.agent, peer_id, peer.agent_params)
        except ValueError as error:
            raise SiteError(f"{source}: peers.{peer_id}.agent_params: {error}") from None


def peers_from_site(site: Site, source: str = "site") -> dict[str, dict[str, Any]]:
    """The `[peers]` tables for every peer of the site, in file order; a SiteError naming the
    key when a device's driver is unknown, cannot serve it, or refuses its settings, or a peer's
    id cannot name it on the platform, or its agent is unknown or refuses its parameters."""
    check_site(site, source)
    check_peers(site, source)
    return {peer_id: peer_table(site, peer_id, source) for peer_id in site.peers}
