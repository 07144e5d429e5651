"""One OPC UA Read for the polling loop: asyncua sends it, this module decodes the answer.

asyncua 2.1 decodes a ReadResponse through its generic codec, building a DataValue and a Variant
object per value: about 150 us for the charger's 9 values, every control step. The charger's
answer is always the simple case (scalar values, no diagnostics, no timestamps asked for), so
`decode_read_response` reads that case directly from the bytes into (status code, value) pairs;
anything else in the message (arrays, diagnostics, picoseconds, an unexpected encoding) goes to
asyncua's own decoder, so the result is the same either way.

`read_values` sends the Read with asyncua's protocol and decodes the answer here. It leaves out
the client's bookkeeping around a request (the observer hook, which nothing here uses, and the cap
of 100 requests in flight; the driver has at most two). With the fast paths on
(`labspec.fast_paths`) the request is not encoded anew each time either: asyncua's generic
encoder took ~50 us for the charger's nine string node ids. The parameters (the node ids) are
encoded once with asyncua's encoder, the request header (token, time, handle, timeout hint) is
packed in place, and the body goes through asyncua's secure channel as its own `_send_request`
would send it (request id, sequence number, security, chunking, the pending-request map, the
ServiceFault check stay asyncua's). Tests compare the bytes with asyncua's encoding of the same
request. With the fast paths off, `send_request` does it all and `decode_read_response` leaves
every answer to asyncua's decoder.
"""

from __future__ import annotations

import asyncio
import struct
import time
from typing import Any

from asyncua import ua
from asyncua.common.utils import Buffer, wait_for
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.ua_binary import (
    get_string_encoding,
    nodeid_to_binary,
    struct_from_binary,
    struct_to_binary,
)

from labspec import fast_paths

_READ_RESPONSE_TYPE = struct.pack("<BBH", 1, 0, ObjectIds.ReadResponse_Encoding_DefaultBinary)
_NULL_EXTENSION_OBJECT = b"\x00\x00\x00"  # TwoByte NodeId 0, no body
_VALUE, _STATUS, _SOURCE_TIME, _SERVER_TIME = 0x01, 0x02, 0x04, 0x08
_PICOSECONDS = 0x30
_STRING, _DATETIME = 12, 13
_SCALARS = {  # variant type id -> struct format (asyncua's formats for these types)
    1: struct.Struct("<?"),  # Boolean
    2: struct.Struct("<b"),  # SByte
    3: struct.Struct("<B"),  # Byte
    4: struct.Struct("<h"),  # Int16
    5: struct.Struct("<H"),  # UInt16
    6: struct.Struct("<i"),  # Int32
    7: struct.Struct("<I"),  # UInt32
    8: struct.Struct("<q"),  # Int64
    9: struct.Struct("<Q"),  # UInt64
    10: struct.Struct("<f"),  # Float
    11: struct.Struct("<d"),  # Double
    _DATETIME: struct.Struct("<q"),  # DateTime (100 ns since 1601)
}
_HEADER = struct.Struct("<qII")  # Timestamp, RequestHandle, ServiceResult
_INT32 = struct.Struct("<i")
_UINT32 = struct.Struct("<I")

ReadResult = tuple[int, Any]  # (status code value, value); 0 = Good


class _NotSimple(Exception):
    """The message holds something the fast path leaves to asyncua."""


_READ_REQUEST_TYPE = struct.pack("<BBH", 1, 0, ObjectIds.ReadRequest_Encoding_DefaultBinary)
_REQUEST_TIMES = struct.Struct("<qII")  # Timestamp, RequestHandle, ReturnDiagnostics
_NULL_STRING = b"\xff\xff\xff\xff"  # AuditEntryId
# 100 ns ticks from 1601-01-01 (OPC UA DateTime) to 1970-01-01 (Unix time)
_UNIX_EPOCH_AS_FILETIME = 116_444_736_000_000_000


class EncodedParameters:
    """A ReadParameters and its bytes, encoded once by asyncua's encoder."""

    __slots__ = ("data", "parameters")

    def __init__(self, parameters: ua.ReadParameters) -> None:
        self.parameters = parameters
        self.data = struct_to_binary(parameters)


def encode_read_request(
    token: bytes, timestamp: int, handle: int, timeout_hint_ms: int, parameters: bytes
) -> bytes:
    """A ReadRequest's body (type id first) from its parts: the encoded authentication token,
    the time (OPC UA DateTime ticks), the request handle, the timeout hint and the encoded
    parameters. No diagnostics asked for, no audit entry, no additional header."""
    return b"".join(
        (
            _READ_REQUEST_TYPE,
            token,
            _REQUEST_TIMES.pack(timestamp, handle, 0),
            _NULL_STRING,
            _UINT32.pack(timeout_hint_ms),
            _NULL_EXTENSION_OBJECT,
            parameters,
        )
    )


