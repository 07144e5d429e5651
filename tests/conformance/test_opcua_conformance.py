"""The EV charger driver against a charger on node-opcua (another OPC UA stack than asyncua),
with the node table in other data types, operation limits, a PLC's refusal of status codes and
timestamps in writes, and certificates checked both ways."""

from __future__ import annotations

import shutil
import struct

import pytest
from asyncua import Client, ua
from asyncua.crypto import cert_gen
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from instruments.config import EvChargerConfig
from instruments.errors import DeviceError, UntrustedCertificate
from instruments.ev_charger import EvCharger, EvSetpoint
from instruments.opcua_trust import fingerprint
from labspec.ev_charger import NAMESPACE_URI, OBJECT_NODE_ID, Var, node_id
from tests.conformance.opcua_charger import APPLICATION_URI, OTHER_TYPES, NodeOpcuaCharger

PASSWORD_ENV = "P2P_TEST_NODE_CHARGER_PASSWORD"
SECRET = "node-opcua charger secret"
FAST = {"timeout_s": 3.0, "backoff_initial_s": 0.05, "backoff_max_s": 0.2}


def as_float32(value: float) -> float:
    return struct.unpack("<f", struct.pack("<f", value))[0]


@pytest.fixture(scope="module")
def node_charger(tmp_path_factory):
    """Float setpoint, Byte Enabled, at most 5 variables per Read and 1 per Write, writes of
    values only; an anonymous endpoint without security, and a SignAndEncrypt one for the user
    "lab"."""
    workdir = tmp_path_factory.mktemp("node_charger")
    pem, der, key = write_certificate(workdir / "own", "node-charger", APPLICATION_URI)
    charger = NodeOpcuaCharger(
        workdir,
        types=OTHER_TYPES,
        max_nodes_per_read=5,
        max_nodes_per_write=1,
        plc_writes=True,
        security="both",
        certificate=pem,
        private_key=key,
        users={"lab": SECRET},
    )
    charger.trusted_clients.mkdir(parents=True, exist_ok=True)
    charger.der = der
    yield charger.start()
    charger.stop()


@pytest.fixture
def plc_charger(node_charger):
    return node_charger


@pytest.fixture
def secure_charger(node_charger):
    return node_charger


async def server_value(url: str, var: Var | str):
    """A variable's value and type as the server holds it (read with a plain asyncua client)."""
    async with Client(url) as client:
        index = await client.get_namespace_index(NAMESPACE_URI)
        name = node_id(var) if isinstance(var, Var) else f"{OBJECT_NODE_ID}.{var}"
        data_value = await client.get_node(ua.NodeId(name, index)).read_data_value()
        return data_value.Value.Value, data_value.Value.VariantType


async def set_refuse_setpoint(url: str, refuse: bool) -> None:
    async with Client(url) as client:
        index = await client.get_namespace_index(NAMESPACE_URI)
        node = client.get_node(ua.NodeId(f"{OBJECT_NODE_ID}.Test.RefuseSetpoint", index))
        value = ua.Variant(refuse, ua.VariantType.Boolean)
        await node.write_value(ua.DataValue(value, StatusCode=None))


async def test_writes_are_typed_as_each_node_declares(plc_charger):
    """PowerSetpointKw is a Float and Enabled a Byte on this charger: the driver reads both
    DataTypes at connect and writes Float and 0/1 (a Double or a Boolean is BadTypeMismatch)."""
    charger = EvCharger(EvChargerConfig(url=plc_charger.url, **FAST))
    await charger.connect()
    try:
        assert charger.last_snapshot.enabled is False  # Byte 0, read as a flag
        assert charger.write_types == {
            Var.POWER_SETPOINT_KW: ua.VariantType.Float,
            Var.ENABLED: ua.VariantType.Byte,
        }
        confirmation = await charger.apply(EvSetpoint(-1.3))
        assert confirmation.read_back == EvSetpoint(as_float32(-1.3), enabled=True)
        assert await server_value(plc_charger.url, Var.ENABLED) == (1, ua.VariantType.Byte)
        snapshot = await charger.read()
        assert snapshot.power_kw == pytest.approx(-1.3) and snapshot.enabled is True
    finally:
        await charger.safe_state()
        await charger.close()
    assert await server_value(plc_charger.url, Var.ENABLED) == (0, ua.VariantType.Byte)


