"""A SunSpec device served over Modbus TCP by pymodbus, behind a `ListenerGate`.

The register image (`SunSpecImage`) is refreshed once per plant advance by `publish`. A read of
holding registers (function 3) within the image, for this device's unit id and with no "exception"
fault, is answered straight from the image's wire bytes (`_ImageReadRequest`, a pymodbus custom
PDU: no register list, no per-register checks, one slice). Everything else takes pymodbus's own
datastore path: its `SimDevice` action copies the image into the served registers on the first
request after a change (a slice copy), checks writes against the writable points, and applies the
Modbus faults ("exception" answers every request with a Modbus exception). Both paths answer the
same registers and the same exceptions.

pymodbus 3.16's request handler schedules every request through `call_soon` and
`run_coroutine_threadsafe` (a self-pipe write and two extra loop wake-ups per request, although it
already runs on the loop). `_RequestHandler` answers a function-3 read from the image at once,
when no earlier request of its connection is still waiting; every other request is scheduled
as a plain task, in order, and answered by pymodbus's own `handle_request`. pymodbus's PDU decoder
formats every decoded request with `str()` for a debug line even when debug logging is off;
`_Decoder` decodes function-3 requests without it (other function codes, and everything while
pymodbus's debug logging is on, go through pymodbus's decoder). A function-3 frame that arrives
alone is answered before pymodbus's framer sees it (`_RequestHandler.data_received`: the same
bytes, tested against pymodbus's own answers). With the fast paths off (`labspec.fast_paths`)
pymodbus's own server answers everything.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.exceptions import ModbusException, ModbusIOException
from pymodbus.logging import Log
from pymodbus.pdu import DecodePDU, ExceptionResponse, ModbusPDU
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadHoldingRegistersResponse,
)
from pymodbus.server import ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.transaction import TransactionManager

from hil_sim.faults import DeviceFaults
from hil_sim.servers.gate import ListenerGate, stream_transport
from hil_sim.servers.sunspec_image import PointSlot, SunSpecImage
from labspec import fast_paths

log = logging.getLogger(__name__)

# Function codes that write holding registers.
_WRITE_FUNCTION_CODES = frozenset({6, 16, 22, 23})


class WriteRefused(ValueError):
    """A client write the device refuses; `code` is the Modbus exception it answers with."""

    def __init__(self, message: str, code: ExcCodes = ExcCodes.ILLEGAL_VALUE):
        super().__init__(message)
        self.code = code


WriteHandler = Callable[[dict[str, float | int | str | None]], None]
_READ_FRAME = struct.Struct(">HHHBBHH")  # MBAP header + function 3, address, count
_ANSWER_HEADER = struct.Struct(">HHHBB")  # MBAP header + function code


class _RequestHandler(ServerRequestHandler):
    """pymodbus's per-connection handler: image reads answered at once, other requests
    scheduled as plain tasks."""

    def __init__(self, *args: Any):
        super().__init__(*args)  # type: ignore[no-untyped-call]  # unannotated in pymodbus
        self._tasks: set[asyncio.Task[None]] = set()
        self._queued = 0  # requests scheduled and not yet answered

    def data_received(self, data: bytes) -> None:
        """A function-3 read arriving alone (one whole frame, nothing of an earlier request still
        buffered or waiting) is answered from the image here: the frame pymodbus would send,
        without its framer, decoder and PDU objects. Anything else goes to pymodbus."""
        if len(data) == _READ_FRAME.size and not self._queued and not self.recv_buffer:
            tid, protocol, length, unit, function, address, count = _READ_FRAME.unpack(data)
            if protocol == 0 and length == 6 and function == 3 and unit and 1 <= count <= 125:
                payload = self.server.read_payload(unit, address, count)
                if payload is not None and self.transport is not None:
                    header = _ANSWER_HEADER.pack(tid, 0, len(payload) + 2, unit, 3)
                    stream_transport(self.transport).write(header + payload)
                    return
        super().data_received(data)

    def callback_data(self, data: bytes, addr: tuple[Any, ...] | None = None) -> int:
        # (pymodbus's own signature: `addr` is the peer's socket address, of any family)
        try:
            used_len = TransactionManager.callback_data(self, data, addr)
        except ModbusIOException as exc:  # as pymodbus's ServerRequestHandler answers it
            response = ExceptionResponse(
                0x00 if exc.fcode is None else exc.fcode,
                exception_code=ExcCodes.ILLEGAL_FUNCTION,
                device_id=exc.dev_id,
                transaction=exc.transaction_id,
            )
            self.server_send(response, addr)  # type: ignore[no-untyped-call]  # unannotated in pymodbus
            return len(data)
        pdu = self.last_pdu
        if pdu is None:
            return used_len
        if not self._queued and isinstance(pdu, _ImageReadRequest):
            answer = pdu.answer(pdu.dev_id)
            if answer is not None:
                self.server_send(answer, self.last_addr)  # type: ignore[no-untyped-call]  # unannotated in pymodbus
                return used_len
        self._queued += 1
        self.loop.call_soon(self.handle_later)
        return used_len

    def handle_later(self) -> None:
        task = self.loop.create_task(self._handle())
        self._tasks.add(task)  # a strong reference until it is done
        task.add_done_callback(self._tasks.discard)

    async def _handle(self) -> None:
        try:
            await self.handle_request()  # type: ignore[no-untyped-call]  # unannotated in pymodbus
        finally:
            self._queued -= 1


_PYMODBUS_LOG = logging.getLogger("pymodbus.logging")  # pymodbus's own logger (Log)


class _Decoder(DecodePDU):
    """pymodbus's server-side PDU decoder; function 3 decoded without the debug-only str()."""

    def decode(self, frame: bytes) -> ModbusPDU | None:
        if not frame or frame[0] != 3 or _PYMODBUS_LOG.isEnabledFor(logging.DEBUG):
            return super().decode(frame)
        pdu_class = self.pdu_table[3][self.pdu_inx]
        try:  # as DecodePDU.decode for a function code without sub-functions
            pdu = pdu_class()
            pdu.decode(frame[1:])
            return pdu
        except (ModbusException, ValueError, IndexError, struct.error) as exc:
            Log.warning("Unable to decode frame {}", exc)
        return None


