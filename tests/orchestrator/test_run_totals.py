"""The summary's metering from the PCC registers: gaps, frozen stretches, unsettled energy."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from testbed.documents import Settlement
from testbed.metering import BoundaryReading
from testbed.summary import RunTotals, metering_notes

T0 = datetime(2026, 3, 21, 5, 30, tzinfo=UTC)


def settled(peer: str, import_kwh: float) -> Settlement:
    """A grid-only settlement of an interval in which the peer imported `import_kwh`."""
    zero = dict.fromkeys(
        ("contracted_kwh", "p2p_bought_kwh", "p2p_sold_kwh", "p2p_paid", "p2p_received"), 0.0
    )
    return Settlement(
        interval_start=T0, peer=peer, metered_kwh=-import_kwh, deviation_kwh=-import_kwh,
        grid_import_kwh=import_kwh, grid_export_kwh=0.0, grid_cost=8 * import_kwh,
        grid_revenue=0.0, penalty=0.0, network_charge=0.0, bill=8 * import_kwh,
        bill_grid_only=8 * import_kwh, **zero,
    )  # fmt: skip


def test_energy_after_the_last_settled_boundary_is_reported_unsettled_not_lost():
    """A meter reads to step 14 of a run whose second interval (steps 10-20) was never settled:
    the balance covers interval 0-10 and the 0.4 kWh counted after it is named unsettled; a gap
    and a frozen stretch are counted, and a meter never read is named."""
    totals = RunTotals(["A", "B"])
    for step in (0, 1, 2, 5, 6, 7, 8, 9, 10, 11, 12):  # steps 3-4 missing
        totals.observe_registers("A", step, 0.1 * step, 0.0)
    for step in (13, 14):  # the meter froze: the reading of step 12 again
        totals.observe_registers("A", step, 1.2, 0.0)
    totals.drop_registers_after("A", 12)
    totals.settled_boundaries("A", 0, BoundaryReading(0.0, 0.0), 10, BoundaryReading(1.0, 0.0))
    totals.add_settlement(settled("A", 1.0))

    summary = totals.summary("uniform", "INR")
    a = summary["metering"]["A"]
    assert a["registers_kwh"] == pytest.approx(-1.0)
    assert a["settled_kwh"] == pytest.approx(-1.0)
    assert a["unsettled_kwh"] == pytest.approx(-0.2)  # steps 10-12: 12 is the last trusted one
    assert a["last_step"] == 12 and a["import_kwh"] == pytest.approx(1.2)
    assert (a["meter_gaps"], a["meter_gap_steps"]) == (1, 2)
    assert summary["metering"]["B"] == {"metered": False}
    assert summary["energy_balance_error_kwh"] == pytest.approx(0.0, abs=1e-12)
    assert summary["energy_through_pcc_kwh"] == pytest.approx(1.2)
    notes = "\n".join(metering_notes(summary))
    assert "meter A: 1 gap(s), 2 steps" in notes
    assert "-0.200000 kWh counted by the registers outside the settled intervals" in notes
    assert "meter B: no trusted register reading" in notes


def test_settlement_that_misses_metered_energy_opens_the_balance():
    """The registers counted 1.0 kWh over a settled interval but settlement billed 0.9 kWh."""
    totals = RunTotals(["A"])
    totals.observe_registers("A", 0, 0.0, 0.0)
    totals.observe_registers("A", 10, 1.0, 0.0)
    totals.settled_boundaries("A", 0, BoundaryReading(0.0, 0.0), 10, BoundaryReading(1.0, 0.0))
    totals.add_settlement(settled("A", 0.9))
    assert totals.summary("uniform", "INR")["energy_balance_error_kwh"] == pytest.approx(0.1)


def test_a_summary_without_meter_readings_has_no_balance():
    totals = RunTotals(["A"])
    totals.add_settlement(settled("A", 1.0))
    summary = totals.summary("uniform", "INR")
    assert summary["energy_balance_error_kwh"] is None
    assert summary["energy_through_pcc_kwh"] is None and summary["metering"] is None
    assert metering_notes(summary) == []
