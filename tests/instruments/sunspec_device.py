"""A small SunSpec device for driver tests that need no plant: pysunspec2 builds the register image
(so the layout comes from the standard, not from the driver), pymodbus serves it on loopback."""

from __future__ import annotations

import struct

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
from sunspec2.device import Model

from tests.fixtures.ports import free_port


def _registers(data: bytes) -> list[int]:
    return list(struct.unpack(f">{len(data) // 2}H", data))


class SunSpecTestDevice:
    """`models` = [(model id, pysunspec2 data)], laid out after "SunS" at `base_address`."""

    def __init__(self, base_address: int, models: list[tuple[int, dict]], device_id: int = 1):
        self.base_address = base_address
        self.registers = _registers(b"SunS")
        self.model_starts: dict[int, int] = {}
        self.models: dict[int, Model] = {}
        for model_id, data in models:
            model = Model(model_id=model_id, data=dict(data))
            assert not model.error_info, model.error_info
            self.model_starts[model_id] = base_address + len(self.registers)
            self.models[model_id] = model
            self.registers += _registers(model.get_mb())
        self.registers += [0xFFFF, 0]
        self.writes: list[tuple[int, list[int]]] = []
        self.exception: ExcCodes | None = None
        self.ignore_writes = False  # accept writes without applying them (a device that forgets)
        self.functions: list[int] = []  # function code of every request, in order
        self._dirty = True
        self.port = free_port()
        self._server = ModbusTcpServer(
            SimDevice(
                id=device_id,
                simdata=[
                    SimData(
                        address=base_address,
                        values=list(self.registers),
                        datatype=DataType.REGISTERS,
                    )
                ],
                action=self._action,
            ),
            address=("127.0.0.1", self.port),
        )

    def set_point(self, model_id: int, name: str, value) -> None:
        """Set a point (engineering value, scaled by the model's own SF) through pysunspec2."""
        model = self.models[model_id]
        group, _, point = name.rpartition(".")
        target = model
        if group:
            group_name, _, index = group.partition("[")
            target = model.groups[group_name]
            if index:
                target = target[int(index.rstrip("]"))]
        target.points[point].cvalue = value
        start = self.model_starts[model_id] - self.base_address
        image = _registers(model.get_mb())
        self.registers[start : start + len(image)] = image
        self._dirty = True

    async def _action(self, function_code, start_address, address, count, registers, set_values):
        self.functions.append(function_code)
        if self.exception is not None:
            return self.exception
        if self._dirty:
            offset = self.base_address - start_address
            registers[offset : offset + len(self.registers)] = self.registers
            self._dirty = False
        if set_values is not None and self.ignore_writes:
            self._dirty = True  # pymodbus stores the write; the next request restores the image
            return None
        if set_values is not None and function_code in (6, 16, 23):
            values = [int(v) for v in set_values]
            self.writes.append((address, values))
            index = address - self.base_address
            self.registers[index : index + len(values)] = values
        return None

    async def start(self) -> None:
        await self._server.serve_forever(background=True)

    async def stop(self) -> None:
        await self._server.shutdown()
