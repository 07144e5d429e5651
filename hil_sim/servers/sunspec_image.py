"""A SunSpec device's Modbus register image, laid out from the model definitions in pysunspec2.

`SunSpecImage` builds the whole image once (the `SunS` marker, each model as pysunspec2's
`Model(...).get_mb()` encodes it, the end model) and keeps a table of every point's register slot,
type and resolved scale factor. Later updates encode single points in place with pysunspec2's own
type codecs, so the request path never touches pysunspec2 and an update costs a few microseconds.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sunspec2.mb as sunspec_mb
import sunspec2.mdef as sunspec_mdef
from sunspec2.device import Group, Model, Point

from labspec.sunspec_layout import END_MODEL_ID, SUNSPEC_MARKER

# Raw-integer limits per type; the unimplemented sentinels are kept out of the range.
_INT_RANGES: dict[str, tuple[int, int]] = {
    "int16": (-32767, 32767),
    "uint16": (0, 0xFFFE),
    "count": (0, 0xFFFE),
    "acc16": (0, 0xFFFF),
    "enum16": (0, 0xFFFE),
    "bitfield16": (0, 0x7FFF),
    "sunssf": (-10, 10),
    "int32": (-(2**31) + 1, 2**31 - 1),
    "uint32": (0, 2**32 - 2),
    "acc32": (0, 2**32 - 1),
    "enum32": (0, 2**32 - 2),
    "bitfield32": (0, 2**31 - 1),
    "int64": (-(2**63) + 1, 2**63 - 1),
    "uint64": (0, 2**64 - 2),
    "acc64": (0, 2**64 - 1),
}


def _bytes_to_registers(data: bytes) -> list[int]:
    return list(struct.unpack(f">{len(data) // 2}H", data))


def _registers_to_bytes(registers: Sequence[int]) -> bytes:
    return struct.pack(f">{len(registers)}H", *registers)


@dataclass(frozen=True, slots=True)
class PointSlot:
    """Where one SunSpec point lives in the image and how its value is encoded."""

    path: str  # "701.W", "714.Prt[1].DCW" (group index from 0), "704.PFWInj.PF"
    index: int  # register index from the base address (0 and 1 hold "SunS")
    length: int  # registers
    point_type: str  # SunSpec type name: int16, uint32, float32, string, sunssf, ...
    scale_exponent: int | None  # engineering value = raw * 10**scale_exponent
    writable: bool  # "RW" in the model definition
    info: Any = field(repr=False)  # pysunspec2 PointInfo: its codecs

    def encode(self, value: float | int | str | None) -> list[int]:
        """Registers for an engineering value (None = the type's "not implemented" pattern)."""
        if value is None:
            data = sunspec_mb.create_unimpl_value(self.point_type, len=self.length * 2)
        elif self.point_type in ("float32", "float64"):
            data = self.info.to_data(float(value), self.length * 2)
        elif self.point_type == "string":
            data = self.info.to_data(str(value), self.length * 2)
        else:
            raw = float(value)
            if self.scale_exponent:
                raw = raw / 10.0**self.scale_exponent
            low, high = _INT_RANGES.get(self.point_type, (-(2**63), 2**64))
            raw_int = low if math.isnan(raw) else int(min(max(round(raw), low), high))
            data = self.info.to_data(raw_int, self.length * 2)
        return _bytes_to_registers(data)

    def decode(self, registers: Sequence[int]) -> float | int | str | None:
        """The engineering value held by `registers` (None when not implemented)."""
        raw = self.info.data_to(_registers_to_bytes(registers))
        if not self.info.is_impl(raw):
            return None
        if self.scale_exponent and isinstance(raw, int):
            return raw * 10.0**self.scale_exponent
        return raw


class SunSpecImage:
    """The register image of one SunSpec device, starting at its base address.

    `models` lists (model id, raw point values) in device order; raw values are what pysunspec2's
    `Model(data=...)` takes (scale factors, enum values, group lists such as `{"Prt": [{...}]}`).
    Points absent from a model's data read as "not implemented".
    """

    def __init__(self, base_address: int, models: Sequence[tuple[int, Mapping[str, Any]]]):
        self.base_address = base_address
        self.registers: list[int] = _bytes_to_registers(SUNSPEC_MARKER)
        self._slots: dict[str, PointSlot] = {}
        self._model_ranges: dict[int, tuple[int, int]] = {}
        self._last_values: dict[str, Any] = {}
        for model_id, data in models:
            model = Model(model_id=model_id, data=dict(data))
            if model.error_info:
                raise ValueError(f"SunSpec model {model_id}: {model.error_info.strip()}")
            start = len(self.registers)
            self.registers.extend(_bytes_to_registers(model.get_mb()))
            self._model_ranges[model_id] = (start, len(self.registers))
            self._index_group(model, model, f"{model_id}", start)
        self.registers.extend([END_MODEL_ID, 0])
        self.generation = 0  # bumped by every change, so servers copy the image only when needed

    # -- layout ---------------------------------------------------------------------------------
    def _index_group(self, model: Model, group: Group, prefix: str, model_start: int) -> None:
        for name, point in group.points.items():
            self._slots[f"{prefix}.{name}"] = self._slot(
                model, group, point, f"{prefix}.{name}", model_start
            )
        for name, member in group.groups.items():
            if isinstance(member, list):
                for i, sub in enumerate(member):
                    self._index_group(model, sub, f"{prefix}.{name}[{i}]", model_start)
            else:
                self._index_group(model, member, f"{prefix}.{name}", model_start)

    @staticmethod
    def _slot(model: Model, group: Group, point: Point, path: str, model_start: int) -> PointSlot:
        exponent: int | None = point.sf_value
        if point.sf:
            sf_point = group.points.get(point.sf) or model.points.get(point.sf)
            if sf_point is None or sf_point.value is None:
                raise ValueError(f"SunSpec point {path}: scale factor {point.sf} has no value")
            exponent = int(sf_point.value)
        access = point.pdef.get(sunspec_mdef.ACCESS, sunspec_mdef.ACCESS_R)
        return PointSlot(
            path=path,
            index=model_start + point.offset,
            length=int(point.len),
            point_type=point.pdef[sunspec_mdef.TYPE],
            scale_exponent=exponent,
            writable=access == sunspec_mdef.ACCESS_RW,
            info=point.info,
        )

    def slot(self, path: str) -> PointSlot:
        """The slot of a point, e.g. `slot("704.WSet")`; KeyError names unknown points."""
        try:
            return self._slots[path]
        except KeyError:
            raise KeyError(f"no SunSpec point {path!r} in this image") from None

    def model_range(self, model_id: int) -> tuple[int, int]:
        """[start, end) register indexes of a model, including its ID and L registers."""
        return self._model_ranges[model_id]

    def slots_between(self, start: int, end: int) -> list[PointSlot]:
        """Every slot that overlaps the register indexes [start, end)."""
        return [s for s in self._slots.values() if s.index < end and s.index + s.length > start]

    @property
    def end_address(self) -> int:
        """First Modbus address after the image."""
        return self.base_address + len(self.registers)

    # -- values ---------------------------------------------------------------------------------
    def set(self, path: str, value: float | int | str | None) -> bool:
        """Encode one engineering value into the image; returns whether any register changed."""
        if self._last_values.get(path, _UNSET) == value:
            return False
        slot = self._slots[path]
        encoded = slot.encode(value)
        self._last_values[path] = value
        if self.registers[slot.index : slot.index + slot.length] == encoded:
            return False
        self.registers[slot.index : slot.index + slot.length] = encoded
        self.generation += 1
        return True

    def update(self, values: Iterable[tuple[str, float | int | str | None]]) -> bool:
        """Set several points; returns whether any register changed."""
        changed = False
        for path, value in values:
            changed = self.set(path, value) or changed
        return changed

    def get(self, path: str) -> float | int | str | None:
        """Decode one point from the image."""
        slot = self._slots[path]
        return slot.decode(self.registers[slot.index : slot.index + slot.length])

    def forget_cache(self) -> None:
        """Re-encode every point on the next `set` (the registers were written from outside)."""
        self._last_values.clear()


_UNSET = object()
