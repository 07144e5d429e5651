"""Decode and encode SunSpec point values from and to 16-bit Modbus registers (big-endian words).

A point whose registers hold the type's "not implemented" pattern decodes to None. Scale factors
(`sunssf`) apply as value * 10**sf.

`PointReader` is the same decoding worked out once for a fixed read plan (which block, which
byte, which struct format, which scale factor): the drivers decode their step reads with it.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

from instruments.sunspec_models import ModelLayout, PointLayout

_FORMATS = {
    "int16": ">h",
    "uint16": ">H",
    "count": ">H",
    "acc16": ">H",
    "enum16": ">H",
    "bitfield16": ">H",
    "sunssf": ">h",
    "pad": ">H",
    "int32": ">i",
    "uint32": ">I",
    "acc32": ">I",
    "enum32": ">I",
    "bitfield32": ">I",
    "ipaddr": ">I",
    "float32": ">f",
    "int64": ">q",
    "uint64": ">Q",
    "acc64": ">Q",
    "float64": ">d",
}

# Register patterns meaning "not implemented" (SunSpec information model specification).
_UNIMPLEMENTED = {
    "int16": -0x8000,
    "sunssf": -0x8000,
    "uint16": 0xFFFF,
    "enum16": 0xFFFF,
    "bitfield16": 0xFFFF,
    "int32": -0x80000000,
    "uint32": 0xFFFFFFFF,
    "enum32": 0xFFFFFFFF,
    "bitfield32": 0xFFFFFFFF,
    "int64": -0x8000000000000000,
    "uint64": 0xFFFFFFFFFFFFFFFF,
}


def _to_bytes(registers: Sequence[int]) -> bytes:
    return struct.pack(f">{len(registers)}H", *registers)


def decode_raw(point: PointLayout, registers: Sequence[int]) -> int | float | str | None:
    """The raw (unscaled) value of `point` from exactly its registers; None if not implemented."""
    if len(registers) != point.size:
        raise ValueError(f"{point.name}: expected {point.size} registers, got {len(registers)}")
    return decode_from(point, _to_bytes(registers), 0)


def decode_from(point: PointLayout, data: bytes, offset: int) -> int | float | str | None:
    """The raw value of `point` whose first register is at byte `offset` of `data`."""
    if point.type == "string":
        text = data[offset : offset + 2 * point.size].split(b"\0", 1)[0]
        return text.decode("ascii", errors="replace").strip() or None
    fmt = _FORMATS.get(point.type)
    if fmt is None:
        raise ValueError(f"{point.name}: point type {point.type!r} is not supported")
    value: int | float
    (value,) = struct.unpack_from(fmt, data, offset)
    if point.type in ("float32", "float64"):
        return None if math.isnan(value) else value
    if _UNIMPLEMENTED.get(point.type) == value:
        return None
    return value


def encode_raw(point: PointLayout, value: int | float) -> list[int]:
    """The registers holding the raw (already scaled) `value` of `point`."""
    fmt = _FORMATS.get(point.type)
    if fmt is None or point.type == "string":
        raise ValueError(f"{point.name}: cannot encode point type {point.type!r}")
    if not point.type.startswith("float"):
        value = round(value)
    try:
        data = struct.pack(fmt, value)
    except struct.error as exc:
        raise ValueError(f"{point.name}: {value!r} does not fit {point.type}") from exc
    return list(struct.unpack(f">{len(data) // 2}H", data))


class RegisterImage:
    """Register blocks read from a device, by absolute address, with SunSpec decoding on top.

    Each block is kept as big-endian bytes; a point is decoded in place with `struct.unpack_from`.
    """

    def __init__(self) -> None:
        self._blocks: list[tuple[int, int, bytes]] = []  # (first address, end address, bytes)

    def store(self, address: int, registers: Sequence[int]) -> None:
        self._blocks.append((address, address + len(registers), _to_bytes(registers)))

    def block(self, index: int) -> bytes:
        """The bytes of the `index`-th block stored."""
        return self._blocks[index][2]

    def store_bytes(self, address: int, data: bytes) -> None:
        """Store registers as read: big-endian, two bytes each, the first at `address`."""
        self._blocks.append((address, address + len(data) // 2, bytes(data)))

    def _locate(self, address: int, count: int) -> tuple[bytes, int]:
        for start, end, data in self._blocks:
            if start <= address and address + count <= end:
                return data, 2 * (address - start)
        raise KeyError(f"registers {address}..{address + count - 1} were not read")

    def registers(self, address: int, count: int) -> list[int]:
        data, offset = self._locate(address, count)
        return list(struct.unpack_from(f">{count}H", data, offset))

    def raw(self, base: int, point: PointLayout) -> int | float | str | None:
        """Raw value of `point` of the model starting at register `base`."""
        data, offset = self._locate(base + point.offset, point.size)
        return decode_from(point, data, offset)

    def scaled(self, base: int, model: ModelLayout, point: PointLayout) -> float | None:
        """Value of `point` times 10**(its scale factor); None if the point or its SF is unset."""
        raw = self.raw(base, point)
        if raw is None or isinstance(raw, str):
            return None
        sf = point.sf
        if isinstance(sf, str):
            sf_raw = self.raw(base, model.points[sf])
            if not isinstance(sf_raw, int):  # unset (a sunssf point decodes to an int)
                return None
            sf = sf_raw
        if not sf:
            return float(raw)
        return raw / 10.0**-sf if sf < 0 else raw * 10.0**sf  # 2301 / 10, not 2301 * 0.1


_STRUCTS = {name: struct.Struct(fmt) for name, fmt in _FORMATS.items()}


class PointReader:
    """One point's value from a register image stored in the order of `plan` (as
    `ModbusSession.read_image(plan)` stores it), with the decoding worked out in advance.
    `raw(image)` and `scaled(image)` give what `RegisterImage.raw` and `.scaled` give."""

    __slots__ = (
        "_base",
        "_block",
        "_float",
        "_model",
        "_offset",
        "_point",
        "_sf",
        "_sf_reader",
        "_unpack",
    )
    _missing: dict[str, int] = _UNIMPLEMENTED

    def __init__(
        self, plan: Sequence[tuple[int, int]], base: int, model: ModelLayout, point: PointLayout
    ) -> None:
        self._base, self._model, self._point = base, model, point
        address = base + point.offset
        self._block = next(
            (
                i
                for i, (start, count) in enumerate(plan)
                if start <= address and address + point.size <= start + count
            ),
            None,
        )
        self._offset = 2 * (address - plan[self._block][0]) if self._block is not None else 0
        fixed = _STRUCTS.get(point.type)
        self._unpack = fixed.unpack_from if fixed is not None else None
        self._float = point.type in ("float32", "float64")
        sf = point.sf
        self._sf_reader = (
            PointReader(plan, base, model, model.points[sf]) if isinstance(sf, str) else None
        )
        self._sf = None if isinstance(sf, str) else sf

    def raw(self, image: RegisterImage) -> int | float | str | None:
        if self._block is None or self._unpack is None:  # across blocks, or a string
            return image.raw(self._base, self._point)
        value: int | float
        (value,) = self._unpack(image.block(self._block), self._offset)
        if self._float:
            return None if value != value else value  # NaN
        if self._missing.get(self._point.type) == value:
            return None
        return value

    def scaled(self, image: RegisterImage) -> float | None:
        raw = self.raw(image)
        if raw is None or isinstance(raw, str):
            return None
        if self._sf_reader is None:
            sf = self._sf
        else:
            sf_raw = self._sf_reader.raw(image)
            if not isinstance(sf_raw, int):  # unset (a sunssf point decodes to an int)
                return None
            sf = sf_raw
        if not sf:
            return float(raw)
        return raw / 10.0**-sf if sf < 0 else raw * 10.0**sf
