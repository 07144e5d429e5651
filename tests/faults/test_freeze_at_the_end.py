"""A meter that freezes a step or two before the run ends, too late for the repeat rule within
the run: its last reading is confirmed by reading on after the end."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest

from labspec.endpoints import PlantEndpoints
from labspec.plant_control import SyncPlantControl
from testbed.engine import Engine
from tests.faults.harness import experiment_config, run_with_faults

STEPS = 300  # one 300 s interval


def at_plant_steps(
    endpoints: PlantEndpoints, actions: dict[int, Callable[[SyncPlantControl], object]]
) -> Callable[[Engine], None]:
    """Carry out `actions[n]` just before the plant is advanced to step n (after the controller
    read step n - 1), through the engine's clock: no race with the advance, also after the
    run's end."""

    def install(engine: Engine) -> None:
        advance = engine.clock.advance
        reached = 0

        async def act_and_advance(dt_s: float) -> datetime:
            nonlocal reached
            reached += 1
            if reached in actions:
                with SyncPlantControl.from_endpoints(endpoints) as control:
                    actions[reached](control)
            return await advance(dt_s)

        engine.clock.advance = act_and_advance  # type: ignore[method-assign]

    return install


def test_a_meter_frozen_just_before_the_end_is_not_settled_from_its_frozen_reading(
    working_plant, tmp_path
):
    """Meters A and C froze after the reading of the step before the last: their two last
    readings are the same, one short of the repeat rule, and the frozen one was taken for the
    last boundary, unnoticed: the energy of the last step was in no settlement (0.9 Wh of peer
    A's export). The repeated reading at the end is now set aside and the meter read on: still
    frozen, it is found so, and the interval is left unsettled with the reason."""
    config = experiment_config(working_plant, hours=STEPS / 3600)

    def freeze(control: SyncPlantControl) -> None:
        control.set_fault("meter_A", kind="freeze")
        control.set_fault("meter_C", kind="freeze")

    run = run_with_faults(
        working_plant,
        tmp_path / "run",
        config,
        on_engine=at_plant_steps(working_plant, {STEPS: freeze}),
    )
    assert run.result.finished.status == "finished"
    assert set(run.reader.settlements()["peer"]) == {"B"}  # A's and C's frozen end not billed
    interlocks = run.interlocks()
    unsettled = interlocks[
        (interlocks["kind"] == "unmetered_interval") & (interlocks["action"] == "unsettled")
    ]
    assert set(unsettled["peer"]) == {"A", "C"}
    frozen = interlocks[interlocks["kind"] == "frozen_measurement"]
    assert set(frozen["peer"]) == {"A", "C"}


def test_a_meter_frozen_at_the_end_and_live_again_fills_the_last_boundary(working_plant, tmp_path):
    """Frozen for the last reading of the run and live again right after: the last boundary is
    interpolated between the reading before the freeze and the first one after the end, so
    peer A's settlement holds the energy of the last step too."""
    config = experiment_config(working_plant, hours=STEPS / 3600)
    run = run_with_faults(
        working_plant,
        tmp_path / "run",
        config,
        on_engine=at_plant_steps(
            working_plant,
            {
                STEPS: lambda control: control.set_fault("meter_A", kind="freeze"),
                STEPS + 1: lambda control: control.clear_faults("meter_A"),
            },
        ),
    )
    settled = run.reader.settlements(peer="A")
    assert len(settled) == 1
    samples = run.samples("A", "meter").set_index("step")
    net = samples["export_kwh"] - samples["import_kwh"]
    assert net.loc[STEPS] == net.loc[STEPS - 1]  # the frozen last reading
    power_kw = samples.loc[STEPS - 1, "power_kw"]
    assert abs(power_kw) > 0.5  # peer A's PCC carries power: a lost step shows
    # the registers at the end: the last live reading and the power it measured, one step on
    expected_kwh = net.loc[STEPS - 1] - net.loc[0] + power_kw / 3600
    assert settled["metered_kwh"].iloc[0] == pytest.approx(expected_kwh, abs=2e-5)
    interlocks = run.interlocks()
    filled = interlocks[(interlocks["kind"] == "unmetered_interval") & (interlocks["peer"] == "A")]
    assert list(filled["action"]) == ["filled"]
