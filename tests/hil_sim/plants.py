"""Plants for the physics tests: the default site with some of its values changed."""

from __future__ import annotations

from typing import Any

from hil_sim.config import PlantConfig
from hil_sim.plant import Plant
from labspec.site import Site, default_site

# Where a quantity of the three-peer testbed lives in the site file.
_EV_DEVICE_KEYS = {"watchdog_timeout_s"}


def site_with(
    *,
    pv: dict[str, Any] | None = None,
    weather: dict[str, Any] | None = None,
    battery: dict[str, Any] | None = None,
    inverter: dict[str, Any] | None = None,
    ev: dict[str, Any] | None = None,
    feeder: dict[str, Any] | None = None,
    load: dict[str, Any] | None = None,
) -> Site:
    """The default site with peer A's array and battery, its inverter (device `inverter`), peer
    B's cart (and its charger's watchdog), the feeder or the programmable load changed."""
    changes: dict[str, Any] = {"peers": {}, "devices": {}}
    if pv:
        changes["peers"]["A"] = {"pv": pv}
    if weather:
        changes["weather"] = weather
    if battery:
        changes["peers"].setdefault("A", {})["battery"] = battery
    if inverter:
        changes["devices"]["inverter"] = inverter
    if ev:
        cart = {k: v for k, v in ev.items() if k not in _EV_DEVICE_KEYS}
        charger = {k: v for k, v in ev.items() if k in _EV_DEVICE_KEYS}
        if cart:
            changes["peers"]["B"] = {"ev": cart}
        if charger:
            changes["devices"]["ev_charger"] = charger
    if feeder:
        changes["feeder"] = feeder
    if load:
        changes["devices"]["load"] = load
    return default_site().with_changes(changes)


def make_plant(start: str | None = None, seed: int = 0, **sections: Any) -> Plant:
    """A plant of the default site with some values changed (see `site_with`)."""
    data: dict[str, Any] = {"seed": seed, "site": site_with(**sections)}
    if start is not None:
        data["start"] = start
    return Plant(PlantConfig.from_mapping(data))
