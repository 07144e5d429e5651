"""An interlock's action is one word from a fixed set (it is a tag in InfluxDB); what went wrong
is in its reason."""

from __future__ import annotations

from tests.faults.harness import clear, experiment_config, fault, run_with_faults

ACTIONS = {
    "limited", "cleared", "safe_state", "safe_state_unconfirmed", "held", "no_trade", "set",
    "pending", "filled", "unsettled", "noticed",
}  # fmt: skip


def test_a_safe_state_the_device_cannot_hear_is_one_action_with_the_error_in_its_reason(
    working_plant, tmp_path
):
    """The inverter dropped: its safe state could not be sent, and the action was
    'safe_state_unconfirmed (DeviceUnavailable: ... port 35005 ...; next attempt in 0.40 s; ...)',
    a new tag value (an InfluxDB series) for every port and backoff delay."""
    config = experiment_config(working_plant, hours=0.03)
    run = run_with_faults(
        working_plant,
        tmp_path / "run",
        config,
        {20: [fault("inverter", "drop")], 40: [clear("inverter")]},
    )
    interlocks = run.interlocks()
    assert set(interlocks["action"]) <= ACTIONS
    unconfirmed = interlocks[interlocks["action"] == "safe_state_unconfirmed"]
    assert len(unconfirmed) >= 1 and set(unconfirmed["device"]) == {"inverter"}
    reason = unconfirmed["reason"].iloc[0]
    assert "unavailable" in reason and "own fallback takes over" in reason
