"""The simulation-control endpoint: one JSON object per line in, one reply per line out.

Commands (`"cmd"`; an optional `"id"` is echoed in the reply):
- `ping` -> `{"ok": true}`
- `time` -> `{"ok": true, "time": "<ISO UTC>", "elapsed_s": <s since start>}`
- `advance` `{"dt_s": 1.0}` -> steps the plant, refreshes every server, replies like `time`
- `state` -> `{"ok": true, "state": {...}}` (the plant's whole truth)
- `fault` `{"device": "inverter", "kind": "delay", "delay_ms": 200}` -> sets a fault;
  `{"device": ..., "clear": true[, "kind": ...]}` clears one kind or all of a device's faults
  (without `device`, of every device)
- `faults` -> `{"ok": true, "faults": [{"device": ..., "kind": ..., ...}]}`
- `reset` -> a fresh plant from the same configuration (time back to its start, faults cleared);
  the servers and their connections stay up; replies like `time`
- `endpoints` -> `{"ok": true, "endpoints": {...}}`
Errors answer `{"ok": false, "error": "<what was wrong>"}`; the plant keeps running.

The connection that advanced the plant last is its lockstep controller. When that connection
closes (the controller stopped, or was killed: the kernel closes its sockets) the server calls
`on_controller_gone`, and the plant runs its devices' watchdogs on wall time until a controller
speaks again.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from hil_sim.servers.gate import ListenerGate, stream_transport

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 65536

_encode = json.JSONEncoder(separators=(",", ":")).encode  # built once, not per reply
_MAX_REQUESTS_CACHED = 64
_SCALARS = (str, int, float, bool, type(None))

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
Json = dict[str, Any] | list[Any] | str | float | None  # a decoded JSON document


class CommandError(ValueError):
    """A request the endpoint cannot carry out; its message goes back as the error."""


class _ControlProtocol(asyncio.Protocol):
    """Lines in order: each is handled to completion before the next one starts."""

    def __init__(self, handler: Handler, server: ControlServer | None = None):
        self._handler = handler
        self._server = server
        # request lines seen before (a lockstep clock sends the same advance line every step):
        # their decoded objects, when every value is a scalar (each use gets its own copy)
        self._decoded: dict[bytes, dict[str, Any]] = {}
        self._buffer = b""
        self._lines: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._transport: asyncio.Transport | None = None
        self._worker: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = stream_transport(transport)
        self._worker = asyncio.get_running_loop().create_task(self._work())

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if b"\n" not in self._buffer:
            if len(self._buffer) > MAX_LINE_BYTES:
                self._reply({"ok": False, "error": f"line longer than {MAX_LINE_BYTES} bytes"})
                self._buffer = b""
            return
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            if line.strip():
                self._lines.put_nowait(line)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._lines.put_nowait(None)
        server = self._server
        if server is not None and server.controller is self:
            server.controller = None
            if server.on_controller_gone is not None:
                server.on_controller_gone()

    async def _work(self) -> None:
        while (line := await self._lines.get()) is not None:
            self._reply(await self._answer(line))

    def _decode(self, line: bytes) -> Json:
        known = self._decoded.get(line)
        if known is not None:
            return dict(known)
        request: Json = json.loads(line)
        if isinstance(request, dict) and all(isinstance(v, _SCALARS) for v in request.values()):
            if len(self._decoded) >= _MAX_REQUESTS_CACHED:
                self._decoded.clear()
            self._decoded[line] = dict(request)
        return request

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = self._decode(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return {"ok": False, "error": f"not a JSON object: {exc}"}
        if not isinstance(request, dict):
            return {"ok": False, "error": "a request must be a JSON object"}
        request_id = request.get("id")
        try:
            reply = await self._handler(request)
        except (CommandError, ValueError, KeyError, TypeError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            reply = {"ok": False, "error": str(message)}
        except Exception as exc:  # the plant keeps running whatever a request does
            log.exception("control request %r failed", request)
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        if request_id is not None:
            reply["id"] = request_id
        if self._server is not None and request.get("cmd") == "advance" and reply.get("ok"):
            self._server.controller = self
        return reply

    def _reply(self, reply: dict[str, Any]) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(_encode(reply).encode() + b"\n")


class ControlServer:
    """The control endpoint's listener (no faults: it is the test harness's own line)."""

    def __init__(
        self,
        handler: Handler,
        *,
        host: str,
        port: int = 0,
        on_controller_gone: Callable[[], None] | None = None,
    ):
        self.controller: _ControlProtocol | None = None  # the connection that advanced last
        self.on_controller_gone = on_controller_gone
        self.gate = ListenerGate("control", lambda: _ControlProtocol(handler, self), host, port)

    @property
    def port(self) -> int:
        return self.gate.port

    async def start(self) -> int:
        return await self.gate.open()

    async def stop(self) -> None:
        await self.gate.close()
