"""The one shape every device driver has for the controller, and the registry of driver kinds.

The engine talks to every device through `DeviceDriver`: `connect`, `read` (a snapshot that is a
`DeviceReading`), `apply` (write a setpoint and confirm it by read-back), `operating_state` (where a
run starts), `safe_state` (where the device is harmless without the controller) and `close`. A
sensor (the PCC meter) has the same methods: `accepts_setpoints` is False, it refuses `apply` and
its operating and safe states are no-ops.

A driver is an `instruments.device.Instrument` (or `Actuator`) whose snapshot has the
`DeviceReading` properties; mypy checks each one the engine builds against this protocol.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Protocol, TypeVar

from instruments.link import Link


class DeviceReading(Protocol):
    """What the controller uses of any device's snapshot (generator sign convention)."""

    @property
    def time(self) -> datetime: ...

    @property
    def ac_power_kw(self) -> float:
        """AC power at the device's terminals, + = toward the grid."""
        ...

    @property
    def delivered_kwh(self) -> float | None:
        """The energy registers' net total, + = delivered toward the grid (None: no registers)."""
        ...

    @property
    def throughput_kwh(self) -> float | None:
        """The energy registers' total in both directions, moving whenever power flows (None: no
        registers; the register rule of `testbed.frozen` then does not apply)."""
        ...


ReadingT_co = TypeVar("ReadingT_co", bound=DeviceReading, covariant=True)
SetpointT_contra = TypeVar("SetpointT_contra", contravariant=True)


class DeviceDriver(Protocol[ReadingT_co, SetpointT_contra]):
    """One device as the engine drives it (see the module docstring)."""

    @property
    def name(self) -> str: ...

    @property
    def link(self) -> Link: ...

    @property
    def accepts_setpoints(self) -> bool: ...

    async def connect(self) -> None: ...

    async def read(self) -> ReadingT_co: ...

    async def apply(self, setpoint: SetpointT_contra) -> object:
        """Write the setpoint and confirm it by read-back (SetpointRefused/ReadbackMismatch)."""
        ...

    async def operating_state(self) -> None: ...

    async def safe_state(self) -> object: ...

    async def close(self) -> None: ...


def field_names(snapshot: object) -> tuple[str, ...]:
    """The field names of a driver snapshot (a dataclass; its properties are not fields)."""
    if not dataclasses.is_dataclass(snapshot):
        raise TypeError(f"a driver snapshot is a dataclass, not a {type(snapshot).__name__}")
    return tuple(f.name for f in dataclasses.fields(snapshot))
