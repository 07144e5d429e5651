"""Programmable AC electronic load (peer C) over SCPI: pyvisa with the pyvisa-py backend.

The command set is declared once, like a datasheet (`AcElectronicLoadScpi`), from the table in
labspec.programmable_load. The async driver (`ProgrammableLoad`) sends each step's program message
(a read, or an apply with its error check and read-back) with pyvisa from the event loop and
waits there, without blocking, until the answer's line has arrived (the socket is watched by the
loop; pyvisa then reads a line that is already there). A worker thread per session
(pyvisa blocks) does the rest: open (*CLS, *IDN?), close, draining the error queue after an
error, and an answer too long to check without reading it; with the fast paths off
(`labspec.fast_paths`), every exchange, as pyvisa is meant to be used from asyncio. Handing
every step's exchange to the thread cost ~100 us of CPU per step (thread wake-ups, the GIL passed
back and forth); writing from the loop cannot block: one program message at a time is in flight,
a few dozen bytes in the socket's send buffer. The socket has TCP_NODELAY on (without it a write
followed by a query waits ~40 ms for delayed ACKs).

Power in snapshots and setpoints is in kW with the generator convention: the load consumes, so its
power is <= 0 (the instrument itself speaks in W of consumption, >= 0).

Safe state: POW 0 and INP OFF (the load draws nothing). Operating state (`play_program`): FUNC LIST
and INP ON (the load plays its stored house-load program).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import pyvisa
from pyvisa import constants as visa_constants
from pyvisa.errors import VisaIOError
from pyvisa.resources import MessageBasedResource

from instruments.config import ProgrammableLoadConfig
from instruments.device import (
    Actuator,
    Clock,
    Confirmation,
    FreezeGuard,
    confirm,
    plausible,
    utc_now,
    within,
)
from instruments.errors import BadReading, DeviceError, ReadbackMismatch, SetpointRefused
from instruments.link import Link, StatusListener
from instruments.scpi import (
    ON_OFF,
    ProgramMessage,
    ScpiInstrument,
    control,
    in_range,
    measurement,
    one_of,
    scpi_bool,
    scpi_choice,
)
from labspec import fast_paths
from labspec import programmable_load as spec

T = TypeVar("T")

_TERMINATION = "\n"
_TERMINATOR = _TERMINATION.encode()
_DRAIN_QUIET_MS = 50  # a stray answer line comes within this; then the input is empty
_PEEK_BYTES = 4096  # answers are a few dozen bytes; a longer one is read in the worker thread


def session_socket(resource: Any) -> socket.socket:
    """The TCP socket under a pyvisa-py SOCKET session."""
    sock: socket.socket = resource.visalib.sessions[resource.session].interface
    return sock


def enable_nodelay(resource: Any) -> None:
    """Switch Nagle's algorithm off on a pyvisa-py SOCKET session.

    pyvisa-py 0.8.1 registers the wrong setter for VI_ATTR_TCPIP_NODELAY on SOCKET sessions
    (setting it raises UnknownAttribute, reading it works), so on failure the option is set on the
    session's socket directly; either way the attribute is read back to make sure.
    """
    try:
        resource.set_visa_attribute(visa_constants.VI_ATTR_TCPIP_NODELAY, True)
    except Exception:
        session_socket(resource).setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if resource.get_visa_attribute(visa_constants.VI_ATTR_TCPIP_NODELAY) != visa_constants.VI_TRUE:
        raise OSError("could not switch TCP_NODELAY on for the SCPI session")


class AcElectronicLoadScpi(ScpiInstrument):
    """The SCPI command set of the EL-AC-3000 (labspec.programmable_load), one line per property."""

    identity = measurement(spec.IDN, parse=str.strip)
    input_on = control(
        "INP?", "INP {}", validator=one_of(True, False), values=ON_OFF, parse=scpi_bool
    )
    function = control(
        "FUNC?", "FUNC {}", validator=one_of("POW", "LIST"), parse=scpi_choice("POWer", "LIST")
    )
    power_setpoint_w = control(
        "POW?", "POW {:.1f}", validator=in_range(spec.MIN_POWER_W, spec.MAX_POWER_W), unit="W"
    )
    power_w = measurement(spec.MEASURE_POWER, unit="W")
    voltage_v = measurement(spec.MEASURE_VOLTAGE, unit="V")
    current_a = measurement(spec.MEASURE_CURRENT, unit="A")
    energy_wh = measurement(spec.MEASURE_ENERGY, unit="Wh")


@dataclass(frozen=True, slots=True)
class LoadSnapshot:
    """One reading of the programmable load; power in kW, generator convention (<= 0)."""

    time: datetime
    power_kw: float
    voltage_v: float
    current_a: float
    energy_kwh: float  # consumed since power-on
    input_on: bool
    function: str  # POW (constant power) or LIST (plays the stored house-load program)
    power_setpoint_kw: float  # generator convention (<= 0)

    @property
    def ac_power_kw(self) -> float:
        return self.power_kw

    @property
    def delivered_kwh(self) -> float:
        return -self.energy_kwh

    @property
    def throughput_kwh(self) -> float:
        return self.energy_kwh


@dataclass(frozen=True, slots=True)
class LoadSetpoint:
    """Constant-power consumption in kW, generator convention (so <= 0), and the input switch."""

    power_kw: float
    input_on: bool = True


_POW_RESOLUTION_KW = 0.05 / 1000  # "POW {:.1f}" in W
_READ = (
    "power_w",
    "voltage_v",
    "current_a",
    "energy_wh",
    "input_on",
    "function",
    "power_setpoint_w",
)


class ProgrammableLoad(Actuator[LoadSnapshot, LoadSetpoint]):
    """Driver of the programmable load; see the module docstring."""

    def __init__(
        self,
        config: ProgrammableLoadConfig,
        *,
        clock: Clock = utc_now,
        on_status: StatusListener | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.clock = clock
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"visa-{config.name}"
        )
        self._manager: pyvisa.ResourceManager | None = None
        self._resource: MessageBasedResource | None = None
        self._socket: socket.socket | None = None
        self._exchanging = asyncio.Lock()  # one program message in flight per session
        self._fast = True  # the step's exchange from the loop (labspec.fast_paths)
        self.instrument: AcElectronicLoadScpi | None = None
        self.identity = ""
        self.last_snapshot: LoadSnapshot | None = None
        self.last_confirmed: LoadSetpoint | None = None
        self._function: str | None = None  # FUNC as last read or written
        self._freeze = FreezeGuard(config.name, "energy_kwh", config.plausibility.frozen_after_kwh)
        self.link = Link(
            config.name,
            self._open,
            self._close,
            timeout_s=config.timeout_s,
            backoff=config.backoff(),
            connection_errors=(VisaIOError,),
            on_status=on_status,
        )

    # -- worker thread ---------------------------------------------------------------------------

    async def _in_thread(self, work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._guard(work))

    @staticmethod
    def _guard(work: Callable[[], T]) -> Callable[[], T]:
        def run() -> T:
            try:
                return work()
            except VisaIOError as exc:
                if exc.error_code == visa_constants.StatusCode.error_timeout:
                    raise TimeoutError(str(exc)) from exc
                raise

        return run

    async def _exchange(
        self, plan: Callable[[AcElectronicLoadScpi], ProgramMessage], what: str
    ) -> dict[str, Any]:
        """Send the program message `plan` makes, wait for its answer on the loop, parse it."""

        async def operation() -> dict[str, Any]:
            instrument = self.instrument
            if instrument is None:
                raise ConnectionResetError("session closed")
            program = plan(instrument)  # validated: SetpointRefused before anything is sent
            async with self._exchanging:
                answer = await self._ask(program.message, instrument.lines_of(program))
                try:
                    return instrument.parse_answer(program, answer)
                except DeviceError:
                    await self._in_thread(instrument.drain_errors)  # the next one starts clean
                    raise
                except BadReading:
                    await self._in_thread(self._drain_input)  # no stray line for the next one
                    raise

        return await self.link.run(operation, what)

    async def _ask(self, message: str, lines: int = 1) -> list[str]:
        """Write `message`, wait (without blocking the loop) until the answer's `lines` lines
        are there, and read them with pyvisa."""
        resource, sock = self._resource, self._socket
        if resource is None or sock is None:
            raise ConnectionResetError("session closed")
        if not self._fast:  # the fast paths off: all of it in pyvisa's thread

            def exchange() -> list[str]:
                resource.write(message)
                return [resource.read() for _ in range(lines)]

            return await self._in_thread(exchange)
        resource.write(message)
        while True:
            try:
                waiting = sock.recv(_PEEK_BYTES, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except BlockingIOError:
                waiting = None
            if waiting == b"":
                raise ConnectionResetError("connection closed by the instrument")
            if waiting is not None and waiting.count(_TERMINATOR) >= lines:
                # the whole answer is there: pyvisa does not wait
                return [resource.read() for _ in range(lines)]
            if waiting is not None:  # part of the answer: let pyvisa wait for the rest
                return await self._in_thread(lambda: [resource.read() for _ in range(lines)])
            await _readable(sock)

    def _drain_input(self) -> None:
        """Read and drop what the instrument still sends (after an answer that did not fit)."""
        resource = self._resource
        if resource is None:
            return
        timeout = resource.timeout
        resource.timeout = _DRAIN_QUIET_MS
        try:
            for _ in range(64):
                resource.read()
        except VisaIOError:
            pass  # quiet: nothing more is coming
        finally:
            resource.timeout = timeout

    async def _open(self) -> None:
        self._fast = fast_paths.enabled()
        await self._in_thread(self._open_blocking)

    def _open_blocking(self) -> None:
        if self._manager is None:
            self._manager = pyvisa.ResourceManager("@py")
        resource = self._manager.open_resource(
            self.config.resource,
            read_termination=_TERMINATION,
            write_termination=_TERMINATION,
            timeout=self.config.timeout_s * 1000 * 0.9,  # ms; the link's timeout fires after
            open_timeout=int(self.link.connect_timeout_s * 1000),
        )
        if not isinstance(resource, MessageBasedResource):
            resource.close()
            raise ValueError(
                f"{self.name}: VISA resource {self.config.resource!r} is not message-based; "
                "SCPI needs a TCPIP SOCKET or INSTR resource"
            )
        self._resource = resource
        enable_nodelay(resource)
        self._socket = session_socket(resource)
        instrument = AcElectronicLoadScpi(resource, self.name, self.config.dialect)
        instrument.clear_status()  # old errors must not be blamed on our commands
        self.identity = instrument.identity
        self.instrument = instrument

    async def _close(self) -> None:
        await self._in_thread(self._close_blocking)

    def _close_blocking(self) -> None:
        resource, self._resource, self.instrument = self._resource, None, None
        self._socket = None
        if resource is not None:
            with contextlib.suppress(Exception):  # a broken socket may not close cleanly
                resource.close()

    # -- device shape ----------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the session (*CLS, *IDN?) and take a first reading."""
        await self.link.connect()
        self.last_snapshot = await self.read()

    async def close(self) -> None:
        """Close this driver's session. pyvisa's ResourceManager("@py") is one object per
        process, shared by every load driver: closing it would close their sessions too, so it
        stays open (pyvisa closes it at exit)."""
        await super().close()
        self._manager = None

    async def read(self) -> LoadSnapshot:
        """Every measurement and setting in ONE program message (one round trip)."""
        values = await self._exchange(lambda load: load.plan_query(_READ), "measurements")
        power_w, voltage, current, energy_wh, input_on, function, setpoint_w = (
            values[name] for name in _READ
        )
        name, ranges = self.name, self.config.plausibility
        limit_w = ranges.power_rating_multiple * spec.MAX_POWER_W
        power_w = plausible(name, "power_kw", power_w, 0.0, limit_w)
        setpoint_w = plausible(name, "power_setpoint_kw", setpoint_w, 0.0, limit_w)
        snapshot = LoadSnapshot(
            time=self.clock(),
            power_kw=-power_w / 1000,
            voltage_v=plausible(name, "voltage_v", voltage, *ranges.voltage_v),
            current_a=plausible(name, "current_a", current, 0.0, limit_w / ranges.voltage_v[0]),
            energy_kwh=plausible(name, "energy_kwh", energy_wh, 0.0, 1e12) / 1000,
            input_on=input_on,
            function=function,
            power_setpoint_kw=-setpoint_w / 1000 + 0.0,
        )
        self._freeze.check(snapshot.time, snapshot.power_kw, snapshot.energy_kwh)
        self.last_snapshot = snapshot
        self._function = function
        return snapshot

    def limits_kw(self) -> tuple[float, float]:
        """Allowed setpoint range (low, high) in kW, generator convention."""
        largest = spec.MAX_POWER_W / 1000
        if self.config.max_power_kw is not None:
            largest = min(largest, self.config.max_power_kw)
        return -largest, -spec.MIN_POWER_W / 1000 + 0.0  # + 0.0: no "-0" in messages

    def check(self, setpoint: LoadSetpoint) -> None:
        """Refuse a setpoint outside the limits (SetpointRefused; nothing is sent)."""
        low, high = self.limits_kw()
        power = within(self.name, "power_kw", setpoint.power_kw, low, high, "kW")
        if not isinstance(setpoint.input_on, bool):
            raise SetpointRefused(self.name, "input_on", setpoint.input_on, "True or False")
        step = self.config.max_step_kw
        if step is not None and self.last_confirmed is not None:
            last = self.last_confirmed.power_kw if self.last_confirmed.input_on else 0.0
            within(self.name, "power_kw", power, last - step, last + step, "kW (ramp guard)")

    async def apply(self, setpoint: LoadSetpoint) -> Confirmation[LoadSetpoint]:
        self.check(setpoint)
        return await self._write_and_confirm(setpoint)

    async def safe_state(self) -> Confirmation[LoadSetpoint]:
        """POW 0 and INP OFF."""
        return await self._write_and_confirm(LoadSetpoint(0.0, input_on=False))

    async def operating_state(self) -> None:
        """A run starts with the input on, playing the programmed house-load profile."""
        await self.play_program()

    async def play_program(self) -> None:
        """FUNC LIST and INP ON: the load draws its programmed profile; confirmed by read-back."""

        def plan(load: AcElectronicLoadScpi) -> ProgramMessage:
            return load.plan_exchange(
                {"function": "LIST", "input_on": True}, ("function", "input_on")
            )

        answers = await self._exchange(plan, "FUNC LIST; INP ON")
        if answers["function"] != "LIST":
            raise ReadbackMismatch(self.name, "function", "LIST", answers["function"])
        confirm(self.name, "input_on", True, answers["input_on"])
        self._function = "LIST"
        self.last_confirmed = None

    async def _write_and_confirm(self, setpoint: LoadSetpoint) -> Confirmation[LoadSetpoint]:
        power_w = round(-setpoint.power_kw * 1000, 1) + 0.0  # + 0.0 turns -0.0 into 0.0
        need_function = self._function != "POW"

        settings: dict[str, object] = {"power_setpoint_w": power_w, "input_on": setpoint.input_on}
        if need_function:
            settings = {"function": "POW", **settings}

        def plan(load: AcElectronicLoadScpi) -> ProgramMessage:
            return load.plan_exchange(settings, ("power_setpoint_w", "input_on", "function"))

        answers = await self._exchange(plan, f"POW {power_w:.1f}")
        setpoint_w, input_on, function = (
            answers["power_setpoint_w"],
            answers["input_on"],
            answers["function"],
        )
        confirm(self.name, "power_kw", -power_w / 1000, -setpoint_w / 1000, _POW_RESOLUTION_KW)
        confirm(self.name, "input_on", setpoint.input_on, input_on)
        if function != "POW":
            raise ReadbackMismatch(self.name, "function", "POW", function)
        self._function = function
        read_back = LoadSetpoint(-setpoint_w / 1000 + 0.0, input_on)
        self.last_confirmed = setpoint if setpoint.input_on else None
        return Confirmation(self.name, setpoint, read_back, self.clock())


async def _readable(sock: socket.socket) -> None:
    """Wait until `sock` has something to read (or is closed), without blocking the loop."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    fd = sock.fileno()
    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)
