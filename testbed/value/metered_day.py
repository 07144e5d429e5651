"""What a finished run metered, per market interval and peer: the yardstick's input.

For every interval k and peer: the metered net position (`settlements.metered_kwh`, from the PCC
meter's registers, + = export), the PV energy (a hybrid inverter's PV power integrated over the
interval's control steps, as the engine does; a PV-only inverter's AC energy registers), the
energy of each storage device at its AC terminals (from the inverter's and charger's energy
registers), and the house load as the
residual `load = pv + battery + ev - metered`, so that the run's own schedule reproduces its
metered positions exactly. Storage energy at every interval boundary comes from the sampled state
of charge; the cart's driving energy is what left its battery beyond its charger's energy in each
interval it was away for at least part of (`drive_kwh`).

A run that did not finish, or lacks a settlement or a boundary sample the yardstick needs, raises
`IncompleteRun` naming what is missing: it is reported as such, never as a number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from peers.assets import BatteryAsset, EvAsset, PeerAssets
from testbed.config import ConfigError, TestbedConfig, parse_config
from testbed.runstore import RunReader


class IncompleteRun(ValueError):
    """The run lacks what the yardstick needs (it crashed, was interrupted, or lost samples)."""


@dataclass(frozen=True, slots=True)
class BatteryDay:
    asset: BatteryAsset
    rated_power_kw: float  # the inverter's AC rating (PV + battery)
    energy_kwh: np.ndarray  # stored energy at each interval boundary (n + 1)
    terminal_kwh: np.ndarray  # battery energy at its terminals per interval, + = discharge


@dataclass(frozen=True, slots=True)
class EvDay:
    asset: EvAsset
    plugged: np.ndarray  # bool per interval: the cart could charge or discharge
    energy_kwh: np.ndarray  # stored energy at each interval boundary (n + 1)
    terminal_kwh: np.ndarray  # charger AC energy per interval, + = V2G discharge
    drive_kwh: np.ndarray  # energy drawn by driving per interval (>= 0)

    def plug_outs(self) -> list[int]:
        """Boundaries k at which the cart leaves (plugged in k - 1, away in k)."""
        return [
            k for k in range(1, len(self.plugged)) if self.plugged[k - 1] and not self.plugged[k]
        ]


@dataclass(frozen=True, slots=True)
class PeerDay:
    peer: str
    assets: PeerAssets
    metered_kwh: np.ndarray  # net PCC energy per interval, + = export
    pv_kwh: np.ndarray
    load_kwh: np.ndarray  # house load (residual), >= 0 up to register rounding
    battery: BatteryDay | None = None
    ev: EvDay | None = None


@dataclass(frozen=True, slots=True)
class MeteredDay:
    run_dir: Path
    start: datetime
    interval_s: float
    retail_tariff: np.ndarray  # per interval
    feed_in_tariff: np.ndarray
    network_charge: float
    peers: dict[str, PeerDay] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.retail_tariff)

    @property
    def dt_h(self) -> float:
        return self.interval_s / 3600.0

    def interval_starts(self) -> list[datetime]:
        return [self.start + timedelta(seconds=k * self.interval_s) for k in range(self.n)]


def run_config(reader: RunReader) -> TestbedConfig:
    try:
        return parse_config(reader.config(), source=f"{reader.run_dir}/config.toml")
    except ConfigError as error:
        raise IncompleteRun(str(error)) from None


def _samples(reader: RunReader, what: str, **query: Any) -> pd.DataFrame:
    """The samples the yardstick reads; a run without them is incomplete, not an error."""
    try:
        frame = reader.samples(**query)
    except KeyError as error:
        raise IncompleteRun(f"{what}: {error.args[0]}") from None
    if frame.empty:
        raise IncompleteRun(f"{what}: no samples")
    return frame


def _boundary_values(
    frame: pd.DataFrame, column: str, times_s: np.ndarray, what: str, tolerance_s: float
) -> np.ndarray:
    """The last sample of `column` at or before each boundary time (within `tolerance_s`)."""
    data = frame[["time_s", column]].dropna()
    if data.empty:
        raise IncompleteRun(f"{what}: no {column} samples")
    t = data["time_s"].to_numpy()
    v = data[column].to_numpy()
    idx = np.searchsorted(t, times_s + 1e-6, side="right") - 1
    missing = (idx < 0) | (times_s - t[np.clip(idx, 0, None)] > tolerance_s)
    if missing.any():
        first = pd.Timestamp(times_s[np.argmax(missing)], unit="s", tz="UTC")
        raise IncompleteRun(f"{what}: no {column} sample at the interval boundary {first}")
    values: np.ndarray = v[idx]
    return values


def _integrated(
    frame: pd.DataFrame, column: str, start_s: float, interval_s: float, n: int
) -> np.ndarray:
    """Per interval: power x step summed over the samples in (start, end], as the engine does."""
    data = frame[["time_s", column]].dropna()
    t = data["time_s"].to_numpy()
    v = data[column].to_numpy()
    dt = np.diff(t, prepend=t[0] if len(t) else 0.0)
    k = np.ceil((t - start_s) / interval_s - 1e-9).astype(int) - 1
    keep = (k >= 0) & (k < n)
    energy_kwh: np.ndarray = np.bincount(k[keep], weights=(v * dt)[keep] / 3600.0, minlength=n)
    return energy_kwh[:n]


def plug_masks(
    frame: pd.DataFrame, start_s: float, interval_s: float, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per interval: (plugged at some sample, away at some sample or unsampled).

    The interval in which the cart comes back is both: it could charge in its last part, and it
    drove in its first.
    """
    samples = frame[["time_s", "plugged"]].dropna()
    k = np.ceil((samples["time_s"].to_numpy() - start_s) / interval_s - 1e-9).astype(int) - 1
    keep = (k >= 0) & (k < n)
    is_plugged = samples["plugged"].to_numpy()[keep] > 0.5
    plugged = np.zeros(n, dtype=bool)
    plugged[k[keep][is_plugged]] = True
    sampled = np.zeros(n, dtype=bool)
    sampled[k[keep]] = True
    away = ~sampled
    away[k[keep][~is_plugged]] = True
    return plugged, away


