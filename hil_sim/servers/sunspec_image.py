"""A SunSpec device's Modbus register image, laid out from the model definitions in pysunspec2.

`SunSpecImage` builds the whole image once (the `SunS` marker, each model as pysunspec2's
`Model(...).get_mb()` encodes it, the end model) and keeps a table of every point's register slot,
type and resolved scale factor. Later updates encode single points in place with pysunspec2's own
type codecs, so the request path never touches pysunspec2 and an update costs a few microseconds.
"""

from __future__ import annotations

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


# struct codes of the numeric SunSpec types (big-endian, as on the wire)
_STRUCT_CODES: dict[str, str] = {
    "int16": "h", "uint16": "H", "count": "H", "acc16": "H", "enum16": "H", "bitfield16": "H",
    "sunssf": "h", "pad": "H", "int32": "i", "uint32": "I", "acc32": "I", "enum32": "I",
    "bitfield32": "I", "ipaddr": "I", "int64": "q", "uint64": "Q", "acc64": "Q",
    "float32": "f", "float64": "d",
}  # fmt: skip


def _bytes_to_registers(data: bytes | bytearray) -> list[int]:
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
    packer: struct.Struct | None = field(default=None, repr=False)  # numeric types only
    divisor: float = 1.0  # 10**scale_exponent
    low: int = 0  # raw-integer range (unimplemented sentinels excluded)
    high: int = 0

    def raw(self, value: float | int) -> float | int:
        """The raw number stored for an engineering value (scaled, rounded, clamped to the type)."""
        if self.point_type in ("float32", "float64"):
            return float(value)
        number = value / self.divisor if self.divisor != 1.0 else value
        if number != number:  # NaN
            return self.low
        return min(max(round(number), self.low), self.high)

    def encode_bytes(self, value: float | int | str | None) -> bytes:
        """Wire bytes for an engineering value (None = the type's "not implemented" pattern)."""
        encoded: bytes
        if value is None:
            encoded = sunspec_mb.create_unimpl_value(self.point_type, len=self.length * 2)
        elif self.packer is not None:
            encoded = self.packer.pack(self.raw(self.number(value)))
        else:
            encoded = self.info.to_data(str(value), self.length * 2)
        return encoded

    def number(self, value: float | int | str) -> float | int:
        """`value` for a numeric point (a string is refused by name)."""
        if isinstance(value, str):
            raise TypeError(f"{self.path} is a {self.point_type} point: {value!r} is not a number")
        return value

    def encode(self, value: float | int | str | None) -> list[int]:
        """Registers for an engineering value."""
        return _bytes_to_registers(self.encode_bytes(value))

    def decode(self, registers: Sequence[int]) -> float | int | str | None:
        """The engineering value held by `registers` (None when not implemented)."""
        raw: float | int | str | None = self.info.data_to(_registers_to_bytes(registers))
        if not self.info.is_impl(raw):
            return None
        if self.scale_exponent and isinstance(raw, int):
            return raw * 10.0**self.scale_exponent
        return raw


