"""Bidirectional EV charger (peer B) over OPC UA (asyncua 2.1), node set in labspec.ev_charger.

Measurements are polled: `read()` is ONE Read request, of the measured variables every time and
of the charger's limit variables too on every `limits_every_reads`-th read (and after the charger
refused a write, and after a reconnect): reading 9 variables instead of 18 costs about 40 % less.
A subscription was considered and not used: the plant may run in lockstep (time moves only when
the controller advances it), while OPC UA subscriptions publish on the server's wall-clock
publishing interval, so a notification can lag a lockstep advance by up to one interval and the
step would act on stale values; one Read right after the advance is always current and costs one
round trip (see docs/bench-instruments.md for the figures).
The Read's answer is decoded from its bytes by `instruments.opcua_read` (asyncua's generic
decoder takes only unusual answers: arrays, diagnostics, picoseconds).

`apply()` is one Write request (setpoint and enable together) with the confirming Read of both
sent right behind it (one round trip; a mismatch is re-checked with a fresh Read, in case a
server serves pipelined requests out of order). Security: "none", or Basic256Sha256
SignAndEncrypt with a user name, the password taken from the environment variable named in the
config, and a client certificate (given, or generated once into the configured paths or a temp
folder).

Safe state: setpoint 0 kW and power transfer disabled. The charger's own watchdog
(WatchdogTimeoutS) returns the setpoint to 0 when the controller stops writing.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asyncua import Client, ua
from asyncua.client.ua_client import UaClientState
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

from instruments.config import EvChargerConfig
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
from instruments.errors import (
    BadReading,
    DeviceError,
    InstrumentError,
    ReadbackMismatch,
    SetpointRefused,
)
from instruments.link import Link, StatusListener
from instruments.opcua_read import ReadResult, ReadSender
from labspec.ev_charger import NAMESPACE_URI, VARIABLES, Var, node_id

_CLIENT_APPLICATION_URI = "urn:p2p-testbed:instruments:ev-charger-client"
_NO_DATE_BEFORE = datetime(1601, 1, 2, tzinfo=UTC)  # OPC UA's null DateTime is 1601-01-01
_ACCESS_DENIED = frozenset(
    {
        "BadUserAccessDenied",
        "BadIdentityTokenInvalid",
        "BadIdentityTokenRejected",
        "BadCertificateInvalid",
        "BadSecurityChecksFailed",
    }
)
_NOT_GOOD = 3 << 30  # the severity bits of a status code: 0 = Good
_READ_VARS: tuple[Var, ...] = tuple(spec.name for spec in VARIABLES)
_SETPOINT_VARS = (Var.POWER_SETPOINT_KW, Var.ENABLED)
# What the charger reports about itself (limits, settings); re-read every limits_every_reads reads.
_LIMIT_VARS = (
    Var.MAX_CHARGE_POWER_KW,
    Var.MAX_DISCHARGE_POWER_KW,
    Var.MIN_POWER_KW,
    Var.RAMP_RATE_KW_PER_S,
    Var.RESERVE_SOC_PCT,
    Var.MIN_SOC_PCT,
    Var.MAX_SOC_PCT,
    Var.WATCHDOG_TIMEOUT_S,
    Var.CAPACITY_KWH,
)
_MEASURED_VARS = tuple(var for var in _READ_VARS if var not in _LIMIT_VARS)


def _read_parameters(node_ids: list[ua.NodeId]) -> ua.ReadParameters:
    """One Read of the Value of `node_ids`, fresh (MaxAge 0), without timestamps (not used)."""
    return ua.ReadParameters(
        MaxAge=0,
        TimestampsToReturn=ua.TimestampsToReturn.Neither,
        NodesToRead=[ua.ReadValueId(NodeId=n, AttributeId=ua.AttributeIds.Value) for n in node_ids],
    )


@dataclass(frozen=True, slots=True)
class EvChargerSnapshot:
    """One reading of the charger and the vehicle; power in kW, + = V2G discharge to the grid."""

    time: datetime
    soc_pct: float
    plugged: bool
    departure_time: datetime | None
    power_kw: float
    setpoint_kw: float
    enabled: bool
    status: str
    max_charge_kw: float
    max_discharge_kw: float
    min_power_kw: float
    ramp_kw_per_s: float
    reserve_soc_pct: float
    soc_min_pct: float
    soc_max_pct: float
    watchdog_timeout_s: float
    energy_charged_kwh: float
    energy_discharged_kwh: float
    capacity_kwh: float


@dataclass(frozen=True, slots=True)
class EvSetpoint:
    """Charger AC power in kW (+ = discharge to the grid, - = charge) and power-transfer enable."""

    power_kw: float
    enabled: bool = True


class EvCharger(Actuator[EvChargerSnapshot, EvSetpoint]):
    """Driver of the OPC UA EV charger; see the module docstring."""

    def __init__(
        self,
        config: EvChargerConfig,
        *,
        clock: Clock = utc_now,
        on_status: StatusListener | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.clock = clock
        self.client: Client | None = None
        self._node_ids: dict[Var, ua.NodeId] = {}
        self._read_all = self._read_measured = self._read_setpoint = ua.ReadParameters()
        self._reads = ReadSender()
        self._limits: dict[Var, Any] = {}  # last values of _LIMIT_VARS
        self._reads_since_limits = 0
        self.last_snapshot: EvChargerSnapshot | None = None
        self.last_confirmed: EvSetpoint | None = None
        self._freeze = FreezeGuard(config.name, "energy_kwh", config.plausibility.frozen_after_kwh)
        self.link = Link(
            config.name,
            self._open,
            self._close,
            timeout_s=config.timeout_s,
            connect_timeout_s=max(5.0, config.timeout_s),  # secure handshakes take a while
            backoff=config.backoff(),
            connection_errors=(ConnectionError, ua.UaError),
            on_status=on_status,
        )

    # -- session ---------------------------------------------------------------------------------

    async def _open(self) -> None:
        client = Client(self.config.url, timeout=self.config.timeout_s * 2)
        client.application_uri = _CLIENT_APPLICATION_URI
        client.session_timeout = 600_000  # ms; what servers commonly grant (asyncua asks for 1 h)
        client.name = client.description = f"p2p-testbed {self.name} driver"
        self.client = client
        self._reads = ReadSender()  # the fast paths' switch is read per session
        if self.config.security == "Basic256Sha256":
            await self._secure(client)
        try:
            await client.connect()
        except ua.UaStatusCodeError as exc:
            if type(exc).__name__ in _ACCESS_DENIED:  # a wrong password is not a network problem
                user = f" as {self.config.username!r}" if self.config.username else ""
                raise DeviceError(
                    self.name, f"ActivateSession{user}", type(exc).__name__, str(exc)
                ) from None
            raise
        index = await client.get_namespace_index(NAMESPACE_URI)
        self._limits = {}  # a (re)connected charger may have restarted: read its limits again
        self._node_ids = {var: ua.NodeId(node_id(var), index) for var in Var}
        self._read_all = _read_parameters([self._node_ids[v] for v in _READ_VARS])
        self._read_measured = _read_parameters([self._node_ids[v] for v in _MEASURED_VARS])
        self._read_setpoint = _read_parameters([self._node_ids[v] for v in _SETPOINT_VARS])

    async def _secure(self, client: Client) -> None:
        config = self.config
        env = config.password_env or ""
        password = os.environ.get(env)
        if password is None:
            raise InstrumentError(self.name, f"environment variable {env!r} (password) is not set")
        client.set_user(config.username or "")
        client.set_password(password)
        cert, key = config.certificate_path, config.private_key_path
        if cert is None or key is None or not Path(cert).is_file() or not Path(key).is_file():
            folder = Path(tempfile.gettempdir()) / "p2p-testbed-opcua" / self.name
            cert = cert or folder / "client-cert.der"
            key = key or folder / "client-key.pem"
            await client.setup_self_signed_certificate(Path(key), Path(cert))
        await client.set_security(
            SecurityPolicyBasic256Sha256,
            certificate=str(cert),
            private_key=str(key),
            mode=ua.MessageSecurityMode.SignAndEncrypt,
        )

    async def _close(self) -> None:
        client, self.client = self.client, None
        if client is None:
            return
        if client.uaclient.state is UaClientState.CONNECTED:
            try:
                await asyncio.wait_for(client.disconnect(), self.config.timeout_s)
                return
            except Exception:  # the server went away while closing: drop the socket below
                pass
        # a dead connection cannot close its session: drop the socket and the client's tasks
        client.disconnect_socket()
        for task in (client._supervisor_task, client._stale_watchdog_task):
            if task is not None:
                task.cancel()

    def _client(self) -> Client:
        if self.client is None:
            raise ConnectionResetError("session closed")
        return self.client

    # -- device shape ----------------------------------------------------------------------------

    async def connect(self) -> None:
        await self.link.connect()
        self.last_snapshot = await self.read()

    async def read(self) -> EvChargerSnapshot:
        """One Read: the measurements, and every `limits_every_reads`-th time the limits too."""

        async def operation() -> tuple[bool, list[ReadResult]]:
            # decided here, once the session is open: a reconnect forgets the limits
            limits = not self._limits or self._reads_since_limits >= self.config.limits_every_reads
            parameters = self._read_all if limits else self._read_measured
            return limits, await self._reads.read(self._client().uaclient, parameters)

        with_limits, results = await self.link.run(operation, "Read of the charger's variables")
        variables = _READ_VARS if with_limits else _MEASURED_VARS
        if len(results) != len(variables):
            raise DeviceError(
                self.name, "Read", f"{len(results)} results for {len(variables)} variables"
            )
        values: dict[Var, Any] = {}
        for var, (status, value) in zip(variables, results, strict=True):
            if status & _NOT_GOOD:
                raise DeviceError(self.name, f"Read {var.value}", ua.StatusCode(status).name)
            values[var] = value
        if with_limits:
            self._limits = {var: values[var] for var in _LIMIT_VARS}
            self._reads_since_limits = 0
        else:
            values.update(self._limits)
        self._reads_since_limits += 1
        snapshot = self._decode(values)
        self._freeze.check(
            snapshot.time,
            snapshot.power_kw,
            snapshot.energy_charged_kwh + snapshot.energy_discharged_kwh,
        )
        self.last_snapshot = snapshot
        return snapshot

    def _decode(self, v: dict[Var, Any]) -> EvChargerSnapshot:
        name, ranges = self.name, self.config.plausibility

        def number(var: Var, low: float, high: float) -> float:
            return plausible(name, _quantity(var), v[var], low, high)

        def flag(var: Var) -> bool:
            if not isinstance(v[var], bool):
                raise BadReading(name, _quantity(var), v[var], "True or False")
            return v[var]

        max_charge = number(Var.MAX_CHARGE_POWER_KW, 0.0, 1000.0)
        max_discharge = number(Var.MAX_DISCHARGE_POWER_KW, 0.0, 1000.0)
        power_limit = ranges.power_rating_multiple * max(max_charge, max_discharge, 0.1)
        return EvChargerSnapshot(
            time=self.clock(),
            soc_pct=number(Var.SOC_PCT, 0.0, 100.0),
            plugged=flag(Var.PLUGGED),
            departure_time=_departure(v[Var.DEPARTURE_TIME]),
            power_kw=number(Var.POWER_KW, -power_limit, power_limit),
            setpoint_kw=number(Var.POWER_SETPOINT_KW, -power_limit, power_limit),
            enabled=flag(Var.ENABLED),
            status=str(v[Var.STATUS]),
            max_charge_kw=max_charge,
            max_discharge_kw=max_discharge,
            min_power_kw=number(Var.MIN_POWER_KW, 0.0, power_limit),
            ramp_kw_per_s=number(Var.RAMP_RATE_KW_PER_S, 0.0, 1e6),
            reserve_soc_pct=number(Var.RESERVE_SOC_PCT, 0.0, 100.0),
            soc_min_pct=number(Var.MIN_SOC_PCT, 0.0, 100.0),
            soc_max_pct=number(Var.MAX_SOC_PCT, 0.0, 100.0),
            watchdog_timeout_s=number(Var.WATCHDOG_TIMEOUT_S, 0.0, 1e9),
            energy_charged_kwh=number(Var.ENERGY_CHARGED_KWH, 0.0, 1e9),
            energy_discharged_kwh=number(Var.ENERGY_DISCHARGED_KWH, 0.0, 1e9),
            capacity_kwh=number(Var.CAPACITY_KWH, 0.0, 1e6),
        )

    def limits_kw(self) -> tuple[float, float]:
        """Allowed setpoint range (low, high) in kW: the charger's limits, capped by the config."""
        snapshot = self._require_snapshot()
        charge = snapshot.max_charge_kw
        discharge = snapshot.max_discharge_kw
        if self.config.max_charge_kw is not None:
            charge = min(charge, self.config.max_charge_kw)
        if self.config.max_discharge_kw is not None:
            discharge = min(discharge, self.config.max_discharge_kw)
        return -charge, discharge

    def soc_window(self) -> tuple[float, float]:
        """(lowest SoC to discharge from, highest SoC to charge to): device, then config."""
        snapshot = self._require_snapshot()
        low = max(snapshot.soc_min_pct, snapshot.reserve_soc_pct)
        high = snapshot.soc_max_pct
        if self.config.soc_min_pct is not None:
            low = max(low, self.config.soc_min_pct)
        if self.config.soc_max_pct is not None:
            high = min(high, self.config.soc_max_pct)
        return low, high

    def _require_snapshot(self) -> EvChargerSnapshot:
        if self.last_snapshot is None:
            raise InstrumentError(self.name, "no reading yet: connect() first")
        return self.last_snapshot

    def check(self, setpoint: EvSetpoint) -> None:
        """Refuse a setpoint outside the limits (SetpointRefused; nothing is sent)."""
        snapshot = self._require_snapshot()
        low, high = self.limits_kw()
        power = within(self.name, "power_kw", setpoint.power_kw, low, high, "kW")
        if not isinstance(setpoint.enabled, bool):
            raise SetpointRefused(self.name, "enabled", setpoint.enabled, "True or False")
        minimum = snapshot.min_power_kw
        if power != 0 and abs(power) < minimum:
            raise SetpointRefused(
                self.name, "power_kw", power,
                f"0 or {minimum:g} <= |power_kw| (the charger's deadband)",
            )  # fmt: skip
        if not setpoint.enabled or power == 0:
            return
        if not snapshot.plugged:
            raise SetpointRefused(
                self.name, "power_kw", power, "0 kW while no vehicle is plugged in"
            )
        soc_low, soc_high = self.soc_window()
        if power > 0 and snapshot.soc_pct <= soc_low:
            raise SetpointRefused(
                self.name, "power_kw", power,
                f"<= 0 kW (no discharge) while soc_pct {snapshot.soc_pct:g} <= {soc_low:g}",
            )  # fmt: skip
        if power < 0 and snapshot.soc_pct >= soc_high:
            raise SetpointRefused(
                self.name, "power_kw", power,
                f">= 0 kW (no charging) while soc_pct {snapshot.soc_pct:g} >= {soc_high:g}",
            )  # fmt: skip
        step = self.config.max_step_kw
        if step is not None and self.last_confirmed is not None:
            last = self.last_confirmed.power_kw if self.last_confirmed.enabled else 0.0
            within(self.name, "power_kw", power, last - step, last + step, "kW (ramp guard)")

    async def apply(self, setpoint: EvSetpoint) -> Confirmation[EvSetpoint]:
        if self.last_snapshot is None:  # the limits come from the charger
            await self.read()
        self.check(setpoint)
        return await self._write_and_confirm(setpoint)

    async def safe_state(self) -> Confirmation[EvSetpoint]:
        """Setpoint 0 kW and power transfer disabled."""
        return await self._write_and_confirm(EvSetpoint(0.0, enabled=False))

    async def _write_and_confirm(self, setpoint: EvSetpoint) -> Confirmation[EvSetpoint]:
        power = float(setpoint.power_kw) + 0.0
        values = (
            ua.Variant(power, ua.VariantType.Double),
            ua.Variant(setpoint.enabled, ua.VariantType.Boolean),
        )

        async def write_then_read() -> tuple[list[ua.StatusCode], list[ReadResult]]:
            # pipelined: the Read goes out right behind the Write, both answered in one round trip
            # (node ids are known once the session is open)
            uaclient = self._client().uaclient
            parameters = ua.WriteParameters(
                NodesToWrite=[
                    ua.WriteValue(
                        NodeId=self._node_ids[var],
                        AttributeId=ua.AttributeIds.Value,
                        Value=ua.DataValue(value),
                    )
                    for var, value in zip(_SETPOINT_VARS, values, strict=True)
                ]
            )
            return await asyncio.gather(
                uaclient.write(parameters), self._reads.read(uaclient, self._read_setpoint)
            )

        results, answers = await self.link.run(
            write_then_read, "Write and Read of PowerSetpointKw and Enabled"
        )
        for var, status in zip(_SETPOINT_VARS, results, strict=True):
            if not status.is_good():
                self._limits = {}  # the charger refused: take its limits afresh on the next read
                raise DeviceError(self.name, f"Write {var.value}", status.name, status.doc)
        try:
            read = self._confirm(power, setpoint.enabled, answers)
        except ReadbackMismatch:
            # a server may serve pipelined requests out of order: the Write is done now, so a
            # fresh Read is authoritative
            async def read_back() -> list[ReadResult]:
                return await self._reads.read(self._client().uaclient, self._read_setpoint)

            answers = await self.link.run(read_back, "Read of PowerSetpointKw and Enabled")
            read = self._confirm(power, setpoint.enabled, answers)
        self.last_confirmed = setpoint if setpoint.enabled else None
        return Confirmation(self.name, setpoint, read, self.clock())

    def _confirm(self, power: float, enabled: bool, answers: list[ReadResult]) -> EvSetpoint:
        """The setpoint read back, if it is the one written (else ReadbackMismatch)."""
        got_power, got_enabled = (value for _, value in answers)
        confirm(self.name, "power_kw", power, got_power, 1e-9)
        confirm(self.name, "enabled", enabled, got_enabled)
        return EvSetpoint(float(got_power), bool(got_enabled))


def _snake_case(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


_QUANTITIES = {var: _snake_case(var.value) for var in Var}  # SocPct -> soc_pct


def _quantity(var: Var) -> str:
    """snake_case quantity name of a variable for error messages."""
    return _QUANTITIES[var]


def _departure(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return None if value < _NO_DATE_BEFORE else value.astimezone(UTC)
