"""A quicker asyncua 2.1 server path for the Read and Write services the EV charger answers.

asyncua's `UaProcessor._process_message` compares each request's type id with a chain of freshly
built `NodeId`s (Read is about the tenth), decodes the whole `ReadParameters` structure field by
field and serializes every `DataValue` of the answer, on every request. The charger's client asks
for the same variables each control step, and most of their values do not change between steps.
`FastUaProcessor` (installed per connection by `FastOpcUaProtocol`) therefore:

- recognises Read and Write first, with the same session, activation and permission checks;
- decodes a Read's parameters once per distinct request body (a small cache of decoded
  `ReadParameters`, which the read service only reads);
- keeps the wire bytes of each `DataValue` it has served, keyed by the object (asyncua replaces a
  variable's `DataValue` on every write, it never changes one in place), and builds the answer
  from them: the same bytes asyncua would send (a test compares them).

Values still come from asyncua's own read service (`InternalSession.read`: callbacks, value
callbacks, attribute checks); every other service takes asyncua's path unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.server.binary_server_asyncio import BinaryServer, OPCUAProtocol
from asyncua.server.internal_session import InternalSession
from asyncua.server.uaprocessor import UaProcessor
from asyncua.ua.ua_binary import (
    Primitives,
    nodeid_to_binary,
    struct_from_binary,
    struct_to_binary,
)

from hil_sim.servers.opcua_values import ua_node_id

# asyncua's own logger, so its "Read request" / "Write request" lines stay where they were
_logger = logging.getLogger("asyncua.server.uaprocessor")

_READ_REQUEST = ua_node_id(ua.ObjectIds.ReadRequest_Encoding_DefaultBinary)
_WRITE_REQUEST = ua_node_id(ua.ObjectIds.WriteRequest_Encoding_DefaultBinary)
_READ_RESPONSE_TYPE_ID = nodeid_to_binary(ua.ReadResponse().TypeId)
_NO_DIAGNOSTICS = Primitives.Int32.pack(0)  # DiagnosticInfos: an empty list
_MAX_PARAMS_CACHED = 32
_MAX_VALUES_CACHED = 512


def _header_tail() -> bytes:
    """Bytes of a default ResponseHeader after its Timestamp and RequestHandle (status Good, no
    diagnostics, no string table, no additional header)."""
    header = ua.ResponseHeader(Timestamp=datetime(2000, 1, 1, tzinfo=UTC), RequestHandle=0)
    head = Primitives.DateTime.pack(header.Timestamp) + Primitives.UInt32.pack(0)
    data = struct_to_binary(header)
    if not data.startswith(head):  # not the layout this module was written for
        raise RuntimeError("asyncua's ResponseHeader encoding changed")
    return data[len(head) :]


_RESPONSE_HEADER_TAIL = _header_tail()


def read_response_bytes(
    request_handle: int, results: list[bytes], timestamp: datetime | None = None
) -> bytes:
    """A ReadResponse body (type id, header, results, no diagnostics) from encoded DataValues."""
    return b"".join(
        (
            _READ_RESPONSE_TYPE_ID,
            Primitives.DateTime.pack(timestamp or datetime.now(UTC)),
            Primitives.UInt32.pack(request_handle),
            _RESPONSE_HEADER_TAIL,
            Primitives.Int32.pack(len(results)),
            *results,
            _NO_DIAGNOSTICS,
        )
    )


class FastUaProcessor(UaProcessor):
    """`UaProcessor` with Read and Write recognised first and Read answers built from cached
    encodings (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._read_params: dict[bytes, ua.ReadParameters] = {}
        self._encoded: dict[int, tuple[ua.DataValue, bytes]] = {}

    async def _process_message(
        self,
        typeid: ua.NodeId,
        requesthdr: ua.RequestHeader,
        seqhdr: ua.SequenceHeader,
        body: Buffer,
    ) -> bool:
        is_read = typeid == _READ_REQUEST
        session = (
            self._served_session(typeid, body) if is_read or typeid == _WRITE_REQUEST else None
        )
        if session is None:
            handled: bool = await super()._process_message(typeid, requesthdr, seqhdr, body)  # type: ignore[no-untyped-call]  # unannotated in asyncua
            return handled
        user = session.user
        self.session_last_activity = time.monotonic()
        session.touch()
        if is_read:
            _logger.info("Read request (%s)", user)
            results = await session.read(self._decode_read(body))
            data = read_response_bytes(
                requesthdr.RequestHandle, [self._encode(value) for value in results]
            )
            # (the default message type: a secure message)
            self._transport.write(
                self._connection.message_to_binary(data, request_id=seqhdr.RequestId)
            )
        else:
            _logger.info("Write request (%s)", user)
            params = struct_from_binary(ua.WriteParameters, body)
            response = ua.WriteResponse()
            response.Results = await session.write(params)
            self.send_response(requesthdr.RequestHandle, seqhdr, response)  # type: ignore[no-untyped-call]  # unannotated in asyncua
        return True

    def _served_session(self, typeid: ua.NodeId, body: Buffer) -> InternalSession | None:
        """The session, when it is activated and its user may call the service: else None, and
        asyncua's own path answers (with its own faults)."""
        session = self.session
        if session is None or not session.is_activated():
            return None
        permissions = self._connection.security_policy.permissions
        if permissions is None or permissions.check_validity(session.user, typeid, body):
            return session
        return None

    def _decode_read(self, body: Buffer) -> ua.ReadParameters:
        key = bytes(body)
        params = self._read_params.get(key)
        if params is None:
            params = struct_from_binary(ua.ReadParameters, body)
            if len(self._read_params) >= _MAX_PARAMS_CACHED:
                self._read_params.clear()
            self._read_params[key] = params
        return params

    def _encode(self, value: ua.DataValue) -> bytes:
        cached = self._encoded.get(id(value))
        if cached is not None and cached[0] is value:
            return cached[1]
        data = struct_to_binary(value)
        if len(self._encoded) >= _MAX_VALUES_CACHED:
            self._encoded.clear()
        self._encoded[id(value)] = (value, data)  # holds the object: its id is not reused
        return data


class FastOpcUaProtocol(OPCUAProtocol):
    """asyncua's connection protocol with a `FastUaProcessor`."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self.processor is not None:  # None when asyncua refused the connection
            self.processor = FastUaProcessor(self.iserver, self.transport, self.limits)
            self.processor.set_policies(self.policies)  # type: ignore[no-untyped-call]  # unannotated in asyncua


def fast_protocol_factory(binary: BinaryServer) -> Callable[[], FastOpcUaProtocol]:
    """A protocol factory for asyncua's `BinaryServer`, like its own `_make_protocol`."""

    def make() -> FastOpcUaProtocol:
        return FastOpcUaProtocol(
            iserver=binary.iserver,
            policies=binary._policies,
            clients=binary.clients,
            closing_tasks=binary.closing_tasks,
            limits=binary.limits,
        )

    return make
