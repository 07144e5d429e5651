"""Frozen measurements are recognised within a few steps, also near zero (defect 1)."""

from __future__ import annotations

from testbed.frozen import REPEATS, RESPONSE_STEPS
from tests.faults.harness import clear, experiment_config, fault, run_with_faults


def test_frozen_meter_load_and_charger_readings_are_caught_within_a_few_steps(
    working_plant, tmp_path
):
    """Defect 1: with meter A frozen near 0 kW across a change of A's contract, the freeze was
    never flagged and the battery was driven by the frozen reading (the real PCC ran 2.8 kW off
    the contract for 180 s); other frozen readings took 84-173 steps to be noticed, and a frozen
    load reading near 0.4 kW was never noticed in 240 s."""
    config = experiment_config(working_plant, hours=0.4)
    schedule = {
        540: [fault("meter_A", "freeze"), fault("load", "freeze")],  # across the 600 s boundary
        780: [clear("meter_A"), clear("load")],
        1200: [fault("ev_charger", "freeze")],  # while the EV charges
        1260: [clear("ev_charger")],
    }
    run = run_with_faults(working_plant, tmp_path / "run", config, schedule)
    interlocks = run.interlocks()
    frozen = interlocks[interlocks["kind"] == "frozen_measurement"]
    caught = {
        (row.peer, row.device): row.step for row in frozen[frozen["action"] == "held"].itertuples()
    }
    cleared = {
        (row.peer, row.device): row.step
        for row in frozen[frozen["action"] == "cleared"].itertuples()
    }
    assert caught.keys() == {("A", "meter"), ("C", "load"), ("B", "ev_charger")}
    assert 540 < caught[("A", "meter")] <= 540 + REPEATS
    assert 540 < caught[("C", "load")] <= 540 + REPEATS
    assert 1200 < caught[("B", "ev_charger")] <= 1200 + 3 * RESPONSE_STEPS
    assert 780 < cleared[("A", "meter")] <= 782 and 1260 < cleared[("B", "ev_charger")] <= 1262

    # near zero: the load drew about 0.4 kW when its reading froze, and was caught all the same
    load = run.samples("C", "load").set_index("step")
    assert -0.6 < load.loc[540, "power_kw"] < -0.2

    # while meter A was frozen the battery idled: the frozen reading drove nothing
    inverter = run.samples("A", "inverter").set_index("step")
    held = inverter.loc[caught[("A", "meter")] + 2 : 780]
    assert (held["battery_power_kw"] == 0.0).all() and (held["wset_enabled"] == 0).all()
    # and the battery came back into operation after the meter thawed
    assert (inverter.loc[790:1000, "wset_enabled"] == 1).all()
    # the interval across the freeze was settled from the registers: nothing lost
    settled = run.reader.settlements(peer="A")["metered_kwh"].sum()
    truth = run.truth_end["meters"]["A"]
    assert abs(settled - (truth["export_kwh"] - truth["import_kwh"])) < 1e-6


def test_a_cart_that_stopped_at_its_soc_limit_is_not_frozen_when_its_setpoint_follows() -> None:
    """A cart charging at 1.43 kW reaches 95 % and stops by itself (0 kW, SoC still); the
    controller then sets 0 kW. The reading did not move because it already was where the setpoint
    went: found frozen, it held the cart in its safe state until it unplugged, its SoC unknown to
    its agent, which bought energy for a cart it believed at 80 %. A charger frozen at 1.43 kW
    across the same change is still caught."""
    from datetime import UTC, datetime

    from instruments.ev_charger import EvChargerSnapshot
    from testbed.frozen import FreezeWatch

    def reading(power_kw: float, soc_pct: float) -> EvChargerSnapshot:
        return EvChargerSnapshot(
            time=datetime(2026, 6, 1, 12, tzinfo=UTC),
            soc_pct=soc_pct,
            plugged=True,
            departure_time=None,
            power_kw=power_kw,
            setpoint_kw=power_kw,
            enabled=True,
            status="charging",
            max_charge_kw=7.4,
            max_discharge_kw=7.4,
            min_power_kw=0.0,
            ramp_kw_per_s=1.0,
            reserve_soc_pct=20.0,
            soc_min_pct=10.0,
            soc_max_pct=95.0,
            watchdog_timeout_s=30.0,
            energy_charged_kwh=2.0,
            energy_discharged_kwh=1.0,
            capacity_kwh=40.0,
        )

    at_limit, frozen = FreezeWatch(follows_setpoint=True), FreezeWatch(follows_setpoint=True)
    at_limit.observe(0, reading(-1.43, 94.9), -1.43, 10.0)
    frozen.observe(0, reading(-1.43, 94.9), -1.43, 10.0)
    verdicts = []
    for step in range(1, 2 + 3 * RESPONSE_STEPS):
        setpoint_kw = -1.43 if step == 1 else 0.0
        verdicts.append(at_limit.observe(step, reading(0.0, 95.0), setpoint_kw, 10.0))
        frozen.observe(step, reading(-1.43, 94.9), setpoint_kw, 10.0)
    assert verdicts == [None] * len(verdicts) and not at_limit.frozen
    assert frozen.frozen.startswith("reading unchanged")
