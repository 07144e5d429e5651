"""Bad input gives one bounded message that names the file (defects 8, 9 and 10 of issue 12)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MAX_MESSAGE_BYTES = 4000


def run_testbed(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "testbed", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_huge_garbage_field_in_an_orders_csv_is_cut_not_echoed(tmp_path):
    """Defect 8: a 10 MB garbage field was echoed back whole (10 MB on stderr)."""
    book = tmp_path / "orders.csv"
    garbage = "X" * 10_000_000
    book.write_text(
        "order_id,peer,side,quantity_kwh,price\n"
        f"o1,A,buy,1.0,{garbage}\n"
        f"o2,{garbage},sell,1.0,5.0\n"
        "o3,A,buy,1.0,6.0\n"
        "o4,B,sell,1.0,4.0\n"
    )
    done = run_testbed("clear", str(book), "--peers", "A,B", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[:2000]
    assert len(done.stderr.encode()) < MAX_MESSAGE_BYTES
    rejected = [line for line in done.stderr.splitlines() if ": rejected " in line]
    assert len(rejected) == 2
    for line in rejected:
        assert str(book) in line  # names the file
        assert "10,000,000 characters" in line  # says how long the field was
    assert "2 orders cleared, 1 trades" in done.stderr  # the good orders still clear


def test_a_binary_config_file_is_named_in_the_error(tmp_path):
    """Defect 9: a binary config file gave "'utf-8' codec can't decode..." without the file."""
    config = tmp_path / "binary.toml"
    config.write_bytes(bytes(range(256)) * 40)
    for command in (["run", "--config", str(config)], ["demo", "--config", str(config)]):
        done = run_testbed(*command, cwd=tmp_path)
        output = done.stdout + done.stderr
        assert done.returncode == 2, output
        assert str(config) in output and "UTF-8" in output
        assert "codec" not in output and "Traceback" not in output
        assert not (tmp_path / "runs").exists()  # no half-made run directory


def test_a_malformed_endpoints_json_gives_one_line_naming_the_file(tmp_path):
    """Defect 10: a malformed --endpoints-json gave a raw 22-line pydantic dump without the
    file's name."""
    endpoints = tmp_path / "endpoints.json"
    bad_port = {"protocol": "modbus", "host": "127.0.0.1", "port": "x" * 5000, "unit": 1,
                "base_address": 40000}  # fmt: skip
    endpoints.write_text(json.dumps({"devices": {"inverter": bad_port}, "meters": {},
                                     "control": {"host": "127.0.0.1", "port": 1}}))  # fmt: skip
    not_json = tmp_path / "truncated.json"
    not_json.write_text('{"devices": {"inverter": {"host": ')
    config = REPO / "configs" / "emulated.toml"
    for path in (endpoints, not_json):
        done = run_testbed(
            "run", "--config", str(config), "--endpoints-json", str(path), cwd=tmp_path
        )
        output = " ".join((done.stdout + done.stderr).split())  # undo the console's wrapping
        assert done.returncode == 2, output
        assert str(path) in output
        assert "Traceback" not in output and "For further information" not in output
        assert len(output) < MAX_MESSAGE_BYTES
    assert "5,000 characters" in " ".join(
        run_testbed(
            "run", "--config", str(config), "--endpoints-json", str(endpoints), cwd=tmp_path
        ).stdout.split()
    )


def test_an_ev_ramp_too_slow_to_reach_its_minimum_power_is_refused(tmp_path):
    """A charger's control ramp of 0.2 kW/s against the cart's 0.3 kW minimum power (1 s steps)
    was accepted, and the EV never charged: each ramp step (0.2 kW) is below the minimum power,
    so it is set to 0, step after step, even when the departure need says it must charge."""
    from testbed.config import ConfigError, load_config
    from tests.fixtures.sites import write_site

    site = write_site(
        tmp_path / "site.toml", {"devices": {"ev_charger": {"control_ramp_kw_per_s": 0.2}}}
    )
    path = tmp_path / "slow.toml"
    path.write_text(f'site = "{site.name}"\n' + (REPO / "configs" / "emulated.toml").read_text())
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert str(path) in message
    assert "peers.B.ramp_kw_per_s = 0.2" in message and "min_power_kw = 0.3" in message
    write_site(site, {"devices": {"ev_charger": {"control_ramp_kw_per_s": 0.3}}})
    assert load_config(path).peers["B"].ramp_kw_per_s == 0.3  # one step reaches it: accepted
