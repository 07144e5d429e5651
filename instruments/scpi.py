"""A declarative SCPI layer in the style of PyMeasure: one line per property.

    class Load(ScpiInstrument):
        power_setpoint_w = control("POW?", "POW {:.1f}", validator=in_range(0, 3000), unit="W")
        input_on = control("INP?", "INP {}", validator=one_of(True, False), values=ON_OFF)
        power_w = measurement("MEAS:POW?", unit="W")

Reading a property sends its query and parses the answer; setting one validates the value
(`SetpointRefused` naming the value and the allowed range, before anything is sent), sends the
command and then asks the error queue (`SYST:ERR?`): a non-zero answer raises `DeviceError`
naming the command and the instrument's answer. The class is synchronous, like pyvisa; the async
drivers run it in their session's worker thread.

Following SCPI-1999 rather than one instrument's habits:
- every header goes out fully qualified from the root (`:MEAS:POW?`): after a `;` an instrument
  reads the next header relative to the previous one's path (SCPI-1999 6.2.4), so
  `MEAS:POW?;MEAS:VOLT?` means `MEAS:MEAS:VOLT?` to a strict instrument;
- answers are understood in long or short form (`POWER` or `POW`, `scpi_choice`) and with a unit
  suffix (`0.0W`, `1.5KW`, SCPI-1999 7.5) when the suffix is the declared unit;
- what varies between vendors is the `ScpiDialect`: answers joined by `;` or one per line, `*OPC?`
  or `*WAI` before a setpoint is read back, unit suffixes on numeric settings.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from instruments.config import ScpiDialect
from instruments.errors import BadReading, DeviceError, SetpointRefused


class Transport(Protocol):
    """What an instrument needs from its session (a pyvisa MessageBasedResource fits)."""

    def write(self, message: str) -> Any: ...

    def query(self, message: str) -> str: ...

    def read(self) -> str: ...


def qualified(header: str) -> str:
    """`header` from the root of the command tree (a leading ':'); common commands (`*IDN?`) and
    headers already qualified are left as they are."""
    return header if header.startswith((":", "*")) else f":{header}"


# -- validators: each returns the validated value or raises SetpointRefused --------------------


@dataclass(frozen=True, slots=True)
class in_range:
    """A finite number within [low, high]."""

    low: float
    high: float

    def __call__(self, device: str, quantity: str, value: Any, unit: str) -> float:
        allowed = f"{self.low:g} to {self.high:g} {unit}".rstrip()
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise SetpointRefused(device, quantity, value, f"a finite number, {allowed}")
        if not self.low <= value <= self.high:
            raise SetpointRefused(device, quantity, value, allowed)
        return float(value)


class one_of:
    """One of a fixed set of values (of the same types)."""

    def __init__(self, *choices: Any) -> None:
        self.choices = choices

    def __call__(self, device: str, quantity: str, value: Any, unit: str) -> Any:
        if value not in self.choices or type(value) not in {type(c) for c in self.choices}:
            raise SetpointRefused(device, quantity, value, f"one of {list(self.choices)}")
        return value


Validator = Callable[[str, str, Any, str], Any]

ON_OFF: Mapping[Any, str] = {True: "ON", False: "OFF"}


def scpi_bool(answer: str) -> bool:
    """Parse a SCPI boolean answer (1/0/ON/OFF)."""
    text = answer.strip().upper()
    if text in ("1", "ON"):
        return True
    if text in ("0", "OFF"):
        return False
    raise ValueError(f"not a SCPI boolean: {answer!r}")


def scpi_float(answer: str) -> float:
    return float(answer.strip())


# SCPI-1999 7.5.2: suffix multipliers (M is milli, MA is mega)
_MULTIPLIERS = {
    "EX": 1e18, "PE": 1e15, "T": 1e12, "G": 1e9, "MA": 1e6, "K": 1e3, "": 1.0,
    "M": 1e-3, "U": 1e-6, "N": 1e-9, "P": 1e-12, "F": 1e-15, "A": 1e-18,
}  # fmt: skip
_WITH_SUFFIX = re.compile(r"\s*([-+]?[0-9.]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z]+)\s*")


def scpi_number(unit: str) -> Callable[[str], float]:
    """A parser of numeric answers in `unit`: a plain number, or one with the unit as suffix,
    with or without a multiplier (`1.5KW` = 1500 W); another unit is a ValueError."""
    unit_upper = unit.upper()

    def parse(answer: str) -> float:
        try:
            return float(answer)  # the usual answer: a plain number (spaces are allowed)
        except ValueError:
            pass
        match = _WITH_SUFFIX.fullmatch(answer)
        if match is None or not unit_upper:
            raise ValueError(f"not a number: {answer!r}")
        number, suffix = match.group(1), match.group(2).upper()
        if not suffix.endswith(unit_upper):
            raise ValueError(f"{answer!r} is not in {unit}")
        multiplier = _MULTIPLIERS.get(suffix[: -len(unit_upper)])
        if multiplier is None:
            raise ValueError(f"{answer!r}: unknown multiplier in {suffix!r}")
        return float(number) * multiplier

    return parse


def scpi_str(answer: str) -> str:
    return answer.strip().strip('"').upper()


def scpi_choice(*mnemonics: str) -> Callable[[str], str]:
    """A parser of character answers among `mnemonics`, written as in a manual ("POWer"):
    the short form (upper-case letters) or the long form, in any case and quoted or not,
    gives the short form ("POWER" -> "POW")."""
    forms: dict[str, str] = {}
    for mnemonic in mnemonics:
        short = "".join(ch for ch in mnemonic if not ch.islower()) or mnemonic.upper()
        forms[short.upper()] = forms[mnemonic.upper()] = short.upper()

    def parse(answer: str) -> str:
        text = answer.strip().strip('"').upper()
        try:
            return forms[text]
        except KeyError:
            raise ValueError(f"{answer!r} is not one of {list(mnemonics)}") from None

    return parse


def split_answers(text: str) -> list[str]:
    """Split a response message at ";" outside double-quoted strings."""
    if '"' not in text:
        return [part.strip() for part in text.split(";")]
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == ";" and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts]


# -- descriptors ---------------------------------------------------------------------------------


class measurement:
    """A read-only property: `query` parsed by `parse`, in `unit`."""

    def __init__(
        self,
        query: str,
        *,
        unit: str = "",
        parse: Callable[[str], Any] | None = None,
        doc: str = "",
    ) -> None:
        self.query = qualified(query)
        self.unit = unit
        self.parse = parse or scpi_number(unit)
        self.__doc__ = doc or f"{query} [{unit}]"
        self.name = query

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instrument: ScpiInstrument | None, owner: type) -> Any:
        if instrument is None:
            return self
        return instrument.ask_parsed(self.query, self.parse, self.name)

    def __set__(self, instrument: ScpiInstrument, value: Any) -> None:
        raise AttributeError(f"{self.name} is a measurement ({self.query}); it cannot be set")


class control(measurement):
    """A read-write property: `query` to read, `command` (a format string) to write.

    `values` maps Python values to the instrument's words (e.g. ON_OFF) for the command.
    """

    def __init__(
        self,
        query: str,
        command: str,
        *,
        validator: Validator | None = None,
        values: Mapping[Any, str] | None = None,
        unit: str = "",
        parse: Callable[[str], Any] | None = None,
        check_errors: bool = True,
        doc: str = "",
    ) -> None:
        super().__init__(query, unit=unit, parse=parse, doc=doc)
        self.command = qualified(command)
        self.validator = validator
        self.values = values
        self.check_errors = check_errors

    def __set__(self, instrument: ScpiInstrument, value: Any) -> None:
        command = self.format(instrument.name, value, instrument.dialect.command_units)
        instrument.write_checked(command, self.check_errors)

    def format(self, device: str, value: Any, units: bool = False) -> str:
        """The command that sets `value` (validated first; SetpointRefused if not allowed);
        `units`: a number carries the declared unit as suffix (`:POW 1500.0W`)."""
        if self.validator is not None:
            value = self.validator(device, self.name, value, self.unit)
        if self.values is not None:
            value = self.values[value]
        command = self.command.format(value)
        if units and self.unit and isinstance(value, int | float) and not isinstance(value, bool):
            command += self.unit
        return command


# -- the instrument --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProgramMessage:
    """One program message: what to send, the declared queries it answers, the commands it
    carries (then its first answers are `*OPC?`'s, if `settled`, and the error queue's), and how
    many answers come back."""

    message: str
    queries: tuple[measurement, ...]
    commands: str = ""
    settled: bool = False  # "*OPC?" follows the commands
    answers: int = 0


OPERATION_COMPLETE = "*OPC?"
WAIT = "*WAI"


class ScpiInstrument:
    """A SCPI instrument over a message-based session; subclasses declare their properties."""

    error_query = ":SYST:ERR?"

    def __init__(self, transport: Transport, name: str, dialect: ScpiDialect | None = None) -> None:
        self.transport = transport
        self.name = name
        self.dialect = dialect or ScpiDialect()
        self.lines_per_answer = self.dialect.answer_separator == "newline"

    def write(self, command: str) -> None:
        self.transport.write(command)

    def ask(self, query: str) -> str:
        return self.transport.query(query)

    def ask_parsed(self, query: str, parse: Callable[[str], Any], quantity: str) -> Any:
        answer = self.ask(query)
        try:
            return parse(answer)
        except ValueError:
            raise BadReading(self.name, quantity, answer, f"an answer to {query}") from None

    def clear_status(self) -> None:
        """*CLS: empty the error queue (so old errors are not blamed on new commands)."""
        self.write("*CLS")

    def write_checked(self, command: str, check_errors: bool = True) -> None:
        """Send `command`, then raise DeviceError if the error queue holds an error."""
        self.write(command)
        if check_errors:
            self.check_errors(command)

    def check_errors(self, command: str) -> None:
        """Ask the error queue once; on an error, drain the queue and raise naming `command`."""
        code, message = self.next_error()
        if code == 0:
            return
        self.drain_errors()  # what else is queued, so the next command starts clean
        raise DeviceError(self.name, repr(command), code, message)

    def next_error(self) -> tuple[int, str]:
        return self._parse_error(self.ask(self.error_query))

    def _parse_error(self, answer: str) -> tuple[int, str]:
        code_text, _, message = answer.partition(",")
        try:
            return int(code_text.strip()), message.strip().strip('"')
        except ValueError:
            raise BadReading(self.name, "error queue", answer, '<code>,"<message>"') from None

    def lines_of(self, program: ProgramMessage) -> int:
        """How many lines the answer to `program` takes in this dialect."""
        return program.answers if self.lines_per_answer else min(program.answers, 1)

    def ask_program(self, program: ProgramMessage) -> list[str]:
        """Send `program` and read its answer: one line, or one line per answer."""
        lines = [self.ask(program.message)]
        for _ in range(self.lines_of(program) - 1):
            lines.append(self.transport.read())
        return lines

    def query_many(self, names: Sequence[str]) -> dict[str, Any]:
        """Read several declared properties with ONE program message (answers joined by ";",
        or one line each in the "newline" dialect)."""
        program = self.plan_query(names)
        return self.parse_answer(program, self.ask_program(program))

    def exchange(self, settings: Mapping[str, Any], names: Sequence[str] = ()) -> dict[str, Any]:
        """Set several declared controls, wait for them to settle, check the error queue and
        read `names` back, all in ONE program message:
        `<commands>;*OPC?;:SYST:ERR?;<queries>`. Every value is validated before anything is
        sent; an error in the queue raises DeviceError naming the commands."""
        program = self.plan_exchange(settings, names)
        try:
            return self.parse_answer(program, self.ask_program(program))
        except DeviceError:
            self.drain_errors()  # so the next exchange starts clean
            raise

    # The two halves of a program message, for callers that send and receive it themselves
    # (the async driver waits for the answer on its event loop): plan it, then parse the answer.

    def plan_query(self, names: Sequence[str]) -> ProgramMessage:
        """The program message that reads the declared properties `names`."""
        declared = self.declarations()
        queries = tuple(declared[name] for name in names)
        return ProgramMessage(";".join(q.query for q in queries), queries, answers=len(queries))

    def plan_exchange(
        self, settings: Mapping[str, Any], names: Sequence[str] = ()
    ) -> ProgramMessage:
        """The program message of `exchange` (validated: SetpointRefused before sending)."""
        declared = self.declarations()
        units = self.dialect.command_units
        commands = []
        for name, value in settings.items():
            declaration = declared[name]
            if not isinstance(declaration, control):
                raise AttributeError(f"{name} is a measurement; it cannot be set")
            commands.append(declaration.format(self.name, value, units))
        queries = tuple(declared[name] for name in names)
        settle = self.dialect.settle
        settled = settle == "opc" and bool(commands)
        synchronise = [OPERATION_COMPLETE] if settled else [WAIT] if settle == "wai" else []
        message = ";".join([*commands, *synchronise, self.error_query, *(q.query for q in queries)])
        answers = len(queries) + 1 + (1 if settled else 0)
        return ProgramMessage(message, queries, ";".join(commands), settled, answers)

    def parse_answer(self, program: ProgramMessage, answer: str | Sequence[str]) -> dict[str, Any]:
        """The parsed answers of `program` (the line read, or the lines); DeviceError if its
        error-queue entry holds an error (the caller drains the rest of the queue), BadReading if
        an answer does not parse or the count is not the one expected."""
        lines = [answer] if isinstance(answer, str) else answer
        parts = [part for line in lines for part in split_answers(line)]
        if len(parts) != program.answers:
            hint = ""
            if len(lines) == 1 and len(parts) < program.answers and not self.lines_per_answer:
                hint = " (one answer per line? dialect answer_separator = 'newline')"
            raise BadReading(
                self.name,
                f"answer to {program.message!r}",
                "\n".join(lines),
                f"{program.answers} answers{hint}",
            )
        if program.commands:
            if program.settled:
                done, *parts = parts
                if done.strip() not in ("1", "+1"):
                    raise BadReading(self.name, "*OPC?", done, "1 (operation complete)")
            error, *parts = parts
            code, text = self._parse_error(error)
            if code != 0:
                raise DeviceError(self.name, repr(program.commands), code, text)
        return {q.name: self._parse(q, a) for q, a in zip(program.queries, parts, strict=True)}

    def drain_errors(self) -> None:
        """Ask the error queue until it is empty (at most 32 entries)."""
        for _ in range(32):
            if self.next_error()[0] == 0:
                break

    def _parse(self, declaration: measurement, answer: str) -> Any:
        try:
            return declaration.parse(answer)
        except ValueError:
            raise BadReading(self.name, declaration.name, answer, declaration.query) from None

    @classmethod
    def declarations(cls) -> dict[str, measurement]:
        """Every declared property by name (a datasheet view of the driver)."""
        found = _DECLARATIONS.get(cls)
        if found is None:
            found = {}
            for klass in reversed(cls.__mro__):
                for name, attr in vars(klass).items():
                    if isinstance(attr, measurement):
                        found[name] = attr
            _DECLARATIONS[cls] = found
        return dict(found)


_DECLARATIONS: dict[type, dict[str, measurement]] = {}  # per class; declarations are class-level
