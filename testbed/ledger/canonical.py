"""Canonical JSON and SHA-256: the bytes that are hashed and signed.

Canonical JSON here is UTF-8, keys sorted, no spaces, no NaN or infinity, floats as Python's
shortest round-trip repr. The same data always gives the same bytes, so a hash or a signature over
it can be checked again from the stored text.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(data: Any) -> str:
    """The canonical JSON text of plain data (dicts, lists, str, int, float, bool, None)."""
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def canonical_bytes(data: Any) -> bytes:
    return canonical_json(data).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
