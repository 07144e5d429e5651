"""Peer C's programmable AC electronic load: SCPI over a raw TCP socket (newline-terminated).

The command set is `labspec.programmable_load`. Answers to several queries in one program message
are joined with ";" on one line, as SCPI instruments do. Errors go to a FIFO error queue read with
`SYST:ERR?` (-113 undefined header, -222 data out of range, -104 data type, -350 overflow).
Answers read the plant's state, which changes only at an advance or a write; while the "freeze"
fault is on, measurements come from a snapshot taken when it was set (setpoints still read back
what was last accepted).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
from collections.abc import Callable
from typing import TypeVar

from hil_sim.faults import DeviceFaults
from hil_sim.plant import Plant, ProgrammableLoadState, SetpointRejected
from hil_sim.servers.gate import ListenerGate, stream_transport
from hil_sim.servers.scpi_parser import (
    CommandTree,
    ScpiError,
    no_parameters,
    one_parameter,
    out_of_range,
    parse_boolean,
    parse_watts,
)
from labspec.programmable_load import (
    ERROR_DATA_TYPE,
    IDN_MANUFACTURER,
    IDN_MODEL,
    MAX_POWER_W,
    MIN_POWER_W,
)

log = logging.getLogger(__name__)

SERIAL_NUMBER = "HIL-LOAD-C-0001"
FIRMWARE = "0.1.0"
MAX_LINE_BYTES = 4096
_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only
_T = TypeVar("_T")

# What the out-of-range fault reports.
OUT_OF_RANGE_POWER_W = 10 * MAX_POWER_W
OUT_OF_RANGE_VOLTAGE_V = 0.0
OUT_OF_RANGE_CURRENT_A = 1000.0


def _number(value: float) -> str:
    return f"{value:.4f}"


class ProgrammableLoadInstrument:
    """The instrument's command set over the plant; one error queue, as on the real instrument."""

    def __init__(self, plant: Plant, faults: DeviceFaults, device: str | None = None):
        self.plant = plant
        self.faults = faults
        self.device = device if device is not None else next(iter(plant.loads))
        self._frozen: ProgrammableLoadState | None = None  # measurements while "freeze" is on
        faults.subscribe(self._faults_changed)
        self.tree = tree = CommandTree()
        tree.add("*IDN?", self._idn)
        tree.add("*RST", self._reset)
        tree.add("*CLS", self._clear_status)
        tree.add("*OPC?", self._operation_complete)
        tree.add("*OPC", no_parameters)
        tree.add("INPut[:STATe]", self._set_input)
        tree.add("INPut[:STATe]?", self._query_input)
        tree.add("FUNCtion", self._set_function)
        tree.add("FUNCtion?", self._query_function)
        tree.add("POWer[:LEVel][:IMMediate][:AMPLitude]", self._set_power)
        tree.add("POWer[:LEVel][:IMMediate][:AMPLitude]?", self._query_power)
        tree.add("MEASure[:SCALar]:POWer[:AC]?", lambda p: self._measure(p, "power_w"))
        tree.add("MEASure[:SCALar]:VOLTage[:AC]?", lambda p: self._measure(p, "voltage_v"))
        tree.add("MEASure[:SCALar]:CURRent[:AC]?", lambda p: self._measure(p, "current_a"))
        tree.add("MEASure[:SCALar]:ENERgy?", lambda p: self._measure(p, "energy_wh"))
        tree.add("SYSTem:ERRor[:NEXT]?", self._next_error)

    def bind(self, plant: Plant) -> None:
        """Serve a new plant (after a reset), with an empty error queue."""
        self.plant = plant
        self.tree.errors.clear()

    async def _faults_changed(self, faults: DeviceFaults) -> None:
        if faults.frozen and self._frozen is None:
            self._frozen = dataclasses.replace(self.plant.loads[self.device])
        elif not faults.frozen:
            self._frozen = None

    @property
    def measured(self) -> ProgrammableLoadState:
        """Where measurements come from: the plant, or the snapshot while frozen."""
        return self._frozen if self._frozen is not None else self.plant.loads[self.device]

    @property
    def state(self) -> ProgrammableLoadState:
        """Setpoints: always the plant's (a write reads back at once)."""
        return self.plant.loads[self.device]

    def execute(self, line: str) -> str | None:
        return self.tree.execute(line)

    # -- commands -------------------------------------------------------------------------------
    def _idn(self, params: list[str]) -> str:
        no_parameters(params)
        return f"{IDN_MANUFACTURER},{IDN_MODEL},{SERIAL_NUMBER},{FIRMWARE}"

    def _reset(self, params: list[str]) -> None:
        no_parameters(params)
        self.plant.reset_load(self.device)

    def _operation_complete(self, params: list[str]) -> str:
        no_parameters(params)
        return "1"

    def _query_input(self, params: list[str]) -> str:
        no_parameters(params)
        return "1" if self.state.input_on else "0"

    def _query_function(self, params: list[str]) -> str:
        no_parameters(params)
        return self.state.function

    def _clear_status(self, params: list[str]) -> None:
        no_parameters(params)
        self.tree.errors.clear()

    def _set_input(self, params: list[str]) -> None:
        on = parse_boolean(one_parameter(params))
        self._write(lambda v: self.plant.write_load_input(v, self.device), on)

    def _set_function(self, params: list[str]) -> None:
        text = one_parameter(params).upper()
        if text in ("POW", "POWER"):
            function = "POW"
        elif text == "LIST":
            function = "LIST"
        else:
            raise ScpiError(ERROR_DATA_TYPE, f"{text!r} is not POWer or LIST")
        self._write(lambda v: self.plant.write_load_function(v, self.device), function)

    def _set_power(self, params: list[str]) -> None:
        text = one_parameter(params)
        upper = text.strip().upper()
        if upper in ("MIN", "MINIMUM"):
            power_w = MIN_POWER_W
        elif upper in ("MAX", "MAXIMUM"):
            power_w = MAX_POWER_W
        else:
            power_w = parse_watts(text)
        if not MIN_POWER_W <= power_w <= MAX_POWER_W:
            raise out_of_range(f"{power_w:g} W outside [{MIN_POWER_W:g}, {MAX_POWER_W:g}] W")
        self._write(lambda v: self.plant.write_load_power(v, self.device), power_w)

    def _query_power(self, params: list[str]) -> str:
        if params:
            which = one_parameter(params).upper()
            if which in ("MIN", "MINIMUM"):
                return _number(MIN_POWER_W)
            if which in ("MAX", "MAXIMUM"):
                return _number(MAX_POWER_W)
            raise ScpiError(ERROR_DATA_TYPE, f"{which!r} is not MIN or MAX")
        return _number(self.state.power_setpoint_w)

    def _measure(self, params: list[str], quantity: str) -> str:
        no_parameters(params)
        if self.faults.out_of_range:
            return _number(
                {
                    "power_w": OUT_OF_RANGE_POWER_W,
                    "voltage_v": OUT_OF_RANGE_VOLTAGE_V,
                    "current_a": OUT_OF_RANGE_CURRENT_A,
                    "energy_wh": self.measured.energy_wh,
                }[quantity]
            )
        return _number(getattr(self.measured, quantity))

    def _next_error(self, params: list[str]) -> str:
        no_parameters(params)
        code, message = self.tree.errors.pop()
        return f'{code},"{message}"'

    @staticmethod
    def _write(method: Callable[[_T], None], value: _T) -> None:
        try:
            method(value)
        except SetpointRejected as exc:
            raise out_of_range(str(exc)) from None