class ReadSender:
    """Sends the Reads of one driver: the fast path or asyncua's `send_request` (see the module
    docstring); the choice is made when the sender is made (per session)."""

    def __init__(self) -> None:
        self.fast = fast_paths.enabled()
        self._encoded: dict[int, EncodedParameters] = {}
        self._token: tuple[Any, bytes] | None = None

    async def read(self, uaclient: Any, parameters: ua.ReadParameters) -> list[ReadResult]:
        """Send one Read with `parameters` on asyncua's protocol; (status, value) per node."""
        protocol = uaclient.protocol
        if protocol is None:
            raise ConnectionError("Connection is not open")
        if not self.fast:
            request = ua.ReadRequest()
            request.Parameters = parameters
            return decode_read_response(await protocol.send_request(request), fast=False)
        encoded = self._encoded.get(id(parameters))
        if encoded is None or encoded.parameters is not parameters:
            if len(self._encoded) > 16:  # parameters of closed sessions
                self._encoded.clear()
            encoded = self._encoded[id(parameters)] = EncodedParameters(parameters)
        return decode_read_response(await self._send(protocol, encoded.data))

    def _token_bytes(self, token: Any) -> bytes:
        cached = self._token
        if cached is None or cached[0] is not token:
            cached = self._token = (token, nodeid_to_binary(token))
        return cached[1]

    async def _send(self, protocol: Any, parameters: bytes) -> Any:
        """What asyncua's `send_request` does for a request (asyncua 2.1, `UASocketProtocol`),
        with the body built from its encoded parts."""
        timeout = protocol.timeout
        if protocol.pre_request_hook:
            await protocol.pre_request_hook()
        if protocol.transport is None:
            raise ConnectionError("Connection is not open")
        protocol._request_handle += 1
        body = encode_read_request(
            self._token_bytes(protocol.authentication_token),
            time.time_ns() // 100 + _UNIX_EPOCH_AS_FILETIME,
            protocol._request_handle,
            int(timeout * 1000),
            parameters,
        )
        request_id = protocol._request_id + 1
        try:
            protocol.revolve_security_token()
            message = protocol._connection.message_to_binary(
                body, message_type=ua.MessageType.SecureMessage, request_id=request_id
            )
        except Exception:
            protocol._request_handle -= 1
            raise
        protocol._request_id = request_id
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        protocol._callbackmap[request_id] = future
        protocol.transport.write(message)
        data = await wait_for(future, timeout if timeout else None)
        protocol.check_answer(data, " in response to ReadRequest")
        return data


async def read_values(uaclient: Any, parameters: ua.ReadParameters) -> list[ReadResult]:
    """Send one Read with `parameters` on asyncua's protocol; (status, value) per node."""
    return await ReadSender().read(uaclient, parameters)


def decode_read_response(body: Any, *, fast: bool = True) -> list[ReadResult]:
    """(status code, value) of every result of a ReadResponse body (an asyncua Buffer, or bytes,
    starting at the response's type id). A bad ServiceResult raises asyncua's UaStatusCodeError.
    `fast=False`: asyncua's decoder for every answer."""
    data = bytes(body)
    try:
        if not fast:
            raise _NotSimple
        service_result, results = _decode_simple(data)
    except (_NotSimple, struct.error, IndexError, UnicodeDecodeError):
        response = struct_from_binary(ua.ReadResponse, Buffer(data))
        response.ResponseHeader.ServiceResult.check()
        return [_as_result(value) for value in response.Results]
    if service_result:
        ua.StatusCode(ua.UInt32(service_result)).check()
    return results


def _as_result(value: ua.DataValue) -> ReadResult:
    status = value.StatusCode.value if value.StatusCode is not None else 0
    return status, value.Value.Value if value.Value is not None else None


def _decode_simple(data: bytes) -> tuple[int, list[ReadResult]]:
    if data[:4] != _READ_RESPONSE_TYPE:
        raise _NotSimple
    _, _, service_result = _HEADER.unpack_from(data, 4)
    pos = 4 + _HEADER.size
    if data[pos] != 0:  # ServiceDiagnostics present
        raise _NotSimple
    (strings,) = _INT32.unpack_from(data, pos + 1)
    if strings > 0:  # a string table
        raise _NotSimple
    pos += 5
    if data[pos : pos + 3] != _NULL_EXTENSION_OBJECT:  # an additional header
        raise _NotSimple
    pos += 3
    (count,) = _INT32.unpack_from(data, pos)
    pos += 4
    results: list[ReadResult] = []
    for _ in range(max(count, 0)):
        mask = data[pos]
        pos += 1
        if mask & _PICOSECONDS:
            raise _NotSimple
        value = None
        if mask & _VALUE:
            value, pos = _variant(data, pos)
        status = 0
        if mask & _STATUS:
            (status,) = _UINT32.unpack_from(data, pos)
            pos += 4
        if mask & _SOURCE_TIME:
            pos += 8
        if mask & _SERVER_TIME:
            pos += 8
        results.append((status, value))
    if pos > len(data):
        raise _NotSimple
    return service_result, results


def _variant(data: bytes, pos: int) -> tuple[Any, int]:
    """A scalar Variant's value and the position after it."""
    encoding = data[pos]
    pos += 1
    if encoding & 0xC0:  # an array or dimensions
        raise _NotSimple
    if encoding == 0:  # Null
        return None, pos
    if encoding == _STRING:
        (length,) = _INT32.unpack_from(data, pos)
        pos += 4
        if length < 0:
            return None, pos
        if pos + length > len(data):
            raise _NotSimple
        text = data[pos : pos + length].decode(get_string_encoding(), errors="surrogateescape")
        return text, pos + length
    scalar = _SCALARS.get(encoding)
    if scalar is None:
        raise _NotSimple
    (value,) = scalar.unpack_from(data, pos)
    pos += scalar.size
    if encoding == _DATETIME:
        value = ua.win_epoch_to_datetime(value)
    return value, pos
