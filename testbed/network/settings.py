"""What the market needs to know about the network, and the linearised feeder (LinDistFlow)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import numpy as np

from testbed.network.feeder import Feeder

Charges = Literal["flat", "distance"]


@dataclass(frozen=True)
class NetworkSettings:
    """The feeder and the rules the market applies on it.

    `buses` maps a peer to its bus (default: the site's map, else the bus named like the peer).
    `voltage_margin_pct` tightens the band inside the optimisation to cover the linearisation
    error; the AC check uses the band itself. Charges per kWh of a trade from seller n to buyer m
    (`charges="distance"`):
    usage `usage_charge * R_nm / mean R` (the average pair pays the flat charge), plus losses
    `loss_price * R_nm * P / V^2` at the pair's own power P (the trade's share of the I^2 R loss).
    """

    feeder: Feeder
    voltage_band_pct: float = 6.0
    voltage_margin_pct: float = 0.5
    interval_h: float = 0.25
    buses: dict[str, str] = field(default_factory=dict)
    charges: Charges = "flat"
    usage_charge: float = 0.5  # currency per kWh for a pair at the mean electrical distance
    loss_price: float = 8.0  # currency per kWh of losses (the grid supplies them)

    def __post_init__(self) -> None:
        if not 0 < self.voltage_band_pct < 50:
            raise ValueError(f"voltage_band_pct = {self.voltage_band_pct}: must be in (0, 50)")
        if not 0 <= self.voltage_margin_pct < self.voltage_band_pct:
            raise ValueError(
                f"voltage_margin_pct = {self.voltage_margin_pct}: must be in "
                f"[0, voltage_band_pct = {self.voltage_band_pct})"
            )
        if self.interval_h <= 0:
            raise ValueError(f"interval_h = {self.interval_h}: must be > 0")
        if self.charges not in ("flat", "distance"):
            raise ValueError(f"charges = {self.charges!r}: must be 'flat' or 'distance'")

    def bus_of(self, peer: str) -> str:
        bus = self.buses.get(peer, self.feeder.peer_buses.get(peer, peer))
        if bus not in self.feeder.buses:
            raise KeyError(
                f"peer {peer!r} has no bus on the feeder (bus {bus!r}; buses: "
                f"{', '.join(self.feeder.buses)}; map it with network buses)"
            )
        return bus

    def has_bus(self, peer: str) -> bool:
        return self.buses.get(peer, self.feeder.peer_buses.get(peer, peer)) in self.feeder.buses

    def linear(self, peers: tuple[str, ...]) -> LinearNetwork:
        return LinearNetwork(self, peers)


@dataclass(frozen=True, eq=False)
class LinearNetwork:
    """LinDistFlow for a radial feeder at unity power factor, in the market's units.

    Positions g (kWh over the interval, + = injected) give bus voltages
    V = V_slack + Av @ g (V) and line flows F = Af @ g (kW toward the slack):
    Av[i, n] = R_shared(i, n) * 1000 / (interval_h * V_slack), Af[l, n] = 1 / interval_h when line
    l lies on peer n's path to the slack. Losses and reactive power are left out, hence the margin.
    """

    settings: NetworkSettings
    peers: tuple[str, ...]

    @cached_property
    def monitored_buses(self) -> list[str]:
        return self.settings.feeder.buses[1:]

    @cached_property
    def peer_buses(self) -> list[str]:
        return [self.settings.bus_of(peer) for peer in self.peers]

    @cached_property
    def voltage_matrix(self) -> np.ndarray:
        feeder, h = self.settings.feeder, self.settings.interval_h
        scale = 1000.0 / (h * feeder.lv_bus_voltage_v)
        return np.array(
            [
                [feeder.shared_impedance(bus, peer_bus)[0] * scale for peer_bus in self.peer_buses]
                for bus in self.monitored_buses
            ]
        ).reshape(len(self.monitored_buses), len(self.peers))

    @cached_property
    def flow_matrix(self) -> np.ndarray:
        feeder, h = self.settings.feeder, self.settings.interval_h
        return np.array(
            [
                [1.0 / h if feeder.downstream(line, bus) else 0.0 for bus in self.peer_buses]
                for line in feeder.lines
            ]
        ).reshape(len(feeder.lines), len(self.peers))

    @property
    def voltage_limits_v(self) -> tuple[float, float]:
        """(low, high) in V: the band tightened by the margin."""
        s = self.settings
        half = (s.voltage_band_pct - s.voltage_margin_pct) / 100.0
        return s.feeder.nominal_voltage_v * (1 - half), s.feeder.nominal_voltage_v * (1 + half)

    @property
    def slack_voltage_v(self) -> float:
        return self.settings.feeder.lv_bus_voltage_v

    @cached_property
    def ratings_kw(self) -> np.ndarray:
        s = self.settings
        scale = 1 - s.voltage_margin_pct / 100.0
        return np.array([s.feeder.rating_kw(line) * scale for line in s.feeder.lines])

    def voltages_v(self, positions_kwh: np.ndarray) -> np.ndarray:
        return np.asarray(self.slack_voltage_v + self.voltage_matrix @ positions_kwh)

    @cached_property
    def distance_ohm(self) -> np.ndarray:
        """Path resistance between every two peers' buses."""
        feeder = self.settings.feeder
        return np.array(
            [[feeder.path_resistance(a, b) for b in self.peer_buses] for a in self.peer_buses]
        ).reshape(len(self.peers), len(self.peers))

    @cached_property
    def usage_charge(self) -> np.ndarray:
        """Usage charge per kWh for each (seller, buyer) pair."""
        s = self.settings
        if s.charges == "flat":
            return np.full((len(self.peers), len(self.peers)), s.usage_charge)
        return usage_by_distance(self.distance_ohm, s.usage_charge)

    @cached_property
    def loss_coefficient(self) -> np.ndarray:
        """Money per kWh^2: a pair trading t kWh loses coefficient * t^2 / loss_price kWh."""
        s = self.settings
        if s.charges == "flat":
            return np.zeros((len(self.peers), len(self.peers)))
        volts = s.feeder.lv_bus_voltage_v
        return s.loss_price * self.distance_ohm * 1000.0 / (s.interval_h * volts**2)


def usage_by_distance(distance_ohm: np.ndarray, usage_charge: float) -> np.ndarray:
    """usage_charge scaled by distance / mean distance over distinct pairs (0 on one bus)."""
    off = distance_ohm[~np.eye(len(distance_ohm), dtype=bool)]
    mean = float(off[off > 0].mean()) if np.any(off > 0) else 0.0
    if mean == 0:
        return np.zeros_like(distance_ohm)
    return usage_charge * distance_ohm / mean