class _ScpiProtocol(asyncio.Protocol):
    """One client connection: lines in, answers out, all synchronous on the event loop."""

    def __init__(self, instrument: ProgrammableLoadInstrument):
        self._instrument = instrument
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self._socket: socket.socket | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = stream_transport(transport)
        self._socket = transport.get_extra_info("socket")

    def data_received(self, data: bytes) -> None:
        if _QUICKACK is not None and self._socket is not None:
            # Acknowledge at once: a client with Nagle's algorithm on (pyvisa-py's SOCKET
            # sessions) holds its next command until the previous one is acknowledged, which a
            # delayed ACK would make 40 ms. Linux re-arms delayed ACKs, so set it every time.
            with contextlib.suppress(OSError):
                self._socket.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        self._buffer += data
        if b"\n" not in self._buffer:
            if len(self._buffer) > MAX_LINE_BYTES:
                log.warning("SCPI line longer than %d bytes: closing", MAX_LINE_BYTES)
                self._buffer = b""
                if self._transport is not None:
                    self._transport.close()
            return
        *lines, self._buffer = self._buffer.split(b"\n")
        answers: list[str] = []
        for raw in lines:
            line = raw.decode("ascii", errors="replace").strip()
            if not line:
                continue
            try:
                answer = self._instrument.execute(line)
            except Exception:  # a bug must not take the instrument down
                log.exception("SCPI command %r failed", line)
                answer = None
            if answer is not None:
                answers.append(answer)
        if answers and self._transport is not None and not self._transport.is_closing():
            self._transport.write(("\n".join(answers) + "\n").encode("ascii"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None


class ScpiLoadServer:
    """The programmable load's SCPI socket server, behind a `ListenerGate`."""

    def __init__(
        self, plant: Plant, *, host: str, port: int = 0, faults: DeviceFaults,
        device: str | None = None,
    ):  # fmt: skip
        self.instrument = ProgrammableLoadInstrument(plant, faults, device)
        name = self.instrument.device
        self.gate = ListenerGate(name, lambda: _ScpiProtocol(self.instrument), host, port, faults)

    @property
    def port(self) -> int:
        return self.gate.port

    async def start(self) -> int:
        return await self.gate.open()

    async def stop(self) -> None:
        await self.gate.close()

    def publish(self) -> None:
        """Nothing to encode: answers read the plant's state (or the frozen snapshot)."""
