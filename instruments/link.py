"""One device session's connection state: timeouts, reconnect with exponential backoff, and a
single report per change of state (not one per failed call).

Every driver runs each network operation through `Link.run`: the operation gets the driver's
timeout; a timeout or a broken connection closes the session, marks the link LOST (one warning log
record, one status callback) and raises `DeviceTimeout` / `DeviceUnavailable` at once. Later calls
reopen the session when the backoff delay has passed (0.1 s, 0.2 s, 0.4 s ... up to the maximum),
and fail fast with `DeviceUnavailable` before that, so a dead device never hangs the control loop.
The delay runs on `Link.seconds`, the wall clock's monotonic seconds unless the owner sets the
run's clock there (a lockstep run counts plant seconds, so a device comes back on the same step
whatever the machine's speed).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from instruments.errors import DeviceTimeout, DeviceUnavailable

T = TypeVar("T")

logger = logging.getLogger("instruments")


class _RepeatedLibraryWarnings(logging.Filter):
    """Drops the libraries' own warning on every failed reconnect attempt (pymodbus: "Failed to
    connect", asyncua: closing a channel that is already gone): the link reports a loss once."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


_QUIETED = {
    "pymodbus.logging": ("Failed to connect",),
    "asyncua.client.ua_client.UaClient": ("close_secure_channel was called but connection is",),
    "asyncua.client.ua_session.UaSession": ("close_session was called but connection is",),
}


def quiet_repeated_library_warnings() -> None:
    """Install the filter above on the libraries' loggers (idempotent)."""
    for name, prefixes in _QUIETED.items():
        library_logger = logging.getLogger(name)
        if not any(isinstance(f, _RepeatedLibraryWarnings) for f in library_logger.filters):
            library_logger.addFilter(_RepeatedLibraryWarnings(prefixes))


