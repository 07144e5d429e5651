"""A TCP listener that owns the sockets in front of a protocol server, for fault injection.

Every protocol server (pymodbus, asyncua, the SCPI and control servers) hands its asyncio protocol
factory to a `ListenerGate`. The gate binds the port, sets TCP_NODELAY on every accepted socket,
tracks the open connections, and implements the connection-level faults for all protocols alike:
- refusing: the listening socket is closed (clients get "connection refused") and reopened on the
  same port when the fault clears;
- dropping: every open connection is closed;
- delaying: bytes received are handed to the protocol `delay_s` later, in order, so every answer
  comes that much later.
"""

from __future__ import annotations

import asyncio
import collections
import socket
from collections.abc import Callable
from typing import Protocol, cast

from hil_sim.faults import DeviceFaults


class StreamProtocol(Protocol):
    """What a server's per-connection object answers to (asyncio's stream protocol events)."""

    def connection_made(self, transport: asyncio.BaseTransport, /) -> None: ...
    def data_received(self, data: bytes, /) -> None: ...
    def connection_lost(self, exc: Exception | None, /) -> None: ...
    def pause_writing(self) -> None: ...
    def resume_writing(self) -> None: ...


ProtocolFactory = Callable[[], StreamProtocol]


def stream_transport(transport: asyncio.BaseTransport) -> asyncio.Transport:
    """The transport a TCP server's protocol is handed: a stream transport (read and write).
    Only declared so: uvloop's TCPTransport has the interface without subclassing asyncio's."""
    return cast(asyncio.Transport, transport)


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Switch Nagle's algorithm off on a TCP transport (small request/answer exchanges)."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _GatedProtocol(asyncio.Protocol):
    """Sits between asyncio and the server's own protocol object; forwards every event."""

    def __init__(self, gate: ListenerGate, inner: StreamProtocol):
        self._gate = gate
        self._inner = inner
        self._transport: asyncio.Transport | None = None
        self._held: collections.deque[tuple[float, bytes]] = collections.deque()
        self._release_handle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream = stream_transport(transport)
        set_nodelay(stream)
        if self._gate.faults is not None and self._gate.faults.refusing:
            stream.abort()  # accepted in the instant the listener was closing
            return
        self._transport = stream
        self._gate.connections.add(stream)
        self._inner.connection_made(stream)

    def data_received(self, data: bytes) -> None:
        faults = self._gate.faults
        delay_s = faults.delay_s if faults is not None else 0.0
        if delay_s <= 0.0 and not self._held:
            self._inner.data_received(data)
            return
        loop = asyncio.get_running_loop()
        self._held.append((loop.time() + delay_s, data))
        if self._release_handle is None:
            self._release_handle = loop.call_at(self._held[0][0], self._release)

    def _release(self) -> None:
        self._release_handle = None
        loop = asyncio.get_running_loop()
        while self._held and self._held[0][0] <= loop.time():
            _, data = self._held.popleft()
            if self._transport is None or self._transport.is_closing():
                self._held.clear()
                return
            self._inner.data_received(data)
        if self._held:
            self._release_handle = loop.call_at(self._held[0][0], self._release)

    def eof_received(self) -> bool | None:
        handler = getattr(self._inner, "eof_received", None)
        return handler() if handler is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._release_handle is not None:
            self._release_handle.cancel()
            self._release_handle = None
        self._held.clear()
        if self._transport is None:
            return
        self._gate.connections.discard(self._transport)
        self._transport = None
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class ListenerGate:
    """Listens on host:port for one device and applies that device's connection faults."""

    def __init__(
        self,
        name: str,
        factory: ProtocolFactory,
        host: str,
        port: int,
        faults: DeviceFaults | None = None,
    ):
        self.name = name
        self.host = host
        self.port = port  # 0 until opened, then the bound port
        self.faults = faults
        self.connections: set[asyncio.Transport] = set()
        self._factory = factory
        self._server: asyncio.base_events.Server | None = None
        if faults is not None:
            faults.subscribe(self._apply_faults)

    @property
    def listening(self) -> bool:
        return self._server is not None

    async def open(self) -> int:
        """Bind and listen (port 0 picks a free port, kept for reopening); returns the port."""
        if self._server is None:
            sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((self.host, self.port))
                sock.listen(128)
                sock.setblocking(False)
            except OSError as exc:
                sock.close()
                raise OSError(
                    f"{self.name}: cannot listen on {self.host}:{self.port}: {exc}"
                ) from exc
            self.port = sock.getsockname()[1]
            loop = asyncio.get_running_loop()
            self._server = await loop.create_server(self._make_protocol, sock=sock)
        return self.port

    def _make_protocol(self) -> asyncio.Protocol:
        return _GatedProtocol(self, self._factory())

    def close_listener(self) -> None:
        """Stop accepting: new connection attempts are refused; open connections stay."""
        if self._server is not None:
            self._server.close()
            self._server = None

    def drop_connections(self) -> None:
        """Close every open connection."""
        for transport in list(self.connections):
            transport.abort()
        self.connections.clear()

    async def close(self) -> None:
        """Stop listening and close every connection."""
        server = self._server
        self.close_listener()
        self.drop_connections()
        if server is not None:
            await server.wait_closed()

    async def _apply_faults(self, faults: DeviceFaults) -> None:
        if faults.dropping:
            self.drop_connections()
        if faults.refusing:
            self.close_listener()
        elif not self.listening:
            await self.open()
