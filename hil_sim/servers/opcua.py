"""Peer B's bidirectional EV charger: an OPC UA server (asyncua) with the node set of
`labspec.ev_charger`.

Variables live under the object `ns=<idx>;s=EVCharger` of the namespace `NAMESPACE_URI`, with
string node ids `EVCharger.<Var>`, a description and an `EngineeringUnits` property (UNECE codes).
`PowerSetpointKw` and `Enabled` are writable; a write goes to the plant and a value the charger
refuses answers `BadOutOfRange`. Values change once per plant advance: only those that moved are
stored, straight into the address space (the server itself needs none of the checks a client's
write gets), and each variable's data-change callbacks are called, so subscriptions see the
changes. They carry the plant time as their source and server timestamps. Read and Write requests
take a quicker path through asyncua (`hil_sim.servers.opcua_fastpath`; asyncua's own with the
fast paths off, `labspec.fast_paths`).

Security: "none" (anonymous, for tests) or "sign_and_encrypt" (Basic256Sha256 SignAndEncrypt with a
user name and password); a self-signed server certificate is generated when none is given. Client
certificates are checked against a trust-list folder (`trusted_clients`,
`hil_sim.servers.opcua_clients`); without one, any client certificate is accepted (a warning).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import operator
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import asyncua
from asyncua import Server, ua
from asyncua.crypto import cert_gen
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.address_space import AttributeValue, NodeData
from asyncua.server.internal_server import InternalServer
from asyncua.server.user_managers import UserManager
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from hil_sim.faults import DeviceFaults
from hil_sim.plant import EvState, Plant, SetpointRejected
from hil_sim.servers.gate import ListenerGate
from hil_sim.servers.opcua_clients import ClientTrustList
from hil_sim.servers.opcua_fastpath import fast_protocol_factory
from hil_sim.servers.opcua_values import ua_data_value, ua_node_id
from labspec import fast_paths
from labspec.ev_charger import (
    NAMESPACE_URI,
    OBJECT_BROWSE_NAME,
    OBJECT_NODE_ID,
    VARIABLES,
    Var,
    node_id,
)

log = logging.getLogger(__name__)

APPLICATION_URI = "urn:p2p-testbed:hil-sim:ev-charger"
SERVER_NAME = "P2P testbed EV charger (hil_sim)"
URL_PATH = "/p2p-testbed/ev-charger"
OPC_UA_NULL_DATETIME = datetime(1601, 1, 1, tzinfo=UTC)  # OPC UA's "no date"

SecurityMode = Literal["none", "sign_and_encrypt"]

# EvState attribute behind each variable.
_STATE_FIELDS: dict[Var, str] = {
    Var.SOC_PCT: "soc_pct",
    Var.PLUGGED: "plugged",
    Var.DEPARTURE_TIME: "departure_time",
    Var.POWER_KW: "power_kw",
    Var.POWER_SETPOINT_KW: "setpoint_kw",
    Var.ENABLED: "enabled",
    Var.STATUS: "status",
    Var.MAX_CHARGE_POWER_KW: "max_charge_kw",
    Var.MAX_DISCHARGE_POWER_KW: "max_discharge_kw",
    Var.MIN_POWER_KW: "min_power_kw",
    Var.RAMP_RATE_KW_PER_S: "ramp_kw_per_s",
    Var.RESERVE_SOC_PCT: "reserve_soc_pct",
    Var.MIN_SOC_PCT: "soc_min_pct",
    Var.MAX_SOC_PCT: "soc_max_pct",
    Var.WATCHDOG_TIMEOUT_S: "watchdog_timeout_s",
    Var.ENERGY_CHARGED_KWH: "energy_charged_kwh",
    Var.ENERGY_DISCHARGED_KWH: "energy_discharged_kwh",
    Var.CAPACITY_KWH: "capacity_kwh",
}

_VARIANT_TYPES = {
    "Double": ua.VariantType.Double,
    "Boolean": ua.VariantType.Boolean,
    "DateTime": ua.VariantType.DateTime,
    "String": ua.VariantType.String,
}

# UNECE Recommendation 20 codes (OPC UA Part 8, EUInformation).
_UNECE_CODES = {
    "kW": ("KWT", "kilowatt"),
    "kWh": ("KWH", "kilowatt hour"),
    "%": ("P1", "percent"),
    "s": ("SEC", "second"),
}  # kW/s has no UNECE code: RampRateKwPerS carries no EngineeringUnits
_UNECE_NAMESPACE = "http://www.opcfoundation.org/UA/units/un/cefact"

OUT_OF_RANGE_SOC_PCT = 250.0
OUT_OF_RANGE_POWER_FACTOR = 9.0  # times the larger power limit


_READ_STATE = operator.attrgetter(*(_STATE_FIELDS[spec.name] for spec in VARIABLES))
_POSITION = {spec.name: i for i, spec in enumerate(VARIABLES)}
_DOUBLE_POSITIONS = tuple(i for i, spec in enumerate(VARIABLES) if spec.ua_type == "Double")
_DEPARTURE, _SOC, _POWER = (
    _POSITION[Var.DEPARTURE_TIME],
    _POSITION[Var.SOC_PCT],
    _POSITION[Var.POWER_KW],
)
_UNPUBLISHED = object()


def _eu_information(unit: str) -> ua.EUInformation | None:
    if unit not in _UNECE_CODES:
        return None
    code, description = _UNECE_CODES[unit]
    unit_id = 0
    for ch in code:
        unit_id = (unit_id << 8) | ord(ch)
    return ua.EUInformation(
        NamespaceUri=_UNECE_NAMESPACE,
        UnitId=unit_id,
        DisplayName=ua.LocalizedText(unit),
        Description=ua.LocalizedText(description),
    )


@dataclass(frozen=True, slots=True)
class OpcUaSecurity:
    """How the charger's endpoint is secured."""

    mode: SecurityMode = "none"
    username: str = "lab"
    password: str | None = None  # required for "sign_and_encrypt"
    certificate: Path | None = None  # DER or PEM; generated into cert_dir when None
    private_key: Path | None = None
    cert_dir: Path | None = None  # where a generated certificate goes (a temp folder if None)
    trusted_clients: Path | None = None  # folder of trusted client certificates; None: any


