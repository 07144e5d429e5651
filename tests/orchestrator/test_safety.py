"""Safety limits: no storage setpoint leaves the device's window, whatever the market asks."""

import math

from hypothesis import given
from hypothesis import strategies as st

from testbed.safety import StorageLimits, limit_storage_power

LIMITS = StorageLimits(
    max_charge_kw=3.0,
    max_discharge_kw=2.5,
    soc_min_pct=10.0,
    soc_max_pct=95.0,
    ramp_kw_per_s=1.0,
    min_power_kw=0.2,
)


@given(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-3.0, 2.5),
    st.floats(0.0, 100.0),
)
def test_setpoint_stays_within_every_limit(requested, previous, soc):
    power, _ = limit_storage_power(requested, previous, soc, LIMITS, dt_s=1.0)
    assert math.isfinite(power)
    assert -3.0 <= power <= 2.5
    if soc <= 10.0:
        assert power <= 0
    if soc >= 95.0:
        assert power >= 0
    assert power == 0 or abs(power) >= 0.2
    if (soc > 10.0 or power <= 0) and (soc < 95.0 or power >= 0) and power != 0:
        assert abs(power - previous) <= 1.0 + 1e-9


def test_discharge_at_minimum_soc_is_refused_with_a_reason():
    power, hits = limit_storage_power(2.0, 2.0, 10.0, LIMITS, dt_s=1.0)
    assert power == 0
    assert [h.kind for h in hits] == ["soc_limit"]
    assert "10.0 %" in hits[0].reason


def test_ramp_limits_a_jump_and_says_so():
    power, hits = limit_storage_power(-3.0, 0.0, 50.0, LIMITS, dt_s=1.0)
    assert power == -1.0
    assert [h.kind for h in hits] == ["ramp_limit"]


def test_power_limit_clamps_a_large_request():
    power, hits = limit_storage_power(10.0, 2.4, 50.0, LIMITS, dt_s=1.0)
    assert power == 2.5
    assert "power_limit" in [h.kind for h in hits]
