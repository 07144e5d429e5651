"""Safety limits on a storage device's power setpoint. They outrank the market's wish.

Each control step the dispatcher asks for a storage power (generator convention: + = discharge);
`limit_storage_power` returns the power that may actually be sent and the limits that bound it.
The ramp rate shapes the request first; the power rating and the state-of-charge window are hard
limits applied after it, so a ramp can never carry a device past them; the minimum-power deadband
comes last (an infeasible small power becomes 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StorageLimits:
    """What a battery or EV charger may do (kW, %, kW/s)."""

    max_charge_kw: float
    max_discharge_kw: float
    soc_min_pct: float
    soc_max_pct: float
    ramp_kw_per_s: float
    min_power_kw: float = 0.0  # |power| below this is infeasible and becomes 0


@dataclass(frozen=True, slots=True)
class LimitHit:
    kind: str  # soc_limit, power_limit, ramp_limit, invalid_request
    reason: str


def limit_storage_power(
    requested_kw: float,
    previous_kw: float,
    soc_pct: float,
    limits: StorageLimits,
    dt_s: float,
) -> tuple[float, list[LimitHit]]:
    """Bound a requested storage power by the device's limits; report every limit that bit."""
    hits: list[LimitHit] = []
    if not math.isfinite(requested_kw):
        hits.append(LimitHit("invalid_request", f"requested power {requested_kw} is not finite"))
        requested_kw = 0.0
    power = requested_kw
    max_step = limits.ramp_kw_per_s * dt_s
    if abs(power - previous_kw) > max_step + 1e-12:
        ramped = previous_kw + math.copysign(max_step, power - previous_kw)
        hits.append(
            LimitHit(
                "ramp_limit",
                f"change {previous_kw:.3f} -> {power:.3f} kW exceeds "
                f"{limits.ramp_kw_per_s:.3f} kW/s; limited to {ramped:.3f} kW",
            )
        )
        power = ramped
    if power > limits.max_discharge_kw:
        hits.append(
            LimitHit(
                "power_limit",
                f"discharge {power:.3f} kW above the limit {limits.max_discharge_kw:.3f} kW",
            )
        )
        power = limits.max_discharge_kw
    elif power < -limits.max_charge_kw:
        hits.append(
            LimitHit(
                "power_limit",
                f"charge {-power:.3f} kW above the limit {limits.max_charge_kw:.3f} kW",
            )
        )
        power = -limits.max_charge_kw
    if power > 0 and soc_pct <= limits.soc_min_pct:
        hits.append(
            LimitHit(
                "soc_limit",
                f"discharge {power:.3f} kW refused: SoC {soc_pct:.1f} % at or below the minimum "
                f"{limits.soc_min_pct:.1f} %",
            )
        )
        power = 0.0
    elif power < 0 and soc_pct >= limits.soc_max_pct:
        hits.append(
            LimitHit(
                "soc_limit",
                f"charge {-power:.3f} kW refused: SoC {soc_pct:.1f} % at or above the maximum "
                f"{limits.soc_max_pct:.1f} %",
            )
        )
        power = 0.0
    if 0 < abs(power) < limits.min_power_kw:
        power = 0.0
    return power, hits
