"""A pydantic `ValidationError` as one line per problem: `<key> = <value>: <what is allowed>`.

Shared by every TOML file the project reads (the site file, the plant's and the controller's), so a
bad value is reported the same way everywhere, with its dotted key as it is spelled in the file.
"""

from __future__ import annotations

import math
import types
import typing
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails


def describe_validation_error(exc: ValidationError, prefix: str, model: type[BaseModel]) -> str:
    """One line per problem: `<dotted key> = <value>: <what is allowed>` (keys under `prefix`)."""
    lines = []
    for error in exc.errors(include_url=False):
        parts, where = _walk(model, tuple(error["loc"]))
        shown = _shown_value(error)
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            ctx = error.get("ctx", {})
            parts.append(str(ctx.get("discriminator", "kind")).strip("'"))
            shown = f" = {ctx['tag']!r}" if "tag" in ctx else ""
        key = ".".join([p for p in (prefix,) if p] + parts)
        lines.append(f"{key}{shown}: {_allowed(error, where, key)}")
    if len(lines) == 1:
        return lines[0]
    return f"{lines[0]} (and {len(lines) - 1} more: " + "; ".join(lines[1:]) + ")"


def _members(annotation: Any) -> tuple[Any, ...]:
    """The types a field may hold (the arguments of a union, Annotated stripped)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        out: tuple[Any, ...] = ()
        for arg in typing.get_args(annotation):
            out += _members(arg)
        return out
    return (annotation,)


def _tagged(members: tuple[Any, ...], tag: Any) -> type[BaseModel] | None:
    """The member of a discriminated union whose `kind` literal is `tag`."""
    for member in members:
        if isinstance(member, type) and issubclass(member, BaseModel):
            field = member.model_fields.get("kind")
            if field is not None and tag in typing.get_args(field.annotation):
                return member
    return None


def _walk(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[list[str], type[BaseModel] | None]:
    """The key as the file spells it (union tags dropped) and the model that holds its last part."""
    parts: list[str] = []
    current: Any = model
    holder: type[BaseModel] | None = model
    pending: tuple[Any, ...] | None = None  # the possible types at this position
    for part in loc:
        if pending is not None:
            tagged = _tagged(pending, part)
            if tagged is not None:  # pydantic puts a discriminated union's tag into the location
                current, holder, pending = tagged, tagged, None
                continue
            models = [m for m in pending if isinstance(m, type) and issubclass(m, BaseModel)]
            containers = [m for m in pending if typing.get_origin(m) in (dict, tuple, list)]
            if containers:
                parts.append(str(part))
                args = [a for a in typing.get_args(containers[0]) if a is not Ellipsis]
                pending = _members(args[-1] if args else Any)  # tuple[X, ...], list[X], dict[K, X]
                holder = None
                continue
            current = models[0] if models else None
            holder = current
            pending = None
        parts.append(str(part))
        fields = getattr(current, "model_fields", None)
        field = fields.get(part) if fields else None
        if field is None:
            holder = current if isinstance(current, type) else None
            current = None
            continue
        holder = current
        pending = _members(field.annotation)
    return parts, holder


def _shown_value(error: ErrorDetails) -> str:
    if error["type"] in ("missing",):
        return ""
    value = error.get("input")
    if isinstance(value, dict):
        return ""
    if isinstance(value, datetime):
        return f" = {value.isoformat()}"
    text = repr(value) if isinstance(value, str) else fmt(value)
    if len(text) > SHOWN_CHARS:  # a whole table or array written in the wrong place
        text = text[: SHOWN_CHARS - 3] + "..."
    return f" = {text}"


SHOWN_CHARS = 120  # a value longer than this is cut in a message


def fmt(value: Any) -> str:
    """A value as TOML would spell it: -3 rather than -3.0, true rather than True."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if (
        isinstance(value, float)
        and math.isfinite(value)
        and value.is_integer()
        and abs(value) < 1e15
    ):
        return str(int(value))
    if isinstance(value, (int, float)):
        return str(value)
    return repr(value)


def _allowed(error: ErrorDetails, holder: type[BaseModel] | None, key: str = "key") -> str:
    kind, ctx = error["type"], error.get("ctx", {})
    bounds = {
        "greater_than": ("> ", "gt"),
        "greater_than_equal": (">= ", "ge"),
        "less_than": ("< ", "lt"),
        "less_than_equal": ("<= ", "le"),
    }
    if kind in bounds:
        symbol, name = bounds[kind]
        return f"must be {symbol}{fmt(ctx[name])}"
    if kind == "extra_forbidden":
        allowed = list(getattr(holder, "model_fields", {}))
        return f"unknown key; allowed: {', '.join(allowed)}"
    if kind == "missing":
        return "required key is missing"
    if kind in ("float_type", "float_parsing", "finite_number", "int_type", "int_parsing"):
        what = "an integer" if kind.startswith("int") else "a finite number"
        return f"must be {what}"
    if kind == "int_from_float":
        return "must be an integer"
    if kind in ("bool_type", "bool_parsing"):
        return "must be true or false"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}"
    if kind == "union_tag_invalid":
        return f"unknown kind; allowed: {ctx.get('expected_tags')}"
    if kind == "union_tag_not_found":
        return "required key is missing"
    if kind in ("datetime_type", "datetime_parsing", "datetime_from_date_parsing"):
        return "must be a datetime with a UTC offset, e.g. 2026-03-21T00:00:00+05:30"
    if kind in ("tuple_type", "list_type"):
        return "must be a list"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        if isinstance(error.get("input"), list):
            return f"must be a table ([{key}] or [{key}.<id>]), not an array of tables ([[{key}]])"
        return "must be a table"
    if kind == "string_type":
        return "must be a string"
    if kind == "too_short":
        least = ctx.get("min_length", 1)
        return "must not be empty" if least == 1 else f"must have at least {least} entries"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx.get('pattern')}"
    return str(error["msg"]).removeprefix("Value error, ")


def validation_message(
    exc: ValidationError, source: str, prefix: str, model: type[BaseModel]
) -> str:
    """`<source>: <the problems>` (the source is usually the file's path)."""
    return f"{source}: {describe_validation_error(exc, prefix, model)}"
