"""A Modbus TCP session to one SunSpec device (pymodbus 3.16 async client) under a `Link`.

Finds the SunSpec models by scanning from the `SunS` marker at the candidate base addresses, reads
register blocks into a `RegisterImage`, and turns a Modbus exception response into a `DeviceError`
naming the device, the function and the exception code. Answers are matched to requests by
transaction id, whatever unit id they carry. With the fast paths on (`labspec.fast_paths`, the
default) the session speaks through `instruments.modbus_wire` (the same frames, built and parsed in
place, the blocks read every step encoded once); with them off, through pymodbus's client (with
`instruments.modbus_framer` for the unit ids).

The scan tells the device's answers apart: a busy device (exception 6) is asked again with a
growing delay for up to the request timeout; no answer (or still busy) at every base where the
marker was not found is `ConnectionError` (the link retries later, with backoff); only answers
without the marker (other registers, or illegal address) at every base are `ProtocolMismatch`.
"""

from __future__ import annotations

import asyncio
import functools
import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ConnectionException, ModbusIOException

from instruments import modbus_framer, modbus_wire
from instruments.errors import DeviceError, InstrumentError, ProtocolMismatch
from instruments.link import Backoff, Link, StatusListener
from instruments.sunspec_codec import RegisterImage
from instruments.sunspec_models import MAX_REGISTERS_PER_READ, ModelLayout, layout_model
from labspec import fast_paths
from labspec.sunspec_layout import CANDIDATE_BASE_ADDRESSES, END_MODEL_ID, SUNSPEC_MARKER

_MARKER_REGISTERS = [int.from_bytes(SUNSPEC_MARKER[i : i + 2], "big") for i in (0, 2)]
DEVICE_BUSY = int(ExcCodes.DEVICE_BUSY)  # 6: "retry later" (Modbus application protocol 7)
# What a device answers to a read of registers it does not serve as one block: 2 (illegal data
# address), or 3 (illegal data value) from some devices for a count they refuse.
REFUSED_BLOCK = frozenset({int(ExcCodes.ILLEGAL_ADDRESS), int(ExcCodes.ILLEGAL_VALUE)})
_BUSY_FIRST_DELAY_S = 0.02
_BUSY_MAX_DELAY_S = 0.5


@dataclass(frozen=True, slots=True)
class ModelInstance:
    """One model found on the device: where it starts (its ID register) and its layout."""

    model_id: int
    address: int
    layout: ModelLayout

    def at(self, point: str) -> int:
        """Absolute register address of a top-level point."""
        return self.address + self.layout.point(point).offset


def exception_meaning(code: int) -> str:
    try:
        return ExcCodes(code).name
    except ValueError:
        return "unknown exception code"