class LinkStatus(StrEnum):
    CLOSED = "closed"  # not connected yet, or closed by the controller
    CONNECTED = "connected"
    LOST = "lost"  # dropped or unreachable; being retried with backoff


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays between reconnect attempts: initial_s, then times factor, capped at max_s."""

    initial_s: float = 0.1
    factor: float = 2.0
    max_s: float = 10.0

    def delay_after(self, failures: int) -> float:
        """Delay before the next attempt after `failures` consecutive failures (>= 1)."""
        return min(self.max_s, self.initial_s * self.factor ** max(0, failures - 1))


StatusListener = Callable[[str, LinkStatus, str], None]  # (device, new status, reason)


class Link:
    """Connection supervisor of one device session (see the module docstring)."""

    def __init__(
        self,
        device: str,
        open_session: Callable[[], Awaitable[None]],
        close_session: Callable[[], Awaitable[None]],
        *,
        timeout_s: float,
        connect_timeout_s: float | None = None,
        backoff: Backoff | None = None,
        connection_errors: tuple[type[BaseException], ...] = (),
        on_status: StatusListener | None = None,
    ) -> None:
        quiet_repeated_library_warnings()
        self.device = device
        self._open_session = open_session
        self._close_session = close_session
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s or max(timeout_s, 2.0)
        self.backoff = backoff or Backoff()
        self._connection_errors: tuple[type[BaseException], ...] = (
            OSError,
            EOFError,
            *connection_errors,
        )
        self._listeners: list[StatusListener] = [on_status] if on_status else []
        self.status = LinkStatus.CLOSED
        self.last_error = ""
        self.failures = 0
        self._next_attempt = 0.0
        self.seconds: Callable[[], float] = time.monotonic  # the clock the backoff runs on

    def subscribe(self, listener: StatusListener) -> None:
        """Call `listener(device, status, reason)` on every change of status."""
        self._listeners.append(listener)

    async def connect(self) -> None:
        """Open the session now, ignoring any backoff delay; raise DeviceUnavailable on failure."""
        self._next_attempt = 0.0
        await self._ensure_open()

    async def ensure(self) -> None:
        """Open the session if it is not open (subject to the backoff delay)."""
        if self.status is not LinkStatus.CONNECTED:
            await self._ensure_open()

    async def run(self, operation: Callable[[], Awaitable[T]], what: str) -> T:
        """Run one network operation with the timeout; see the module docstring for failures."""
        if self.status is not LinkStatus.CONNECTED:
            await self._ensure_open()
        deadline = asyncio.timeout(self.timeout_s)  # no extra task, unlike wait_for
        try:
            async with deadline:
                return await operation()
        except (TimeoutError, asyncio.CancelledError) as exc:
            # Python 3.11's timeout turns only a plain CancelledError into TimeoutError; asyncua's
            # wait_for (wait_for2) answers our cancel with a subclass when the answer arrived in
            # the same instant. Either way our deadline expired: a timeout, not a cancelled run.
            if isinstance(exc, asyncio.CancelledError) and not deadline.expired():
                raise
            reason = f"no answer to {what} within {self.timeout_s * 1000:.0f} ms"
            await self._lose(reason)
            raise DeviceTimeout(self.device, reason, self._retry_in()) from None
        except self._connection_errors as exc:
            reason = f"{what}: {type(exc).__name__}: {exc}".rstrip(": ")
            await self._lose(reason)
            raise DeviceUnavailable(self.device, reason, self._retry_in()) from exc

    async def close(self) -> None:
        """Close the session; the link reports CLOSED once."""
        await self._quiet_close()
        self._set_status(LinkStatus.CLOSED, "closed by the controller")
        self.failures = 0
        self._next_attempt = 0.0

    def _retry_in(self) -> float:
        return max(0.0, self._next_attempt - self.seconds())

    async def _ensure_open(self) -> None:
        if self.seconds() < self._next_attempt:
            raise DeviceUnavailable(self.device, self.last_error, self._retry_in())
        try:
            await asyncio.wait_for(self._open_session(), self.connect_timeout_s)
        except self._connection_errors as exc:  # TimeoutError among them: it is an OSError
            reason = (
                f"connect timed out after {self.connect_timeout_s:.1f} s"
                if isinstance(exc, TimeoutError)
                else f"connect: {type(exc).__name__}: {exc}"
            )
            await self._quiet_close()
            self._failed(reason)
            raise DeviceUnavailable(self.device, reason, self._retry_in()) from exc
        except BaseException:
            await self._quiet_close()
            raise
        recovered_after = self.failures
        self.failures = 0
        self._next_attempt = 0.0
        if self.status is LinkStatus.LOST:
            self._set_status(
                LinkStatus.CONNECTED, f"reconnected after {recovered_after} failed attempt(s)"
            )
        else:
            self._set_status(LinkStatus.CONNECTED, "connected")

    async def _lose(self, reason: str) -> None:
        await self._quiet_close()
        self._failed(reason)

    def _failed(self, reason: str) -> None:
        self.failures += 1
        self.last_error = reason
        self._next_attempt = self.seconds() + self.backoff.delay_after(self.failures)
        if self.status is LinkStatus.LOST:
            logger.debug(
                "%s: still unavailable (%s), attempt %d", self.device, reason, self.failures
            )
        else:
            self._set_status(LinkStatus.LOST, reason)

    async def _quiet_close(self) -> None:
        try:
            await asyncio.wait_for(self._close_session(), self.connect_timeout_s)
        except Exception as exc:  # closing a broken session may fail; nothing left to do
            logger.debug("%s: error while closing the session: %s", self.device, exc)

    def _set_status(self, status: LinkStatus, reason: str) -> None:
        if status is self.status:
            return
        previous, self.status = self.status, status
        if status is LinkStatus.LOST:
            logger.warning("%s: connection lost (%s); retrying with backoff", self.device, reason)
        elif status is LinkStatus.CONNECTED and previous is LinkStatus.LOST:
            logger.info("%s: connection restored (%s)", self.device, reason)
        else:
            logger.info("%s: %s", self.device, status.value)
        for listener in self._listeners:
            listener(self.device, status, reason)
