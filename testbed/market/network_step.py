"""The network's part of clearing, for every mechanism: charges per trade and the AC check.

`apply_network(result, settings)` takes a cleared book and the feeder settings and returns the
result to publish: each trade's network charge per kWh (by electrical distance, when the settings
say so and the mechanism did not set it itself), and the pre-dispatch AC power flow of the
positions. A position that leaves the voltage band or overloads a line makes the interval fall
back to the grid (no trades) with the reason in the report; the run goes on.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from testbed.market.columns import OrderColumns
from testbed.market.result import ClearingResult, TradeTable, build_report
from testbed.network.powerflow import ac_check
from testbed.network.settings import NetworkSettings


def off_feeder(
    book: OrderColumns, settings: NetworkSettings | None
) -> tuple[np.ndarray, list[tuple[str, str, str]]]:
    """(mask of orders whose peer has a bus, [(order_id, peer, reason)] for the others)."""
    if settings is None or len(book) == 0:
        return np.ones(len(book), dtype=bool), []
    peers = np.asarray(book.peer, dtype=object)
    known = {peer: settings.has_bus(peer) for peer in set(peers.tolist())}
    ok = np.array([known[peer] for peer in peers.tolist()], dtype=bool)
    rejected = [
        (
            str(book.order_id[row]),
            str(peers[row]),
            f"peer {peers[row]!r} has no bus on the feeder (buses: "
            f"{', '.join(settings.feeder.buses)}); map it in the network's buses",
        )
        for row in np.flatnonzero(~ok).tolist()
    ]
    return ok, rejected


def positions_kwh(result: ClearingResult) -> dict[str, float]:
    """Sold minus bought per peer."""
    t, peers = result.table, np.asarray(result.book.peer, dtype=object)
    out: dict[str, float] = {}
    for row, quantity in zip(t.sell_row.tolist(), t.quantity_kwh.tolist(), strict=True):
        out[peers[row]] = out.get(peers[row], 0.0) + quantity
    for row, quantity in zip(t.buy_row.tolist(), t.quantity_kwh.tolist(), strict=True):
        out[peers[row]] = out.get(peers[row], 0.0) - quantity
    return out


def distance_charges(result: ClearingResult, settings: NetworkSettings) -> np.ndarray:
    """Network charge per kWh of each trade: usage by distance plus the pair's loss share."""
    t = result.table
    peers = tuple(sorted(set(np.asarray(result.book.peer, dtype=object).tolist())))
    index = {peer: i for i, peer in enumerate(peers)}
    linear = settings.linear(peers)
    seller = np.array([index[p] for p in np.asarray(result.book.peer, dtype=object)[t.sell_row]])
    buyer = np.array([index[p] for p in np.asarray(result.book.peer, dtype=object)[t.buy_row]])
    if len(t) == 0:
        return np.zeros(0)
    pair_total = np.zeros((len(peers), len(peers)))
    np.add.at(pair_total, (seller, buyer), t.quantity_kwh)
    usage = linear.usage_charge[seller, buyer]
    charge: np.ndarray = usage + linear.loss_coefficient[seller, buyer] * pair_total[seller, buyer]
    return charge


def apply_network(result: ClearingResult, settings: NetworkSettings | None) -> ClearingResult:
    """Charges per trade and the AC check (see the module docstring)."""
    if settings is None:
        return result
    table = result.table
    if settings.charges == "distance" and table.network_charge is None:
        table = replace(table, network_charge=distance_charges(result, settings))
        result = replace(result, table=table)
    positions = positions_kwh(result)
    injections: dict[str, float] = {}
    for peer, kwh in positions.items():
        bus = settings.bus_of(peer)
        injections[bus] = injections.get(bus, 0.0) + kwh / settings.interval_h
    check = ac_check(settings.feeder, injections, settings.voltage_band_pct)
    charges = table.network_charge
    network: dict[str, Any] = {
        "feeder_buses": list(settings.feeder.buses),
        "feeder_lines": [[line.from_bus, line.to_bus] for line in settings.feeder.lines],
        "peer_buses": {peer: settings.bus_of(peer) for peer in sorted(positions)},
        "voltage_band_pct": settings.voltage_band_pct,
        "charges": settings.charges,
        "network_charges": None if charges is None else float(np.sum(charges * table.quantity_kwh)),
        "injections_kw": injections,
        "check": check.to_report(),
    }
    report = {
        **result.report,
        "network": network,
        "network_ok": check.ok,
        # flat numbers, so that the time-series sinks record them (report_network_...)
        "network_min_voltage_pu": check.min_voltage_pu,
        "network_max_voltage_pu": check.max_voltage_pu,
        "network_max_loading_pct": check.max_loading_pct,
        "network_losses_kw": check.losses_kw,
    }
    result = replace(result, report=report)
    if not check.ok:
        return fall_back(result, "network check: " + "; ".join(check.violations))
    return result


def fall_back(result: ClearingResult, reason: str) -> ClearingResult:
    """The same book with no trades: the interval goes to the grid; the reason is recorded."""
    empty = TradeTable.empty()
    report = build_report(
        mechanism=result.mechanism,
        params=result.report.get("params", {}),
        book=result.book,
        rejected=[],
        table=empty,
        crossing=None,
    )
    kept = {key: value for key, value in result.report.items() if key not in report}
    report.update(kept)
    report["rejected"] = result.report.get("rejected", [])
    report["orders"] = result.report.get("orders", report["orders"])
    report["max_welfare"] = result.report.get("max_welfare")
    report["efficiency"] = 0.0 if report["max_welfare"] else None
    report["clearing_price"] = None
    report["fallback"] = reason
    report["cleared"] = False
    return replace(result, table=empty, clearing_price=None, report=report)
