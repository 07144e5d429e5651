"""Register offsets of SunSpec points, computed from the model definitions shipped in pysunspec2.

Nothing here is hand-coded: the JSON definition of a model lists its points in register order
(each with its size in registers), with nested groups after the points of their parent group, and
repeating groups whose instance count comes from a point (714 `NPrt`) or from the model length.
`layout_model(714, model_length=L)` walks that definition once and returns each point's offset from
the model's first register (its `ID` point), type, size and scale-factor point.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

from sunspec2 import device as sunspec_device
from sunspec2 import mdef

MAX_REGISTERS_PER_READ = 125  # Modbus limit for function 3 (holding registers)


@dataclass(frozen=True, slots=True)
class PointLayout:
    """Where one point lives, relative to the start of its model (offset 0 = the ID register)."""

    name: str
    offset: int
    size: int  # registers
    type: str  # SunSpec point type: int16, uint32, float32, sunssf, enum16, string, ...
    sf: (
        str | int | None
    )  # name of the scale-factor point (same or an enclosing group), or a constant
    units: str | None
    writable: bool


@dataclass(frozen=True, slots=True)
class ModelLayout:
    """All points of one model instance: `points` for the top-level group (and sync groups, with
    their names prefixed `Group.`), `repeats[group]` as one dict of points per instance."""

    model_id: int
    length: int  # the model's L: registers after ID and L
    points: dict[str, PointLayout]
    repeats: dict[str, tuple[dict[str, PointLayout], ...]]

    def point(self, name: str) -> PointLayout:
        try:
            return self.points[name]
        except KeyError:
            raise KeyError(f"model {self.model_id} has no point {name!r}") from None

    def sf_point(self, point: PointLayout) -> PointLayout | None:
        """The scale-factor point of `point` (None when it has none or a constant one)."""
        return self.points[point.sf] if isinstance(point.sf, str) else None


@functools.cache
def model_definition(model_id: int) -> dict[str, Any]:
    """The pysunspec2 JSON definition of a model (read from the package, not the working dir)."""
    path = os.path.join(sunspec_device.models_dir, "json", mdef.to_json_filename(model_id))
    definition: dict[str, Any] = mdef.from_json_file(path)
    return definition


def _group_size(group: dict[str, Any], counts: dict[str, int]) -> int:
    """Registers taken by one instance of `group` including its nested groups."""
    size = sum(int(point["size"]) for point in group.get("points", []))
    for sub in group.get("groups", []):
        size += _group_size(sub, counts) * _instances(sub, counts)
    return size


def _instances(group: dict[str, Any], counts: dict[str, int]) -> int:
    count = group.get("count")
    if count is None:
        return 1
    if isinstance(count, int) and count > 0:
        return count
    if isinstance(count, str) and count.isdigit() and int(count) > 0:
        return int(count)
    try:
        return counts[group["name"]]
    except KeyError:
        raise ValueError(
            f"repeating group {group['name']!r} needs an instance count (point {count!r})"
        ) from None


def layout_model(model_id: int, model_length: int | None = None) -> ModelLayout:
    """Lay out `model_id`; `model_length` (the device's L) fixes the count of a repeating group."""
    top = model_definition(model_id)["group"]
    counts: dict[str, int] = {}
    repeating = [g for g in top.get("groups", []) if g.get("count") not in (None, 1, "1")]
    if repeating:
        if model_length is None:
            raise ValueError(f"model {model_id} has repeating groups; pass the device's L")
        if len(repeating) > 1:
            raise ValueError(f"model {model_id}: more than one repeating group is not supported")
        fixed = _group_size({**top, "groups": [g for g in top["groups"] if g not in repeating]}, {})
        one = _group_size(repeating[0], {})
        spare = model_length + 2 - fixed
        if spare < 0 or spare % one:
            raise ValueError(
                f"model {model_id}: length {model_length} does not fit {fixed} fixed registers "
                f"plus whole {repeating[0]['name']} groups of {one}"
            )
        counts[repeating[0]["name"]] = spare // one

    points: dict[str, PointLayout] = {}
    repeats: dict[str, list[dict[str, PointLayout]]] = {}

    def place(
        group: dict[str, Any], offset: int, prefix: str, scope: dict[str, PointLayout]
    ) -> int:
        for p in group.get("points", []):
            layout = PointLayout(
                name=p["name"],
                offset=offset,
                size=int(p["size"]),
                type=p["type"],
                sf=p.get("sf"),
                units=p.get("units"),
                writable=p.get("access") == "RW",
            )
            scope[prefix + p["name"]] = layout
            offset += layout.size
        for sub in group.get("groups", []):
            n = _instances(sub, counts)
            if sub in repeating:
                instances = repeats.setdefault(sub["name"], [])
                for _ in range(n):
                    # scale factors of a repeating group live in the enclosing group
                    instance: dict[str, PointLayout] = {}
                    offset = place(sub, offset, "", instance)
                    instances.append(instance)
            else:
                for i in range(n):
                    name = sub["name"] if n == 1 else f"{sub['name']}[{i}]"
                    offset = place(sub, offset, f"{prefix}{name}.", scope)
        return offset

    end = place(top, 0, "", points)
    length = model_length if model_length is not None else end - 2
    if end - 2 > length:
        raise ValueError(f"model {model_id}: device length {length} < definition length {end - 2}")
    return ModelLayout(model_id, length, points, {k: tuple(v) for k, v in repeats.items()})


def plan_reads(
    spans: list[tuple[int, int]], limit: int = MAX_REGISTERS_PER_READ
) -> list[tuple[int, int]]:
    """Cover register spans (start, count) with as few reads of at most `limit` registers as
    possible: sorted greedily, each read starting at the first span not yet covered."""
    reads: list[tuple[int, int]] = []
    for start, count in sorted(spans):
        end = start + count
        if reads:
            read_start, read_count = reads[-1]
            read_end = read_start + read_count
            if end <= read_end:
                continue
            if end - read_start <= limit:
                reads[-1] = (read_start, end - read_start)
                continue
            if start < read_end:  # overlaps the previous read: only read the rest
                start = read_end
        reads.append((start, end - start))
    return reads
