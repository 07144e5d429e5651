"""Fault injection: what can go wrong with each emulated device, switchable while the plant runs.

A `FaultBoard` holds the active faults of every device. The protocol servers subscribe to their
device's `DeviceFaults` and react when it changes (close the listener, drop connections); on the
request path they only read its plain attributes (`refusing`, `delay_s`, `frozen`, ...), so a device
without faults pays nothing.

Fault kinds (several can be active on one device at once):
- `refuse`: new connections are refused (the listening socket is closed); open ones keep working.
- `drop`: open connections are closed and new ones refused while the fault is on.
- `delay`: every answer comes `delay_ms` milliseconds late.
- `freeze`: measurements keep the values of the moment the fault was set (writes still work).
- `exception`: every Modbus request is answered with the exception `code` (Modbus devices only).
- `out_of_range`: the device reports physically impossible values (state of charge 250 %,
  voltage 0 V, power far beyond its rating) so a driver's plausibility checks can reject them.
- `garbage` (PCC meters): the meter's float registers read `value`: "nan" or "inf" (every
  measurement and energy register), or "huge" (the import register a million kWh ahead, the
  rest as measured: a glitch a plain range check lets through).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

# Modbus exception codes a fault may answer with (pymodbus.constants.ExcCodes values).
MODBUS_EXCEPTION_CODES = (1, 2, 3, 4, 5, 6, 7, 8, 10, 11)
DEFAULT_EXCEPTION_CODE = 4  # SLAVE/SERVER DEVICE FAILURE
GARBAGE_VALUES = ("nan", "inf", "huge")
MAX_DELAY_MS = 600_000.0


class FaultError(ValueError):
    """A fault request that names an unknown device, kind or parameter, or a bad value."""


class FaultKind(StrEnum):
    REFUSE = "refuse"
    DROP = "drop"
    DELAY = "delay"
    FREEZE = "freeze"
    EXCEPTION = "exception"
    OUT_OF_RANGE = "out_of_range"
    GARBAGE = "garbage"


_PARAMETERS: dict[FaultKind, tuple[str, ...]] = {
    FaultKind.REFUSE: (),
    FaultKind.DROP: (),
    FaultKind.DELAY: ("delay_ms",),
    FaultKind.FREEZE: (),
    FaultKind.EXCEPTION: ("code",),
    FaultKind.OUT_OF_RANGE: (),
    FaultKind.GARBAGE: ("value",),
}


@dataclass(frozen=True, slots=True)
class Fault:
    """One active fault on one device."""

    device: str
    kind: FaultKind
    delay_ms: float | None = None  # kind "delay"
    code: int | None = None  # kind "exception"
    value: str | None = None  # kind "garbage"

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form, without parameters the kind does not use."""
        return {k: (str(v) if k == "kind" else v) for k, v in asdict(self).items() if v is not None}


def make_fault(
    device: str,
    kind: str,
    devices: tuple[str, ...],
    modbus_devices: tuple[str, ...],
    meter_devices: tuple[str, ...] = (),
    **params: Any,
) -> Fault:
    """Validate a fault request on one of `devices` (the plant's device ids and Modbus gateways;
    `garbage` only on `meter_devices`); raises FaultError naming the bad device, kind or
    parameter."""
    if device not in devices:
        raise FaultError(f"unknown device {device!r}; devices are {', '.join(devices)}")
    try:
        fault_kind = FaultKind(kind)
    except ValueError:
        allowed = ", ".join(k.value for k in FaultKind)
        raise FaultError(f"unknown fault kind {kind!r}; kinds are {allowed}") from None
    unexpected = sorted(set(params) - set(_PARAMETERS[fault_kind]))
    if unexpected:
        allowed = ", ".join(_PARAMETERS[fault_kind]) or "none"
        raise FaultError(
            f"fault {fault_kind.value!r} takes no parameter {unexpected[0]!r} "
            f"(parameters: {allowed})"
        )
    if fault_kind is FaultKind.DELAY:
        delay_ms = params.get("delay_ms")
        if (
            isinstance(delay_ms, bool)
            or not isinstance(delay_ms, int | float)
            or not math.isfinite(delay_ms)
            or not 0 <= delay_ms <= MAX_DELAY_MS
        ):
            raise FaultError(
                f"fault 'delay' needs delay_ms between 0 and {MAX_DELAY_MS:g}, got {delay_ms!r}"
            )
        return Fault(device, fault_kind, delay_ms=float(delay_ms))
    if fault_kind is FaultKind.EXCEPTION:
        if device not in modbus_devices:
            raise FaultError(
                f"fault 'exception' applies to Modbus devices ({', '.join(modbus_devices)}), "
                f"not {device!r}"
            )
        code = params.get("code", DEFAULT_EXCEPTION_CODE)
        if isinstance(code, bool) or code not in MODBUS_EXCEPTION_CODES:
            allowed = ", ".join(str(c) for c in MODBUS_EXCEPTION_CODES)
            raise FaultError(f"fault 'exception' needs code in ({allowed}), got {code!r}")
        return Fault(device, fault_kind, code=int(code))
    if fault_kind is FaultKind.GARBAGE:
        if device not in meter_devices:
            raise FaultError(
                f"fault 'garbage' applies to PCC meters ({', '.join(meter_devices) or 'none'}), "
                f"not {device!r}"
            )
        value = params.get("value", GARBAGE_VALUES[0])
        if value not in GARBAGE_VALUES:
            allowed = ", ".join(GARBAGE_VALUES)
            raise FaultError(f"fault 'garbage' needs value in ({allowed}), got {value!r}")
        return Fault(device, fault_kind, value=str(value))
    return Fault(device, fault_kind)


