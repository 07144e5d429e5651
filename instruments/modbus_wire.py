"""A lean Modbus TCP client connection: frames built and parsed in place (a fast path).

pymodbus's client spends more Python on a register read than the read itself needs: a lock, a
future with `wait_for`, the framer, the decoder's class lookup, a PDU object and its debug
formatting, per request; a control step makes five of them. `ModbusWire` is an asyncio protocol
that sends the few PDUs the drivers use (functions 3, 16 and 23) with their MBAP header and hands
back the answer's PDU bytes, matched to its request by transaction id whatever unit id the device
answers with (Modbus TCP implementation guide V1.0b, 4.4.2; like `instruments.modbus_framer`).
The encoders and the parsers below are tested frame for frame against pymodbus's own codec;
with the fast paths off (`labspec.fast_paths`) the session uses pymodbus's client instead.

One request is in flight at a time per connection (the drivers await each answer); an answer
to a request that gave up waiting (timed out) is dropped when it comes. A frame that breaks the
MBAP framing (protocol id not 0, a length outside 2-254) closes the connection: the stream can
no longer be trusted; the link reconnects.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Sequence

_MBAP = struct.Struct(">HHHB")  # transaction id, protocol id (0), length, unit id
_READ = struct.Struct(">BHH")  # function 3, address, count
_WRITE = struct.Struct(">BHHB")  # function 16, address, count, byte count
_READ_WRITE = struct.Struct(">BHHHHB")  # function 23: read address, count, write address, count
READ_HOLDING_REGISTERS = 3
WRITE_MULTIPLE_REGISTERS = 16
READ_WRITE_MULTIPLE_REGISTERS = 23
MAX_READ_REGISTERS = 125
MAX_WRITE_REGISTERS = 123
MAX_READ_WRITE_WRITE_REGISTERS = 121


class ModbusExceptionResponse(Exception):
    """The device answered with a Modbus exception (function code + 0x80, exception code)."""

    def __init__(self, function: int, code: int) -> None:
        super().__init__(f"function {function} exception code {code}")
        self.function = function
        self.code = code


class MalformedResponse(Exception):
    """An answer that is not the answer to the request (wrong function, short or odd data)."""


def encode_read(address: int, count: int) -> bytes:
    """The PDU of a function 3 request (read holding registers)."""
    if not 1 <= count <= MAX_READ_REGISTERS or not 0 <= address <= 0xFFFF:
        raise ValueError(f"read of {count} registers at {address}: 1-125 registers at 0-65535")
    return _READ.pack(READ_HOLDING_REGISTERS, address, count)


def encode_write(address: int, values: Sequence[int]) -> bytes:
    """The PDU of a function 16 request (write multiple registers)."""
    count = len(values)
    if not 1 <= count <= MAX_WRITE_REGISTERS or not 0 <= address <= 0xFFFF:
        raise ValueError(f"write of {count} registers at {address}: 1-123 registers at 0-65535")
    return _WRITE.pack(WRITE_MULTIPLE_REGISTERS, address, count, 2 * count) + struct.pack(
        f">{count}H", *values
    )


def encode_read_write(
    write_address: int, values: Sequence[int], read_address: int, read_count: int
) -> bytes:
    """The PDU of a function 23 request (write `values`, then read `read_count` registers)."""
    count = len(values)
    if not 1 <= count <= MAX_READ_WRITE_WRITE_REGISTERS or not 1 <= read_count <= 125:
        raise ValueError(
            f"function 23 writing {count} and reading {read_count} registers: "
            "1-121 written, 1-125 read"
        )
    head = _READ_WRITE.pack(
        READ_WRITE_MULTIPLE_REGISTERS, read_address, read_count, write_address, count, 2 * count
    )
    return head + struct.pack(f">{count}H", *values)


def _check_function(pdu: bytes, function: int) -> None:
    if not pdu:
        raise MalformedResponse("an empty answer")
    if pdu[0] == function:
        return
    if pdu[0] == function | 0x80 and len(pdu) >= 2:
        raise ModbusExceptionResponse(function, pdu[1])
    raise MalformedResponse(f"function {pdu[0]} answered to function {function}")


def parse_registers(pdu: bytes, function: int, count: int) -> bytes:
    """The `count` registers' bytes of a function 3 or 23 answer; ModbusExceptionResponse for
    an exception, MalformedResponse for fewer registers than asked or a broken byte count."""
    _check_function(pdu, function)
    if len(pdu) < 2:
        raise MalformedResponse("no byte count")
    byte_count = pdu[1]
    if byte_count + 2 > len(pdu):
        raise MalformedResponse(f"byte count {byte_count} > {len(pdu) - 2} bytes of data")
    if byte_count < 2 * count:
        raise MalformedResponse(f"got {byte_count // 2} registers")
    return pdu[2 : 2 + 2 * count]


def parse_write(pdu: bytes, address: int, count: int) -> None:
    """Check a function 16 answer echoes the request's address and count."""
    _check_function(pdu, WRITE_MULTIPLE_REGISTERS)
    if len(pdu) < 5:
        raise MalformedResponse("a short write answer")
    echoed = struct.unpack_from(">HH", pdu, 1)
    if echoed != (address, count):
        raise MalformedResponse(f"write answer for {echoed[1]} at {echoed[0]}")


class ModbusWire(asyncio.Protocol):
    """One Modbus TCP client connection; see the module docstring."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._pending: dict[int, asyncio.Future[bytes]] = {}
        self._next_tid = 0
        self.answered_unit_ids: set[int] = set()

    @classmethod
    async def open(cls, host: str, port: int) -> ModbusWire:
        """Connect (OSError if the device refuses or cannot be reached)."""
        loop = asyncio.get_running_loop()
        transport, wire = await loop.create_connection(cls, host, port)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return wire

    @property
    def connected(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # a stream transport (uvloop's too)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        error = ConnectionResetError("connection closed by the device")
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()

    def close(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()
        self.connection_lost(None)

    async def exchange(self, unit_id: int, pdu: bytes) -> bytes:
        """Send one request PDU to `unit_id` and return the answer's PDU (function code first).
        No timeout here: the caller (the session's link) bounds the wait."""
        transport = self._transport
        if transport is None:
            raise ConnectionResetError("connection closed")
        tid = self._next_tid = (self._next_tid % 0xFFFF) + 1
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[tid] = future
        transport.write(_MBAP.pack(tid, 0, len(pdu) + 1, unit_id) + pdu)
        try:
            return await future
        finally:
            self._pending.pop(tid, None)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        end = 0
        size = len(buffer)
        while size - end >= 8:
            tid, protocol, length, unit = _MBAP.unpack_from(buffer, end)
            if protocol != 0 or not 2 <= length <= 254:
                self._buffer = b""
                self._broken(f"MBAP header with protocol {protocol} and length {length}")
                return
            stop = end + 6 + length
            if stop > size:
                break
            future = self._pending.get(tid)
            if future is not None and not future.done():
                self.answered_unit_ids.add(unit)
                future.set_result(buffer[end + 7 : stop])
            end = stop  # an answer nobody waits for (late, after a timeout) is dropped
        self._buffer = buffer[end:] if end < size else b""

    def _broken(self, reason: str) -> None:
        error = ConnectionResetError(f"Modbus TCP framing lost: {reason}")
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        if self._transport is not None:
            self._transport.close()
