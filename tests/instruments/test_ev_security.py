"""The EV charger driver over Basic256Sha256 SignAndEncrypt with a user name: the password comes
from the environment variable the config names; the client certificate is generated once."""

from __future__ import annotations

import pytest

from instruments.config import EvChargerConfig
from instruments.errors import DeviceError, InstrumentError
from instruments.ev_charger import EvCharger, EvSetpoint

PASSWORD_ENV = "P2P_TEST_EV_PASSWORD"
SECRET = "correct horse battery staple"


@pytest.fixture(scope="module")
def secure_plant(tmp_path_factory):
    from tests.fixtures.plant import start_plant_process
    from tests.fixtures.ports import stop_process

    workdir = tmp_path_factory.mktemp("secure_plant")
    config = workdir / "plant.toml"
    config.write_text(
        "[servers.ev_charger]\n"
        'security = "sign_and_encrypt"\n'
        'username = "lab"\n'
        f'password_env = "{PASSWORD_ENV}"\n'
        f'cert_dir = "{workdir / "certs"}"\n',
        encoding="utf-8",
    )
    plant = start_plant_process(workdir, "--config", str(config), env={PASSWORD_ENV: SECRET})
    yield plant.endpoints
    stop_process(plant.proc)


def secure_config(endpoints, tmp_path, **overrides) -> EvChargerConfig:
    return EvChargerConfig(
        url=endpoints.ev_charger.url,
        security="Basic256Sha256",
        username="lab",
        password_env=PASSWORD_ENV,
        certificate_path=tmp_path / "client-cert.der",
        private_key_path=tmp_path / "client-key.pem",
        backoff_initial_s=0.05,
        **overrides,
    )


async def test_a_secured_charger_reads_and_confirms_setpoints(secure_plant, tmp_path, monkeypatch):
    assert secure_plant.ev_charger.security == "sign_and_encrypt"
    monkeypatch.setenv(PASSWORD_ENV, SECRET)
    charger = EvCharger(secure_config(secure_plant, tmp_path))
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
