"""A strict SCPI-1999 programmable AC load, written from the standard (not from hil_sim's parser).

What it follows, and what a lenient instrument (or our own plant, before) let drivers get away with:

- IEEE 488.2 / SCPI-1999 6.2.4, the header path: the first header of a program message and any
  header with a leading ":" start at the root; after a ";" a header without one continues from
  the previous header's path (all its nodes but the last); common commands (`*OPC?`) leave the
  path alone. An unknown header is -113 and its query gets no answer.
- Short and long mnemonics in any case, optional nodes in brackets (`[SOURce:]POWer[:LEVel]`).
- Numeric parameters with an optional unit suffix and multiplier (SCPI-1999 7.5: `1.5KW`; M is
  milli, MA is mega); a wrong unit is -131 invalid suffix.
- Overlapped settings: with `settle_s` > 0 a setting takes effect that long after it was received,
  queries in between read the old value, `*OPC?` answers 1 only once every pending setting has
  taken effect and `*WAI` holds the rest of the message until then (IEEE 488.2 12.5.3 and 12.5.8).

The dialects a lab meets, each an option: the answers to several queries joined by ";" on one line
(IEEE 488.2 8.4.1) or one per line, character answers in long form (`POWER`), numeric answers with
their unit (`0.0W`), "\\r\\n" line ends.

It serves one load on a loopback port, in a thread of its own (pyvisa calls block).
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

NO_ERROR = (0, "No error")
UNDEFINED_HEADER = (-113, "Undefined header")
SYNTAX_ERROR = (-102, "Syntax error")
DATA_TYPE_ERROR = (-104, "Data type error")
PARAMETER_NOT_ALLOWED = (-108, "Parameter not allowed")
MISSING_PARAMETER = (-109, "Missing parameter")
INVALID_SUFFIX = (-131, "Invalid suffix")
DATA_OUT_OF_RANGE = (-222, "Data out of range")
QUEUE_OVERFLOW = (-350, "Queue overflow")

MAX_POWER_W = 3000.0
VOLTAGE_V = 230.0
LIST_POWER_W = 800.0  # what the stored program draws

_MULTIPLIER = {
    "EX": 1e18, "PE": 1e15, "T": 1e12, "G": 1e9, "MA": 1e6, "K": 1e3, "": 1.0,
    "M": 1e-3, "U": 1e-6, "N": 1e-9, "P": 1e-12, "F": 1e-15, "A": 1e-18,
}  # fmt: skip
_NUMERIC = re.compile(r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-z]*)")


class CommandError(Exception):
    def __init__(self, error: tuple[int, str]):
        super().__init__(f"{error[0]},{error[1]}")
        self.error = error


@dataclass(frozen=True)
class Dialect:
    """How this instrument differs from the next one (all within the standard)."""

    answers_on_own_lines: bool = False  # else joined by ";" on one line
    long_form_answers: bool = False  # FUNC? -> POWER, not POW
    unit_suffix_answers: bool = False  # POW? -> 1500.0W
    settle_s: float = 0.0  # settings take effect this long after they arrive
    line_end: str = "\n"


@dataclass
class _Pending:
    due: float
    name: str
    value: object


@dataclass
class LoadState:
    function: str = "POW"
    power_setpoint_w: float = 0.0
    input_on: bool = False
    energy_wh: float = 0.0
    since: float = field(default_factory=time.monotonic)

    def power_w(self) -> float:
        if not self.input_on:
            return 0.0
        return self.power_setpoint_w if self.function == "POW" else LIST_POWER_W


def _nodes(pattern: str) -> list[tuple[str, str, bool]]:
    """("SHORT", "LONG", optional) per node of a manual's header pattern."""
    nodes = []
    for optional, mnemonic in re.findall(r"(\[?):?([A-Za-z*]+)\]?", pattern):
        short = "".join(c for c in mnemonic if c.isupper() or c == "*")
        nodes.append((short, mnemonic.upper(), bool(optional)))
    return nodes


def _matches(nodes: list[tuple[str, str, bool]], tokens: list[str]) -> bool:
    if not nodes:
        return not tokens
    (short, long, optional), rest = nodes[0], nodes[1:]
    if tokens and tokens[0].upper() in (short, long) and _matches(rest, tokens[1:]):
        return True
    return optional and _matches(rest, tokens)