class ModbusSession:
    """The Modbus TCP connection of one device (the lean wire, or pymodbus's client with the fast
    paths off), opened and reopened by its `link`."""

    def __init__(
        self,
        device: str,
        host: str,
        port: int,
        *,
        device_id: int = 1,
        timeout_s: float = 1.0,
        backoff: Backoff | None = None,
        on_status: StatusListener | None = None,
        on_open: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.device = device
        self.on_open = on_open  # runs after every (re)connect, with raw_read / raw_write
        self.host = host
        self.port = port
        self.device_id = device_id
        self._client: AsyncModbusTcpClient | None = None
        self.framer: modbus_framer.TransactionFramer | None = None
        self._wire: modbus_wire.ModbusWire | None = None  # the fast path's connection
        self.fast = fast_paths.enabled()
        self._wire_unit_ids: set[int] = set()
        self._wire_blocks: dict[tuple[int, int], tuple[bytes, str]] = {}  # requests read again
        self.requests = 0  # Modbus requests sent (for tests and benchmarks)
        self.link = Link(
            device,
            self._open,
            self._close,
            timeout_s=timeout_s,
            # opening scans up to three bases and probes function 23: room for a few timeouts
            connect_timeout_s=max(2.0, 5 * timeout_s),
            backoff=backoff,
            connection_errors=(ConnectionException, ModbusIOException, ConnectionError),
            on_status=on_status,
        )

    async def _open(self) -> None:
        self.fast = fast_paths.enabled()
        if self.fast:
            self._wire = await modbus_wire.ModbusWire.open(self.host, self.port)
            self._wire_unit_ids = self._wire.answered_unit_ids
            if self.on_open is not None:
                await self.on_open()
            return
        client = AsyncModbusTcpClient(
            self.host,
            port=self.port,
            # the link enforces the timeout and handles reconnects itself
            timeout=self.link.timeout_s * 4,
            retries=0,
            reconnect_delay=0,
            trace_connect=self._on_connection_change,
        )
        self.framer = modbus_framer.install(client)
        self._client = client
        if not await client.connect():
            raise ConnectionRefusedError(f"cannot connect to {self.host}:{self.port}")
        if self.on_open is not None:
            await self.on_open()

    def _on_connection_change(self, connected: bool) -> None:
        """A connection closed by the device fails the pending request at once (not at timeout)."""
        if connected or self._client is None:
            return
        pending = getattr(self._client.ctx, "response_future", None)
        if pending is not None and not pending.done():
            pending.set_exception(ConnectionResetError("connection closed by the device"))

    async def _close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()
        wire, self._wire = self._wire, None
        if wire is not None:
            wire.close()

    @property
    def answered_unit_ids(self) -> set[int]:
        """The unit ids the device has answered with on the latest connection (diagnostics)."""
        if self.fast:
            return self._wire_unit_ids
        return self.framer.answered_unit_ids if self.framer is not None else set()

    def _require_wire(self) -> modbus_wire.ModbusWire:
        wire = self._wire
        if wire is None or not wire.connected:
            raise ConnectionResetError("connection closed")
        return wire

    async def _wire_exchange(self, pdu: bytes, what: str, *, backstop: bool) -> bytes:
        """One request on the fast path; the answer's PDU (function code first).
        `backstop`: bound the wait (unsupervised calls; the link bounds the others)."""
        wire = self._require_wire()
        self.requests += 1
        if backstop:
            async with asyncio.timeout(4 * self.link.timeout_s):
                return await wire.exchange(self.device_id, pdu)
        return await wire.exchange(self.device_id, pdu)

    def _wire_error(self, what: str, exc: Exception) -> InstrumentError:
        if isinstance(exc, modbus_wire.ModbusExceptionResponse):
            return DeviceError(self.device, what, exc.code, exception_meaning(exc.code))
        return ProtocolMismatch(self.device, f"{what}: {exc}")

    def _require_client(self) -> AsyncModbusTcpClient:
        if self._client is None or not self._client.connected:
            raise ConnectionResetError("connection closed")
        return self._client

    @staticmethod
    def _what_read(address: int, count: int) -> str:
        return f"read_holding_registers (function 3) of {count} at {address}"

    @staticmethod
    def _what_write(address: int, count: int) -> str:
        return f"write_registers (function 16) of {count} at {address}"

    async def raw_read(self, address: int, count: int) -> list[int]:
        """Read holding registers without the link's supervision (while the session opens)."""
        data = await self._read_block(address, count, backstop=True)
        return list(struct.unpack(f">{count}H", data))

    def _block(self, address: int, count: int) -> tuple[bytes, str]:
        """The request PDU of a block (encoded once) and its description for errors."""
        block = self._wire_blocks.get((address, count))
        if block is None:
            block = modbus_wire.encode_read(address, count), self._what_read(address, count)
            self._wire_blocks[(address, count)] = block
        return block

    async def _read_block(self, address: int, count: int, *, backstop: bool = False) -> bytes:
        """The bytes of `count` holding registers from `address` (function 3), unsupervised."""
        pdu, what = self._block(address, count)
        if self.fast:
            answer = await self._wire_exchange(pdu, what, backstop=backstop)
            try:
                return modbus_wire.parse_registers(
                    answer, modbus_wire.READ_HOLDING_REGISTERS, count
                )
            except (modbus_wire.ModbusExceptionResponse, modbus_wire.MalformedResponse) as exc:
                raise self._wire_error(what, exc) from None
        client = self._require_client()
        self.requests += 1
        response = await client.read_holding_registers(
            address, count=count, device_id=self.device_id
        )
        if response.isError():
            code = getattr(response, "exception_code", -1)
            raise DeviceError(self.device, what, code, exception_meaning(code))
        registers = response.registers
        if len(registers) < count:
            raise ProtocolMismatch(self.device, f"{what}: got {len(registers)} registers")
        return struct.pack(f">{count}H", *registers[:count])

    async def raw_write(self, address: int, values: Sequence[int]) -> None:
        """Write registers without the link's supervision (while the session opens)."""
        if self.fast:
            await self._fast_write(address, values, backstop=True)
            return
        client = self._require_client()
        self.requests += 1
        response = await client.write_registers(address, list(values), device_id=self.device_id)
        if response.isError():
            code = getattr(response, "exception_code", -1)
            what = self._what_write(address, len(values))
            raise DeviceError(self.device, what, code, exception_meaning(code))

    async def raw_read_write(
        self, write_address: int, values: Sequence[int], read_address: int, read_count: int
    ) -> list[int]:
        """Function 23: write `values`, then read, in ONE transaction (unsupervised)."""
        if self.fast:
            return await self._fast_read_write(
                write_address, values, read_address, read_count, backstop=True
            )
        client = self._require_client()
        self.requests += 1
        response = await client.readwrite_registers(
            read_address=read_address,
            read_count=read_count,
            write_address=write_address,
            values=list(values),
            device_id=self.device_id,
        )
        if response.isError():
            code = getattr(response, "exception_code", -1)
            what = self._what_read_write(write_address, len(values), read_address, read_count)
            raise DeviceError(self.device, what, code, exception_meaning(code))
        if len(response.registers) < read_count:
            raise ProtocolMismatch(
                self.device, f"function 23: got {len(response.registers)} registers"
            )
        return list(response.registers[:read_count])

    async def _fast_write(self, address: int, values: Sequence[int], *, backstop: bool) -> None:
        what = self._what_write(address, len(values))
        answer = await self._wire_exchange(
            modbus_wire.encode_write(address, values), what, backstop=backstop
        )
        try:
            modbus_wire.parse_write(answer, address, len(values))
        except (modbus_wire.ModbusExceptionResponse, modbus_wire.MalformedResponse) as exc:
            raise self._wire_error(what, exc) from None

    async def _fast_read_write(
        self,
        write_address: int,
        values: Sequence[int],
        read_address: int,
        read_count: int,
        *,
        backstop: bool,
    ) -> list[int]:
        what = self._what_read_write(write_address, len(values), read_address, read_count)
        pdu = modbus_wire.encode_read_write(write_address, values, read_address, read_count)
        answer = await self._wire_exchange(pdu, what, backstop=backstop)
        try:
            data = modbus_wire.parse_registers(
                answer, modbus_wire.READ_WRITE_MULTIPLE_REGISTERS, read_count
            )
        except (modbus_wire.ModbusExceptionResponse, modbus_wire.MalformedResponse) as exc:
            raise self._wire_error(what, exc) from None
        return list(struct.unpack(f">{read_count}H", data))

    async def read_write(
        self, write_address: int, values: Sequence[int], read_address: int, read_count: int
    ) -> list[int]:
        """Write `values`, then read `read_count` registers, with one request (function 23)."""
        if self.fast:
            return await self.link.run(
                lambda: self._fast_read_write(
                    write_address, values, read_address, read_count, backstop=False
                ),
                self._what_read_write(write_address, len(values), read_address, read_count),
            )
        return await self.link.run(
            lambda: self.raw_read_write(write_address, values, read_address, read_count),
            self._what_read_write(write_address, len(values), read_address, read_count),
        )

    @staticmethod
    def _what_read_write(write_address: int, count: int, read_address: int, read_count: int) -> str:
        return (
            f"readwrite_registers (function 23) writing {count} at {write_address}, "
            f"reading {read_count} at {read_address}"
        )

    async def read(self, address: int, count: int) -> list[int]:
        """Read `count` holding registers (function 3) from `address`."""
        return await self.link.run(
            lambda: self.raw_read(address, count), self._what_read(address, count)
        )

    async def write(self, address: int, values: Sequence[int]) -> None:
        """Write registers (function 16) from `address`."""
        if self.fast:
            await self.link.run(
                lambda: self._fast_write(address, values, backstop=False),
                self._what_write(address, len(values)),
            )
            return
        await self.link.run(
            lambda: self.raw_write(address, values), self._what_write(address, len(values))
        )

    async def read_image(
        self, reads: Sequence[tuple[int, int]], *, raw: bool = False
    ) -> RegisterImage:
        """Read every (address, count) block into one register image (one request each)."""
        image = RegisterImage()
        for address, count in reads:
            if raw:
                data = await self._read_block(address, count)
            else:
                what = self._block(address, count)[1]
                data = await self.link.run(
                    functools.partial(self._read_block, address, count), what
                )
            image.store_bytes(address, data)
        return image

    async def patient_read(self, address: int, count: int) -> list[int]:
        """`raw_read` within the request timeout, asked again with a growing delay while the
        device answers busy (exception 6), for up to the request timeout in all."""
        delay, waited = _BUSY_FIRST_DELAY_S, 0.0
        while True:
            try:
                async with asyncio.timeout(self.link.timeout_s):
                    return await self.raw_read(address, count)
            except DeviceError as exc:
                if exc.code != DEVICE_BUSY or waited + delay > self.link.timeout_s:
                    raise
            await asyncio.sleep(delay)
            waited += delay
            delay = min(2 * delay, _BUSY_MAX_DELAY_S)

    async def scan(
        self, bases: Sequence[int] = CANDIDATE_BASE_ADDRESSES
    ) -> dict[int, list[ModelInstance]]:
        """Find the `SunS` marker at one of `bases`, then walk the model headers to the end.
        Unsupervised reads: call it while the session opens (from `on_open`). See the module
        docstring for what each kind of failure raises."""
        base = None
        outcomes: dict[int, str] = {}
        silent = False  # some base gave no answer, or stayed busy
        for candidate in bases:
            try:
                registers = await self.patient_read(candidate, 2)
            except TimeoutError:
                outcomes[candidate], silent = "no answer", True
                continue
            except DeviceError as exc:
                outcomes[candidate] = f"exception {exc.code} ({exc.meaning})"
                silent = silent or exc.code == DEVICE_BUSY
                continue
            if registers == _MARKER_REGISTERS:
                base = candidate
                break
            outcomes[candidate] = "registers " + " ".join(f"0x{r:04X}" for r in registers)
        if base is None:
            found = ", ".join(f"{address}: {what}" for address, what in outcomes.items())
            if silent:  # the device may be SunSpec but did not say: try again later
                raise ConnectionError(f"no answer to the SunS marker read ({found})")
            raise ProtocolMismatch(
                self.device, f"no SunSpec marker 'SunS' at any of the base addresses ({found})"
            )
        models: dict[int, list[ModelInstance]] = {}
        address = base + 2
        for _ in range(1000):  # a device has far fewer models; guards a corrupt chain
            model_id, length = await self.patient_read(address, 2)
            if model_id == END_MODEL_ID:
                return models
            try:
                layout = layout_model(model_id, length)
            except Exception:  # a model pysunspec2 does not know (vendor model): skip it
                layout = ModelLayout(model_id, length, {}, {})
            models.setdefault(model_id, []).append(ModelInstance(model_id, address, layout))
            address += 2 + length
        raise ProtocolMismatch(self.device, "SunSpec model chain does not end")


def require_model(
    device: str, models: dict[int, list[ModelInstance]], model_id: int
) -> ModelInstance:
    """The first instance of `model_id`, or ProtocolMismatch naming the models found."""
    try:
        return models[model_id][0]
    except (KeyError, IndexError):
        raise ProtocolMismatch(
            device, f"SunSpec model {model_id} not found (device has {sorted(models)})"
        ) from None


__all__ = [
    "DEVICE_BUSY",
    "MAX_REGISTERS_PER_READ",
    "REFUSED_BLOCK",
    "ModbusSession",
    "ModelInstance",
    "require_model",
]