async def test_reads_honour_the_servers_max_nodes_per_read(plc_charger):
    """The charger takes at most 5 variables per Read and 1 per Write (BadTooManyOperations
    beyond): the driver learns the limits at connect, sends the 18 variables as four Reads and
    the setpoint as two Writes, each set together."""
    charger = EvCharger(EvChargerConfig(url=plc_charger.url, limits_every_reads=1, **FAST))
    await charger.connect()
    try:
        assert (charger.max_nodes_per_read, charger.max_nodes_per_write) == (5, 1)
        assert (await charger.apply(EvSetpoint(-0.6))).read_back.enabled is True
        assert await server_value(plc_charger.url, Var.ENABLED) == (1, ua.VariantType.Byte)
        await charger.safe_state()
        charger.max_nodes_per_write = None  # as if the limit were not known: the server refuses
        with pytest.raises(DeviceError, match="BadTooManyOperations"):
            await charger.apply(EvSetpoint(-0.6))
        assert charger.status == "connected"  # a refused request, not a lost connection
        charger.max_nodes_per_write = 1
        snapshot = await charger.read()  # all 18 variables (limits every read)
        assert (snapshot.soc_pct, snapshot.capacity_kwh) == (60.0, as_float32(4.6))
        assert (snapshot.soc_min_pct, snapshot.watchdog_timeout_s) == (10, 60)
        assert charger.status == "connected"
        # a server that does not publish its limit: the driver finds it out by halving
        charger.max_nodes_per_read = None
        charger._plan_reads()
        snapshot = await charger.read()
        assert snapshot.soc_pct == 60.0 and charger.max_nodes_per_read <= 5
    finally:
        await charger.close()


async def test_values_are_written_without_status_or_timestamps(plc_charger):
    """Like PLC-based servers, this charger refuses a written DataValue that carries a status
    code or timestamps (BadWriteNotSupported); the driver writes the value alone by default."""
    charger = EvCharger(EvChargerConfig(url=plc_charger.url, **FAST))
    await charger.connect()
    try:
        assert (await charger.apply(EvSetpoint(-0.8))).read_back.enabled is True
    finally:
        await charger.safe_state()
        await charger.close()
    stamped = EvCharger(
        EvChargerConfig(url=plc_charger.url, write_status_and_timestamps=True, **FAST)
    )
    await stamped.connect()
    try:
        with pytest.raises(DeviceError, match="BadWriteNotSupported"):
            await stamped.apply(EvSetpoint(-0.8))
    finally:
        await stamped.close()


async def test_a_write_that_fails_part_way_is_rolled_back(plc_charger):
    """The charger refuses the setpoint and takes Enabled: the driver writes Enabled back to
    what it was, so the charger is not left enabled at an old setpoint."""
    charger = EvCharger(EvChargerConfig(url=plc_charger.url, **FAST))
    await charger.connect()
    await set_refuse_setpoint(plc_charger.url, True)
    try:
        with pytest.raises(DeviceError) as caught:
            await charger.apply(EvSetpoint(-2.0))
        assert caught.value.code == "BadOutOfRange" and "PowerSetpointKw" in str(caught.value)
        assert "rolled back: Enabled=False" in str(caught.value)
        assert await server_value(plc_charger.url, Var.ENABLED) == (0, ua.VariantType.Byte)
    finally:
        await set_refuse_setpoint(plc_charger.url, False)
        await charger.close()


# -- certificates, both ways -------------------------------------------------------------------


