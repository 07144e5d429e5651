"""The OPC UA information model of the bidirectional EV charger (peer B).

Both the emulated charger (hil_sim) and the driver (instruments) use these names, so the node set
exists exactly once. Node ids are string ids in the namespace NAMESPACE_URI: `ns=<idx>;s=<NodeId>`.
Power follows the generator convention: positive = discharging into the grid (V2G), negative =
charging (G2V).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

NAMESPACE_URI = "urn:p2p-testbed:ev-charger"
OBJECT_BROWSE_NAME = "EVCharger"
OBJECT_NODE_ID = "EVCharger"


class Var(StrEnum):
    """Browse names (and string node ids, prefixed with `EVCharger.`) of the charger's variables."""

    SOC_PCT = "SocPct"
    PLUGGED = "Plugged"
    DEPARTURE_TIME = "DepartureTime"
    POWER_KW = "PowerKw"
    POWER_SETPOINT_KW = "PowerSetpointKw"
    ENABLED = "Enabled"
    STATUS = "Status"
    MAX_CHARGE_POWER_KW = "MaxChargePowerKw"
    MAX_DISCHARGE_POWER_KW = "MaxDischargePowerKw"
    MIN_POWER_KW = "MinPowerKw"
    RAMP_RATE_KW_PER_S = "RampRateKwPerS"
    RESERVE_SOC_PCT = "ReserveSocPct"
    MIN_SOC_PCT = "MinSocPct"
    MAX_SOC_PCT = "MaxSocPct"
    WATCHDOG_TIMEOUT_S = "WatchdogTimeoutS"
    ENERGY_CHARGED_KWH = "EnergyChargedKwh"
    ENERGY_DISCHARGED_KWH = "EnergyDischargedKwh"
    CAPACITY_KWH = "CapacityKwh"


@dataclass(frozen=True, slots=True)
class VarSpec:
    name: Var
    ua_type: str  # "Double", "Boolean", "DateTime", "String"
    writable: bool
    unit: str
    description: str


VARIABLES: tuple[VarSpec, ...] = (
    VarSpec(Var.SOC_PCT, "Double", False, "%", "Battery state of charge"),
    VarSpec(Var.PLUGGED, "Boolean", False, "", "Vehicle connected to the charger"),
    VarSpec(Var.DEPARTURE_TIME, "DateTime", False, "", "Planned plug-out time (UTC)"),
    VarSpec(Var.POWER_KW, "Double", False, "kW", "Measured AC power, + = discharging to the grid"),
    VarSpec(Var.POWER_SETPOINT_KW, "Double", True, "kW", "AC power setpoint, + = discharge (V2G)"),
    VarSpec(Var.ENABLED, "Boolean", True, "", "Power transfer enabled"),
    VarSpec(Var.STATUS, "String", False, "", "idle, charging, discharging, unplugged or fault"),
    VarSpec(Var.MAX_CHARGE_POWER_KW, "Double", False, "kW", "Largest charging power (magnitude)"),
    VarSpec(Var.MAX_DISCHARGE_POWER_KW, "Double", False, "kW", "Largest discharging power"),
    VarSpec(Var.MIN_POWER_KW, "Double", False, "kW", "Smallest non-zero power (deadband)"),
    VarSpec(Var.RAMP_RATE_KW_PER_S, "Double", False, "kW/s", "Largest change of power per second"),
    VarSpec(Var.RESERVE_SOC_PCT, "Double", False, "%", "No discharge below this state of charge"),
    VarSpec(Var.MIN_SOC_PCT, "Double", False, "%", "Lower end of the state-of-charge window"),
    VarSpec(Var.MAX_SOC_PCT, "Double", False, "%", "Upper end of the state-of-charge window"),
    VarSpec(Var.WATCHDOG_TIMEOUT_S, "Double", False, "s", "Setpoint reverts to 0 after this long"),
    VarSpec(Var.ENERGY_CHARGED_KWH, "Double", False, "kWh", "AC energy drawn from the grid, total"),
    VarSpec(Var.ENERGY_DISCHARGED_KWH, "Double", False, "kWh", "AC energy fed to the grid, total"),
    VarSpec(Var.CAPACITY_KWH, "Double", False, "kWh", "Usable battery capacity"),
)


def node_id(var: Var) -> str:
    """The string node id of a variable, without the namespace index."""
    return f"{OBJECT_NODE_ID}.{var.value}"
