"""Running totals of an experiment and the `summary.json` it ends with.

The one summary of a run: the engine feeds `RunTotals` as it goes, and a run that ended without
one gets the same totals from its stored tables (`testbed.runstore.summary.summarize`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from instruments.device import RegisterBreak
from testbed.documents import Clearing, Settlement
from testbed.metering import BoundaryReading

_PEER_KEYS = (
    "p2p_bought_kwh",
    "p2p_sold_kwh",
    "grid_import_kwh",
    "grid_export_kwh",
    "p2p_paid",
    "p2p_received",
    "grid_cost",
    "grid_revenue",
    "penalty",
    "network_charge",
    "bill",
    "bill_grid_only",
    "balancing_bought_kwh",
    "balancing_sold_kwh",
    "balancing_paid",
    "balancing_received",
)


@dataclass(slots=True)
class _MeterRegisters:
    """One PCC meter's trusted register readings over the run: the first, the latest, and the
    gaps between them (steps without a trusted reading; the registers counted on inside the
    meter, so a gap's energy is in the next reading)."""

    first_step: int
    first_kwh: tuple[float, float]  # (import, export)
    last_step: int
    last_kwh: tuple[float, float]
    gaps: int = 0
    gap_steps: int = 0
    breaks: list[dict[str, Any]] = field(default_factory=list)

    def add(self, step: int, import_kwh: float, export_kwh: float) -> None:
        if step <= self.last_step:
            return
        if step > self.last_step + 1:
            self.gaps += 1
            self.gap_steps += step - self.last_step - 1
        self.last_step = step
        self.last_kwh = (import_kwh, export_kwh)


@dataclass(slots=True)
class _SettledSpan:
    """The registers at the first settled boundary and at the last one of a peer."""

    begin_step: int
    begin: BoundaryReading
    end_step: int
    end: BoundaryReading
    filled_boundaries: set[int] = field(default_factory=set)


def _net_kwh(import_kwh: float, export_kwh: float) -> float:
    return export_kwh - import_kwh


def _settled_net_kwh(totals: dict[str, float]) -> float:
    """The net energy settlement allocated (P2P, local balancing, grid; + = exported)."""
    return (
        totals["p2p_sold_kwh"]
        - totals["p2p_bought_kwh"]
        + totals["balancing_sold_kwh"]
        - totals["balancing_bought_kwh"]
        + totals["grid_export_kwh"]
        - totals["grid_import_kwh"]
    )


class RunTotals:
    """Totals per peer, of the market, of interlocks, and the metering energy balance.

    Energy balance, per peer, from the PCC meter's energy registers only (no sampled power, so it
    closes to the registers' precision at any control step): the net energy the registers counted
    between the first and the last settled interval boundary against the net energy settlement
    allocated over those intervals (P2P trades, local balancing, grid import and export). A
    boundary the meter missed is interpolated from its registers, as settlement does; the gaps are
    counted and reported, and the energy the registers counted outside the settled intervals is
    reported as unsettled, never integrated from powers.
    """

    def __init__(self, peers: list[str]) -> None:
        self.peers = peers
        self.per_peer: dict[str, dict[str, float]] = {
            p: dict.fromkeys(_PEER_KEYS, 0.0) for p in peers
        }
        self.intervals = 0
        self.cleared_intervals = 0
        self.price_volume = 0.0
        self.prices: list[float] = []
        self.traded_kwh = 0.0
        self.interlocks: Counter[str] = Counter()
        self._meters: dict[str, _MeterRegisters] = {}
        self._settled: dict[str, _SettledSpan] = {}

    def add_settlement(self, settlement: Settlement) -> None:
        totals = self.per_peer.setdefault(settlement.peer, dict.fromkeys(_PEER_KEYS, 0.0))
        for key in _PEER_KEYS:
            totals[key] += getattr(settlement, key)

    def count_clearing(self, clearing: Clearing) -> None:
        self.intervals += 1
        if clearing.clearing_price is not None and clearing.volume_kwh > 0:
            self.cleared_intervals += 1
            self.prices.append(clearing.clearing_price)
            self.price_volume += clearing.clearing_price * clearing.volume_kwh
            self.traded_kwh += clearing.volume_kwh

    def count_interlock(self, kind: str, action: str) -> None:
        if action != "cleared":
            self.interlocks[kind] += 1

    def observe_registers(self, peer: str, step: int, import_kwh: float, export_kwh: float) -> None:
        """A trusted reading of the peer's PCC meter registers at `step` (steps only increase)."""
        meter = self._meters.get(peer)
        if meter is None:
            reading = (import_kwh, export_kwh)
            self._meters[peer] = _MeterRegisters(step, reading, step, reading)
        else:
            meter.add(step, import_kwh, export_kwh)

    def register_break(self, peer: str, step: int, last_step: int, restart: RegisterBreak) -> None:
        """The meter's registers restarted at `step` (the last trusted reading at `last_step`):
        the energy balance goes on from the new series, and names the break."""
        meter = self._meters.get(peer)
        if meter is not None:
            meter.breaks.append(
                {
                    "step": step,
                    "last_step": last_step,
                    "before_kwh": dict(restart.before_kwh),
                    "after_kwh": dict(restart.after_kwh),
                }
            )

    def drop_registers_after(self, peer: str, step: int) -> None:
        """The meter's readings after `step` were found frozen: its registers held the value of
        `step` since, so the latest trusted reading is that value, at `step`."""
        meter = self._meters.get(peer)
        if meter is None:
            return
        if meter.first_step > step:
            del self._meters[peer]
        elif meter.last_step > step:
            meter.last_step = step

    def settled_boundaries(
        self,
        peer: str,
        begin_step: int,
        begin: BoundaryReading,
        end_step: int,
        end: BoundaryReading,
    ) -> None:
        """Settlement used these register values at an interval's boundaries (intervals of a
        peer are settled in order, each starting where the previous one ended)."""
        span = self._settled.get(peer)
        if span is None:
            span = self._settled[peer] = _SettledSpan(begin_step, begin, end_step, end)
        else:
            span.end_step, span.end = end_step, end
        for step, reading in ((begin_step, begin), (end_step, end)):
            if reading.filled:
                span.filled_boundaries.add(step)

    def metering(self) -> dict[str, dict[str, Any]] | None:
        """Per peer: what the PCC registers counted over the run, what was settled of it, the
        balance between the two and the meter's gaps; None without meter readings (a summary
        rebuilt from stored settlements has none)."""
        if not self._meters:
            return None
        report: dict[str, dict[str, Any]] = {}
        for peer in self.peers:
            meter = self._meters.get(peer)
            if meter is None:
                report[peer] = {"metered": False}
                continue
            (import0, export0), (import1, export1) = meter.first_kwh, meter.last_kwh
            entry: dict[str, Any] = {
                "metered": True,
                "import_kwh": import1 - import0,
                "export_kwh": export1 - export0,
                "first_step": meter.first_step,
                "last_step": meter.last_step,
                "meter_gaps": meter.gaps,
                "meter_gap_steps": meter.gap_steps,
                "register_breaks": meter.breaks,
            }
            span = self._settled.get(peer)
            settled = _settled_net_kwh(self.per_peer[peer]) if peer in self.per_peer else 0.0
            if span is None:
                entry.update(
                    settled_kwh=settled,
                    registers_kwh=0.0,
                    unsettled_kwh=_net_kwh(import1, export1) - _net_kwh(import0, export0),
                    balance_error_kwh=abs(settled),
                    filled_boundaries=0,
                )
            else:
                begin = _net_kwh(span.begin.import_kwh, span.begin.export_kwh)
                end = _net_kwh(span.end.import_kwh, span.end.export_kwh)
                registers = end - begin
                entry.update(
                    settled_kwh=settled,
                    registers_kwh=registers,
                    unsettled_kwh=(begin - _net_kwh(import0, export0))
                    + (_net_kwh(import1, export1) - end),
                    balance_error_kwh=abs(registers - settled),
                    filled_boundaries=len(span.filled_boundaries),
                )
            report[peer] = entry
        return report

    def energy_balance(self) -> tuple[float | None, float | None]:
        """(error, energy through the PCCs) over the run, kWh, both from the meters' registers;
        None without meter readings."""
        metering = self.metering()
        if metering is None:
            return None, None
        metered = [m for m in metering.values() if m["metered"]]
        error = sum(m["balance_error_kwh"] for m in metered)
        through = sum(m["import_kwh"] + m["export_kwh"] for m in metered)
        return error, through

    def summary(self, mechanism: str, currency: str) -> dict[str, Any]:
        """The totals as summary.json holds them."""
        error, through = self.energy_balance()
        metering = self.metering()
        peers = {
            peer: {key: round(value, 6) for key, value in totals.items()}
            for peer, totals in self.per_peer.items()
        }
        return {
            "peers": peers,
            "market": {
                "mechanism": mechanism,
                "intervals": self.intervals,
                "cleared_intervals": self.cleared_intervals,
                "mean_clearing_price": round(sum(self.prices) / len(self.prices), 6)
                if self.prices
                else None,
                "volume_weighted_price": round(self.price_volume / self.traded_kwh, 6)
                if self.traded_kwh
                else None,
                "traded_kwh": round(self.traded_kwh, 6),
                "operator_surplus": round(
                    sum(
                        t["p2p_paid"]
                        - t["p2p_received"]
                        + t["balancing_paid"]
                        - t["balancing_received"]
                        for t in self.per_peer.values()
                    ),
                    6,
                ),
                "network_charges": round(
                    sum(t["network_charge"] for t in self.per_peer.values()), 6
                ),
            },
            "energy_balance_error_kwh": None if error is None else round(error, 9),
            "energy_through_pcc_kwh": None if through is None else round(through, 6),
            "metering": None
            if metering is None
            else {
                peer: {
                    key: round(value, 9) if isinstance(value, float) else value
                    for key, value in entry.items()
                }
                for peer, entry in metering.items()
            },
            "interlocks": dict(sorted(self.interlocks.items())),
            "currency": currency,
        }


def metering_notes(summary: dict[str, Any]) -> list[str]:
    """What a summary's metering says beyond its balance: meter gaps, boundaries filled across
    them, energy left unsettled, meters never read (one line each, for the console)."""
    notes: list[str] = []
    for peer, entry in (summary.get("metering") or {}).items():
        if not entry["metered"]:
            notes.append(f"meter {peer}: no trusted register reading; not in the energy balance")
            continue
        if entry["meter_gaps"]:
            notes.append(
                f"meter {peer}: {entry['meter_gaps']} gap(s), {entry['meter_gap_steps']} steps "
                "without a trusted reading (its registers counted on; "
                f"{entry['filled_boundaries']} interval boundaries interpolated across them)"
            )
        for restart in entry.get("register_breaks", ()):
            values = ", ".join(
                f"{q} {restart['before_kwh'][q]:.3f} -> {restart['after_kwh'][q]:.3f} kWh"
                for q in restart["after_kwh"]
            )
            notes.append(
                f"meter {peer}: registers restarted at step {restart['step']} ({values}); "
                f"the energy since step {restart['last_step']} is not in the balance"
            )
        if abs(entry["unsettled_kwh"]) >= 5e-7:
            notes.append(
                f"meter {peer}: {entry['unsettled_kwh']:.6f} kWh counted by the registers "
                "outside the settled intervals (not settled)"
            )
    return notes
