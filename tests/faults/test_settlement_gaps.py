"""Settlement across a meter's gap, and a summary of delivered intervals only (defects 4, 7)."""

from __future__ import annotations

import pytest

from testbed.engine import Engine
from tests.faults.campaign import bill_parts
from tests.faults.harness import (
    clear,
    experiment_config,
    fault,
    metered_net_kwh,
    run_with_faults,
    settled_net_kwh,
)


def test_a_meter_missing_at_an_interval_end_is_settled_from_its_registers(working_plant, tmp_path):
    """Defect 4: meter C dropped across an interval boundary; its registers counted 0.918 kWh
    over the two intervals but only 0.781 kWh was billed (the interval was settled as zero)."""
    config = experiment_config(working_plant, hours=0.25)
    run = run_with_faults(
        working_plant,
        tmp_path / "run",
        config,
        {270: [fault("meter_C", "drop")], 330: [clear("meter_C")]},
    )
    settlements = run.reader.settlements(peer="C")
    assert len(settlements) == 3  # every interval of peer C is settled, none as zero
    assert (settlements["metered_kwh"] < -0.01).all()  # a house load imports in every interval
    # no kWh lost or invented: what was billed is what the meter's registers counted
    assert settled_net_kwh(run)["C"] == pytest.approx(metered_net_kwh(run)["C"], abs=1e-6)
    interlocks = run.interlocks()
    gaps = interlocks[interlocks["kind"] == "unmetered_interval"]
    assert set(gaps["action"]) == {"pending", "filled"}
    assert (gaps["peer"] == "C").all()
    # the summary names the gap and the filled boundary; its balance closes over the gap
    summary = run.result.finished.summary
    metering = summary["metering"]
    assert metering["C"]["meter_gaps"] >= 1 and metering["C"]["meter_gap_steps"] >= 30
    assert metering["C"]["filled_boundaries"] == 1
    assert metering["C"]["registers_kwh"] == pytest.approx(metered_net_kwh(run)["C"], abs=1e-6)
    assert metering["A"]["meter_gaps"] == metering["B"]["meter_gaps"] == 0
    assert summary["energy_balance_error_kwh"] < 1e-6
    # the bills still close: every settlement's bill is its parts
    s = run.reader.settlements()
    assert (bill_parts(s) - s.bill).abs().max() < 1e-9


def test_an_interrupted_run_summarises_only_delivered_and_settled_intervals(
    working_plant, tmp_path
):
    """Defect 7: an interrupted run's summary counted an undelivered interval
    (market.traded_kwh 0.863 kWh over 4 intervals while 0.427 kWh was settled over 3)."""
    config = experiment_config(working_plant, hours=0.5)
    engines: list[Engine] = []

    def stop(control) -> None:
        engines[0].stop_requested = True

    # after the gate closure of the third interval (step 870): it is cleared but never delivered
    run = run_with_faults(
        working_plant, tmp_path / "run", config, {880: [stop]}, on_engine=engines.append
    )
    assert run.result.finished.status == "interrupted"
    reader = run.reader
    assert len(reader.clearings()) == 4  # the fourth interval was cleared at its gate closure
    settlements = reader.settlements()
    summary = run.result.finished.summary
    assert summary["market"]["intervals"] == settlements["interval_start"].nunique() == 3
    sold = settlements["p2p_sold_kwh"].sum()
    assert summary["market"]["traded_kwh"] == pytest.approx(sold, abs=1e-6)
    for peer, totals in summary["peers"].items():
        mine = settlements[settlements["peer"] == peer]
        assert totals["bill"] == pytest.approx(mine["bill"].sum(), abs=1e-5)
    assert settled_net_kwh(run) == pytest.approx(metered_net_kwh(run), abs=1e-6)
