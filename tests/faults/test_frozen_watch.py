"""The freeze rules of `testbed.frozen` on a reading fed step by step (no plant needed)."""

from __future__ import annotations

from dataclasses import dataclass

from testbed.frozen import RESPONSE_STEPS, FreezeWatch


@dataclass
class InverterReading:
    ac_power_kw: float
    pv_power_kw: float = 1.7
    battery_power_kw: float = -1.3
    soc_pct: float = 62.2
    throughput_kwh: float | None = None  # no energy registers: the register rule does not apply


def test_a_setpoint_oscillating_around_a_frozen_reading_is_caught():
    """Found by the fault campaign: with the inverter's reading frozen at 0.470 kW when peer A's
    contract changed, the dispatcher chased it and WSet alternated 0.696 / 0.468 kW every step;
    the freeze was never flagged, because the setpoint came back within 0.02 kW of where it was
    every other step (the battery swung 0.23 kW for as long as the freeze lasted)."""
    watch = FreezeWatch(follows_setpoint=True)  # as the engine watches a flexible device
    frozen = InverterReading(ac_power_kw=0.470)
    for step in range(5):  # live and steady: the setpoint stays where the reading is
        assert (
            watch.observe(step, InverterReading(ac_power_kw=0.470 + step * 1e-3), 0.47, 1.0) is None
        )
    for step in range(5, 10):  # frozen at 0.470 kW, harmless while nothing departs from it
        assert watch.observe(step, frozen, 0.470, 1.0) is None
    verdicts = []
    for step in range(10, 20):  # the contract changes: the dispatcher chases the frozen reading
        setpoint_kw = 0.696 if step % 2 else 0.468
        verdicts.append(watch.observe(step, frozen, setpoint_kw, 1.0))
    caught = [i for i, verdict in enumerate(verdicts) if verdict]
    assert caught and caught[0] <= RESPONSE_STEPS + 1, verdicts
    assert "0.22" in verdicts[caught[0]]  # it names how far the setpoint moved


def test_a_device_that_follows_its_setpoint_is_not_held():
    """The other side: a live device whose setpoint moves away and back follows it each step."""
    watch = FreezeWatch(follows_setpoint=True)  # as the engine watches a flexible device
    for step in range(20):
        setpoint_kw = 0.696 if step % 2 else 0.468
        reading = InverterReading(ac_power_kw=setpoint_kw + 1e-3 * (step % 3))
        assert watch.observe(step, reading, setpoint_kw, 1.0) is None
    assert not watch.frozen
