"""The ramp limit counts from the setpoint the device holds, not from a command never sent."""

from __future__ import annotations

import itertools

import pytest

from labspec.plant_control import PlantControl
from testbed.devices import PeerDevices
from testbed.experiment import make_clock
from tests.faults.harness import experiment_config

DEADBAND_KW = 0.3
EV_RAMP_KW_PER_S = 0.5  # the charger's own ramp (stricter than peer B's 1 kW/s)


async def test_an_ev_setpoint_never_steps_beyond_the_ramp_from_what_the_charger_holds(
    working_plant,
):
    """With a setpoint deadband, a small change (-1.0 -> -1.25 kW) is not sent: the charger
    holds -1.0 kW. The ramp toward a large request (-2 kW) used to start from the unsent
    -1.25 kW, so the charger was sent -1.75 kW: a step of 0.75 kW against a 0.5 kW/s ramp (by up
    to the deadband beyond the ramp; 0.52 kW with the default 0.02 kW deadband, seen in a run)."""
    config = experiment_config(
        working_plant, hours=0.05, control={"setpoint_deadband_kw": DEADBAND_KW}
    )
    wanted_kw = [-1.0] * 5 + [-1.25] * 2 + [-2.0] * 4  # the EV power asked for, step by step
    async with await PlantControl.from_endpoints(working_plant) as control:
        await control.reset()
        clock = make_clock(config)
        await clock.start()
        b = config.peers["B"]
        peer = PeerDevices("B", b, b.peer_assets("B"), config.control, lambda: clock.now)
        assert peer.ev_charger is not None
        held_kw = []
        try:
            for channel in peer.channels:
                await channel.connect()
            assert await peer.prepare() == []
            for step, want_kw in enumerate(wanted_kw):
                for channel in peer.channels:
                    assert await channel.read(step) is not None
                meter, ev = peer.meter.snapshot, peer.ev_charger.snapshot
                assert meter is not None and ev is not None and ev.plugged
                # the dispatcher asks for ev + (contract - pcc): the contract that asks `want_kw`
                await peer.dispatch(step, want_kw - ev.power_kw + meter.power_kw, clock.now)
                held_kw.append((await control.state())["ev"]["setpoint_kw"])
                await clock.advance(1.0)
        finally:
            for channel in peer.channels:
                await channel.close()
            await clock.close()
    assert held_kw[4] == pytest.approx(-1.0)  # reached through the ramp
    assert held_kw[6] == held_kw[4]  # -1.25 kW fell in the deadband: not sent
    assert held_kw[-1] <= -1.5  # and the large request followed
    steps = [abs(after - before) for before, after in itertools.pairwise(held_kw)]
    assert max(steps) <= EV_RAMP_KW_PER_S + 1e-9, held_kw
