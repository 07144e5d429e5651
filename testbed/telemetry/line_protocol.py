"""InfluxDB line protocol: escaping, field values and nanosecond timestamps.

Every number is written as a float (never `i`), so a field never changes type between points (a type
change makes InfluxDB reject the point). Non-finite floats (NaN, ±inf) have no line-protocol form;
callers leave them out.
"""

from __future__ import annotations

from datetime import UTC, datetime

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_TAG_ESCAPES = str.maketrans(
    {"\\": "/", ",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\ ", "\r": r"\ "}
)
_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\ "})
_STRING_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r"})


def escape_tag(text: str) -> str:
    """Escape a tag key, tag value or field key (comma, `=`, space; newline -> space).

    InfluxDB versions disagree on backslashes in tags (1.x keeps them literally and cannot end a tag
    with one), so a backslash becomes `/`.
    """
    return text.translate(_TAG_ESCAPES)


def escape_measurement(text: str) -> str:
    """Escape a measurement name (commas and spaces)."""
    return text.translate(_MEASUREMENT_ESCAPES)


def string_field(text: str) -> str:
    """A quoted string field value (backslashes, quotes and newlines escaped)."""
    return '"' + text.translate(_STRING_ESCAPES) + '"'


def is_finite(value: float) -> bool:
    """True unless NaN or ±inf (`x - x` is NaN exactly for those)."""
    return value - value == 0.0


def timestamp_ns(moment: datetime) -> int:
    """Exact nanoseconds since the Unix epoch of a timezone-aware datetime (no float rounding)."""
    if moment.tzinfo is None:
        raise ValueError(
            f"naive datetime {moment.isoformat()}: document times must be timezone-aware UTC"
        )
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def series_prefix(measurement: str, tags: dict[str, str]) -> str:
    """`measurement,tag=value,...`, tags sorted by key (as InfluxDB prefers), empty ones out."""
    parts = [escape_measurement(measurement)]
    for key in sorted(tags):
        value = tags[key]
        if value:
            parts.append(f"{escape_tag(key)}={escape_tag(value)}")
    return ",".join(parts)