class StrictScpiLoad:
    """The instrument: `execute(line)` runs one program message; answers come back as lines."""

    def __init__(self, dialect: Dialect = Dialect()):
        self.dialect = dialect
        self.state = LoadState()
        self.errors: list[tuple[int, str]] = []
        self.pending: list[_Pending] = []
        self.received: list[str] = []  # every program message, as it came
        self._commands: list[tuple[list, bool, Callable]] = []
        for pattern, handler in self._command_table().items():
            query = pattern.endswith("?")
            self._commands.append((_nodes(pattern.rstrip("?")), query, handler))

    # -- the command set (header patterns as a manual prints them) ------------------------------
    def _command_table(self) -> dict[str, Callable]:
        return {
            "*IDN?": lambda p: self._none(p) or "Strict Instruments,AC-LOAD-1999,0001,1.0",
            "*CLS": lambda p: self._none(p) or self.errors.clear(),
            "*RST": self._reset,
            "*OPC": lambda p: self._none(p),
            "[SOURce]:FUNCtion": self._set_function,
            "[SOURce]:FUNCtion?": lambda p: self._none(p) or self._function_answer(),
            "[SOURce]:POWer[:LEVel][:IMMediate][:AMPLitude]": self._set_power,
            "[SOURce]:POWer[:LEVel][:IMMediate][:AMPLitude]?": lambda p: (
                self._none(p) or self._number(self._now().power_setpoint_w, "W")
            ),
            "INPut[:STATe]": self._set_input,
            "INPut[:STATe]?": lambda p: self._none(p) or ("1" if self._now().input_on else "0"),
            "MEASure[:SCALar]:POWer[:AC]?": lambda p: (
                self._none(p) or self._number(self._now().power_w(), "W")
            ),
            "MEASure[:SCALar]:VOLTage[:AC]?": lambda p: (
                self._none(p) or self._number(VOLTAGE_V, "V")
            ),
            "MEASure[:SCALar]:CURRent[:AC]?": lambda p: (
                self._none(p) or self._number(self._now().power_w() / VOLTAGE_V, "A")
            ),
            "MEASure[:SCALar]:ENERgy?": lambda p: (
                self._none(p) or self._number(self._energy_wh(), "WH")
            ),
            "SYSTem:ERRor[:NEXT]?": lambda p: self._none(p) or self._next_error(),
        }

    # -- program messages -----------------------------------------------------------------------
    async def execute(self, line: str) -> list[str]:
        """Run one program message; the response messages it produced, in order."""
        self.received.append(line)
        answers: list[str] = []
        path: list[str] = []
        for unit in _units(line):
            header, _, parameter_text = unit.strip().partition(" ")
            if not header:
                self._push(SYNTAX_ERROR)
                continue
            parameters = _parameters(parameter_text)
            if header.upper() in ("*OPC?", "*WAI"):
                await self._complete_pending()
                if header.upper() == "*OPC?":
                    answers.append("1")
                continue
            query = header.endswith("?")
            if header.startswith("*"):
                tokens = [header.rstrip("?")]
            else:
                relative = header.rstrip("?")
                tokens = ([] if relative.startswith(":") else path) + relative.lstrip(":").split(
                    ":"
                )
                path = tokens[:-1]
            handler = self._find(tokens, query)
            if handler is None:
                self._push(UNDEFINED_HEADER)
                continue
            try:
                answer = handler(parameters)
            except CommandError as exc:
                self._push(exc.error)
                continue
            if query and answer is not None:
                answers.append(answer)
        return answers

    def respond(self, answers: list[str]) -> str:
        """The bytes of the response: one line, or one per answer (dialect)."""
        if not answers:
            return ""
        end = self.dialect.line_end
        if self.dialect.answers_on_own_lines:
            return "".join(answer + end for answer in answers)
        return ";".join(answers) + end

    def _find(self, tokens: list[str], query: bool) -> Callable | None:
        if any(not token for token in tokens):
            return None
        for nodes, is_query, handler in self._commands:
            if is_query == query and _matches(nodes, tokens):
                return handler
        return None

    def _push(self, error: tuple[int, str]) -> None:
        if len(self.errors) < 16:
            self.errors.append(error)
        else:
            self.errors[-1] = QUEUE_OVERFLOW

    # -- settings that take effect late ---------------------------------------------------------
    def _set_later(self, name: str, value: object) -> None:
        due = time.monotonic() + self.dialect.settle_s
        self.pending.append(_Pending(due, name, value))
        self._now()

    def _now(self) -> LoadState:
        """The state with every setting that is due applied."""
        now = time.monotonic()
        due = [p for p in self.pending if p.due <= now]
        if due:
            self._integrate(now)
            for setting in due:
                setattr(self.state, setting.name, setting.value)
            self.pending = [p for p in self.pending if p.due > now]
        return self.state

    async def _complete_pending(self) -> None:
        while self.pending:
            await asyncio.sleep(max(0.0, max(p.due for p in self.pending) - time.monotonic()))
            self._now()

    def _integrate(self, now: float) -> None:
        state = self.state
        state.energy_wh += state.power_w() * (now - state.since) / 3600
        state.since = now

    def _energy_wh(self) -> float:
        self._now()
        self._integrate(time.monotonic())
        return self.state.energy_wh

    # -- handlers -------------------------------------------------------------------------------
    @staticmethod
    def _none(parameters: list[str]) -> None:
        if parameters:
            raise CommandError(PARAMETER_NOT_ALLOWED)

    @staticmethod
    def _one(parameters: list[str]) -> str:
        if not parameters:
            raise CommandError(MISSING_PARAMETER)
        if len(parameters) > 1:
            raise CommandError(PARAMETER_NOT_ALLOWED)
        return parameters[0]

    def _reset(self, parameters: list[str]) -> None:
        self._none(parameters)
        self.pending.clear()
        self.state = LoadState(energy_wh=self.state.energy_wh)

    def _set_function(self, parameters: list[str]) -> None:
        text = self._one(parameters).upper()
        if text in ("POW", "POWER"):
            self._set_later("function", "POW")
        elif text == "LIST":
            self._set_later("function", "LIST")
        else:
            raise CommandError(DATA_TYPE_ERROR)

    def _function_answer(self) -> str:
        function = self._now().function
        return "POWER" if function == "POW" and self.dialect.long_form_answers else function

    def _set_power(self, parameters: list[str]) -> None:
        text = self._one(parameters)
        if text.upper() in ("MIN", "MINIMUM", "MAX", "MAXIMUM"):
            power_w = 0.0 if text.upper().startswith("MIN") else MAX_POWER_W
        else:
            power_w = _numeric(text, "W")
        if not 0.0 <= power_w <= MAX_POWER_W:
            raise CommandError(DATA_OUT_OF_RANGE)
        self._set_later("power_setpoint_w", power_w)

    def _set_input(self, parameters: list[str]) -> None:
        text = self._one(parameters).upper()
        if text in ("ON", "1"):
            self._set_later("input_on", True)
        elif text in ("OFF", "0"):
            self._set_later("input_on", False)
        else:
            raise CommandError(DATA_TYPE_ERROR)

    def _number(self, value: float, unit: str) -> str:
        text = f"{value:.3f}"
        return text + unit if self.dialect.unit_suffix_answers else text

    def _next_error(self) -> str:
        code, message = self.errors.pop(0) if self.errors else NO_ERROR
        return f'{code},"{message}"'


