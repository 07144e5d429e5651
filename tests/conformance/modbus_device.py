"""A SunSpec device on another Modbus TCP stack: pysunspec2 builds the register image, pyModbusTCP
(written independently of pymodbus) serves it, with the behaviours real devices show.

- `busy_answers`: the first N reads get exception 6 (device busy), as a device that is still
  starting up or serving another master does.
- `answer_unit_id`: every answer carries this unit id whatever the request's (255 or 0, as
  devices addressed directly over TCP and some gateways do).
- `function_23`: "answer" (pyModbusTCP's own), "refuse" (exception 1, illegal function) or
  "ignore" (no answer at all).
- `reads_across_models`: False refuses, with exception 2, a read that spans a model boundary
  (devices that serve each SunSpec model as its own block).
- `silent`: answers nothing at all (a device that is there but not talking).

Reads outside the image get exception 2, as on a device with nothing mapped there.
"""

from __future__ import annotations

import struct
import threading
from typing import Literal

from pyModbusTCP.constants import (
    EXP_DATA_ADDRESS,
    EXP_ILLEGAL_FUNCTION,
    EXP_SLAVE_DEVICE_BUSY,
    WRITE_READ_MULTIPLE_REGISTERS,
)
from pyModbusTCP.server import DataBank, DataHandler, ModbusServer
from sunspec2.device import Model

from tests.fixtures.ports import free_port

_MBAP_BYTES = 7


def _registers(data: bytes) -> list[int]:
    return list(struct.unpack(f">{len(data) // 2}H", data))


class _QuietService(ModbusServer.ModbusService):
    """pyModbusTCP's connection handler, sending nothing for a request the device ignores."""

    def _send_all(self, data: bytes) -> bool:
        if len(data) <= _MBAP_BYTES:  # an empty PDU: no answer
            return True
        return super()._send_all(data)


class _Server(ModbusServer):
    ModbusService = _QuietService


class _Handler(DataHandler):
    def __init__(self, device: PyModbusTcpSunSpecDevice):
        super().__init__(data_bank=DataBank())
        self.device = device

    def read_h_regs(self, address, count, srv_info):
        device = self.device
        with device.lock:
            device.reads.append((address, count))
            if device.busy_answers > 0:
                device.busy_answers -= 1
                return DataHandler.Return(exp_code=EXP_SLAVE_DEVICE_BUSY)
        if not device.serves(address, count):
            return DataHandler.Return(exp_code=EXP_DATA_ADDRESS)
        return super().read_h_regs(address, count, srv_info)

    def write_h_regs(self, address, words_l, srv_info):
        if not self.device.serves(address, len(words_l)):
            return DataHandler.Return(exp_code=EXP_DATA_ADDRESS)
        with self.device.lock:
            self.device.writes.append((address, list(words_l)))
        return super().write_h_regs(address, words_l, srv_info)


class PyModbusTcpSunSpecDevice:
    """`models` = [(model id, pysunspec2 data)] laid out after "SunS" at `base_address`."""

    def __init__(
        self,
        base_address: int,
        models: list[tuple[int, dict]],
        *,
        busy_answers: int = 0,
        answer_unit_id: int | None = None,
        function_23: Literal["answer", "refuse", "ignore"] = "answer",
        reads_across_models: bool = True,
        silent: bool = False,
    ):
        self.base_address = base_address
        registers = _registers(b"SunS")
        self.model_starts: dict[int, int] = {}
        for model_id, data in models:
            model = Model(model_id=model_id, data=dict(data))
            assert not model.error_info, model.error_info
            self.model_starts[model_id] = base_address + len(registers)
            registers += _registers(model.get_mb())
        registers += [0xFFFF, 0]
        self.end_address = base_address + len(registers)
        self.busy_answers = busy_answers
        self.answer_unit_id = answer_unit_id
        self.function_23 = function_23
        self.reads_across_models = reads_across_models
        self.silent = silent
        self.lock = threading.Lock()
        self.reads: list[tuple[int, int]] = []
        self.writes: list[tuple[int, list[int]]] = []
        self.functions: list[int] = []  # function code of every request, in order
        self.request_unit_ids: set[int] = set()
        self.port = free_port()
        handler = _Handler(self)
        handler.data_bank.set_holding_registers(base_address, registers)
        self._server = _Server(
            host="127.0.0.1",
            port=self.port,
            no_block=True,
            data_hdl=handler,
            ext_engine=self._engine,
        )

    def serves(self, address: int, count: int) -> bool:
        """Whether a block read or write of these registers is answered."""
        end = address + count
        if address < self.base_address or end > self.end_address:
            return False
        if self.reads_across_models:
            return True
        headers = [self.base_address + 2, *self.model_starts.values(), self.end_address - 2]
        return not any(address < start < end for start in headers)

    def _engine(self, session) -> None:
        """pyModbusTCP's request engine with the device's habits around it."""
        function = session.request.pdu.func_code
        with self.lock:
            self.functions.append(function)
            self.request_unit_ids.add(session.request.mbap.unit_id)
        if self.silent:
            return  # empty PDU: nothing is sent
        if function == WRITE_READ_MULTIPLE_REGISTERS and self.function_23 != "answer":
            if self.function_23 == "refuse":
                session.response.pdu.build_except(function, EXP_ILLEGAL_FUNCTION)
            return
        self._server._internal_engine(session)
        if self.answer_unit_id is not None:
            session.response.mbap.unit_id = self.answer_unit_id

    def register(self, address: int) -> int:
        return self._server.data_bank.get_holding_registers(address)[0]

    def start(self) -> PyModbusTcpSunSpecDevice:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()
