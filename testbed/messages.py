"""Bounded error messages: a value from an input file is cut, with its length given.

A field of a file can be megabytes long (a garbage cell in a CSV, a binary blob in a config);
echoing it whole would flood the terminal and hide the reason. Every message that quotes input
quotes it through `quoted`, and a whole message is capped by `bounded`.
"""

from __future__ import annotations

from typing import Any

MAX_VALUE_CHARS = 60
MAX_MESSAGE_CHARS = 2000


def quoted(value: Any, limit: int = MAX_VALUE_CHARS) -> str:
    """`repr(value)`, cut to about `limit` characters with the original length given."""
    if isinstance(value, str | bytes) and len(value) > limit:
        unit = "characters" if isinstance(value, str) else "bytes"
        return f"{value[:limit]!r}... ({len(value):,} {unit})"
    text = repr(value)
    if len(text) > limit:
        return f"{text[:limit]}... ({len(text):,} characters)"
    return text


def bounded(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`message`, cut to `limit` characters with its length given."""
    if len(message) <= limit:
        return message
    return f"{message[:limit]}... (message cut: {len(message):,} characters)"