FaultListener = Callable[["DeviceFaults"], Awaitable[None]]


class DeviceFaults:
    """The active faults of one device, in the form the request path reads cheaply."""

    def __init__(self, device: str):
        self.device = device
        self.active: dict[FaultKind, Fault] = {}
        self._listeners: list[FaultListener] = []
        self._recompute()

    def subscribe(self, listener: FaultListener) -> None:
        """Call `listener(self)` (awaited) after every change."""
        self._listeners.append(listener)

    def _recompute(self) -> None:
        active = self.active
        self.refusing = FaultKind.REFUSE in active or FaultKind.DROP in active
        self.dropping = FaultKind.DROP in active
        delay = active.get(FaultKind.DELAY)
        self.delay_s = (delay.delay_ms or 0.0) / 1000.0 if delay else 0.0
        self.frozen = FaultKind.FREEZE in active
        exception = active.get(FaultKind.EXCEPTION)
        self.exception_code = exception.code if exception else None
        self.out_of_range = FaultKind.OUT_OF_RANGE in active
        garbage = active.get(FaultKind.GARBAGE)
        self.garbage = garbage.value if garbage else None

    async def _changed(self) -> None:
        self._recompute()
        for listener in self._listeners:
            await listener(self)

    async def set(self, fault: Fault) -> None:
        """Activate (or re-parameterise) a fault."""
        self.active[fault.kind] = fault
        await self._changed()

    async def clear(self, kind: FaultKind | None = None) -> None:
        """Clear one fault kind, or all of this device's faults."""
        if kind is None:
            self.active.clear()
        else:
            self.active.pop(kind, None)
        await self._changed()


class FaultBoard:
    """Active faults of every device of the plant (and of every Modbus gateway, whose
    connection faults act on all the devices behind it)."""

    def __init__(
        self,
        devices: tuple[str, ...],
        modbus_devices: tuple[str, ...] = (),
        meter_devices: tuple[str, ...] = (),
    ) -> None:
        self.names = tuple(devices)
        self.modbus_names = tuple(modbus_devices)
        self.meter_names = tuple(meter_devices)
        self.devices: dict[str, DeviceFaults] = {name: DeviceFaults(name) for name in devices}

    def __getitem__(self, device: str) -> DeviceFaults:
        try:
            return self.devices[device]
        except KeyError:
            raise FaultError(
                f"unknown device {device!r}; devices are {', '.join(self.names)}"
            ) from None

    async def set_fault(self, device: str, kind: str, **params: Any) -> Fault:
        """Validate and activate a fault; returns it."""
        fault = make_fault(device, kind, self.names, self.modbus_names, self.meter_names, **params)
        await self.devices[device].set(fault)
        return fault

    async def clear(self, device: str | None = None, kind: str | None = None) -> None:
        """Clear faults: of one kind or all, on one device or on every device."""
        fault_kind = None
        if kind is not None:
            try:
                fault_kind = FaultKind(kind)
            except ValueError:
                allowed = ", ".join(k.value for k in FaultKind)
                raise FaultError(f"unknown fault kind {kind!r}; kinds are {allowed}") from None
        targets = [self[device]] if device is not None else list(self.devices.values())
        for target in targets:
            if target.active:
                await target.clear(fault_kind)

    def active(self) -> list[Fault]:
        """Every active fault, device by device."""
        return [fault for faults in self.devices.values() for fault in faults.active.values()]
