"""The plant served from inside the test's event loop (`HilSim`): the Python API for faults and
the lab's secured OPC UA endpoint (Basic256Sha256 SignAndEncrypt, user name and password)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from asyncua import Client, ua
from asyncua.crypto import cert_gen
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from cryptography.x509.oid import ExtendedKeyUsageOID

from hil_sim.runner import HilSim
from hil_sim.servers.settings import OpcUaSettings, ServersConfig
from labspec.ev_charger import NAMESPACE_URI, Var, node_id

pytestmark = pytest.mark.asyncio(loop_scope="module")

PASSWORD = "correct horse battery staple"
CLIENT_URI = "urn:p2p-testbed:tests:opcua-client"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def sim(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[HilSim]:
    cert_dir = tmp_path_factory.mktemp("opcua-server")
    servers = ServersConfig(
        ev_charger=OpcUaSettings(security="sign_and_encrypt", username="lab", cert_dir=cert_dir)
    )
    async with HilSim(servers=servers, opcua_password=PASSWORD) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def client_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("opcua-client")
    cert, key = folder / "client-cert.der", folder / "client-key.pem"
    await cert_gen.setup_self_signed_certificate(
        key, cert, CLIENT_URI, socket.gethostname(), [ExtendedKeyUsageOID.CLIENT_AUTH],
        {"commonName": "hil_sim tests"},
    )  # fmt: skip
    return cert, key


async def secured_client(
    sim: HilSim, client_certificate: tuple[Path, Path], user: str, password: str
) -> Client:
    endpoint = sim.endpoints.ev_charger
    client = Client(endpoint.url, timeout=10)
    client.application_uri = CLIENT_URI
    cert, key = client_certificate
    await client.set_security(
        SecurityPolicyBasic256Sha256,
        certificate=str(cert),
        private_key=str(key),
        server_certificate=endpoint.server_certificate,
        mode=ua.MessageSecurityMode.SignAndEncrypt,
    )
    client.set_user(user)
    client.set_password(password)
    return client


async def test_endpoints_describe_the_secured_charger(sim):
    endpoint = sim.endpoints.ev_charger
    assert endpoint.security == "sign_and_encrypt"
    assert endpoint.username == "lab"
    assert endpoint.server_certificate and Path(endpoint.server_certificate).is_file()
    assert PASSWORD not in sim.endpoints.model_dump_json()


async def test_signed_and_encrypted_session_with_password_reads_and_writes(sim, client_certificate):
    client = await secured_client(sim, client_certificate, "lab", PASSWORD)
    async with client:
        idx = await client.get_namespace_index(NAMESPACE_URI)
        setpoint = client.get_node(ua.NodeId(node_id(Var.POWER_SETPOINT_KW), idx))
        await setpoint.write_value(-1.0)
        assert await setpoint.read_value() == -1.0
        assert sim.plant.ev.setpoint_kw == -1.0
        with pytest.raises(ua.UaStatusCodeError) as refused:
            await setpoint.write_value(-50.0)
        assert refused.value.code == ua.StatusCodes.BadOutOfRange
        await sim.advance(10)
        power = client.get_node(ua.NodeId(node_id(Var.POWER_KW), idx))
        assert await power.read_value() == pytest.approx(-1.0)


async def test_wrong_password_is_refused(sim, client_certificate):
    client = await secured_client(sim, client_certificate, "lab", "guess")
    with pytest.raises(ua.UaStatusCodeError) as refused:
        await client.connect()
    assert refused.value.code in (
        ua.StatusCodes.BadUserAccessDenied,
        ua.StatusCodes.BadIdentityTokenRejected,
        ua.StatusCodes.BadIdentityTokenInvalid,
    )
    await client.disconnect()


async def test_an_unsecured_anonymous_session_is_refused(sim):
    client = Client(sim.endpoints.ev_charger.url, timeout=5)
    with pytest.raises((ua.UaError, OSError, TimeoutError)):
        async with client:
            idx = await client.get_namespace_index(NAMESPACE_URI)
            await client.get_node(ua.NodeId(node_id(Var.SOC_PCT), idx)).read_value()


async def test_faults_switch_from_python_while_running(sim):
    inverter = sim.endpoints.inverter

    def connect() -> bool:
        try:
            socket.create_connection((inverter.host, inverter.port), timeout=2).close()
        except ConnectionRefusedError:
            return False
        return True

    assert connect()
    assert await sim.set_fault("inverter", "refuse") == {"device": "inverter", "kind": "refuse"}
    assert not connect()
    await sim.set_fault("inverter", "out_of_range")
    soc = sim.inverter.image.get("713.SoC")
    assert soc == pytest.approx(250.0)
    await sim.clear_faults("inverter", "refuse")
    assert connect()
    await sim.clear_faults()
    assert sim.inverter.image.get("713.SoC") == pytest.approx(sim.plant.inverter.soc_pct, abs=0.05)
    assert sim.faults.active() == []
