"""A connection that keeps dropping and coming back, never long enough to be lost."""

from __future__ import annotations

from tests.faults.harness import clear, experiment_config, fault, run_with_faults

FIRST, DROPS, EVERY = 20, 6, 4  # meter A dropped for 2 steps of every 4, six times


def test_repeated_short_drops_are_reported_once_and_cleared(working_plant, tmp_path):
    """Meter A dropped 2 s of every 4, six times: it came back each time before 5 failed calls
    in a row, so nothing at all was recorded (only log lines on stderr). Now one
    `unstable_connection` is noticed and cleared after 60 quiet steps; control and settlement go
    on as before (no safe state, every interval settled)."""
    schedule = {}
    for k in range(DROPS):
        schedule[FIRST + EVERY * k] = [fault("meter_A", "drop")]
        schedule[FIRST + EVERY * k + 2] = [clear("meter_A")]
    config = experiment_config(working_plant, hours=0.05)
    run = run_with_faults(working_plant, tmp_path / "run", config, schedule)
    assert run.result.finished.status == "finished"
    interlocks = run.interlocks()
    mine = interlocks[interlocks["peer"] == "A"]
    unstable = mine[mine["kind"] == "unstable_connection"]
    assert list(unstable["device"]) == ["meter", "meter"]
    assert list(unstable["action"]) == ["noticed", "cleared"]
    last_drop = FIRST + EVERY * (DROPS - 1) + 2
    noticed, cleared = unstable["step"]
    assert FIRST < noticed <= last_drop + 1
    assert last_drop + 60 <= cleared <= last_drop + 70
    during = mine[mine["reason"] != "end of the run"]
    assert not during["kind"].isin(["device_lost", "safe_state"]).any()
    assert len(run.reader.settlements(peer="A")) == 1
    assert run.result.finished.summary["interlocks"]["unstable_connection"] == 1