class _ModbusServer(ModbusTcpServer):
    def __init__(
        self, *args: Any, read_payload: Callable[[int, int, int], bytes | None], **kwargs: Any
    ):
        super().__init__(*args, **kwargs)
        self.read_payload = read_payload  # (unit id, address, count) -> answer payload or None
        decoder = _Decoder(True)
        decoder.pdu_table = self.decoder.pdu_table  # with the custom function-3 request
        self.decoder = decoder

    def callback_new_connection(self) -> _RequestHandler:
        return _RequestHandler(self, self.trace_packet, self.trace_pdu, self.trace_connect)


class _ImageReadResponse(ReadHoldingRegistersResponse):
    """A function-3 answer whose payload (byte count + registers) is already wire bytes."""

    def __init__(self, payload: bytes, dev_id: int, transaction_id: int):
        self.payload = payload
        super().__init__(dev_id=dev_id, transaction_id=transaction_id, count=payload[0] // 2)

    @property  # decoded only when someone looks (logging, traces)
    def registers(self) -> list[int]:
        payload = self.payload
        return [int.from_bytes(payload[i : i + 2], "big") for i in range(1, len(payload), 2)]

    @registers.setter
    def registers(self, value: Sequence[int]) -> None:
        pass  # set (empty) by ModbusPDU.__init__; the payload is the truth

    def encode(self) -> bytes:
        return self.payload


class _ImageReadRequest(ReadHoldingRegistersRequest):
    """Function 3, answered from the image when it can be; pymodbus's path otherwise."""

    device: ClassVar[SunSpecModbusServer]  # set on the per-server subclass

    def answer(self, device_id: int) -> _ImageReadResponse | None:
        """The answer from the image, or None when pymodbus's datastore must give it."""
        if not device_id:  # 0: broadcast (or any device), pymodbus decides
            return None
        payload = self.device.read_payload(device_id, self.address, self.count)
        if payload is None:
            return None
        return _ImageReadResponse(payload, device_id, self.transaction_id)

    async def datastore_update(self, context: ModbusServerContext, device_id: int) -> ModbusPDU:
        response = self.answer(device_id)
        if response is None:
            return await super().datastore_update(context, device_id)
        return response


class SunSpecUnit:
    """One SunSpec device behind a Modbus TCP listener: its image, unit id, writes and faults."""

    def __init__(
        self,
        name: str,
        image: SunSpecImage,
        *,
        unit_id: int = 1,
        faults: DeviceFaults,
        writable: Iterable[str] = (),
        on_write: WriteHandler | None = None,
        published: Sequence[str] = (),
    ):
        self.name = name
        self.image = image
        self.unit_id = unit_id
        self.faults = faults
        self._writable = {image.slot(path).index: image.slot(path) for path in writable}
        self._points = image.writer(published)
        self._on_write = on_write
        self._served_generation = -1
        self.sim_device = SimDevice(
            id=unit_id,
            simdata=[
                SimData(
                    address=image.base_address,
                    values=list(image.registers),  # copied; refreshed by _action
                    datatype=DataType.REGISTERS,
                )
            ],
            action=self._action,
        )

    def publish(self, values: Sequence[float | int | str | None]) -> None:
        """Encode new values of the `published` points (skipped while measurements are frozen)."""
        if not self.faults.frozen:
            self._points.write(values)

    def read_payload(self, address: int, count: int) -> bytes | None:
        """Byte count + registers of a function-3 read answered from the image, or None when
        pymodbus's own path must answer it (outside the image, a fault)."""
        if self.faults.exception_code is not None:
            return None
        image = self.image
        index = address - image.base_address
        if index < 0 or index + count > image.register_count:
            return None
        return bytes((2 * count,)) + image.wire(index, count)

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        if self.faults.exception_code is not None:
            return ExcCodes(self.faults.exception_code)
        image = self.image
        if self._served_generation != image.generation:
            offset = image.base_address - start_address
            served = image.registers
            registers[offset : offset + len(served)] = served
            self._served_generation = image.generation
        if function_code in _WRITE_FUNCTION_CODES and set_values is not None:
            return self._write(address - image.base_address, [int(v) for v in set_values])
        return None

    def _write(self, index: int, values: list[int]) -> ExcCodes | None:
        """Check a write of `values` at register `index`; apply it to the plant or refuse it."""
        end = index + len(values)
        changed: dict[str, float | int | str | None] = {}
        covered = 0
        for slot in self._slots_written(index, end):
            if slot is None:
                return ExcCodes.ILLEGAL_ADDRESS
            if slot.index < index or slot.index + slot.length > end:
                return ExcCodes.ILLEGAL_ADDRESS  # half of a multi-register point
            covered += slot.length
            regs = values[slot.index - index : slot.index - index + slot.length]
            changed[slot.path] = slot.decode(regs)
        if covered != len(values):
            return ExcCodes.ILLEGAL_ADDRESS
        try:
            if self._on_write is not None:
                self._on_write(changed)
        except WriteRefused as exc:
            log.info("%s refused write %s: %s", self.name, changed, exc)
            return exc.code
        except ValueError as exc:  # SetpointRejected from the plant
            log.info("%s refused write %s: %s", self.name, changed, exc)
            return ExcCodes.ILLEGAL_VALUE
        # keep the image in step with what the client wrote until the next refresh
        self.image.write_registers(index, values)
        return None

    def _slots_written(self, start: int, end: int) -> list[PointSlot | None]:
        slots: list[PointSlot | None] = []
        i = start
        while i < end:
            slot = self._writable.get(i)
            if slot is None:
                # a write that starts inside a writable point, or touches a read-only register
                inside = next(
                    (s for s in self._writable.values() if s.index < i < s.index + s.length), None
                )
                slots.append(inside)
                if inside is None:
                    return slots
                i = inside.index + inside.length
                continue
            slots.append(slot)
            i = slot.index + slot.length
        return slots


class SunSpecModbusServer:
    """A Modbus TCP listener (pymodbus server, gate and connection faults) in front of one SunSpec
    device, or of several behind different unit ids, as a Modbus TCP gateway serves them.

    `SunSpecModbusServer(name, image, ...)` serves one device (`image`, `unit_id`, `faults`,
    `publish` are that device's); `SunSpecModbusServer.gateway(name, units, ...)` serves several,
    and `faults` are then the gateway's own (refuse, drop, delay act on the shared connection).
    """

    def __init__(
        self,
        name: str,
        image: SunSpecImage,
        *,
        host: str,
        port: int = 0,
        unit_id: int = 1,
        faults: DeviceFaults,
        writable: Iterable[str] = (),
        on_write: WriteHandler | None = None,
        published: Sequence[str] = (),
    ):
        unit = SunSpecUnit(
            name, image, unit_id=unit_id, faults=faults, writable=writable, on_write=on_write,
            published=published,
        )  # fmt: skip
        self._setup(name, [unit], host, port, faults)

    @classmethod
    def gateway(
        cls, name: str, units: Sequence[SunSpecUnit], *, host: str, port: int = 0,
        faults: DeviceFaults,
    ) -> SunSpecModbusServer:  # fmt: skip
        """One listener for several devices, told apart by their unit ids."""
        server = cls.__new__(cls)
        server._setup(name, list(units), host, port, faults)
        return server

    def _setup(
        self, name: str, units: list[SunSpecUnit], host: str, port: int, faults: DeviceFaults
    ) -> None:
        ids = [unit.unit_id for unit in units]
        if len(set(ids)) != len(ids):
            raise ValueError(f"{name}: two devices with one unit id ({ids})")
        self.name = name
        self.units = {unit.unit_id: unit for unit in units}
        self.faults = faults
        first = units[0]
        self.image = first.image
        self.unit_id = first.unit_id
        self._host = host
        self._port = port
        self._server: ModbusTcpServer | None = None
        self.gate: ListenerGate | None = None
        self._read_request = type("ImageReadRequest", (_ImageReadRequest,), {"device": self})

    @property
    def port(self) -> int:
        return self.gate.port if self.gate is not None else self._port

    async def start(self) -> int:
        """Listen (pymodbus handles the protocol, the gate owns the socket); returns the port.
        With the fast paths off (`labspec.fast_paths`) pymodbus's own server answers all."""
        devices = [unit.sim_device for unit in self.units.values()]
        served = devices if len(devices) > 1 else devices[0]
        if fast_paths.enabled():
            self._server = _ModbusServer(
                served,
                address=(self._host, self._port),
                custom_pdu=[self._read_request],
                read_payload=self.read_payload,
            )
        else:
            self._server = ModbusTcpServer(served, address=(self._host, self._port))
        self.gate = ListenerGate(
            self.name, self._server.handle_new_connection, self._host, self._port, self.faults
        )
        return await self.gate.open()

    async def stop(self) -> None:
        if self.gate is not None:
            await self.gate.close()
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[no-untyped-call]  # unannotated in pymodbus

    def publish(self, values: Sequence[float | int | str | None]) -> None:
        """Encode new values of the (first) device's `published` points."""
        next(iter(self.units.values())).publish(values)

    def forget_cache(self) -> None:
        for unit in self.units.values():
            unit.image.forget_cache()

    # -- request path ---------------------------------------------------------------------------
    def read_payload(self, unit_id: int, address: int, count: int) -> bytes | None:
        """Byte count + registers of a function-3 read answered from the image, or None when
        pymodbus's own path must answer it (another unit id, outside the image, a fault)."""
        unit = self.units.get(unit_id)
        if unit is None:
            return None
        return unit.read_payload(address, count)
