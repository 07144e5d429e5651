"""The lean Modbus TCP client (`instruments.modbus_wire`) against pymodbus's own codec: the frames
it sends are the frames pymodbus's client would send, and it reads what pymodbus's server side
encodes (registers, writes, exception answers), over a real loopback socket."""

from __future__ import annotations

import asyncio
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymodbus.framer import FramerSocket
from pymodbus.pdu import DecodePDU, ExceptionResponse, ModbusPDU
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadHoldingRegistersResponse,
    ReadWriteMultipleRegistersRequest,
    ReadWriteMultipleRegistersResponse,
    WriteMultipleRegistersRequest,
    WriteMultipleRegistersResponse,
)

from instruments.modbus_wire import (
    MalformedResponse,
    ModbusExceptionResponse,
    ModbusWire,
    encode_read,
    encode_read_write,
    encode_write,
    parse_registers,
    parse_write,
)

registers = st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=121)
addresses = st.integers(0, 0xFFFF - 125)


def pymodbus_pdu(pdu: ModbusPDU) -> bytes:
    """A PDU as pymodbus puts it on the wire: function code, then its encoding."""
    return bytes([pdu.function_code]) + pdu.encode()


def pymodbus_frame(pdu: ModbusPDU) -> bytes:
    """A whole Modbus TCP frame (MBAP header + PDU) built by pymodbus's socket framer."""
    return FramerSocket(DecodePDU(True)).buildFrame(pdu)


@given(address=addresses, count=st.integers(1, 125))
def test_read_requests_are_pymodbus_requests(address, count):
    expected = ReadHoldingRegistersRequest(address=address, count=count, dev_id=1)
    assert encode_read(address, count) == pymodbus_pdu(expected)


@given(address=addresses, values=registers)
def test_write_requests_are_pymodbus_requests(address, values):
    expected = WriteMultipleRegistersRequest(address=address, registers=values, dev_id=1)
    assert encode_write(address, values) == pymodbus_pdu(expected)


@given(write=addresses, values=registers, read=addresses, count=st.integers(1, 125))
def test_read_write_requests_are_pymodbus_requests(write, values, read, count):
    expected = ReadWriteMultipleRegistersRequest(
        read_address=read, read_count=count, write_address=write, write_registers=values, dev_id=1
    )
    assert encode_read_write(write, values, read, count) == pymodbus_pdu(expected)


def test_requests_outside_the_protocols_limits_are_refused_before_sending():
    with pytest.raises(ValueError, match="1-125 registers"):
        encode_read(40000, 126)
    with pytest.raises(ValueError, match="1-123 registers"):
        encode_write(40000, [0] * 124)
    with pytest.raises(ValueError, match="1-121 written"):
        encode_read_write(40000, [], 40000, 4)


@given(values=st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=125))
def test_register_answers_read_as_pymodbus_encodes_them(values):
    read = pymodbus_pdu(ReadHoldingRegistersResponse(registers=values))
    both = pymodbus_pdu(ReadWriteMultipleRegistersResponse(registers=values))
    expected = struct.pack(f">{len(values)}H", *values)
    assert parse_registers(read, 3, len(values)) == expected
    assert parse_registers(both, 23, len(values)) == expected
    assert parse_registers(read, 3, 1) == expected[:2]  # more than asked: the first ones


@given(address=addresses, count=st.integers(1, 123))
def test_write_answers_read_as_pymodbus_encodes_them(address, count):
    answer = pymodbus_pdu(WriteMultipleRegistersResponse(address=address, count=count))
    parse_write(answer, address, count)
    with pytest.raises(MalformedResponse, match="write answer for"):
        parse_write(answer, address + 1, count)


@pytest.mark.parametrize("function", [3, 16, 23])
@pytest.mark.parametrize("code", [1, 2, 3, 4, 6, 11])
def test_exception_answers_carry_the_function_and_code(function, code):
    answer = pymodbus_pdu(ExceptionResponse(function, exception_code=code))
    with pytest.raises(ModbusExceptionResponse) as caught:
        if function == 16:
            parse_write(answer, 40000, 1)
        else:
            parse_registers(answer, function, 1)
    assert (caught.value.function, caught.value.code) == (function, code)


def test_short_or_foreign_answers_are_malformed():
    with pytest.raises(MalformedResponse, match="got 1 registers"):
        parse_registers(pymodbus_pdu(ReadHoldingRegistersResponse(registers=[7])), 3, 2)
    with pytest.raises(MalformedResponse, match="function 4 answered"):
        parse_registers(b"\x04\x02\x00\x01", 3, 1)
    with pytest.raises(MalformedResponse, match="byte count 8"):
        parse_registers(b"\x03\x08\x00\x01", 3, 1)
    with pytest.raises(MalformedResponse, match="empty"):
        parse_registers(b"", 3, 1)


class Device:
    """A loopback TCP server that answers each request frame with `answer(frame)` (raw bytes,
    possibly several frames or none), recording what it received."""

    def __init__(self, answer):
        self.answer = answer
        self.received: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> Device:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc) -> None:
        for writer in self.writers:
            writer.close()
        self.server.close()
        await self.server.wait_closed()

    @property
    def port(self) -> int:
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        try:
            while True:
                header = await reader.readexactly(6)
                (length,) = struct.unpack(">H", header[4:])
                frame = header + await reader.readexactly(length)
                self.received.append(frame)
                reply = self.answer(frame)
                if reply:
                    writer.write(reply)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass


def answer_with(response: ModbusPDU, unit_id: int | None = None):
    """Answer each frame with `response`, pymodbus-framed, under the request's transaction id
    and unit id (or `unit_id`)."""

    def answer(frame: bytes) -> bytes:
        tid, _, _, unit = struct.unpack_from(">HHHB", frame)
        response.transaction_id = tid
        response.dev_id = unit if unit_id is None else unit_id
        return pymodbus_frame(response)

    return answer


async def test_frames_on_the_wire_are_pymodbus_frames_and_answers_come_back():
    values = [1, 2, 0xFFFF, 40000]
    async with Device(answer_with(ReadHoldingRegistersResponse(registers=values))) as device:
        wire = await ModbusWire.open("127.0.0.1", device.port)
        for _ in range(3):
            answer = await wire.exchange(7, encode_read(40002, 4))
            assert parse_registers(answer, 3, 4) == struct.pack(">4H", *values)
        wire.close()
    for tid, frame in enumerate(device.received, start=1):
        request = ReadHoldingRegistersRequest(address=40002, count=4, dev_id=7, transaction_id=tid)
        assert frame == pymodbus_frame(request)


@pytest.mark.parametrize("unit_id", [0, 255, 9])
async def test_an_answer_is_matched_by_transaction_id_whatever_its_unit_id(unit_id):
    response = ReadHoldingRegistersResponse(registers=[42])
    async with Device(answer_with(response, unit_id)) as device:
        wire = await ModbusWire.open("127.0.0.1", device.port)
        assert parse_registers(await wire.exchange(1, encode_read(0, 1)), 3, 1) == b"\x00\x2a"
        assert wire.answered_unit_ids == {unit_id}
        wire.close()


async def test_a_late_answer_to_a_request_given_up_is_dropped():
    received: list[bytes] = []

    def answer(frame: bytes) -> bytes:
        received.append(frame)
        if len(received) == 1:
            return b""  # no answer in time to the first request
        late = answer_with(ReadHoldingRegistersResponse(registers=[1]))(received[0])
        return late + answer_with(ReadHoldingRegistersResponse(registers=[2]))(frame)

    async with Device(answer) as device:
        wire = await ModbusWire.open("127.0.0.1", device.port)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await wire.exchange(1, encode_read(0, 1))
        assert parse_registers(await wire.exchange(1, encode_read(0, 1)), 3, 1) == b"\x00\x02"
        wire.close()


async def test_a_broken_frame_header_fails_the_request_and_closes_the_connection():
    async with Device(lambda frame: frame[:2] + b"\x00\x07\x00\x03\x01\x03") as device:
        wire = await ModbusWire.open("127.0.0.1", device.port)
        with pytest.raises(ConnectionResetError, match="framing lost: MBAP header with protocol 7"):
            await wire.exchange(1, encode_read(0, 1))
        await asyncio.sleep(0.01)
        assert not wire.connected


async def test_a_connection_closed_by_the_device_fails_the_waiting_request_at_once():
    async with Device(lambda frame: b"") as device:
        wire = await ModbusWire.open("127.0.0.1", device.port)
        pending = asyncio.ensure_future(wire.exchange(1, encode_read(0, 1)))
        await asyncio.sleep(0.05)
        device.writers[0].close()
        with pytest.raises(ConnectionResetError, match="closed by the device"):
            async with asyncio.timeout(2):
                await pending
        with pytest.raises(ConnectionResetError, match="connection closed"):
            await wire.exchange(1, encode_read(0, 1))


@settings(max_examples=25, deadline=None)
@given(split=st.integers(1, 20))
def test_answers_split_or_joined_in_any_way_are_reassembled(split):
    """Two answers sent as one byte stream cut at `split`: each request gets its own."""
    first = answer_with(ReadHoldingRegistersResponse(registers=[1, 2, 3]))
    second = answer_with(ReadHoldingRegistersResponse(registers=[4, 5, 6]))

    async def scenario() -> list[bytes]:
        wire = ModbusWire()
        sent: list[bytes] = []

        class Transport:
            def write(self, data: bytes) -> None:
                sent.append(data)

            def is_closing(self) -> bool:
                return False

        wire.connection_made(Transport())  # type: ignore[arg-type]
        one = asyncio.ensure_future(wire.exchange(1, encode_read(0, 3)))
        await asyncio.sleep(0)
        stream = first(sent[0])
        wire.data_received(stream[:split])
        wire.data_received(stream[split:])
        two = asyncio.ensure_future(wire.exchange(1, encode_read(0, 3)))
        await asyncio.sleep(0)
        stream = second(sent[1])
        for byte in range(len(stream)):
            wire.data_received(stream[byte : byte + 1])
        return [await one, await two]

    one, two = asyncio.run(scenario())
    assert parse_registers(one, 3, 3) == struct.pack(">3H", 1, 2, 3)
    assert parse_registers(two, 3, 3) == struct.pack(">3H", 4, 5, 6)