def _units(line: str) -> list[str]:
    """Program message units: split at ";" outside quoted strings."""
    units, current, quote = [], [], ""
    for ch in line:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == ";":
            units.append("".join(current))
            current = []
            continue
        current.append(ch)
    units.append("".join(current))
    return [unit for unit in units if unit.strip()]


def _parameters(text: str) -> list[str]:
    return [part.strip() for part in text.split(",")] if text.strip() else []


def _numeric(text: str, unit: str) -> float:
    """A decimal numeric parameter with an optional suffix in `unit` (SCPI-1999 7.5)."""
    match = _NUMERIC.fullmatch(text.strip())
    if match is None:
        raise CommandError(DATA_TYPE_ERROR)
    number, suffix = float(match.group(1)), match.group(2).upper()
    if not suffix:
        return number
    if not suffix.endswith(unit) or suffix[: -len(unit)] not in _MULTIPLIER:
        raise CommandError(INVALID_SUFFIX)
    return number * _MULTIPLIER[suffix[: -len(unit)]]


class StrictScpiServer:
    """Serves a `StrictScpiLoad` on 127.0.0.1 (a free port), from a thread with its own loop."""

    def __init__(self, dialect: Dialect = Dialect()):
        self.instrument = StrictScpiLoad(dialect)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def resource(self) -> str:
        return f"TCPIP0::127.0.0.1::{self.port}::SOCKET"

    def start(self) -> StrictScpiServer:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        self.port = future.result(timeout=10)
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
                for writer in list(self._writers):
                    writer.close()
                await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _listen(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while line := await reader.readline():
                text = line.decode("ascii", errors="replace").rstrip("\r\n")
                if not text.strip():
                    continue
                response = self.instrument.respond(await self.instrument.execute(text))
                if response:
                    writer.write(response.encode("ascii"))
                    await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
