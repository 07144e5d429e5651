"""Step 5, delivery: from a peer's position for the interval to its storage device's power.

The PCC's target for the interval (`pcc_target_kw`) is, by default, the plan's net position: the
P2P contract plus the grid import the agent's plan accepted, so a buyer imports what its plan
imports (its storage follows the plan instead of covering the part of the load its bid did not
win), and a seller exports what it sold (energy it planned to sell but did not stays home, in
storage, rather than going to the grid at the feed-in tariff). `dispatch = "contract"` in
`[control]` follows the contract alone (the PCC at 0 kW without one). The contract settles as
before either way: what the PCC carries beyond it is a deviation.

A peer's flexible device (the battery behind the hybrid inverter, or the EV charger) is moved by the
PCC's error, other loads taken as they are:
    request = device power now + (target power - PCC power now)
then bounded by the safety limits (`testbed.safety`), which outrank the market. The EV's mobility
need outranks the market too: when the energy still needed by departure can only just be charged in
the time left, it charges at full power whatever the contract says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from testbed.safety import LimitHit, StorageLimits, limit_storage_power


@dataclass(frozen=True, slots=True)
class StorageCommand:
    """What the dispatcher wants sent to a storage device this step."""

    storage_kw: float  # battery or EV power after the limits, + = discharge
    hits: tuple[LimitHit, ...]


def pcc_target_kw(contract_kw: float, plan_net_kw: float | None, rule: str = "plan") -> float:
    """The PCC power (kW, + = export) the dispatcher holds during an interval.

    `rule` "plan": the lower of the contract and the plan's net position, i.e. the contract plus
    the plan's grid import (a buyer's unfilled or unbid need) and no export beyond what was sold.
    "contract", or no plan (no decision for the interval): the contract alone.
    """
    if rule == "contract" or plan_net_kw is None or not math.isfinite(plan_net_kw):
        return contract_kw
    if rule != "plan":
        raise ValueError(f"dispatch rule {rule!r}: choose 'plan' or 'contract'")
    return min(contract_kw, plan_net_kw)


def tracking_request_kw(contract_kw: float, pcc_kw: float, device_kw: float) -> float:
    """Device power that would bring the PCC to the contracted power."""
    return device_kw + (contract_kw - pcc_kw)


@dataclass(frozen=True, slots=True)
class MobilityNeed:
    """The energy an EV must have at departure."""

    capacity_kwh: float
    departure_soc_pct: float
    charge_efficiency: float
    max_charge_kw: float
    margin_h: float = 0.25  # start forced charging this much before the last moment

    def must_charge(self, soc_pct: float, now: datetime, departure: datetime | None) -> bool:
        """True when charging cannot wait any longer to reach the departure SoC."""
        if departure is None or departure <= now:
            return False
        needed_kwh = (self.departure_soc_pct - soc_pct) / 100.0 * self.capacity_kwh
        if needed_kwh <= 0:
            return False
        hours_left = (departure - now).total_seconds() / 3600.0
        hours_needed = needed_kwh / (self.max_charge_kw * self.charge_efficiency)
        return hours_needed + self.margin_h >= hours_left


def battery_command(
    contract_kw: float,
    pcc_kw: float,
    ac_power_kw: float,
    pv_power_kw: float,
    soc_pct: float,
    previous_battery_kw: float,
    limits: StorageLimits,
    dt_s: float,
) -> tuple[float, StorageCommand]:
    """Hybrid inverter: the AC target (WSet, kW) and the battery power it implies."""
    ac_target_kw = tracking_request_kw(contract_kw, pcc_kw, ac_power_kw)
    battery_kw, hits = limit_storage_power(
        ac_target_kw - pv_power_kw, previous_battery_kw, soc_pct, limits, dt_s
    )
    return battery_kw + pv_power_kw, StorageCommand(battery_kw, tuple(hits))


def ev_command(
    contract_kw: float,
    pcc_kw: float,
    ev_power_kw: float,
    soc_pct: float,
    previous_kw: float,
    limits: StorageLimits,
    dt_s: float,
    must_charge: bool = False,
    mobility: MobilityNeed | None = None,
    departure: datetime | None = None,
) -> StorageCommand:
    """EV charger: the power setpoint (kW, + = V2G discharge).

    `must_charge`: the mobility need outranks the contract (see `MobilityNeed.must_charge`).
    """
    request = tracking_request_kw(contract_kw, pcc_kw, ev_power_kw)
    extra: list[LimitHit] = []
    if must_charge and mobility is not None:
        if request > -limits.max_charge_kw:
            extra.append(
                LimitHit(
                    "mobility",
                    f"SoC {soc_pct:.1f} % must reach {mobility.departure_soc_pct:.0f} % by "
                    f"{departure:%H:%M} UTC: charging at full power"
                    if departure is not None
                    else f"SoC {soc_pct:.1f} % below {mobility.departure_soc_pct:.0f} %: charging",
                )
            )
        request = -limits.max_charge_kw
    power, hits = limit_storage_power(request, previous_kw, soc_pct, limits, dt_s)
    return StorageCommand(power, tuple(extra + hits))
