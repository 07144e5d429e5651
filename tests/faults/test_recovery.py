"""Each safe state is undone deliberately, and a run starts from known device states
(defects 2, 3 and 5 of issue 12, and the reconnect backoff on the run's clock)."""

from __future__ import annotations

from labspec.plant_control import SyncPlantControl
from tests.faults.harness import clear, experiment_config, fault, run_with_faults

EV_RAMP_KW_PER_S = 0.5  # the charger's own ramp (stricter than peer B's 1 kW/s)


def test_the_load_is_back_on_its_profile_after_out_of_range_readings(working_plant, tmp_path):
    """Defect 2: after 60 s of out-of-range readings peer C's load was switched off and stayed
    off for the rest of the run."""
    config = experiment_config(working_plant, hours=0.1)
    run = run_with_faults(
        working_plant,
        tmp_path / "run",
        config,
        {60: [fault("load", "out_of_range")], 120: [clear("load")]},
    )
    interlocks = run.interlocks()
    load = interlocks[(interlocks["device"] == "load") & (interlocks["kind"] == "safe_state")]
    assert list(load["action"]) == ["safe_state", "cleared", "safe_state"]  # lost, back, run end
    back = int(load["step"].iloc[1])
    assert 120 < back <= 122
    samples = run.samples("C", "load").set_index("step")
    after = samples.loc[back + 1 :]
    assert (after["input_on"] == 1).all()
    assert (after["power_kw"] < -0.05).all()  # drawing its programmed house load again
    meter = run.samples("C", "meter").set_index("step")
    assert meter.loc[back + 2 :, "power_kw"].max() < -0.05  # the house imports again


def test_the_ev_comes_back_through_its_ramp_after_a_dropped_connection(working_plant, tmp_path):
    """Defect 3: with setpoint_deadband_kw = 0, an EV connection drop (30 s) was followed by a
    setpoint jump from 0 to -1.53 kW in one step against a 0.5 kW/s ramp limit."""
    config = experiment_config(working_plant, hours=0.4, control={"setpoint_deadband_kw": 0.0})
    run = run_with_faults(
        working_plant,
        tmp_path / "run",
        config,
        {1200: [fault("ev_charger", "drop")], 1230: [clear("ev_charger")]},
    )
    ev = run.samples("B", "ev_charger").set_index("step")
    assert ev.loc[1190:1200, "setpoint_kw"].max() < -1.0  # charging hard when it dropped
    assert ev.loc[1231:1320, "setpoint_kw"].min() < -1.0  # and charging again afterwards
    steps = ev.index.to_series()
    consecutive = steps.diff() == 1
    jumps = ev["setpoint_kw"].diff().abs()
    # every change between two steps is within the ramp, except going to 0 (safe state)
    going_to_zero = ev["setpoint_kw"] == 0.0
    violations = jumps[consecutive & ~going_to_zero & (jumps > EV_RAMP_KW_PER_S + 1e-6)]
    assert violations.empty, violations


def test_a_second_run_on_the_same_plant_starts_with_every_device_operating(working_plant, tmp_path):
    """Defect 5: two runs against one plant: in the second, peer C's load was never on (the
    first run's end had switched it off)."""
    config = experiment_config(working_plant, hours=0.05)
    first = run_with_faults(working_plant, tmp_path / "first", config)
    with SyncPlantControl.from_endpoints(working_plant) as control:
        after_first = control.state()
    assert after_first["load_c"]["input_on"] is False  # the first run ended in the safe state
    assert after_first["ev"]["enabled"] is False
    second = run_with_faults(working_plant, tmp_path / "second", config, reset=False)
    load = second.samples("C", "load")
    assert (load["input_on"].iloc[1:] == 1).all()
    assert (load["power_kw"].iloc[1:] < -0.05).all()
    assert (second.samples("B", "ev_charger")["enabled"].iloc[1:] == 1).all()
    operating = second.interlocks()
    operating = operating[operating["kind"] == "operating_state"]
    assert set(operating["device"]) == {"inverter", "ev_charger", "load"}
    assert first.result.finished.status == second.result.finished.status == "finished"


def test_a_device_comes_back_on_the_same_step_whatever_the_machine_does(working_plant, tmp_path):
    """Reconnect backoff follows the run's clock: after a fault clears in lockstep, the device
    used to come back 0-172 steps later, because the backoff ran on wall time. Now the step it
    comes back on depends on plant time only: two runs give the same step."""
    config = experiment_config(working_plant, hours=0.05)
    schedule = {30: [fault("meter_A", "drop")], 90: [clear("meter_A")]}
    back_steps = []
    for name in ("one", "two"):
        run = run_with_faults(working_plant, tmp_path / name, config, schedule)
        interlocks = run.interlocks()
        back = interlocks[
            (interlocks["kind"] == "device_lost") & (interlocks["action"] == "cleared")
        ]
        back_steps.append(int(back["step"].iloc[0]))
    # attempts 0.1 s, 0.2 s, ... apart, at most backoff_max_s (10 s of plant time)
    assert back_steps[0] == back_steps[1]
    assert 90 < back_steps[0] <= 90 + 10
