"""The EV charger's Read answer decoded from the bytes gives what asyncua's own decoder gives,
for every kind of value a server may put in it (and asyncua's decoder takes the unusual cases)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import pytest
from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.ua.ua_binary import nodeid_to_binary, struct_from_binary, struct_to_binary

from instruments import opcua_read
from instruments.opcua_read import EncodedParameters, decode_read_response, encode_read_request
from labspec import fast_paths

V = ua.VariantType
WHEN = datetime(2026, 3, 1, 12, 30, 15, 250000, tzinfo=UTC)


def data_value(value=None, vtype=None, **fields) -> ua.DataValue:
    variant = None if vtype is None else ua.Variant(value, vtype)
    return ua.DataValue(variant, **fields)


SCALARS = [
    data_value(62.5, V.Double),
    data_value(-1.25, V.Float),
    data_value(True, V.Boolean),
    data_value(False, V.Boolean),
    data_value("Charging", V.String),
    data_value("", V.String),
    data_value(None, V.String),
    data_value("Ladung läuft ⚡", V.String),
    data_value(WHEN, V.DateTime),
    data_value(datetime(1601, 1, 1, tzinfo=UTC), V.DateTime),  # OPC UA's null date
    data_value(-7, V.SByte),
    data_value(200, V.Byte),
    data_value(-300, V.Int16),
    data_value(60000, V.UInt16),
    data_value(-70000, V.Int32),
    data_value(4_000_000_000, V.UInt32),
    data_value(-(2**40), V.Int64),
    data_value(2**63 + 5, V.UInt64),
    data_value(None, V.Null),
    data_value(),  # no value at all
    data_value(StatusCode=ua.StatusCode(ua.StatusCodes.BadNodeIdUnknown)),
    data_value(1.0, V.Double, StatusCode=ua.StatusCode(ua.StatusCodes.UncertainLastUsableValue)),
    data_value(2.0, V.Double, SourceTimestamp=WHEN, ServerTimestamp=WHEN),
    data_value(3.0, V.Double, ServerTimestamp=WHEN),
]
UNUSUAL = [  # left to asyncua's decoder
    data_value([1.0, 2.0], V.Double),
    data_value(4.0, V.Double, SourceTimestamp=WHEN, SourcePicoseconds=5),
    data_value(ua.QualifiedName("x", 1), V.QualifiedName),
    data_value(ua.NodeId(5, 2), V.NodeId),
]


def encoded(results: list[ua.DataValue], **header) -> bytes:
    response = ua.ReadResponse()
    response.Results = results
    for name, value in header.items():
        setattr(response.ResponseHeader, name, value)
    return struct_to_binary(response)


def asyncua_decoded(body: bytes) -> list[tuple[int, object]]:
    response = struct_from_binary(ua.ReadResponse, Buffer(body))
    return [
        (
            dv.StatusCode.value if dv.StatusCode is not None else 0,
            dv.Value.Value if dv.Value is not None else None,
        )
        for dv in response.Results
    ]


@pytest.mark.parametrize("results", [SCALARS, UNUSUAL, SCALARS[:3] + UNUSUAL[:1] + SCALARS[3:]])
def test_every_value_is_what_asyncua_decodes(results):
    body = encoded(results)
    decoded = decode_read_response(Buffer(body))
    assert decoded == asyncua_decoded(body)
    assert len(decoded) == len(results)


def test_values_keep_their_python_types():
    decoded = decode_read_response(encoded(SCALARS[:5] + SCALARS[8:9]))
    assert [type(value) for _, value in decoded] == [float, float, bool, bool, str, datetime]
    assert decoded[0] == (0, 62.5) and decoded[4] == (0, "Charging")
    assert decoded[5][1] == WHEN


def test_a_header_with_diagnostics_or_a_string_table_is_still_read():
    body = encoded(
        SCALARS[:4],
        ServiceDiagnostics=ua.DiagnosticInfo(SymbolicId=3),
        StringTable=["a", "b"],
    )
    assert decode_read_response(body) == asyncua_decoded(body)


def test_a_refused_read_raises_the_servers_status():
    body = encoded([], ServiceResult=ua.StatusCode(ua.StatusCodes.BadTooManyOperations))
    with pytest.raises(ua.UaStatusCodeError) as raised:
        decode_read_response(body)
    assert type(raised.value).__name__ == "BadTooManyOperations"


def test_the_usual_answer_is_read_from_the_bytes(monkeypatch):
    """The comparisons above test the byte-level path, not asyncua's decoder behind it."""
    import instruments.opcua_read as opcua_read

    def generic_decoder(*args):
        raise AssertionError("asyncua's generic decoder was used")

    monkeypatch.setattr(opcua_read, "struct_from_binary", generic_decoder)
    body = encoded(SCALARS)
    assert decode_read_response(body) == asyncua_decoded(body)
    with pytest.raises(AssertionError):
        decode_read_response(encoded(UNUSUAL[:1]))


