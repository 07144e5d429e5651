"""`python -m hil_sim`: endpoints printed and written, realtime clock, clean stop, config errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w
from sunspec2.modbus.client import SunSpecModbusClientDeviceTCP

from labspec.plant_control import ControlError
from labspec.site import default_site
from tests.fixtures.plant import REPO_ROOT
from tests.fixtures.ports import wait_until


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "hil_sim", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_realtime_plant_prints_its_endpoints_runs_on_its_own_and_stops_on_sigint(
    plant_process_factory,
):
    plant = plant_process_factory("--realtime", "--step", "0.2")
    endpoints = plant.endpoints
    assert endpoints.mode == "realtime"
    printed = plant.output()
    for name in ("inverter", "meter_A", "meter_B", "meter_C", "ev_charger", "load", "control"):
        assert name in printed
    assert f"{endpoints.inverter.host}:{endpoints.inverter.port}" in printed
    assert endpoints.ev_charger.url in printed
    assert endpoints.load.resource in printed
    assert endpoints.load.resource == f"TCPIP0::127.0.0.1::{endpoints.load.port}::SOCKET"

    with plant.control() as control:
        wait_until(lambda: control.time().elapsed_s >= 1.0, 30, "plant time moving by itself")
        with pytest.raises(ControlError, match="realtime"):
            control.advance(1.0)

    plant.proc.send_signal(signal.SIGINT)
    assert plant.proc.wait(timeout=30) == 0
    assert "hil_sim stopped" in plant.output()
    assert "Traceback" not in plant.output()
    assert not plant.endpoints_file.exists()


def test_a_site_file_moves_the_sunspec_base_and_sigterm_stops_cleanly(
    plant_process_factory, tmp_path
):
    site = default_site().with_changes(
        {
            "devices": {
                "inverter": {"modbus": {"sunspec_base": 50000}},
                "meter_C": {"modbus": {"unit_id": 3}},
            }
        }
    )
    site_file = tmp_path / "site.toml"
    site_file.write_text(tomli_w.dumps(site.to_toml_dict()), encoding="utf-8")
    config = tmp_path / "plant.toml"
    config.write_text('[plant]\nseed = 7\nsite = "site.toml"\n', encoding="utf-8")
    plant = plant_process_factory("--config", str(config))
    assert plant.endpoints.inverter.base_address == 50000
    assert plant.endpoints.meter_C.unit == 3
    device = SunSpecModbusClientDeviceTCP(
        slave_id=1, ipaddr="127.0.0.1", ipport=plant.endpoints.inverter.port, timeout=5
    )
    device.scan()
    device.disconnect()
    assert device.base_addr == 50000
    assert [m.model_id for m in device.model_list] == [1, 701, 702, 704, 713, 714]
    with plant.control() as control:
        assert control.state()["seed"] == 7

    plant.proc.terminate()  # SIGTERM
    assert plant.proc.wait(timeout=30) == 0
    assert "hil_sim stopped" in plant.output()
    assert not plant.endpoints_file.exists()


def test_devices_behind_one_gateway_answer_on_one_port_by_unit_id(plant_process_factory, tmp_path):
    """Four SunSpec devices behind one Modbus TCP port, as a gateway serves them; pysunspec2's
    client finds each by its unit id."""
    units = {"inverter": 1, "meter_A": 2, "meter_B": 3, "meter_C": 4}
    site = default_site().with_changes(
        {
            "modbus_gateways": {"gw": {"port": 0}},
            "devices": {d: {"modbus": {"gateway": "gw", "unit_id": u}} for d, u in units.items()},
        }
    )
    site_file = tmp_path / "site.toml"
    site_file.write_text(tomli_w.dumps(site.to_toml_dict()), encoding="utf-8")
    plant = plant_process_factory("--site", str(site_file))
    ports = {plant.endpoints.modbus(d).port for d in units}
    assert len(ports) == 1
    (port,) = ports
    found = {}
    for device_id, unit in units.items():
        assert plant.endpoints.modbus(device_id).unit == unit
        client = SunSpecModbusClientDeviceTCP(
            slave_id=unit, ipaddr="127.0.0.1", ipport=port, timeout=5
        )
        client.scan()
        client.disconnect()
        found[device_id] = [m.model_id for m in client.model_list]
    assert found["inverter"] == [1, 701, 702, 704, 713, 714]
    assert found["meter_B"] == [1, 211]
    with plant.control() as control:
        control.advance(5.0)
        assert set(control.state()["meters"]) == {"A", "B", "C"}


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[plant]\nseed = -3\n", "plant.seed = -3: must be >= 0"),
        ("[servers]\nstep_s = 0\n", "servers.step_s = 0: must be > 0"),
        ("[servers.control]\nport = 70000\n", "servers.control.port = 70000: must be <= 65535"),
        ("[servers]\nhots = '127.0.0.1'\n", "servers.hots = '127.0.0.1': unknown key"),
        ("[plants]\n", "plants: unknown key; allowed: plant, servers"),
        ("[plant\n", "not valid TOML"),
    ],
)
def test_a_malformed_config_names_the_bad_key_and_exits_non_zero(tmp_path: Path, toml, message):
    config = tmp_path / "plant.toml"
    config.write_text(toml, encoding="utf-8")
    result = run_cli("--config", str(config))
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_opc_ua_password_is_a_config_error(tmp_path: Path):
    config = tmp_path / "plant.toml"
    config.write_text(
        '[servers.ev_charger]\nsecurity = "sign_and_encrypt"\n'
        'password_env = "HIL_SIM_TEST_NO_PW"\n',
        encoding="utf-8",
    )
    result = run_cli("--config", str(config))
    assert result.returncode == 2
    assert "HIL_SIM_TEST_NO_PW" in result.stderr


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--seed", "-3"), "--seed = -3: must be >= 0"),
        (("--site", "absent.toml"), "--site: absent.toml: cannot read the site file"),
    ],
)
def test_a_bad_option_is_named_as_it_is_typed(options, message):
    """`--site` and `--seed` are named as options, not as keys under a `--` table."""
    result = run_cli(*options)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
