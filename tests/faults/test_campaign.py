"""The fault campaign in the suite: every fault kind on every device kind at three phases of an
interval, on the emulated plant, with the report printed at the end of the session."""

from __future__ import annotations

import pytest

from tests.faults import campaign


@pytest.fixture
def campaign_plant(tmp_path):
    from tests.fixtures.plant import start_plant_process
    from tests.fixtures.ports import stop_process

    config = campaign.write_campaign_plant(tmp_path)
    plant = start_plant_process(tmp_path / "plant", "--config", str(config))
    try:
        yield plant.endpoints
    finally:
        stop_process(plant.proc)


@pytest.mark.slow
def test_the_fault_matrix_does_no_harm(campaign_plant, tmp_path):
    run, plant_log = campaign.run_campaign(campaign_plant, tmp_path / "run")
    report, outcomes = campaign.report(run, plant_log)
    campaign.LAST_REPORT[:] = report.lines()

    assert run.result.finished.status == "finished"
    assert report.faults_injected == len(outcomes) == 66
    assert report.limit_violations == 0, report.violations
    assert report.problems == []
    assert report.steps_to_safe_state_max <= campaign.BOUND_SAFE_STEPS
    assert report.steps_to_safe_state_by_watchdog_max <= campaign.BOUND_WATCHDOG_STEPS
    assert report.steps_to_notice_max <= campaign.BOUND_NOTICED_STEPS
    assert report.steps_to_recovery_max <= campaign.BOUND_RECOVERY_STEPS
    assert report.kwh_unaccounted < 1e-6
    assert report.inr_unaccounted < 1e-6
    assert report.intervals_settled == report.intervals
    # the matrix was at work: every safe state was reached on the plant, not assumed
    safe = [o for o in outcomes if o.fault.expected == "safe_state"]
    assert len(safe) == 40 and all(o.safe_steps is not None for o in safe)
    assert plant_log["ev_kw"].min() < -1.5 and plant_log["battery_kw"].min() < -0.5