def write_certificate(folder, name: str, uri: str) -> tuple:
    """A self-signed application certificate (PEM and DER) and its key (PEM)."""
    folder.mkdir(parents=True, exist_ok=True)
    key = cert_gen.generate_private_key()
    cert = cert_gen.generate_self_signed_app_certificate(
        key,
        uri,
        {"commonName": name},
        [x509.UniformResourceIdentifier(uri), x509.DNSName("localhost")],
        extended=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        days=30,
    )
    pem, der = folder / f"{name}.pem", folder / f"{name}.der"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    der.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    key_path = folder / f"{name}-key.pem"
    key_path.write_bytes(cert_gen.dump_private_key_as_pem(key))
    return pem, der, key_path


def secure_config(charger, folder, **overrides) -> EvChargerConfig:
    return EvChargerConfig(
        url=charger.url,
        security="Basic256Sha256",
        username="lab",
        password_env=PASSWORD_ENV,
        certificate_path=folder / "client-cert.der",
        private_key_path=folder / "client-key.pem",
        **{**FAST, "timeout_s": 5.0, **overrides},
    )


async def trusted_by(charger, driver: EvCharger) -> None:
    """Put the driver's client certificate into the charger's list of trusted clients."""
    cert, _ = await driver.client_certificate()
    shutil.copy(cert, charger.trusted_clients / cert.name)


async def test_the_charger_certificate_in_the_trust_list_is_accepted(
    secure_charger, tmp_path, monkeypatch
):
    monkeypatch.setenv(PASSWORD_ENV, SECRET)
    trust = tmp_path / "trusted"
    trust.mkdir()
    shutil.copy(secure_charger.der, trust / "charger.der")
    driver = EvCharger(secure_config(secure_charger, tmp_path, trust_dir=trust))
    await trusted_by(secure_charger, driver)
    await driver.connect()
    try:
        assert (await driver.apply(EvSetpoint(-1.0))).read_back == EvSetpoint(-1.0, True)
        await driver.safe_state()
    finally:
        await driver.close()
    pinned = EvCharger(
        secure_config(secure_charger, tmp_path, server_certificate_path=secure_charger.der)
    )
    await pinned.connect()
    await pinned.close()


async def test_an_unknown_charger_certificate_is_refused_before_the_password(
    secure_charger, tmp_path, monkeypatch
):
    monkeypatch.setenv(PASSWORD_ENV, SECRET)
    _, other, _ = write_certificate(tmp_path / "other", "another-charger", APPLICATION_URI)
    pinned = EvCharger(secure_config(secure_charger, tmp_path, server_certificate_path=other))
    await trusted_by(secure_charger, pinned)
    with pytest.raises(UntrustedCertificate) as caught:
        await pinned.connect()
    await pinned.close()
    assert caught.value.thumbprint == fingerprint(secure_charger.der.read_bytes())
    assert f"CN={APPLICATION_URI}" in str(caught.value) and str(other) in str(caught.value)

    empty = tmp_path / "empty-trust-list"
    empty.mkdir()
    listed = EvCharger(secure_config(secure_charger, tmp_path, trust_dir=empty))
    with pytest.raises(UntrustedCertificate, match="not in trust_dir"):
        await listed.connect()
    await listed.close()


async def test_the_charger_refuses_a_client_certificate_it_does_not_trust(
    secure_charger, tmp_path, monkeypatch
):
    """node-opcua checks client certificates against its trust list; the driver says which
    certificate to add there."""
    monkeypatch.setenv(PASSWORD_ENV, SECRET)
    stranger = EvCharger(
        secure_config(
            secure_charger, tmp_path / "stranger", server_certificate_path=secure_charger.der
        )
    )
    with pytest.raises(DeviceError) as caught:
        await stranger.connect()
    await stranger.close()
    assert "client-cert.der" in str(caught.value) and "trusted client" in str(caught.value)
