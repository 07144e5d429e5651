"""One OPC UA Read for the polling loop: asyncua sends it, this module decodes the answer.

asyncua 2.1 decodes a ReadResponse through its generic codec, building a DataValue and a Variant
object per value: about 150 us for the charger's 9 values, every control step. The charger's
answer is always the simple case (scalar values, no diagnostics, no timestamps asked for), so
`decode_read_response` reads that case directly from the bytes into (status code, value) pairs;
anything else in the message (arrays, diagnostics, picoseconds, an unexpected encoding) goes to
asyncua's own decoder, so the result is the same either way.

`read_values` sends the Read with asyncua's protocol (`send_request`: request ids, security,
chunking, the ServiceFault check and the request timeout stay asyncua's) and decodes the answer
here. It leaves out the client's bookkeeping around a request (the observer hook, which nothing
here uses, and the cap of 100 requests in flight; the driver has at most two).
"""

from __future__ import annotations

import struct
from typing import Any

from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.ua.ua_binary import get_string_encoding, struct_from_binary

_READ_RESPONSE_TYPE = struct.pack("<BBH", 1, 0, ua.ObjectIds.ReadResponse_Encoding_DefaultBinary)
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


async def read_values(uaclient: Any, parameters: ua.ReadParameters) -> list[ReadResult]:
    """Send one Read with `parameters` on asyncua's protocol; (status, value) per node."""
    protocol = uaclient.protocol
    if protocol is None:
        raise ConnectionError("Connection is not open")
    request = ua.ReadRequest()
    request.Parameters = parameters
    return decode_read_response(await protocol.send_request(request))


def decode_read_response(body: Any) -> list[ReadResult]:
    """(status code, value) of every result of a ReadResponse body (an asyncua Buffer, or bytes,
    starting at the response's type id). A bad ServiceResult raises asyncua's UaStatusCodeError."""
    data = bytes(body)
    try:
        service_result, results = _decode_simple(data)
    except (_NotSimple, struct.error, IndexError, UnicodeDecodeError):
        response = struct_from_binary(ua.ReadResponse, Buffer(data))
        response.ResponseHeader.ServiceResult.check()
        return [_as_result(value) for value in response.Results]
    if service_result:
        ua.StatusCode(service_result).check()
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
