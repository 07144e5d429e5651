"""Device drivers: one per device kind, speaking the protocol and nothing else.

See docs/instruments.md; the drivers, their snapshots and setpoints, and the errors are below.
"""

from instruments.device import Confirmation
from instruments.errors import (
    BadReading,
    DeviceError,
    DeviceTimeout,
    DeviceUnavailable,
    InstrumentError,
    ProtocolMismatch,
    ReadbackMismatch,
    SetpointRefused,
)
from instruments.ev_charger import EvCharger, EvChargerSnapshot, EvSetpoint
from instruments.inverter import InverterSetpoint, InverterSnapshot, SunSpecInverter
from instruments.link import LinkStatus
from instruments.meter import MeterSnapshot, SunSpecMeter
from instruments.programmable_load import LoadSetpoint, LoadSnapshot, ProgrammableLoad

__all__ = [
    "BadReading",
    "Confirmation",
    "DeviceError",
    "DeviceTimeout",
    "DeviceUnavailable",
    "EvCharger",
    "EvChargerSnapshot",
    "EvSetpoint",
    "InstrumentError",
    "InverterSetpoint",
    "InverterSnapshot",
    "LinkStatus",
    "LoadSetpoint",
    "LoadSnapshot",
    "MeterSnapshot",
    "ProgrammableLoad",
    "ProtocolMismatch",
    "ReadbackMismatch",
    "SetpointRefused",
    "SunSpecInverter",
    "SunSpecMeter",
]
