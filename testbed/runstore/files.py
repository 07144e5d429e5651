"""The plain files of a run directory: config.toml (written with tomli-w) and atomic JSON."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import tomli_w


def without_none(data: Any) -> Any:
    """`data` with every None value left out of its tables (TOML has no null)."""
    if isinstance(data, Mapping):
        return {str(k): without_none(v) for k, v in data.items() if v is not None}
    if isinstance(data, list | tuple):
        return [without_none(item) for item in data if item is not None]
    return data


def dump_toml(data: Mapping[str, Any]) -> str:
    """TOML text for plain data (tables, scalars, lists); None values are left out."""
    return tomli_w.dumps(without_none(data))


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON through a temporary file so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def find_key(data: Any, names: Sequence[str], depth: int = 0) -> Any:
    """The first value under one of `names`, searched breadth-first two levels deep."""
    if not isinstance(data, Mapping) or depth > 2:
        return None
    for name in names:
        if name in data and not isinstance(data[name], Mapping):
            return data[name]
    for value in data.values():
        found = find_key(value, names, depth + 1)
        if found is not None:
            return found
    return None