def drive_kwh(
    asset: EvAsset,
    energy_kwh: np.ndarray,
    charged_kwh: np.ndarray,
    discharged_kwh: np.ndarray,
    away: np.ndarray,
) -> np.ndarray:
    """Energy the cart drove per interval: what left its battery beyond the charger's energy,
    in every interval it was away for at least part of (the plug-in interval included)."""
    stored_change = (
        charged_kwh * asset.charge_efficiency - discharged_kwh / asset.discharge_efficiency
    )
    drive = np.maximum(-(np.diff(energy_kwh) - stored_change), 0.0)
    drive[~away] = 0.0
    return drive


def metered_day(run_dir: Path | str) -> MeteredDay:
    """Read what the yardstick needs from a finished run directory (see the module docstring)."""
    reader = RunReader(run_dir)
    meta = reader.meta
    if meta.status != "finished":
        raise IncompleteRun(
            f"{reader.run_dir}: the run is {meta.status!r}, not finished: its day is incomplete"
        )
    config = run_config(reader)
    interval_s = float(config.market.interval_s)
    settlements = reader.settlements()
    if settlements.empty:
        raise IncompleteRun(f"{reader.run_dir}: no settlements")
    start = settlements["interval_start"].min().to_pydatetime()
    n = round(config.experiment.hours * 3600.0 / interval_s)
    starts = [start + timedelta(seconds=k * interval_s) for k in range(n)]
    start_s = start.timestamp()
    boundaries = start_s + interval_s * np.arange(n + 1)
    tolerance_s = 3.0 * config.control.step_s + 1e-6
    prices = config.prices
    day = MeteredDay(
        run_dir=Path(reader.run_dir),
        start=start,
        interval_s=interval_s,
        retail_tariff=np.full(n, prices.retail_tariff),
        feed_in_tariff=np.full(n, prices.feed_in_tariff),
        network_charge=prices.network_charge,
    )
    for name, peer in config.peers.items():
        assets = peer.peer_assets(name)
        rows = settlements[settlements["peer"] == name].set_index("interval_start")
        rows = rows[~rows.index.duplicated()]
        missing = [s for s in starts if pd.Timestamp(s) not in rows.index]
        if missing:
            raise IncompleteRun(
                f"{reader.run_dir}: peer {name} has no settlement for the interval starting "
                f"{missing[0]:%Y-%m-%d %H:%M} UTC ({len(missing)} of {n} missing)"
            )
        metered = rows.loc[[pd.Timestamp(s) for s in starts], "metered_kwh"].to_numpy(float)
        pv = np.zeros(n)
        device_kwh = np.zeros(n)
        battery = ev = None
        if peer.inverter is not None:
            what = f"{reader.run_dir}: peer {name} inverter"
            frame = _samples(
                reader,
                what,
                peer=name,
                device="inverter",
                fields=[
                    "pv_power_kw",
                    "soc_pct",
                    "ac_injected_kwh",
                    "ac_absorbed_kwh",
                    "rated_power_kw",
                ],
            )
            injected = _boundary_values(frame, "ac_injected_kwh", boundaries, what, tolerance_s)
            absorbed = _boundary_values(frame, "ac_absorbed_kwh", boundaries, what, tolerance_s)
            ac = np.diff(injected - absorbed)
            pv = _integrated(frame, "pv_power_kw", start_s, interval_s, n)
            device_kwh += ac
            if assets.battery is not None:
                soc = _boundary_values(frame, "soc_pct", boundaries, what, tolerance_s)
                rated = frame["rated_power_kw"].dropna()
                battery = BatteryDay(
                    asset=assets.battery,
                    rated_power_kw=float(rated.iloc[-1]) if len(rated) else float("inf"),
                    energy_kwh=soc / 100.0 * assets.battery.capacity_kwh,
                    terminal_kwh=ac - pv,
                )
        if peer.pv_inverter is not None:  # a PV-only inverter: its AC energy registers
            what = f"{reader.run_dir}: peer {name} PV inverter"
            frame = _samples(
                reader,
                what,
                peer=name,
                device="pv_inverter",
                fields=["ac_injected_kwh", "ac_absorbed_kwh"],
            )
            injected = _boundary_values(frame, "ac_injected_kwh", boundaries, what, tolerance_s)
            absorbed = _boundary_values(frame, "ac_absorbed_kwh", boundaries, what, tolerance_s)
            pv_ac = np.diff(injected - absorbed)
            pv = pv + pv_ac
            device_kwh += pv_ac
        if peer.ev_charger is not None:
            what = f"{reader.run_dir}: peer {name} EV charger"
            frame = _samples(
                reader,
                what,
                peer=name,
                device="ev_charger",
                fields=["soc_pct", "plugged", "energy_charged_kwh", "energy_discharged_kwh"],
            )
            charged = np.diff(
                _boundary_values(frame, "energy_charged_kwh", boundaries, what, tolerance_s)
            )
            discharged = np.diff(
                _boundary_values(frame, "energy_discharged_kwh", boundaries, what, tolerance_s)
            )
            device_kwh += discharged - charged
            if assets.ev is not None:
                soc = _boundary_values(frame, "soc_pct", boundaries, what, tolerance_s)
                energy = soc / 100.0 * assets.ev.capacity_kwh
                plugged, away = plug_masks(frame, start_s, interval_s, n)
                drive = drive_kwh(assets.ev, energy, charged, discharged, away)
                ev = EvDay(assets.ev, plugged, energy, discharged - charged, drive)
        load = device_kwh - metered  # device_kwh: PV + battery + EV at their AC terminals
        day.peers[name] = PeerDay(name, assets, metered, pv, load, battery, ev)
    return day