class _PasswordUserManager(UserManager):
    """One user name and password; everything else is refused."""

    def __init__(self, username: str, password: str):
        self._username = username
        self._password = password.encode()

    def get_user(self, iserver: InternalServer, username: str | None = None,
                 password: str | None = None, certificate: Any = None) -> User | None:  # fmt: skip
        if username is None or password is None:
            return None
        if username == self._username and hmac.compare_digest(password.encode(), self._password):
            return User(role=UserRole.User, name=username)
        return None


def address_space_cache_dir() -> Path:
    """Where the shelf of asyncua's standard address space is kept ($HIL_SIM_CACHE_DIR, else
    $XDG_CACHE_HOME/hil_sim, else ~/.cache/hil_sim), one folder per asyncua and Python version."""
    root = os.environ.get("HIL_SIM_CACHE_DIR")
    base = Path(root) if root else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    base = base if root else base / "hil_sim"
    version = getattr(asyncua, "__version__", "unknown")
    return base / f"opcua-aspace-asyncua{version}-py{sys.version_info[0]}{sys.version_info[1]}"


_SHELF_NAME = "aspace"  # the shelf's base name; an empty file of this name marks a complete cache


async def initialised_server(user_manager: UserManager | None = None) -> Server:
    """A new `Server` after `init()`, its standard address space loaded from a cached shelf.

    Building the standard address space takes seconds (tens on a busy machine); the first start
    writes it as a shelf (pickled nodes, loaded lazily) and later starts take half a second. The
    shelf is built in a temporary folder and renamed into place, so concurrent starts are safe.
    """
    final_dir = address_space_cache_dir()
    marker = final_dir / _SHELF_NAME
    if marker.is_file():
        server = Server(user_manager=user_manager)
        try:
            await server.init(shelf_file=marker)
            return server
        except Exception:  # a damaged cache: drop it and build a new one
            log.warning("OPC UA address-space cache %s unusable; rebuilding it", final_dir)
            shutil.rmtree(final_dir, ignore_errors=True)
    server = Server(user_manager=user_manager)
    try:
        final_dir.parent.mkdir(parents=True, exist_ok=True)
        build_dir = Path(tempfile.mkdtemp(dir=final_dir.parent, prefix=".building-"))
    except OSError as exc:
        log.info("no OPC UA address-space cache (%s); building it in memory", exc)
        await server.init()
        return server
    try:
        await server.init(shelf_file=build_dir / _SHELF_NAME)
        (build_dir / _SHELF_NAME).touch()
        os.rename(build_dir, final_dir)
    except OSError:
        pass  # another process got there first, or the folder is read-only: ours is not needed
    finally:
        shutil.rmtree(build_dir, ignore_errors=True)
    return server