TOKENS = [
    ua.NodeId(),  # no session token (TwoByte 0)
    ua.NodeId(12345, 0),
    ua.NodeId(7, 3),
    ua.NodeId(2**31, 1),
    ua.NodeId("session-token", 2),
    ua.NodeId(b"\x01\x02\xff", 1, ua.NodeIdType.ByteString),
    ua.NodeId(uuid.UUID("12345678-1234-5678-1234-567812345678"), 1, ua.NodeIdType.Guid),
]


@pytest.mark.parametrize("token", TOKENS, ids=str)
@pytest.mark.parametrize(
    "node_ids",
    [
        [ua.NodeId("EVCharger.PowerKw", 2), ua.NodeId("EVCharger.SocPct", 2)],
        [ua.NodeId(2258, 0)],
        [ua.NodeId(f"EVCharger.Var{i}", 4) for i in range(18)],
    ],
)
def test_a_read_request_is_encoded_as_asyncua_encodes_it(token, node_ids):
    parameters = ua.ReadParameters(
        MaxAge=0,
        TimestampsToReturn=ua.TimestampsToReturn.Neither,
        NodesToRead=[ua.ReadValueId(NodeId=n, AttributeId=ua.AttributeIds.Value) for n in node_ids],
    )
    request = ua.ReadRequest(Parameters=parameters)
    request.RequestHeader.AuthenticationToken = token
    request.RequestHeader.Timestamp = WHEN
    request.RequestHeader.RequestHandle = 4_000_000_123
    request.RequestHeader.TimeoutHint = 2000
    fast = encode_read_request(
        nodeid_to_binary(token),
        ua.datetime_to_win_epoch(WHEN),
        4_000_000_123,
        2000,
        EncodedParameters(parameters).data,
    )
    assert fast == struct_to_binary(request)
    assert struct_from_binary(ua.ReadRequest, Buffer(fast)) == request


def test_the_request_time_is_opc_ua_time_now():
    """The fast path stamps requests with the time as asyncua would (100 ns since 1601)."""
    before = ua.datetime_to_win_epoch(datetime.now(UTC))
    ticks = time.time_ns() // 100 + opcua_read._UNIX_EPOCH_AS_FILETIME
    after = ua.datetime_to_win_epoch(datetime.now(UTC))
    assert before - 10 <= ticks <= after + 10


@pytest.mark.parametrize("value", ["", "1", "on", "TRUE", "yes", "0", "off", "False", "no"])
def test_the_fast_paths_switch_reads_the_usual_spellings(monkeypatch, value):
    monkeypatch.setenv(fast_paths.ENV_VAR, value)
    assert fast_paths.enabled() is (value.lower() in ("", "1", "on", "true", "yes"))


def test_a_misspelt_switch_names_the_variable_and_the_choices(monkeypatch):
    monkeypatch.setenv(fast_paths.ENV_VAR, "fast")
    with pytest.raises(ValueError, match="TESTBED_FAST_PATHS = 'fast': expected 1/on"):
        fast_paths.enabled()
