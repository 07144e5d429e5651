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
folder); the server's certificate is checked against a pinned one or a trust-list folder before
the secure channel is opened (`instruments.opcua_trust`).

What servers of other makers do differently is read from the server at every connect: the
DataType of the two written variables (a setpoint declared Float is written as Float, an Enabled
declared Byte as 0/1), and the operation limits (MaxNodesPerRead/MaxNodesPerWrite: larger Reads
and Writes are split and sent together). A value is written alone, without status code or
timestamps (servers on PLCs refuse those: BadWriteNotSupported). A Write that fails part-way
(one variable taken, the other refused) is rolled back: the variables taken get their values
from before the Write. A server's refusal of a request (a bad service result) is a `DeviceError`;
only a lost session or channel counts as a lost connection.

Safe state: setpoint 0 kW and power transfer disabled. The charger's own watchdog
(WatchdogTimeoutS) returns the setpoint to 0 when the controller stops writing.
"""

from __future__ import annotations

import asyncio
import os
import struct
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

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
    ProtocolMismatch,
    ReadbackMismatch,
    SetpointRefused,
)
from instruments.link import Link, StatusListener, logger
from instruments.opcua_read import ReadResult, ReadSender
from instruments.opcua_trust import check_server_certificate, first_certificate
from labspec.ev_charger import NAMESPACE_URI, VARIABLES, Var, node_id

_CLIENT_APPLICATION_URI = "urn:p2p-testbed:instruments:ev-charger-client"
_NO_DATE_BEFORE = datetime(1601, 1, 2, tzinfo=UTC)  # OPC UA's null DateTime is 1601-01-01
_ACCESS_DENIED = frozenset(
    {"BadUserAccessDenied", "BadIdentityTokenInvalid", "BadIdentityTokenRejected"}
)
_CERTIFICATE_REFUSED = frozenset(
    {
        "BadCertificateInvalid",
        "BadCertificateUntrusted",
        "BadCertificateRevoked",
        "BadCertificateIssuerRevoked",
        "BadCertificateTimeInvalid",
        "BadCertificateUriInvalid",
        "BadCertificateUseNotAllowed",
        "BadSecurityChecksFailed",
    }
)
# Bad service results that mean the session or the channel is gone (reconnect); any other is
# the server refusing one request (a DeviceError, the session stays).
_SESSION_LOST = (
    "BadSession",
    "BadSecureChannel",
    "BadConnection",
    "BadServer",
    "BadShutdown",
    "BadCommunication",
    "BadNotConnected",
    "BadDisconnect",
    "BadTimeout",
    "BadRequestTimeout",
    "BadNoCommunication",
    "BadTcp",
)
_TOO_MANY_OPERATIONS = ua.StatusCodes.BadTooManyOperations
# asyncua annotates NodeId, StatusCode and DataValue fields with its encoding classes (ua.Int32,
# ua.UInt32, ua.DateTime, ...), subclasses of int, str and datetime, while it takes and encodes
# the plain values: the `type: ignore[arg-type]` below are that typing fault only.
_OPERATION_LIMITS = (
    ua.NodeId(ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead),  # type: ignore[arg-type]
    ua.NodeId(ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerWrite),  # type: ignore[arg-type]
)
_VT = ua.VariantType
# DataType (ns=0 numeric ids, OPC UA Part 6) -> what a value of it is written as
_BUILT_IN = {
    1: _VT.Boolean, 2: _VT.SByte, 3: _VT.Byte, 4: _VT.Int16, 5: _VT.UInt16, 6: _VT.Int32,
    7: _VT.UInt32, 8: _VT.Int64, 9: _VT.UInt64, 10: _VT.Float, 11: _VT.Double,
    29: _VT.Int32,  # Enumeration: encoded as Int32
}  # fmt: skip
_ABSTRACT = frozenset({24, 26})  # BaseDataType, Number: the driver's own choice is fine
_INTEGERS = frozenset(
    {_VT.SByte, _VT.Byte, _VT.Int16, _VT.UInt16, _VT.Int32, _VT.UInt32, _VT.Int64, _VT.UInt64}
)
_WRITE_TYPES = {  # what each written variable may be declared as, and the default
    Var.POWER_SETPOINT_KW: (frozenset({_VT.Double, _VT.Float}), _VT.Double),
    Var.ENABLED: (frozenset({_VT.Boolean}) | _INTEGERS, _VT.Boolean),
}
_FLOAT32 = struct.Struct("<f")
_T = TypeVar("_T")
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


def _read_parameters(
    node_ids: list[ua.NodeId], attribute: ua.AttributeIds = ua.AttributeIds.Value
) -> ua.ReadParameters:
    """One Read of the Value of `node_ids`, fresh (MaxAge 0), without timestamps (not used)."""
    return ua.ReadParameters(
        MaxAge=0,
        TimestampsToReturn=ua.TimestampsToReturn.Neither,
        NodesToRead=[ua.ReadValueId(NodeId=n, AttributeId=attribute) for n in node_ids],
    )


def _batches(items: list[_T], size: int | None) -> list[list[_T]]:
    if not size or size >= len(items):
        return [items]
    return [items[i : i + size] for i in range(0, len(items), size)]


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

    @property
    def ac_power_kw(self) -> float:
        return self.power_kw

    @property
    def delivered_kwh(self) -> float:
        return self.energy_discharged_kwh - self.energy_charged_kwh

    @property
    def throughput_kwh(self) -> float:
        return self.energy_charged_kwh + self.energy_discharged_kwh


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
        # each Read ("all", "measured", "setpoint") as one or more requests (the server's
        # MaxNodesPerRead), sent together
        self._reads: dict[str, list[ua.ReadParameters]] = {}
        self._read_sender = ReadSender()
        self.max_nodes_per_read: int | None = None  # None: no limit
        self.max_nodes_per_write: int | None = None
        self.write_types: dict[Var, ua.VariantType] = {}  # from each node's DataType
        self._held: dict[Var, Any] = {}  # the setpoint variables as last read or confirmed
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
        self._read_sender = ReadSender()  # the fast paths' switch is read per session
        client_certificate = None
        if self.config.security == "Basic256Sha256":
            client_certificate = await self._secure(client)
        try:
            await client.connect()
        except ua.UaStatusCodeError as exc:
            name = type(exc).__name__
            if name in _ACCESS_DENIED:  # a wrong password is not a network problem
                user = f" as {self.config.username!r}" if self.config.username else ""
                raise DeviceError(self.name, f"ActivateSession{user}", name, str(exc)) from None
            if name in _CERTIFICATE_REFUSED and client_certificate is not None:
                raise DeviceError(
                    self.name,
                    f"connect with the client certificate {client_certificate}",
                    name,
                    "the charger does not accept this certificate: add it to the charger's "
                    "trusted client certificates",
                ) from None
            raise
        except AssertionError:
            # asyncua 2.1 cannot read a ServiceFault in answer to OpenSecureChannel (it fails an
            # assertion): the server refused the secure channel, as servers do for a client
            # certificate they do not trust (BadSecurityChecksFailed)
            if client_certificate is None:
                raise
            raise DeviceError(
                self.name,
                f"OpenSecureChannel with the client certificate {client_certificate}",
                "refused",
                "the charger answered with a fault; the usual cause is a client certificate it "
                "does not trust: add it to the charger's trusted client certificates",
            ) from None
        index = await client.get_namespace_index(NAMESPACE_URI)
        self._limits = {}  # a (re)connected charger may have restarted: read its limits again
        self._node_ids = {
            var: ua.NodeId(node_id(var), index)  # type: ignore[arg-type]  # see _OPERATION_LIMITS
            for var in Var
        }
        await self._learn_server(client)
        self._plan_reads()

    async def _learn_server(self, client: Client) -> None:
        """What this server does its own way, read once per connection: its operation limits and
        the DataType of each variable the driver writes."""
        limits = await self._read_attributes(client, list(_OPERATION_LIMITS), ua.AttributeIds.Value)
        read_limit, write_limit = (
            value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
            for value in limits
        )
        if self.config.max_nodes_per_read is not None:
            read_limit = min(read_limit or self.config.max_nodes_per_read,
                             self.config.max_nodes_per_read)  # fmt: skip
        self.max_nodes_per_read, self.max_nodes_per_write = read_limit, write_limit
        declared = await self._read_attributes(
            client, [self._node_ids[var] for var in _SETPOINT_VARS], ua.AttributeIds.DataType
        )
        self.write_types = {
            var: self._write_type(var, data_type)
            for var, data_type in zip(_SETPOINT_VARS, declared, strict=True)
        }

    async def _read_attributes(
        self, client: Client, node_ids: list[ua.NodeId], attribute: ua.AttributeIds
    ) -> list[Any]:
        """One attribute of each node (None where the server has none): one Read, or one per
        node if the server takes fewer at a time."""
        try:
            results = await client.uaclient.read(_read_parameters(node_ids, attribute))
        except ua.UaStatusCodeError as exc:
            if exc.code != _TOO_MANY_OPERATIONS:
                raise
            results = []
            for one in node_ids:
                results += await client.uaclient.read(_read_parameters([one], attribute))
        return [
            r.Value.Value
            if r.Value is not None and (r.StatusCode is None or r.StatusCode.is_good())
            else None
            for r in results
        ]

    def _write_type(self, var: Var, data_type: Any) -> ua.VariantType:
        """How `var` is written, from its declared DataType (ProtocolMismatch if unusable)."""
        allowed, default = _WRITE_TYPES[var]
        if not isinstance(data_type, ua.NodeId):
            return default  # the server did not say: the driver's own choice
        variant = None
        if data_type.NamespaceIndex == 0 and isinstance(data_type.Identifier, int):
            if data_type.Identifier in _ABSTRACT:
                return default
            variant = _BUILT_IN.get(data_type.Identifier)
        if variant not in allowed:
            names = sorted(v.name for v in allowed)
            raise ProtocolMismatch(
                self.name,
                f"{var.value} is declared with DataType {data_type.to_string()}; "
                f"the driver can write {', '.join(names)}",
            )
        return variant

    def _plan_reads(self) -> None:
        def plan(variables: tuple[Var, ...]) -> list[ua.ReadParameters]:
            ids = [self._node_ids[v] for v in variables]
            return [_read_parameters(batch) for batch in _batches(ids, self.max_nodes_per_read)]

        self._reads = {
            "all": plan(_READ_VARS),
            "measured": plan(_MEASURED_VARS),
            "setpoint": plan(_SETPOINT_VARS),
        }

    async def _read(self, which: str) -> list[ReadResult]:
        """The values of one planned Read: its requests sent together, results in order. A
        server that refuses the batch size (BadTooManyOperations) gets smaller ones."""
        while True:
            requests = self._reads[which]
            uaclient = self._client().uaclient
            try:
                if len(requests) == 1:
                    return await self._read_sender.read(uaclient, requests[0])
                parts = await asyncio.gather(
                    *(self._read_sender.read(uaclient, r) for r in requests)
                )
                return [result for part in parts for result in part]
            except ua.UaStatusCodeError as exc:
                largest = max(len(r.NodesToRead) for r in requests)
                if exc.code != _TOO_MANY_OPERATIONS or largest == 1:
                    raise self._refused(exc, "Read") from None
                self.max_nodes_per_read = max(1, largest // 2)
                logger.info(
                    "%s: the server refuses %d variables per Read; sending %d",
                    self.name, largest, self.max_nodes_per_read,
                )  # fmt: skip
                self._plan_reads()

    def _refused(self, exc: ua.UaStatusCodeError, operation: str) -> Exception:
        """A bad service result: the session is gone (re-raise for the link), or the server
        refused this one request (DeviceError; the session stays)."""
        status = ua.StatusCode(exc.code)
        if status.name.startswith(_SESSION_LOST):
            return exc
        return DeviceError(self.name, operation, status.name, status.doc)

    async def client_certificate(self) -> tuple[Path, Path]:
        """The client certificate (DER) and key (PEM) this driver connects with: the configured
        files, generated there (or in a temp folder) when missing. Give the certificate to the
        charger's administrator for its list of trusted clients."""
        cert, key = self.config.certificate_path, self.config.private_key_path
        if cert is not None and key is not None and Path(cert).is_file() and Path(key).is_file():
            return Path(cert), Path(key)
        folder = Path(tempfile.gettempdir()) / "p2p-testbed-opcua" / self.name
        cert, key = Path(cert or folder / "client-cert.der"), Path(key or folder / "client-key.pem")
        generator = Client("opc.tcp://127.0.0.1:4840")  # only to generate; never connected
        generator.application_uri = _CLIENT_APPLICATION_URI
        await generator.setup_self_signed_certificate(key, cert)
        return cert, key

    async def _secure(self, client: Client) -> Path:
        """Set up Basic256Sha256 SignAndEncrypt with the server's checked certificate; returns
        the client certificate's path."""
        config = self.config
        env = config.password_env or ""
        password = os.environ.get(env)
        if password is None:
            raise InstrumentError(self.name, f"environment variable {env!r} (password) is not set")
        client.set_user(config.username or "")
        client.set_password(password)
        cert, key = await self.client_certificate()
        mode = ua.MessageSecurityMode.SignAndEncrypt
        endpoints = await client.connect_and_get_server_endpoints()
        endpoint = Client.find_endpoint(endpoints, mode, SecurityPolicyBasic256Sha256.URI)
        server_certificate = first_certificate(endpoint.ServerCertificate or b"")
        await check_server_certificate(
            self.name, server_certificate, config.server_certificate_path, config.trust_dir
        )
        await client.set_security(
            SecurityPolicyBasic256Sha256,
            certificate=str(cert),
            private_key=str(key),
            server_certificate=server_certificate,
            mode=mode,
        )
        return cert

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
            return limits, await self._read("all" if limits else "measured")

        with_limits, results = await self.link.run(operation, "Read of the charger's variables")
        variables = _READ_VARS if with_limits else _MEASURED_VARS
        if len(results) != len(variables):
            raise DeviceError(
                self.name, "Read", f"{len(results)} results for {len(variables)} variables"
            )
        values: dict[Var, Any] = {}
        for var, (status, value) in zip(variables, results, strict=True):
            if status & _NOT_GOOD:
                name = ua.StatusCode(status).name  # type: ignore[arg-type]  # see _OPERATION_LIMITS
                raise DeviceError(self.name, f"Read {var.value}", name)
            values[var] = value
        if with_limits:
            self._limits = {var: values[var] for var in _LIMIT_VARS}
            self._reads_since_limits = 0
        else:
            values.update(self._limits)
        self._reads_since_limits += 1
        snapshot = self._decode(values)
        self._held = {Var.POWER_SETPOINT_KW: snapshot.setpoint_kw, Var.ENABLED: snapshot.enabled}
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
            value = v[var]
            if isinstance(value, bool):
                return value
            if isinstance(value, int) and value in (0, 1):  # declared as an integer type
                return bool(value)
            raise BadReading(name, _quantity(var), value, "True or False (or 1 or 0)")

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

    async def operating_state(self) -> None:
        """A run starts with power transfer enabled at 0 kW."""
        await self.apply(EvSetpoint(power_kw=0.0, enabled=True))

    async def safe_state(self) -> Confirmation[EvSetpoint]:
        """Setpoint 0 kW and power transfer disabled."""
        return await self._write_and_confirm(EvSetpoint(0.0, enabled=False))

    def _data_value(self, var: Var, value: float | bool) -> ua.DataValue:
        """`value` of `var` as the server declared the variable, alone (no status, no
        timestamps) unless the config asks for them."""
        variant_type = self.write_types.get(var) or _WRITE_TYPES[var][1]
        if variant_type is _VT.Boolean:
            variant = ua.Variant(bool(value), variant_type)
        elif variant_type in _INTEGERS:
            variant = ua.Variant(int(value), variant_type)
        else:
            variant = ua.Variant(float(value), variant_type)
        if self.config.write_status_and_timestamps:
            now = self.clock().astimezone(UTC).replace(tzinfo=None)  # asyncua: naive = UTC
            return ua.DataValue(variant, SourceTimestamp=now)  # type: ignore[arg-type]  # as above
        return ua.DataValue(variant, StatusCode=None)

    def _as_held(self, var: Var, value: float) -> float:
        """What the server holds after `value` is written: a Float keeps 24 bits of it."""
        if self.write_types.get(var) is _VT.Float:
            return float(_FLOAT32.unpack(_FLOAT32.pack(value))[0])
        return value

    async def _write(self, values: dict[Var, float | bool]) -> list[ua.StatusCode]:
        """One Write of `values` (or one per MaxNodesPerWrite nodes, sent together); the status
        of each, in order. Unsupervised: run it inside the link."""
        uaclient = self._client().uaclient
        nodes = [
            ua.WriteValue(
                NodeId=self._node_ids[var],
                AttributeId=ua.AttributeIds.Value,
                Value=self._data_value(var, value),
            )
            for var, value in values.items()
        ]
        batches = _batches(nodes, self.max_nodes_per_write)
        what = f"Write {', '.join(v.value for v in values)}"
        try:
            if len(batches) == 1:
                parts = [await uaclient.write(ua.WriteParameters(NodesToWrite=nodes))]
            else:
                parts = await asyncio.gather(
                    *(uaclient.write(ua.WriteParameters(NodesToWrite=batch)) for batch in batches)
                )
        except ua.UaStatusCodeError as exc:
            raise self._refused(exc, what) from None
        results = [status for part in parts for status in part]
        if len(results) != len(nodes):
            raise DeviceError(self.name, what, f"{len(results)} results for {len(nodes)} values")
        return results

    async def _write_and_confirm(self, setpoint: EvSetpoint) -> Confirmation[EvSetpoint]:
        power = float(setpoint.power_kw) + 0.0
        values = {Var.POWER_SETPOINT_KW: power, Var.ENABLED: setpoint.enabled}

        async def write_then_read() -> tuple[list[ua.StatusCode], list[ReadResult]]:
            # pipelined: the Read goes out right behind the Write, both answered in one round trip
            # (node ids are known once the session is open)
            return await asyncio.gather(self._write(values), self._read("setpoint"))

        before = dict(self._held)
        results, answers = await self.link.run(
            write_then_read, "Write and Read of PowerSetpointKw and Enabled"
        )
        statuses = dict(zip(values, results, strict=True))
        refused = [(var, status) for var, status in statuses.items() if not status.is_good()]
        if refused:
            self._limits = {}  # the charger refused: take its limits afresh on the next read
            taken = [var for var, status in statuses.items() if status.is_good()]
            note = await self._roll_back(taken, before) if taken else ""
            var, status = refused[0]
            raise DeviceError(self.name, f"Write {var.value}", status.name, status.doc + note)
        expected = self._as_held(Var.POWER_SETPOINT_KW, power)
        try:
            read = self._confirm(expected, setpoint.enabled, answers)
        except ReadbackMismatch:
            # a server may serve pipelined requests out of order: the Write is done now, so a
            # fresh Read is authoritative
            answers = await self.link.run(
                lambda: self._read("setpoint"), "Read of PowerSetpointKw and Enabled"
            )
            read = self._confirm(expected, setpoint.enabled, answers)
        self._held = {Var.POWER_SETPOINT_KW: read.power_kw, Var.ENABLED: read.enabled}
        self.last_confirmed = setpoint if setpoint.enabled else None
        return Confirmation(self.name, setpoint, read, self.clock())

    async def _roll_back(self, taken: list[Var], before: dict[Var, Any]) -> str:
        """Write the variables a part-failed Write did set back to their values from before
        (their safe values if never read); says what happened, for the error message."""
        safe: dict[Var, float | bool] = {Var.POWER_SETPOINT_KW: 0.0, Var.ENABLED: False}
        values = {var: before.get(var, safe[var]) for var in taken}
        what = ", ".join(f"{var.value}={value!r}" for var, value in values.items())
        try:
            results = await self.link.run(
                lambda: self._write(values), f"Write (roll back) of {what}"
            )
        except InstrumentError as exc:
            return f"; rolling back {what} failed: {exc}"
        failed = [
            var.value for var, status in zip(values, results, strict=True) if not status.is_good()
        ]
        if failed:
            return f"; rolling back {what} was refused for {', '.join(failed)}"
        self._held.update(values)
        return f"; rolled back: {what}"

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