class SunSpecImage:
    """The register image of one SunSpec device, starting at its base address.

    `models` lists (model id, raw point values) in device order; raw values are what pysunspec2's
    `Model(data=...)` takes (scale factors, enum values, group lists such as `{"Prt": [{...}]}`).
    Points absent from a model's data read as "not implemented". The image is kept as wire bytes;
    `set` packs one point in place and skips values whose raw number did not change.
    """

    def __init__(self, base_address: int, models: Sequence[tuple[int, Mapping[str, Any]]]):
        self.base_address = base_address
        image = bytearray(SUNSPEC_MARKER)
        self._slots: dict[str, PointSlot] = {}
        self._model_ranges: dict[int, tuple[int, int]] = {}
        self._last_raw: dict[str, float | int] = {}
        for model_id, data in models:
            model = Model(model_id=model_id, data=dict(data))
            if model.error_info:
                raise ValueError(f"SunSpec model {model_id}: {model.error_info.strip()}")
            start = len(image) // 2
            image.extend(model.get_mb())
            self._model_ranges[model_id] = (start, len(image) // 2)
            self._index_group(model, model, f"{model_id}", start)
        image.extend(struct.pack(">HH", END_MODEL_ID, 0))
        self._buf = image
        self._writers: list[PointWriter] = []
        self.generation = 0  # bumped by every change, so servers copy the image only when needed
        self._registers_generation = -1
        self._registers: list[int] = []

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
        point_type = point.pdef[sunspec_mdef.TYPE]
        code = _STRUCT_CODES.get(point_type)
        low, high = _INT_RANGES.get(point_type, (0, 0))
        return PointSlot(
            path=path,
            index=model_start + point.offset,
            length=int(point.len),
            point_type=point_type,
            scale_exponent=exponent,
            writable=access == sunspec_mdef.ACCESS_RW,
            info=point.info,
            packer=struct.Struct(f">{code}") if code else None,
            divisor=10.0**exponent if exponent else 1.0,
            low=low,
            high=high,
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

    def __len__(self) -> int:
        """Registers in the image, from the SunS marker to the end model."""
        return len(self._buf) // 2

    @property
    def end_address(self) -> int:
        """First Modbus address after the image."""
        return self.base_address + len(self)

    @property
    def registers(self) -> list[int]:
        """The image as register values (rebuilt only after a change)."""
        if self._registers_generation != self.generation:
            self._registers = _bytes_to_registers(self._buf)
            self._registers_generation = self.generation
        return self._registers

    @property
    def register_count(self) -> int:
        return len(self._buf) // 2

    def wire(self, index: int, count: int) -> bytes:
        """`count` registers from register index `index`, as wire bytes (big-endian)."""
        return bytes(self._buf[index * 2 : (index + count) * 2])

    # -- values ---------------------------------------------------------------------------------
    def set(self, path: str, value: float | int | str | None) -> bool:
        """Encode one engineering value into the image; returns whether it changed."""
        slot = self._slots[path]
        if slot.packer is not None and value is not None:
            raw = slot.raw(slot.number(value))
            if self._last_raw.get(path) == raw:
                return False
            slot.packer.pack_into(self._buf, slot.index * 2, raw)
            self._last_raw[path] = raw
            self.generation += 1
            return True
        data = slot.encode_bytes(value)
        start = slot.index * 2
        self._last_raw.pop(path, None)
        if self._buf[start : start + len(data)] == data:
            return False
        self._buf[start : start + len(data)] = data
        self.generation += 1
        return True

    def update(self, values: Iterable[tuple[str, float | int | str | None]]) -> bool:
        """Set several points; returns whether any changed."""
        changed = False
        for path, value in values:
            if self.set(path, value):
                changed = True
        return changed

    def get(self, path: str) -> float | int | str | None:
        """Decode one point from the image."""
        slot = self._slots[path]
        start = slot.index * 2
        return slot.decode(_bytes_to_registers(self._buf[start : start + slot.length * 2]))

    def write_registers(self, index: int, values: Sequence[int]) -> None:
        """Store registers written from outside (a client's accepted write)."""
        self._buf[index * 2 : (index + len(values)) * 2] = _registers_to_bytes(values)
        # The registers no longer hold what the writers last published: forget their caches, so
        # the next refresh writes the plant's value even when it equals the one published before.
        self.forget_cache()
        self.generation += 1

    def forget_cache(self) -> None:
        """Re-encode every point on the next `set`, even if its value did not change."""
        self._last_raw.clear()
        for writer in self._writers:
            writer.forget()

    def writer(self, paths: Sequence[str]) -> PointWriter:
        """A fast writer for a fixed list of points (values given in the same order)."""
        writer = PointWriter(self, [self.slot(path) for path in paths])
        self._writers.append(writer)
        return writer


class PointWriter:
    """Encodes a fixed sequence of points into an image; skips values that did not change.

    The refresh after every plant step goes through here: one comparison per unchanged value,
    one scale-round-pack for a changed one (`PointSlot.raw` inlined, per-point constants looked up
    once when the writer is made).
    """

    def __init__(self, image: SunSpecImage, slots: list[PointSlot]):
        self._image = image
        self._slots = slots
        # per point: (kind, pack_into, byte offset, divisor, low, high)
        self._plan: list[tuple[int, Any, int, float, int, int]] = [
            (
                _kind(slot),
                slot.packer.pack_into if slot.packer is not None else None,
                slot.index * 2,
                slot.divisor,
                slot.low,
                slot.high,
            )
            for slot in slots
        ]
        self._last_values: list[Any] = [_UNSET] * len(slots)
        self._last_raw: list[Any] = [_UNSET] * len(slots)

    def forget(self) -> None:
        self._last_values = [_UNSET] * len(self._slots)
        self._last_raw = [_UNSET] * len(self._slots)

    def write(self, values: Sequence[float | int | str | None]) -> bool:
        """Encode `values` (in the writer's point order); returns whether the image changed."""
        if len(values) != len(self._slots):
            raise ValueError(f"{len(values)} values for {len(self._slots)} points")
        image = self._image
        buf = image._buf
        plan = self._plan
        last_values, last_raw = self._last_values, self._last_raw
        changed = False
        for i, value in enumerate(values):
            if value == last_values[i]:
                continue
            last_values[i] = value
            kind, pack_into, offset, divisor, low, high = plan[i]
            if kind == _OTHER or value is None or isinstance(value, str):
                changed = image.set(self._slots[i].path, value) or changed
                last_raw[i] = _UNSET
                continue
            if kind == _FLOAT:
                raw = float(value)
            else:  # as PointSlot.raw: scaled, rounded, clamped; NaN reads as the type's low end
                number = value / divisor if kind == _SCALED else value
                raw = low if number != number else min(max(round(number), low), high)
            if raw == last_raw[i]:
                continue
            last_raw[i] = raw
            pack_into(buf, offset, raw)
            changed = True
        if changed:
            image.generation += 1
        return changed


_FLOAT, _INTEGER, _SCALED, _OTHER = range(4)


def _kind(slot: PointSlot) -> int:
    if slot.packer is None:
        return _OTHER
    if slot.point_type in ("float32", "float64"):
        return _FLOAT
    return _SCALED if slot.divisor != 1.0 else _INTEGER


_UNSET = object()
