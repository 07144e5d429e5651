"""Client of the emulated plant's simulation-control endpoint (JSON lines over TCP).

`PlantControl` is the asyncio client (for tests and for the controller's lockstep clock);
`SyncPlantControl` is the same over a blocking socket, for tests and scripts without a loop.
Imports nothing of the plant, only `labspec.endpoints` for the address: it lives in `labspec`
so that the controller (`testbed`) and the plant's tests share it without `testbed` importing
`hil_sim`.

    async with await PlantControl.connect("127.0.0.1", port) as plant:
        now = (await plant.advance(1.0)).time
        await plant.set_fault("meter_A", kind="delay", delay_ms=200)
        await plant.clear_faults("meter_A")
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from labspec.endpoints import PlantEndpoints

DEFAULT_TIMEOUT_S = 10.0


class ControlError(RuntimeError):
    """The plant answered {"ok": false, "error": ...}, or the endpoint could not be reached."""


@dataclass(frozen=True, slots=True)
class PlantTime:
    """Plant time (timezone-aware UTC) and seconds since the plant started."""

    time: datetime
    elapsed_s: float


def _encode(command: str, params: dict[str, Any]) -> bytes:
    return json.dumps({"cmd": command, **params}, separators=(",", ":")).encode() + b"\n"


def _decode(line: bytes, command: str) -> dict[str, Any]:
    if not line:
        raise ControlError(f"control endpoint closed the connection during {command!r}")
    reply = json.loads(line)
    if not isinstance(reply, dict):
        raise ControlError(f"{command}: the reply is not a JSON object: {line[:80]!r}")
    if not reply.get("ok"):
        raise ControlError(f"{command}: {reply.get('error', 'no reason given')}")
    return reply


def _field(reply: dict[str, Any], key: str) -> dict[str, Any]:
    """The object `reply[key]`, or ControlError naming what came instead."""
    value = reply.get(key)
    if not isinstance(value, dict):
        raise ControlError(f"reply field {key!r} is not a JSON object: {value!r}")
    return value


def _items(reply: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The list of objects `reply[key]`, or ControlError naming what came instead."""
    value = reply.get(key)
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ControlError(f"reply field {key!r} is not a list of JSON objects: {value!r}")
    return value


def _time(reply: dict[str, Any]) -> PlantTime:
    return PlantTime(datetime.fromisoformat(reply["time"]), float(reply["elapsed_s"]))


def _nodelay(sock: socket.socket | None) -> None:
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class PlantControl:
    """Async client of the control endpoint; one request at a time per client."""

    def __init__(self, host: str, port: int, timeout_s: float = DEFAULT_TIMEOUT_S):
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    @classmethod
    async def connect(
        cls, host: str, port: int, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> PlantControl:
        """Open a connection to the control endpoint at host:port."""
        client = cls(host, port, timeout_s)
        await client.open()
        return client

    @classmethod
    async def from_endpoints(
        cls, endpoints: PlantEndpoints, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> PlantControl:
        return await cls.connect(endpoints.control.host, endpoints.control.port, timeout_s)

    async def open(self) -> None:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self.timeout_s
            )
        except (OSError, TimeoutError) as exc:
            raise ControlError(
                f"cannot reach the control endpoint {self.host}:{self.port}: {exc}"
            ) from exc
        self._reader, self._writer = reader, writer
        _nodelay(writer.get_extra_info("socket"))

    async def request(self, command: str, **params: Any) -> dict[str, Any]:
        """Send one command and return its reply; ControlError when the plant refuses it."""
        if self._writer is None or self._reader is None:
            raise ControlError("not connected: call connect() first")
        async with self._lock:
            self._writer.write(_encode(command, params))
            try:
                async with asyncio.timeout(self.timeout_s):
                    line = await self._reader.readline()
            except TimeoutError:
                raise ControlError(f"{command}: no answer within {self.timeout_s} s") from None
        return _decode(line, command)

    async def ping(self) -> None:
        await self.request("ping")

    async def time(self) -> PlantTime:
        return _time(await self.request("time"))

    async def advance(self, dt_s: float) -> PlantTime:
        """Step the plant by dt_s seconds of plant time; returns the new plant time."""
        return _time(await self.request("advance", dt_s=dt_s))

    async def state(self) -> dict[str, Any]:
        return _field(await self.request("state"), "state")

    async def reset(self) -> PlantTime:
        """A fresh plant from the same configuration (time back to its start, faults cleared)."""
        return _time(await self.request("reset"))

    async def set_fault(self, device: str, **fault: Any) -> dict[str, Any]:
        """E.g. set_fault("meter_A", kind="exception", code=6); returns the fault set."""
        return _field(await self.request("fault", device=device, **fault), "fault")

    async def clear_faults(self, device: str | None = None, kind: str | None = None) -> None:
        params: dict[str, Any] = {"clear": True}
        if device is not None:
            params["device"] = device
        if kind is not None:
            params["kind"] = kind
        await self.request("fault", **params)

    async def faults(self) -> list[dict[str, Any]]:
        return _items(await self.request("faults"), "faults")

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(self._writer.wait_closed(), self.timeout_s)
            self._writer = self._reader = None

    async def __aenter__(self) -> PlantControl:
        if self._writer is None:
            await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class SyncPlantControl:
    """Blocking client of the control endpoint (same methods as PlantControl, no event loop)."""

    def __init__(self, host: str, port: int, timeout_s: float = DEFAULT_TIMEOUT_S):
        try:
            self._sock = socket.create_connection((host, port), timeout=timeout_s)
        except OSError as exc:
            raise ControlError(f"cannot reach the control endpoint {host}:{port}: {exc}") from exc
        _nodelay(self._sock)
        self._file = self._sock.makefile("rb")

    @classmethod
    def from_endpoints(
        cls, endpoints: PlantEndpoints, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> SyncPlantControl:
        return cls(endpoints.control.host, endpoints.control.port, timeout_s)

    def request(self, command: str, **params: Any) -> dict[str, Any]:
        self._sock.sendall(_encode(command, params))
        try:
            line = self._file.readline()
        except TimeoutError:
            raise ControlError(f"{command}: no answer in time") from None
        return _decode(line, command)

    def ping(self) -> None:
        self.request("ping")

    def time(self) -> PlantTime:
        return _time(self.request("time"))

    def advance(self, dt_s: float) -> PlantTime:
        return _time(self.request("advance", dt_s=dt_s))

    def state(self) -> dict[str, Any]:
        return _field(self.request("state"), "state")

    def reset(self) -> PlantTime:
        return _time(self.request("reset"))

    def set_fault(self, device: str, **fault: Any) -> dict[str, Any]:
        return _field(self.request("fault", device=device, **fault), "fault")

    def clear_faults(self, device: str | None = None, kind: str | None = None) -> None:
        params: dict[str, Any] = {"clear": True}
        if device is not None:
            params["device"] = device
        if kind is not None:
            params["kind"] = kind
        self.request("fault", **params)

    def faults(self) -> list[dict[str, Any]]:
        return _items(self.request("faults"), "faults")

    def close(self) -> None:
        self._file.close()
        self._sock.close()

    def __enter__(self) -> SyncPlantControl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