def generate_certificate(cert_dir: Path, host: str) -> tuple[Path, Path]:
    """Write a self-signed server certificate (DER) and its key (PEM) into cert_dir."""
    cert_dir.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = cert_dir / "ev-charger-cert.der", cert_dir / "ev-charger-key.pem"
    if cert_path.is_file() and key_path.is_file():
        return cert_path, key_path
    key = cert_gen.generate_private_key()
    names: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(APPLICATION_URI),
        x509.DNSName(socket.gethostname()),
        x509.DNSName("localhost"),
    ]
    try:
        names.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        names.append(x509.DNSName(host))
    cert = cert_gen.generate_self_signed_app_certificate(
        key,
        APPLICATION_URI,
        {"commonName": "hil_sim EV charger", "organizationName": "P2P testbed"},
        names,
        extended=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        days=3650,
    )
    key_path.write_bytes(cert_gen.dump_private_key_as_pem(key))
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    return cert_path, key_path


class EvChargerOpcUaServer:
    """The charger's OPC UA server over the plant's EV state, behind a `ListenerGate`."""

    def __init__(
        self,
        plant: Plant,
        *,
        host: str,
        port: int = 0,
        faults: DeviceFaults,
        security: OpcUaSecurity | None = None,
        device: str | None = None,
        path: str = URL_PATH,
    ):
        self.plant = plant
        self.device = device if device is not None else next(iter(plant.evs))
        self.path = path
        self._host = host
        self._port = port
        self.faults = faults
        self.security = security or OpcUaSecurity()
        self.server: Server | None = None
        self.gate: ListenerGate | None = None
        self.namespace_index = 0
        self._node_ids: list[ua.NodeId] = []
        self._value_attributes: list[AttributeValue] = []  # each variable's Value attribute
        self._published: list[Any] = [_UNPUBLISHED] * len(VARIABLES)
        self.certificate_path: Path | None = None  # the server certificate in use, when secured

    @property
    def port(self) -> int:
        return self.gate.port if self.gate is not None else self._port

    @property
    def url(self) -> str:
        return f"opc.tcp://{self._host}:{self.port}{self.path}"

    async def start(self) -> str:
        """Build the address space, listen; returns the endpoint URL."""
        security = self.security
        user_manager = None
        if security.mode == "sign_and_encrypt":
            if not security.password:
                raise ValueError("OPC UA sign_and_encrypt needs a password (opcua.password_env)")
            user_manager = _PasswordUserManager(security.username, security.password)
        server = await initialised_server(user_manager)
        server.set_server_name(SERVER_NAME)
        await server.set_application_uri(APPLICATION_URI)
        server.set_endpoint(f"opc.tcp://{self._host}:{self._port}{self.path}")
        if security.mode == "sign_and_encrypt":
            cert, key = security.certificate, security.private_key
            if cert is None or key is None:
                cert_dir = security.cert_dir
                if cert_dir is None:
                    raise ValueError("OPC UA sign_and_encrypt needs a certificate or a cert_dir")
                cert, key = generate_certificate(cert_dir, self._host)
            self.certificate_path = Path(cert)
            await server.load_certificate(str(cert))
            await server.load_private_key(str(key))
            server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
            server.set_identity_tokens([ua.UserNameIdentityToken])
            if security.trusted_clients is not None:
                server.set_certificate_validator(ClientTrustList(security.trusted_clients))
            else:
                log.warning(
                    "the EV charger accepts any client certificate: set "
                    "servers.ev_charger.trusted_clients to a folder of trusted ones"
                )
        else:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
            server.set_identity_tokens([ua.AnonymousIdentityToken])
        await self._build_address_space(server)
        await server.start()
        self.server = server
        # Take the listening socket over: same port, with the gate's fault handling in front.
        binary = server.bserver
        if binary is None:  # asyncua sets it in start()
            raise RuntimeError("asyncua's server started without its binary server")
        listening_port = binary.port
        if binary._server is not None:  # asyncua 2.1 keeps the asyncio server here
            binary._server.close()
            await binary._server.wait_closed()
            binary._server = None
        self.gate = ListenerGate(
            self.device,
            fast_protocol_factory(binary) if fast_paths.enabled() else binary._make_protocol,
            self._host,
            listening_port,
            self.faults,
        )
        await self.gate.open()
        return self.url

    async def stop(self) -> None:
        if self.gate is not None:
            await self.gate.close()
        if self.server is not None:
            await self.server.stop()

    async def _build_address_space(self, server: Server) -> None:
        idx = await server.register_namespace(NAMESPACE_URI)
        self.namespace_index = idx
        charger = await server.nodes.objects.add_object(
            ua_node_id(OBJECT_NODE_ID, idx), ua.QualifiedName(OBJECT_BROWSE_NAME, idx)
        )
        values = self._values(self.plant.evs[self.device], out_of_range=False)
        for position, spec in enumerate(VARIABLES):
            variant_type = _VARIANT_TYPES[spec.ua_type]
            value = values[position]
            variable = await charger.add_variable(
                ua_node_id(node_id(spec.name), idx),
                ua.QualifiedName(spec.name.value, idx),
                value,
                varianttype=variant_type,
            )
            await variable.write_attribute(
                ua.AttributeIds.Description,
                ua.DataValue(ua.Variant(ua.LocalizedText(spec.description))),
            )
            eu = _eu_information(spec.unit)
            if eu is not None:
                await variable.add_property(
                    ua_node_id(f"{node_id(spec.name)}.EngineeringUnits", idx),
                    ua.QualifiedName("EngineeringUnits", 0),
                    eu,
                    datatype=ua_node_id(ua.ObjectIds.EUInformation),
                )
            self._node_ids.append(variable.nodeid)
            node_data = server.iserver.aspace[variable.nodeid]
            self._value_attributes.append(node_data.attributes[ua.AttributeIds.Value])
            self._published[position] = value
            if spec.writable:
                await variable.set_writable()
                server.set_attribute_value_setter(variable.nodeid, self._make_setter(spec.name))

    # -- values ---------------------------------------------------------------------------------
    @staticmethod
    def _values(state: EvState, out_of_range: bool) -> list[Any]:
        """Every variable's value, in VARIABLES order."""
        values = list(_READ_STATE(state))
        for i in _DOUBLE_POSITIONS:
            values[i] = float(values[i])
        if values[_DEPARTURE] is None:
            values[_DEPARTURE] = OPC_UA_NULL_DATETIME
        if out_of_range:
            values[_SOC] = OUT_OF_RANGE_SOC_PCT
            values[_POWER] = OUT_OF_RANGE_POWER_FACTOR * max(
                state.max_charge_kw, state.max_discharge_kw
            )
        return values

    async def publish(self, now: datetime) -> None:
        """Write every value that changed since the last publish (skipped while frozen)."""
        if self.faults.frozen or self.server is None:
            return
        values = self._values(self.plant.evs[self.device], self.faults.out_of_range)
        published = self._published
        timestamp: datetime | None = None
        for i, value in enumerate(values):
            if published[i] == value:
                continue
            published[i] = value
            if timestamp is None:  # asyncua encodes naive datetimes as UTC
                timestamp = now.astimezone(UTC).replace(tzinfo=None)
            data_value = ua_data_value(
                ua.Variant(value, _VARIANT_TYPES[VARIABLES[i].ua_type]), timestamp
            )
            attribute = self._value_attributes[i]
            attribute.value = data_value  # what asyncua's value setter stores
            for handle, callback in list(attribute.datachange_callbacks.items()):
                try:  # subscriptions, as asyncua's own write would notify them
                    await callback(handle, data_value)
                except Exception:
                    log.exception("data-change callback of %s failed", VARIABLES[i].name.value)

    def _make_setter(self, var: Var) -> Callable[[NodeData, ua.AttributeIds, ua.DataValue], None]:
        def setter(node: NodeData, attr: ua.AttributeIds, value: ua.DataValue) -> None:
            # only clients write through here: publish stores its values directly
            self._client_write(var, value)
            self._published[_POSITION[var]] = _UNPUBLISHED  # republish the plant's view
            node.attributes[attr].value = value

        return setter

    def _client_write(self, var: Var, value: ua.DataValue) -> None:
        new = value.Value.Value if value.Value is not None else None
        try:
            if var is Var.POWER_SETPOINT_KW:
                if new is None:
                    raise TypeError("the write carries no value")
                self.plant.write_ev_setpoint(float(new), self.device)
            elif var is Var.ENABLED:
                self.plant.write_ev_enabled(bool(new), self.device)
            else:  # only writable variables get a setter
                raise ua.UaStatusCodeError(ua.StatusCodes.BadNotWritable)
        except (SetpointRejected, TypeError, ValueError) as exc:
            log.info("EV charger refused %s = %r: %s", var.value, new, exc)
            raise ua.UaStatusCodeError(ua.StatusCodes.BadOutOfRange) from None
