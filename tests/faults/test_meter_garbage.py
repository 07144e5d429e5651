"""A PCC meter that answers with garbage instead of dropping: NaN, inf, or an energy register a
million kWh ahead. Nothing of it is billed; the peer's device is safe while it lasts."""

from __future__ import annotations

import pytest

from tests.faults.campaign import bill_parts
from tests.faults.harness import (
    clear,
    experiment_config,
    fault,
    metered_net_kwh,
    run_with_faults,
    settled_net_kwh,
)

BOUNDARY = 300  # the end of the first 300 s interval


def test_a_register_glitch_at_an_interval_end_is_not_billed(working_plant, tmp_path):
    """Meter A's import register read a million kWh ahead for the two readings around an
    interval's end: the glitch was taken for the boundary, peer A was billed 8,000,000 INR of
    grid import in one interval and paid 3,000,000 INR of feed-in in the next, with no message.
    A register that runs ahead of the meter's rating is a bad reading now: the boundary is
    filled from the registers around the glitch."""
    config = experiment_config(working_plant, hours=0.25)
    run = run_with_faults(
        working_plant,
        tmp_path / "run",
        config,
        {
            BOUNDARY - 1: [fault("meter_A", "garbage", value="huge")],
            BOUNDARY + 1: [clear("meter_A")],
        },
    )
    assert run.result.finished.status == "finished"
    settlements = run.reader.settlements()
    assert len(settlements) == 3 * 3  # every interval of every peer
    a = settlements[settlements["peer"] == "A"]
    assert a["metered_kwh"].abs().max() < 1.0  # a house's few minutes, not a million kWh
    assert a["grid_cost"].max() < 10.0 and a["grid_revenue"].max() < 10.0
    for peer, registers_kwh in metered_net_kwh(run).items():
        assert settled_net_kwh(run)[peer] == pytest.approx(registers_kwh, abs=1e-6)
    assert (bill_parts(settlements) - settlements.bill).abs().max() < 1e-9
    interlocks = run.interlocks()
    filled = interlocks[
        (interlocks["kind"] == "unmetered_interval") & (interlocks["action"] == "filled")
    ]
    assert set(filled["peer"]) == {"A"}
    # the registers are trusted again once they agree with the last good reading
    samples = run.samples("A", "meter").set_index("step")
    assert set(range(BOUNDARY + 2, BOUNDARY + 60)) <= set(samples.index)
    assert samples["import_kwh"].max() < 1.0


@pytest.mark.parametrize("value", ["nan", "inf", "huge"])
def test_a_meter_reading_garbage_sends_the_battery_to_its_safe_state_and_back(
    working_plant, tmp_path, value
):
    """Garbage for 20 s is a bad reading every step: the meter is lost, peer A's battery goes to
    its safe state (it cannot follow a contract it cannot see) and comes back after."""
    config = experiment_config(working_plant, hours=0.05)
    run = run_with_faults(
        working_plant,
        tmp_path / "run",
        config,
        {60: [fault("meter_A", "garbage", value=value)], 80: [clear("meter_A")]},
    )
    interlocks = run.interlocks()
    lost = interlocks[(interlocks["device"] == "meter") & (interlocks["kind"] == "device_lost")]
    assert list(lost["action"]) == ["safe_state", "cleared"]
    assert "bad_reading" in lost["reason"].iloc[0]
    safe = interlocks[(interlocks["device"] == "inverter") & (interlocks["kind"] == "safe_state")]
    assert list(safe["action"])[:2] == ["safe_state", "cleared"]
    assert 60 < safe["step"].iloc[0] <= 60 + 7 and 80 < safe["step"].iloc[1] <= 80 + 14
    samples = run.samples("A", "meter")
    assert samples["import_kwh"].max() < 1.0 and samples["power_kw"].abs().max() < 10.0
    for peer, registers_kwh in metered_net_kwh(run).items():
        assert settled_net_kwh(run)[peer] == pytest.approx(registers_kwh, abs=1e-6)
