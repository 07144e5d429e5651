"""The controller built from the site file: a peer added by site-file lines alone trades and is
dispatched on the emulated plant, and a configuration that disagrees with its site is refused."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from labspec.site import default_site
from testbed.config import ConfigError, load_config, parse_config
from testbed.experiment import run_experiment, with_plant_endpoints, with_site
from testbed.runstore import RunReader

REPO = Path(__file__).resolve().parents[2]
EMULATED = REPO / "configs" / "emulated.toml"

# House D: a 5 kWh battery behind its own inverter on a new bus off J2, nothing else; nearly empty
# at 11:00, when A (battery full) sells its PV surplus, so D buys for its load.
HOUSE_D = {
    "feeder": {
        "buses": ["LV", "J1", "J2", "A", "B", "C", "D"],
        "lines": [
            *default_site().to_toml_dict()["feeder"]["lines"],
            {"from_bus": "J2", "to_bus": "D", "length_m": 35, "type": "service"},
        ],
    },
    "peers": {
        "A": {"battery": {"initial_soc_pct": 95.0}},
        "B": {"ev": {"initial_soc_pct": 90.0}},  # the cart is charged: A's surplus is for C and D
        "D": {
            "name": "House D",
            "role": "prosumer",
            "bus": "D",
            "agent": "optimising",
            "load": {"peak_kw": 1.5, "base_kw": 0.3, "typical_kw": 0.8},
            "battery": {
                "capacity_kwh": 5.0,
                "max_charge_kw": 2.5,
                "max_discharge_kw": 2.5,
                "soc_min_pct": 10,
                "soc_max_pct": 95,
                "initial_soc_pct": 10,
            },
        },
    },
    "devices": {
        "battery_D": {
            "kind": "battery_inverter",
            "peer": "D",
            "modbus": {"port": 0, "unit_id": 1},
            "rated_power_kw": 3.0,
            "revert_timeout_s": 30,
        },
        "meter_D": {"kind": "pcc_meter", "peer": "D", "modbus": {"port": 0, "unit_id": 1}},
    },
}


def test_the_default_site_gives_the_three_peers_and_their_devices():
    config = load_config(EMULATED)
    assert list(config.peers) == ["A", "B", "C"]
    a, b, c = (config.peers[p] for p in "ABC")
    assert a.inverter is not None and a.inverter.revert_timeout_s == 30 and a.ramp_kw_per_s == 2.0
    assert b.ev_charger is not None and b.inverter is None and b.ramp_kw_per_s == 1.0
    assert c.load is not None and c.role == "consumer"
    battery = a.peer_assets("A").battery
    assert battery is not None and battery.max_charge_kw == 3.75  # the plant's value, not 3.5
    ev = b.peer_assets("B").ev
    assert ev is not None and ev.capacity_kwh == pytest.approx(4.608)


def test_a_fourth_peer_from_the_site_file_alone_trades_and_is_dispatched(tmp_path):
    from testbed.plant_process import emulated_plant
    from tests.fixtures.sites import write_site

    site_file = write_site(tmp_path / "four.toml", HOUSE_D)
    config = with_site(load_config(EMULATED), site_file)
    assert list(config.peers) == ["A", "B", "C", "D"]
    data = config.model_dump(mode="json", exclude_none=True)
    data["experiment"]["hours"] = 0.5
    data["market"].update({"interval_s": 300.0, "gate_closure_s": 30.0})
    config = parse_config(data)
    start = "start = 2026-03-21T11:00:00+05:30\n"
    with emulated_plant(7, plant_toml=start, site=config.site_model()) as endpoints:
        assert endpoints.meters["D"] == "meter_D"
        config = with_plant_endpoints(config, endpoints)
        result = asyncio.run(run_experiment(config, tmp_path / "run"))
    assert result.finished.status == "finished"
    run = RunReader(tmp_path / "run")
    trades = run.trades()
    d_trades = trades[(trades["buyer"] == "D") | (trades["seller"] == "D")]
    assert d_trades["quantity_kwh"].sum() > 0.01  # D took part in the market
    battery = run.samples("D", "inverter")
    assert battery["wset_enabled"].max() == 1
    assert battery["wset_kw"].abs().max() > 0.1  # a setpoint was written and read back
    soc = battery["soc_pct"]
    assert soc.iloc[-1] != pytest.approx(soc.iloc[0], abs=0.05)  # the plant's battery moved


def test_a_configuration_and_site_that_disagree_are_refused(tmp_path):
    config = tmp_path / "experiment.toml"
    config.write_text('site = "nowhere.toml"\n[experiment]\nhours = 1\n')
    with pytest.raises(ConfigError, match=r"nowhere\.toml"):
        load_config(config)
    data = load_config(EMULATED).model_dump(mode="json", exclude_none=True)
    data["peers"]["E"] = data["peers"]["C"]
    data["site"] = str(REPO / "labspec" / "sites" / "iitgn.toml")
    with pytest.raises(ConfigError, match=r"peers\.E: not a peer of the site"):
        parse_config(data)


def test_site_check_names_the_bad_key(tmp_path):
    text = (REPO / "labspec" / "sites" / "community12.toml").read_text(encoding="utf-8")
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace('\nbus = "H07"', '\nbus = "H99"', 1), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "testbed", "site", "check", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    output = " ".join(done.stdout.split())
    assert done.returncode == 2
    assert "peers.H07.bus" in output and "H99" in output


@pytest.mark.parametrize(
    ("peer_changes", "message"),
    [
        (
            {"agent": "smart"},
            "peers.C.agent = 'smart': no such agent; agents: baseline, community, optimising, zip",
        ),
        (
            {"agent": "optimising", "agent_params": {"horizon_h": 6}},
            "peers.C.agent_params: invalid params for optimising agent of peer C: horizon_h=6",
        ),
    ],
)
def test_a_peer_s_agent_is_checked_before_anything_starts(tmp_path, peer_changes, message):
    """An unknown agent or a parameter it does not take is refused by `testbed site check` and
    when the experiment's configuration is read, naming the key (it used to pass both and stop
    the run with a traceback when the agents were built)."""
    from typer.testing import CliRunner

    from testbed.cli import app
    from tests.fixtures.sites import write_site

    site_file = write_site(tmp_path / "site.toml", {"peers": {"C": peer_changes}})
    done = CliRunner().invoke(app, ["site", "check", str(site_file)])
    assert done.exit_code == 2
    assert message in " ".join(done.output.split())
    with pytest.raises(ConfigError) as refused:
        with_site(load_config(EMULATED), site_file)
    assert message in str(refused.value)
    data = load_config(EMULATED).model_dump(mode="json", exclude_none=True)
    data["peers"]["C"].update(peer_changes)  # the same agent in a configuration without a site
    with pytest.raises(ConfigError, match=message.split(":")[0].replace(".", r"\.")):
        parse_config(data)


@pytest.mark.parametrize(
    ("peer_id", "message"),
    [
        ("House C", "peers: peer id 'House C': use 1-64 letters, digits, '_' or '-'"),
        ("operator", "peers: peer id 'operator' is reserved for a platform role"),
    ],
)
def test_a_peer_id_the_platform_cannot_use_is_refused_by_site_check(tmp_path, peer_id, message):
    """A peer's id is its broker user and an MQTT topic level: `testbed site check` refuses one
    the platform cannot use (it passed, and `testbed demo` stopped with a traceback after the
    plant had started)."""
    import tomli_w
    from typer.testing import CliRunner

    from testbed.cli import app

    data = default_site().to_toml_dict()
    data["peers"][peer_id] = data["peers"].pop("C")
    for device in data["devices"].values():
        if device["peer"] == "C":
            device["peer"] = peer_id
    site_file = tmp_path / "site.toml"
    site_file.write_text(tomli_w.dumps(data), encoding="utf-8")
    done = CliRunner().invoke(app, ["site", "check", str(site_file)])
    assert done.exit_code == 2
    assert message in " ".join(done.output.split())
    with pytest.raises(ConfigError, match=message.split(":")[1].strip()[:12]):
        with_site(load_config(EMULATED), site_file)
    data = load_config(EMULATED).model_dump(mode="json", exclude_none=True)
    data["peers"][peer_id] = data["peers"].pop("C")  # a configuration without a site
    with pytest.raises(ConfigError, match=message.split(":")[1].strip()[:12]):
        parse_config(data)


def test_site_generate_writes_a_valid_community(tmp_path):
    from labspec.site import load_site

    out = tmp_path / "fifty.toml"
    done = subprocess.run(
        [sys.executable, "-m", "testbed", "site", "generate", "--peers", "50", "--seed", "3",
         "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    site = load_site(out)
    kinds = {d.kind for d in site.devices.values()}
    assert len(site.peers) == 50
    assert kinds == {
        "pcc_meter",
        "hybrid_inverter",
        "battery_inverter",
        "pv_inverter",
        "ev_charger",
        "programmable_load",
    }
    config = with_site(load_config(EMULATED), out)
    assert len(config.peers) == 50
    assert sum(p.inverter is not None for p in config.peers.values()) == sum(
        d.kind in ("hybrid_inverter", "battery_inverter") for d in site.devices.values()
    )


@pytest.mark.slow
def test_the_12_home_community_runs_a_day_and_its_energy_balance_closes(tmp_path):
    """labspec/sites/community12.toml for 24 h on the emulated plant (a 30 s control step and the
    baseline agents keep it short): every home is metered and settled, the batteries and carts
    are used inside their SoC windows, and what the PCC meters' registers counted is what was
    settled (the balance reads the registers only, so a 30 s step closes it as a 1 s step does)."""
    from testbed.plant_process import emulated_plant

    config = with_site(load_config(EMULATED), REPO / "labspec" / "sites" / "community12.toml")
    data = config.model_dump(mode="json", exclude_none=True)
    data["control"].update({"step_s": 30.0, "refresh_s": 30.0})
    for peer in data["peers"].values():
        peer["agent"], peer["agent_params"] = "baseline", {}
    config = parse_config(data)
    with emulated_plant(1, site=config.site_model()) as endpoints:
        config = with_plant_endpoints(config, endpoints)
        result = asyncio.run(run_experiment(config, tmp_path / "run"))
    assert result.finished.status == "finished"
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert sorted(summary["peers"]) == [f"H{i:02d}" for i in range(1, 13)]
    assert summary["market"]["intervals"] == 96
    through = summary["energy_through_pcc_kwh"]
    assert through > 50.0  # twelve homes' day
    assert abs(summary["energy_balance_error_kwh"]) < 1e-3 * through
    run = RunReader(tmp_path / "run")
    assert len(run.settlements()["peer"].unique()) == 12
    assert run.trades()["quantity_kwh"].sum() > 0.5  # the homes traded
    for peer in ("H01", "H12"):  # a hybrid and a battery-only inverter: used, inside the window
        soc = run.samples(peer, "inverter")["soc_pct"]
        assert soc.max() - soc.min() > 10.0
        assert soc.min() >= 10.0 - 0.5 and soc.max() <= 95.0 + 0.5
    assert run.samples("H04", "ev_charger")["power_kw"].abs().max() > 0.3


def test_demo_runs_any_site_from_the_command_line(tmp_path):
    """`testbed demo --site FILE`: the plant and the controller both from the file."""
    from tests.fixtures.sites import write_site

    site_file = write_site(tmp_path / "four.toml", HOUSE_D)
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "testbed", "demo", "--in-process", "--site", str(site_file),
         "--hours", "0.25", "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "4 peers, 8 devices" in " ".join(done.stdout.split())
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(summary["peers"]) == ["A", "B", "C", "D"]
    assert len(RunReader(out).samples("D", "inverter")) > 800


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--agent", "smart"], "--agent = 'smart': no such agent; agents: baseline"),
        (["--out", "."], "--out .: cannot write the site file (Is a directory)"),
    ],
)
def test_site_generate_refuses_what_it_cannot_write(tmp_path, monkeypatch, options, message):
    """An unknown agent (the file `site check` would refuse) or an output it cannot write: one
    line and exit 2, no file and no traceback."""
    from typer.testing import CliRunner

    from testbed.cli import app

    monkeypatch.chdir(tmp_path)
    args = ["site", "generate", "--peers", "3", "--out", "three.toml", *options]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 2, done.output
    assert message in " ".join(done.output.split())
    assert not (tmp_path / "three.toml").exists()
