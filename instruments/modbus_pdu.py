"""Leaner pymodbus PDUs for the control loop's register reads (function 3 and 23 responses).

pymodbus 3.16 decodes a register response one register at a time (a `struct.unpack` and a list
append each) and formats the whole PDU with `str()` for a debug message whether or not debug
logging is on: about 55 us per 100-register response, five responses per control step. These
subclasses decode all registers with one `struct.unpack_from`, keep the registers' bytes (a
`RegisterImage` stores them as they are), and print a short description. They are registered
on the client (`client.register`, pymodbus's way to add response classes) and so replace only
the client side's decoding; the frames on the wire are the same.

`ReadRequest` is a function 3 request encoded once, for the fixed blocks a driver reads every
step (pymodbus sets the transaction id per send; the encoded part is address and count).
"""

from __future__ import annotations

import struct

from pymodbus.exceptions import ModbusIOException
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadHoldingRegistersResponse,
    ReadWriteMultipleRegistersResponse,
)


class _RegisterBlock:
    """Decoding shared by the register responses: the byte count, then big-endian registers."""

    function_code: int
    data: bytes
    registers: list[int]
    dev_id: int
    transaction_id: int

    def decode(self, data: bytes) -> None:
        byte_count = data[0]
        if byte_count >= len(data):
            raise ModbusIOException(
                f"byte_count {byte_count} > length of packet {len(data)}",
                function_code=self.function_code,
            )
        count = byte_count // 2
        self.data = data[1 : 1 + 2 * count]
        self.registers = list(struct.unpack_from(f">{count}H", data, 1))

    def __str__(self) -> str:
        return (
            f"{type(self).__name__}(dev_id={self.dev_id}, transaction_id={self.transaction_id}, "
            f"registers={len(self.registers)})"
        )


class RegisterResponse(_RegisterBlock, ReadHoldingRegistersResponse):
    """Function 3 response: `registers` and their raw bytes in `data`."""


class ReadWriteResponse(_RegisterBlock, ReadWriteMultipleRegistersResponse):
    """Function 23 response: the registers read after the write, and their bytes in `data`."""


CLIENT_RESPONSES = (RegisterResponse, ReadWriteResponse)


class ReadRequest(ReadHoldingRegistersRequest):
    """A function 3 request of a fixed block, checked and encoded once."""

    def __init__(self, address: int, count: int, dev_id: int) -> None:
        super().__init__(address=address, count=count, dev_id=dev_id)
        self._encoded = super().encode()  # checks address and count (ValueError if invalid)

    def encode(self) -> bytes:
        return self._encoded
