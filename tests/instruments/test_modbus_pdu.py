"""The lean register responses decode exactly as pymodbus's own, and fail alike on short data."""

from __future__ import annotations

import random
import struct

import pytest
from pymodbus.exceptions import ModbusIOException
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadHoldingRegistersResponse,
    ReadWriteMultipleRegistersResponse,
)

from instruments.modbus_pdu import ReadRequest, ReadWriteResponse, RegisterResponse


@pytest.mark.parametrize(
    ("lean", "stock"),
    [
        (RegisterResponse, ReadHoldingRegistersResponse),
        (ReadWriteResponse, ReadWriteMultipleRegistersResponse),
    ],
)
@pytest.mark.parametrize("count", [0, 1, 2, 68, 125])
def test_register_responses_decode_like_pymodbus(lean, stock, count):
    values = [random.Random(i + count).randrange(0, 65536) for i in range(count)]
    payload = bytes([2 * count]) + struct.pack(f">{count}H", *values)
    ours, theirs = lean(), stock()
    ours.decode(payload)
    theirs.decode(payload)
    assert ours.registers == theirs.registers == values
    assert ours.data == payload[1:]  # the registers' bytes, kept for the register image
    assert ours.function_code == theirs.function_code


def test_a_byte_count_beyond_the_packet_is_an_io_error():
    with pytest.raises(ModbusIOException, match="byte_count 10"):
        RegisterResponse().decode(bytes([10, 0, 1]))


def test_the_encoded_request_is_pymodbus_own():
    lean = ReadRequest(address=40002, count=68, dev_id=1)
    stock = ReadHoldingRegistersRequest(address=40002, count=68, dev_id=1)
    assert lean.encode() == stock.encode()
    with pytest.raises(ValueError):
        ReadRequest(address=0, count=200, dev_id=1)  # over 125 registers
