"""A PCC meter that answers with garbage instead of dropping: NaN, inf, or an energy register a
million kWh ahead. Nothing of it is billed; the peer's device is safe while it lasts."""

from __future__ import annotations

import pytest

from hil_sim.servers.sunspec_devices import GARBAGE_ENERGY_OFFSET_WH
from labspec.plant_control import SyncPlantControl
from testbed.summary import metering_notes
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
GARBAGE_OFFSET_KWH = GARBAGE_ENERGY_OFFSET_WH / 1000.0


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


def reset_with_meter_c_on_garbage(plant) -> None:
    """A fresh plant whose meter C reads its import register a million kWh ahead from the start."""
    control = SyncPlantControl.from_endpoints(plant)
    try:
        control.reset()
        control.set_fault("meter_C", kind="garbage", value="huge")
    finally:
        control.close()


def test_a_meter_that_starts_on_garbage_comes_back_when_it_clears(working_plant, tmp_path):
    """Meter C's import register read a million kWh ahead from the run's first reading until step
    60: that reading became the reference, every true reading after it went back, and the meter
    stayed lost for the rest of the run, its intervals unsettled. Now three true readings in a row
    that agree with each other are a new register series: the break is reported once, the
    interval across it is settled from the registers on each side, and the rest as usual."""
    reset_with_meter_c_on_garbage(working_plant)
    config = experiment_config(working_plant, hours=0.25)
    run = run_with_faults(
        working_plant, tmp_path / "run", config, {60: [clear("meter_C")]}, reset=False
    )
    assert run.result.finished.status == "finished"
    samples = run.samples("C", "meter").set_index("step")
    assert samples.loc[:60, "import_kwh"].min() > 1e5  # the garbage, as read
    true_steps = samples.index[samples.index > 60]
    assert list(true_steps) == list(range(63, 901))  # two readings rejected, then back
    assert samples.loc[63:, "import_kwh"].max() < 1.0

    def net_kwh(step: int) -> float:  # the plant's registers, the garbage offset taken off
        row = samples.loc[step]
        import_kwh = row.import_kwh - (GARBAGE_OFFSET_KWH if row.import_kwh > 1e5 else 0.0)
        return row.export_kwh - import_kwh

    settlements = run.reader.settlements()
    c = settlements[settlements["peer"] == "C"].sort_values("interval_start")
    assert len(c) == 3  # every interval settled
    metered = list(c["metered_kwh"])
    # across the break: up to the last garbage reading and from the first true one; the energy of
    # the three seconds between is not known and not billed
    assert metered[0] == pytest.approx((net_kwh(60) - net_kwh(0)) + (net_kwh(300) - net_kwh(63)))
    assert abs(metered[0]) <= abs(net_kwh(300) - net_kwh(0))
    assert metered[1] == pytest.approx(net_kwh(600) - net_kwh(300))
    assert metered[2] == pytest.approx(net_kwh(900) - net_kwh(600))
    assert c["grid_cost"].max() < 10.0 and c["grid_revenue"].max() < 10.0
    assert (bill_parts(settlements) - settlements.bill).abs().max() < 1e-9

    interlocks = run.interlocks()
    breaks = interlocks[interlocks["kind"] == "register_break"]
    assert list(zip(breaks["peer"], breaks["action"], strict=True)) == [
        ("C", "new_series"),
        ("C", "settled"),
    ]
    assert "1000000" in breaks["reason"].iloc[0] and "meter_C" in breaks["reason"].iloc[0]
    lost = interlocks[(interlocks["peer"] == "C") & (interlocks["kind"] == "device_lost")]
    assert lost.empty

    summary = run.result.finished.summary
    metering = summary["metering"]["C"]
    (restart,) = metering["register_breaks"]
    assert (restart["last_step"], restart["step"]) == (60, 63)
    assert restart["before_kwh"]["import_kwh"] > 1e5 > 1.0 > restart["after_kwh"]["import_kwh"]
    assert metering["balance_error_kwh"] < 1e-6
    assert summary["energy_balance_error_kwh"] < 1e-6
    assert any("registers restarted at step 63" in note for note in metering_notes(summary))


def test_a_register_break_across_interval_boundaries_bills_no_interval_across_it(
    working_plant, tmp_path
):
    """Meter C starts on garbage and then drops from step 290 to 610; the garbage clears while it
    is away. The break in its registers lies between its last reading before 300 and its first
    after 600: the first interval is settled up to the last reading of the old series, the last
    one from the first of the new series, and the interval in between, which no register reading
    of its own covers, is left unsettled instead of billed from a jump or as zero."""
    reset_with_meter_c_on_garbage(working_plant)
    config = experiment_config(working_plant, hours=0.25)
    run = run_with_faults(
        working_plant,
        tmp_path / "run",
        config,
        {
            290: [fault("meter_C", "drop")],
            400: [clear("meter_C", "garbage")],
            610: [clear("meter_C", "drop")],
        },
        reset=False,
    )
    assert run.result.finished.status == "finished"
    samples = run.samples("C", "meter").set_index("step")
    last_old = samples.index[samples.index < 300].max()
    first_new = samples.index[samples.index > 300].min()
    assert 600 < first_new <= 640 and samples.loc[first_new:, "import_kwh"].max() < 1.0

    def net_kwh(step: int) -> float:
        row = samples.loc[step]
        import_kwh = row.import_kwh - (GARBAGE_OFFSET_KWH if row.import_kwh > 1e5 else 0.0)
        return row.export_kwh - import_kwh

    settlements = run.reader.settlements()
    c = settlements[settlements["peer"] == "C"].sort_values("interval_start")
    assert len(c) == 2  # the middle interval is not settled
    first, last = list(c["metered_kwh"])
    assert first == pytest.approx(net_kwh(last_old) - net_kwh(0))
    assert last == pytest.approx(net_kwh(900) - net_kwh(first_new))
    assert len(settlements[settlements["peer"] == "A"]) == 3  # the others go on
    interlocks = run.interlocks()
    breaks = interlocks[(interlocks["kind"] == "register_break")]
    assert list(breaks["action"]) == ["new_series", "settled", "unsettled", "settled"]
    assert set(breaks["peer"]) == {"C"}
    metering = run.result.finished.summary["metering"]["C"]
    (restart,) = metering["register_breaks"]
    assert (restart["last_step"], restart["step"]) == (last_old, first_new)
    assert metering["balance_error_kwh"] < 1e-6
