"""A small SCPI command parser: program messages, header mnemonics, parameters, error queue.

Headers are matched node by node against patterns written as in instrument manuals
("MEASure[:SCALar]:POWer?"): each node accepts its short form (the upper-case letters) or its long
form, in any case; bracketed nodes are optional. A program message holds several commands
separated by ";". Header paths follow SCPI-1999 6.2.4, strictly, as instruments of other makers do:
the first command of a message, and any header with a leading ":", starts at the root; after a
";" a header without one continues from the previous header's path (its nodes but the last), so
`MEAS:POW?;VOLT?` reads MEAS:VOLT? and `MEAS:POW?;MEAS:VOLT?` reads MEAS:MEAS:VOLT? (-113
undefined header); common commands (`*CLS`, `*OPC?`) leave the path as it is.

A controller sends the same few program messages over and over, so `CommandTree` keeps how each
recent message splits into commands and parameters (a bounded cache; errors still go to the queue
each time a message runs).
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass

from labspec.programmable_load import (
    ERROR_DATA_OUT_OF_RANGE,
    ERROR_DATA_TYPE,
    ERROR_QUEUE_OVERFLOW,
    ERROR_QUEUE_SIZE,
    ERROR_UNDEFINED_HEADER,
    NO_ERROR,
)

ERROR_MISSING_PARAMETER = (-109, "Missing parameter")
ERROR_PARAMETER_NOT_ALLOWED = (-108, "Parameter not allowed")


class ScpiError(Exception):
    """A command error that goes to the error queue as (code, message)."""

    def __init__(self, error: tuple[int, str], detail: str = ""):
        super().__init__(f"{error[0]},{error[1]}" + (f"; {detail}" if detail else ""))
        self.code, self.message = error
        self.detail = detail


class ErrorQueue:
    """The SCPI error/event queue: FIFO, bounded; on overflow the newest entry becomes -350."""

    def __init__(self, size: int = ERROR_QUEUE_SIZE):
        self._size = size
        self._queue: collections.deque[tuple[int, str]] = collections.deque()

    def push(self, code: int, message: str) -> None:
        if len(self._queue) < self._size:
            self._queue.append((code, message))
        else:
            self._queue[-1] = ERROR_QUEUE_OVERFLOW

    def pop(self) -> tuple[int, str]:
        return self._queue.popleft() if self._queue else NO_ERROR

    def clear(self) -> None:
        self._queue.clear()

    def __len__(self) -> int:
        return len(self._queue)


@dataclass(frozen=True, slots=True)
class _Node:
    short: str
    long: str
    optional: bool

    def matches(self, token: str) -> bool:
        token = token.upper()
        return token in (self.short, self.long)


def _compile(pattern: str) -> tuple[tuple[_Node, ...], bool]:
    """Nodes of a header pattern like "MEASure[:SCALar]:POWer?"; returns (nodes, is_query)."""
    is_query = pattern.endswith("?")
    pattern = pattern.rstrip("?")
    nodes: list[_Node] = []
    rest = pattern
    while rest:
        optional = rest.startswith("[")
        if optional:
            end = rest.index("]")
            mnemonic, rest = rest[1:end].lstrip(":"), rest[end + 1 :]
        else:
            rest = rest.lstrip(":")
            cut = min((i for i in (rest.find(":"), rest.find("[")) if i >= 0), default=len(rest))
            mnemonic, rest = rest[:cut], rest[cut:]
        short = "".join(ch for ch in mnemonic if ch.isupper() or ch in "*0123456789")
        nodes.append(
            _Node(short=short or mnemonic.upper(), long=mnemonic.upper(), optional=optional)
        )
    return tuple(nodes), is_query


def _match(nodes: tuple[_Node, ...], tokens: list[str]) -> bool:
    if not nodes:
        return not tokens
    node = nodes[0]
    if tokens and node.matches(tokens[0]) and _match(nodes[1:], tokens[1:]):
        return True
    return node.optional and _match(nodes[1:], tokens)


Handler = Callable[[list[str]], str | None]

MAX_PLANS_CACHED = 256


@dataclass(frozen=True, slots=True)
class Command:
    pattern: str
    nodes: tuple[_Node, ...]
    is_query: bool
    handler: Handler


class CommandTree:
    """Header patterns and their handlers; `execute` runs one program message (a line)."""

    def __init__(self) -> None:
        self._commands: list[Command] = []
        self.errors = ErrorQueue()
        # program message -> its commands (None: undefined header) and their parameters
        self._plans: dict[str, tuple[tuple[Command | None, tuple[str, ...]], ...]] = {}

    def add(self, pattern: str, handler: Handler) -> None:
        nodes, is_query = _compile(pattern)
        self._commands.append(Command(pattern, nodes, is_query, handler))
        self._plans.clear()

    def _find(self, tokens: list[str], is_query: bool) -> Command | None:
        if not tokens or any(not t for t in tokens):
            return None
        for command in self._commands:
            if command.is_query == is_query and _match(command.nodes, tokens):
                return command
        return None

    def _plan(self, line: str) -> tuple[tuple[Command | None, tuple[str, ...]], ...]:
        plan = self._plans.get(line)
        if plan is None:
            steps = []
            path: list[str] = []  # the current path (SCPI-1999 6.2.4): the root at first
            for unit in _split_units(line):
                header, _, params_text = unit.partition(" ")
                header = header.strip()
                params = [p.strip() for p in params_text.split(",")] if params_text.strip() else []
                is_query = header.endswith("?")
                if header.startswith("*"):  # a common command: the path stays
                    tokens = [header.rstrip("?")]
                else:
                    relative = header.rstrip("?")
                    base = [] if relative.startswith(":") else path
                    tokens = [*base, *relative.removeprefix(":").split(":")]
                    path = tokens[:-1]
                steps.append((self._find(tokens, is_query), tuple(params)))
            plan = tuple(steps)
            if len(self._plans) >= MAX_PLANS_CACHED:
                self._plans.clear()
            self._plans[line] = plan
        return plan

    def execute(self, line: str) -> str | None:
        """Run every command of a program message; returns the joined answers, if any."""
        answers: list[str] = []
        for command, params in self._plan(line):
            if command is None:
                self.errors.push(*ERROR_UNDEFINED_HEADER)
                continue
            try:
                answer = command.handler(list(params))
            except ScpiError as exc:
                self.errors.push(exc.code, exc.message)
                continue
            if answer is not None:
                answers.append(answer)
        return ";".join(answers) if answers else None


def _split_units(line: str) -> list[str]:
    """Split a program message at ";" outside quoted strings; drop empty units."""
    units: list[str] = []
    current: list[str] = []
    quote = ""
    for ch in line:
        if quote:
            current.append(ch)
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
            current.append(ch)
        elif ch == ";":
            units.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    units.append("".join(current).strip())
    return [u for u in units if u]


# -- parameter decoding -------------------------------------------------------------------------
def no_parameters(params: list[str]) -> None:
    if params:
        raise ScpiError(ERROR_PARAMETER_NOT_ALLOWED, params[0])


def one_parameter(params: list[str]) -> str:
    if not params or not params[0]:
        raise ScpiError(ERROR_MISSING_PARAMETER)
    if len(params) > 1:
        raise ScpiError(ERROR_PARAMETER_NOT_ALLOWED, params[1])
    return params[0]


def parse_boolean(text: str) -> bool:
    """ON|OFF|1|0 (any case)."""
    value = text.strip().upper()
    if value in ("ON", "1"):
        return True
    if value in ("OFF", "0"):
        return False
    raise ScpiError(ERROR_DATA_TYPE, f"{text!r} is not ON, OFF, 1 or 0")


def parse_watts(text: str) -> float:
    """A decimal numeric parameter in W, with an optional unit suffix W or KW."""
    value = text.strip().upper().replace(" ", "")
    multiplier = 1.0
    for suffix, factor in (("KW", 1e3), ("W", 1.0)):
        if value.endswith(suffix) and value[: -len(suffix)][-1:].isdigit():
            multiplier = factor
            value = value[: -len(suffix)]
            break
    try:
        number = float(value)
    except ValueError:
        raise ScpiError(ERROR_DATA_TYPE, f"{text!r} is not a number") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ScpiError(ERROR_DATA_OUT_OF_RANGE, f"{text!r}")
    return number * multiplier


def out_of_range(detail: str) -> ScpiError:
    return ScpiError(ERROR_DATA_OUT_OF_RANGE, detail)
