"""Which sample fields the live page draws, and how setpoints pair with their read-backs.

The orchestrator stores every value a device reports (limits and counters too); the live page
draws measured powers, setpoints, state of charge, PCC voltage and the meter's contracted power.
"""

from __future__ import annotations

from collections.abc import Iterable

CONTRACT_FIELD = "contract_kw"  # the interval's P2P contract at the PCC (meter samples)
TARGET_FIELD = "target_kw"  # the PCC power the dispatcher holds: contract + plan's grid import
SOC_FIELD = "soc_pct"
VOLTAGE_FIELD = "voltage_v"
_LIMIT_MARKERS = ("max_", "min_", "rated_", "capacity", "ramp_")
# setpoint field -> read-back fields to try, in order
_KNOWN_READBACKS = {
    "wset_kw": ("ac_power_kw", "power_kw"),  # SunSpec model 704 active-power target
    "setpoint_kw": ("power_kw",),
    "power_setpoint_kw": ("power_kw",),
}


def is_setpoint(field: str) -> bool:
    return field.endswith("_kw") and ("setpoint" in field or field.startswith("wset"))


def is_power(field: str) -> bool:
    """A measured power (not a setpoint, a limit, a rating, the contract or the PCC target)."""
    return (
        field.endswith("_kw")
        and not is_setpoint(field)
        and field not in (CONTRACT_FIELD, TARGET_FIELD)
        and not any(marker in field for marker in _LIMIT_MARKERS)
    )


def readback_for(setpoint: str, columns: Iterable[str]) -> str | None:
    """The measured field that answers `setpoint`, if the device reports one."""
    columns = set(columns)
    candidates = _KNOWN_READBACKS.get(setpoint) or (
        setpoint.replace("setpoint_kw", "power_kw"),
        setpoint.replace("_setpoint_kw", "_kw"),
        "power_kw",
    )
    return next((c for c in candidates if c in columns and c != setpoint), None)


def setpoint_pairs(columns: Iterable[str]) -> list[tuple[str, str]]:
    """(setpoint, read-back) pairs among `columns`."""
    columns = list(columns)
    pairs = []
    for column in columns:
        if is_setpoint(column) and (readback := readback_for(column, columns)):
            pairs.append((column, readback))
    return pairs


def live_fields(fields: Iterable[str]) -> list[str]:
    """The fields the live page reads (fewer columns make a live refresh cheaper)."""
    return [
        f
        for f in fields
        if is_power(f)
        or is_setpoint(f)
        or f in (CONTRACT_FIELD, TARGET_FIELD, SOC_FIELD, VOLTAGE_FIELD)
    ]
