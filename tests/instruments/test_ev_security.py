"""The EV charger driver over Basic256Sha256 SignAndEncrypt with a user name: the password comes
from the environment variable the config names; the client certificate is generated once. The
plant checks client certificates against its trust-list folder (`trusted_clients`)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from instruments.config import EvChargerConfig
from instruments.errors import DeviceError, InstrumentError
from instruments.ev_charger import EvCharger, EvSetpoint

PASSWORD_ENV = "P2P_TEST_EV_PASSWORD"
SECRET = "correct horse battery staple"


@dataclass
class SecurePlant:
    url: str
    trusted_clients: Path  # the plant's folder of trusted client certificates

    async def trust(self, charger: EvCharger) -> None:
        """Put the driver's client certificate into the plant's trust list."""
        certificate, _ = await charger.client_certificate()
        shutil.copy(
            certificate, self.trusted_clients / f"{charger.name}-{certificate.parent.name}.der"
        )


@pytest.fixture(scope="module")
def secure_plant(tmp_path_factory):
    from tests.fixtures.plant import start_plant_process
    from tests.fixtures.ports import stop_process

    workdir = tmp_path_factory.mktemp("secure_plant")
    trusted = workdir / "trusted-clients"
    trusted.mkdir()
    config = workdir / "plant.toml"
    config.write_text(
        "[servers.ev_charger]\n"
        'security = "sign_and_encrypt"\n'
        'username = "lab"\n'
        f'password_env = "{PASSWORD_ENV}"\n'
        f'cert_dir = "{workdir / "certs"}"\n'
        f'trusted_clients = "{trusted}"\n',
        encoding="utf-8",
    )
    plant = start_plant_process(workdir, "--config", str(config), env={PASSWORD_ENV: SECRET})
    assert plant.endpoints.ev_charger.security == "sign_and_encrypt"
    yield SecurePlant(plant.endpoints.ev_charger.url, trusted)
    stop_process(plant.proc)


def secure_config(plant: SecurePlant, tmp_path, **overrides) -> EvChargerConfig:
    return EvChargerConfig(
        url=plant.url,
        security="Basic256Sha256",
        username="lab",
        password_env=PASSWORD_ENV,
        certificate_path=tmp_path / "client-cert.der",
        private_key_path=tmp_path / "client-key.pem",
        backoff_initial_s=0.05,
        **overrides,
    )


async def test_a_secured_charger_reads_and_confirms_setpoints(secure_plant, tmp_path, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, SECRET)
    charger = EvCharger(secure_config(secure_plant, tmp_path))
    await secure_plant.trust(charger)
    await charger.connect()
    try:
        assert charger.last_snapshot.plugged
        confirmation = await charger.apply(EvSetpoint(-1.0))
        assert confirmation.read_back == EvSetpoint(-1.0, enabled=True)
        await charger.safe_state()
    finally:
        await charger.close()
    assert (tmp_path / "client-cert.der").is_file()  # generated on first use, kept for the next


async def test_a_wrong_password_is_refused(secure_plant, tmp_path, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "not the password")
    charger = EvCharger(secure_config(secure_plant, tmp_path))
    await secure_plant.trust(charger)
    with pytest.raises(DeviceError) as caught:
        await charger.connect()
    await charger.close()
    assert "BadUserAccessDenied" in str(caught.value) and "'lab'" in str(caught.value)


async def test_a_missing_password_variable_is_named(secure_plant, tmp_path, monkeypatch):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    charger = EvCharger(secure_config(secure_plant, tmp_path))
    with pytest.raises(InstrumentError, match=PASSWORD_ENV):
        await charger.connect()
    await charger.close()


def test_security_without_a_user_is_an_invalid_config():
    with pytest.raises(ValueError, match="username and password_env"):
        EvChargerConfig(security="Basic256Sha256")


async def test_the_plant_refuses_a_client_certificate_it_does_not_trust(
    secure_plant, tmp_path, monkeypatch
):
    """The right password is not enough: a client certificate missing from the plant's trust
    list is refused (BadCertificateUntrusted), and the driver names the certificate to add."""
    monkeypatch.setenv(PASSWORD_ENV, SECRET)
    stranger = EvCharger(secure_config(secure_plant, tmp_path / "stranger"))
    with pytest.raises(DeviceError) as caught:
        await stranger.connect()
    await stranger.close()
    assert caught.value.code == "BadCertificateUntrusted"
    assert str(tmp_path / "stranger" / "client-cert.der") in str(caught.value)
    assert "trusted client certificates" in str(caught.value)

    await secure_plant.trust(stranger)  # the plant reads its trust list at each connect
    await stranger.connect()
    try:
        assert (await stranger.apply(EvSetpoint(-0.5))).read_back == EvSetpoint(-0.5, True)
        await stranger.safe_state()
    finally:
        await stranger.close()


def test_a_plant_trust_list_that_is_not_a_folder_is_named(tmp_path, monkeypatch):
    from hil_sim.config import ConfigError
    from hil_sim.servers.settings import check_secrets, load_config

    monkeypatch.setenv(PASSWORD_ENV, SECRET)
    config = tmp_path / "plant.toml"
    config.write_text(
        '[servers.ev_charger]\nsecurity = "sign_and_encrypt"\n'
        f'password_env = "{PASSWORD_ENV}"\ntrusted_clients = "{tmp_path / "missing"}"\n',
        encoding="utf-8",
    )
    _, servers = load_config(config)
    with pytest.raises(ConfigError, match=r"trusted_clients = .*missing.*not a folder"):
        check_secrets(servers)
