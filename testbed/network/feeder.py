"""The radial feeder the peers sit on: buses, lines, ratings. Data only.

`load_feeder(source)` is the one function that knows where a feeder comes from: "site" is the
default site's feeder (labspec's IIT Gandhinagar three-peer site file), a path is a site file
(its `[feeder]` and each peer's `bus`, read by labspec) or a TOML file with a plant-style
`[feeder]` / `[plant.feeder]` table of `lines`. The site file stays the one description.
"""

from __future__ import annotations

import tomllib
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

SLACK_BUS = "LV"  # the default slack (the transformer's LV bus)


class Line(BaseModel):
    """One feeder section; impedances per km of the single-phase loop (go and return)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    from_bus: str = Field(min_length=1)
    to_bus: str = Field(min_length=1)
    length_m: float = Field(gt=0, le=100000)
    r_ohm_per_km: float = Field(gt=0, le=1000)
    x_ohm_per_km: float = Field(ge=0, le=1000)
    max_current_a: float = Field(200.0, gt=0, le=10000)  # thermal rating

    @property
    def r_ohm(self) -> float:
        return self.r_ohm_per_km * self.length_m / 1000.0

    @property
    def x_ohm(self) -> float:
        return self.x_ohm_per_km * self.length_m / 1000.0


class Feeder(BaseModel):
    """A radial feeder rooted at the transformer's LV bus (the slack)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    lines: tuple[Line, ...] = Field(min_length=1)
    lv_bus_voltage_v: float = Field(232.0, gt=0, le=1000)  # the slack's voltage
    nominal_voltage_v: float = Field(230.0, gt=0, le=1000)  # the band is around this
    slack_bus: str = Field(SLACK_BUS, min_length=1)  # the transformer's LV bus
    peer_buses: dict[str, str] = Field(default_factory=dict)  # peer -> bus (site files)

    @model_validator(mode="after")
    def _radial(self) -> Feeder:
        parent: dict[str, str] = {}
        for line in self.lines:
            if line.to_bus == self.slack_bus:
                raise ValueError(
                    f"feeder.lines: no line may end at the slack bus {self.slack_bus!r}"
                )
            if line.to_bus in parent:
                raise ValueError(f"feeder.lines: bus {line.to_bus!r} is fed twice (radial only)")
            parent[line.to_bus] = line.from_bus
        for bus in parent:
            seen, node = {bus}, bus
            while node != self.slack_bus:
                if node not in parent:
                    raise ValueError(
                        f"feeder.lines: bus {node!r} has no path to {self.slack_bus!r}"
                    )
                node = parent[node]
                if node in seen:
                    raise ValueError(f"feeder.lines: the lines form a loop through {node!r}")
                seen.add(node)
        return self

    @cached_property
    def buses(self) -> list[str]:
        return [self.slack_bus, *(line.to_bus for line in self.lines)]

    @cached_property
    def _feeding(self) -> dict[str, Line]:
        return {line.to_bus: line for line in self.lines}

    def path(self, bus: str) -> list[Line]:
        """The lines from `bus` up to the slack."""
        if bus not in self.buses:
            raise KeyError(f"bus {bus!r} is not on the feeder (buses: {', '.join(self.buses)})")
        out = []
        while bus != self.slack_bus:
            line = self._feeding[bus]
            out.append(line)
            bus = line.from_bus
        return out

    def shared_impedance(self, a: str, b: str) -> tuple[float, float]:
        """(R, X) in ohm of the part of the slack paths that buses a and b share."""
        common = {line.to_bus for line in self.path(a)} & {line.to_bus for line in self.path(b)}
        lines = [self._feeding[bus] for bus in common]
        return sum(line.r_ohm for line in lines), sum(line.x_ohm for line in lines)

    def path_resistance(self, a: str, b: str) -> float:
        """Resistance (ohm) of the path between buses a and b: the electrical distance."""
        on_a = {line.to_bus for line in self.path(a)}
        on_b = {line.to_bus for line in self.path(b)}
        return sum(self._feeding[bus].r_ohm for bus in on_a ^ on_b)

    def downstream(self, line: Line, bus: str) -> bool:
        """True if `line` carries the power of `bus` (the line lies on bus's path to the slack)."""
        return line in self.path(bus)

    def rating_kw(self, line: Line) -> float:
        return self.nominal_voltage_v * line.max_current_a / 1000.0

    def resistance_matrix(self, buses: list[str]) -> np.ndarray:
        return np.array([[self.shared_impedance(a, b)[0] for b in buses] for a in buses])


def site_feeder(site: Any = None) -> Feeder:
    """The feeder of a labspec site (default: the IIT Gandhinagar three-peer site), with the
    site's peer-to-bus map."""
    from labspec.site import default_site

    site = site or default_site()
    spec = site.feeder
    return Feeder(
        lines=tuple(
            Line(**line.model_dump(include=set(Line.model_fields)))
            for line in spec.resolved_lines()
        ),
        lv_bus_voltage_v=spec.transformer.lv_voltage_v,
        slack_bus=spec.slack_bus,
        peer_buses={peer_id: peer.bus for peer_id, peer in site.peers.items()},
    )


def load_feeder(source: str | Path | Feeder | dict[str, Any] | None) -> Feeder | None:
    """The feeder named by `source`: None or "none" -> no network; "site" -> site_feeder(); a
    path -> a site file (it has a `[site]` table) or a file with a `[feeder]` or
    `[plant.feeder]` table of lines; a mapping -> validated as a feeder.

    A bad file or table raises ValueError naming the file, the key and what is wrong.
    """
    if source is None or isinstance(source, Feeder):
        return source
    if isinstance(source, dict):
        return _validated(source, "feeder")
    text = str(source).strip()
    if text.lower() in ("", "none"):
        return None
    if text.lower() == "site":
        return site_feeder()
    path = Path(text)
    if not path.is_file():
        raise ValueError(f"feeder {text!r} is neither 'site', 'none' nor a TOML file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path}: {error}") from None
    if "site" in data:
        from labspec.site import SiteError, parse_site

        try:
            return site_feeder(parse_site(data, str(path)))
        except SiteError as error:
            raise ValueError(str(error)) from None
    table = data.get("feeder") or data.get("plant", {}).get("feeder")
    if not isinstance(table, dict):
        raise ValueError(f"{path}: no [feeder] or [plant.feeder] table")
    return _validated(table, str(path))


def _validated(table: dict[str, Any], where: str) -> Feeder:
    try:
        return Feeder.model_validate(table)
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "feeder"
        value = first.get("input")
        shown = "" if isinstance(value, dict | list) else f" = {value!r}"
        raise ValueError(f"{where}: feeder.{key}{shown}: {first['msg']}") from None
