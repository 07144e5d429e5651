"""What can go wrong between a driver and its device, each error naming the device and the cause."""

from __future__ import annotations


class InstrumentError(Exception):
    """Base of every error a driver raises; `device` names the device (its configured name)."""

    def __init__(self, device: str, message: str) -> None:
        super().__init__(f"{device}: {message}")
        self.device = device


class DeviceUnavailable(InstrumentError, ConnectionError):
    """The device cannot be reached now (connection refused, dropped or timed out).

    The driver retries with exponential backoff on later calls; `retry_in_s` says when the next
    attempt is due (0 when the next call tries at once). Also a ConnectionError, so generic
    handlers catch it.
    """

    def __init__(self, device: str, reason: str, retry_in_s: float = 0.0) -> None:
        super().__init__(device, f"unavailable ({reason}); next attempt in {retry_in_s:.2f} s")
        self.reason = reason
        self.retry_in_s = retry_in_s


class DeviceTimeout(DeviceUnavailable, TimeoutError):
    """A request got no answer within the driver's timeout; the session is dropped and reopened.
    Also a TimeoutError."""


class DeviceError(InstrumentError):
    """The device answered, but with an error (Modbus exception response, SCPI error queue, OPC UA
    bad status code). The session stays open."""

    def __init__(self, device: str, operation: str, code: int | str, meaning: str = "") -> None:
        detail = f" ({meaning})" if meaning else ""
        super().__init__(device, f"{operation} failed with code {code}{detail}")
        self.operation = operation
        self.code = code
        self.meaning = meaning


class BadReading(InstrumentError):
    """A measurement outside what is physically possible (or NaN): rejected, never passed on."""

    def __init__(self, device: str, quantity: str, value: object, allowed: str) -> None:
        super().__init__(device, f"bad reading {quantity}={value!r} (plausible: {allowed})")
        self.quantity = quantity
        self.value = value
        self.allowed = allowed


class SetpointRefused(InstrumentError):
    """A setpoint outside the device's limits, refused before anything was sent."""

    def __init__(self, device: str, quantity: str, value: object, allowed: str) -> None:
        super().__init__(device, f"setpoint {quantity}={value!r} refused (allowed: {allowed})")
        self.quantity = quantity
        self.value = value
        self.allowed = allowed


class ReadbackMismatch(InstrumentError):
    """The setpoint read back after a write differs from what was written."""

    def __init__(self, device: str, quantity: str, written: object, read_back: object) -> None:
        super().__init__(
            device, f"read-back of {quantity} is {read_back!r}, but {written!r} was written"
        )
        self.quantity = quantity
        self.written = written
        self.read_back = read_back


class ProtocolMismatch(InstrumentError):
    """The device does not look like what the driver expects (no SunS marker, missing model,
    unknown node, wrong *IDN?)."""


class UntrustedCertificate(InstrumentError):
    """A peer's certificate that is neither the pinned one nor in the trust list: refused before
    anything (a password) is sent. `thumbprint` is its SHA-256 fingerprint."""

    def __init__(self, device: str, subject: str, thumbprint: str, trusted: str) -> None:
        super().__init__(
            device,
            f"the server's certificate ({subject}, SHA-256 {thumbprint}) is not trusted "
            f"({trusted}): refused",
        )
        self.subject = subject
        self.thumbprint = thumbprint
