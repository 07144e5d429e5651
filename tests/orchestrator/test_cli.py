"""The `testbed run` command: bad input gives one clear message and no half-made run."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from testbed.cli import app
from tests.fixtures.ports import free_port

runner = CliRunner()


def test_invalid_config_names_the_key(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[market]\ninterval_s = -1\n[peers.C]\nrole = "consumer"\n[peers.C.meter]\n')
    result = runner.invoke(app, ["run", "--config", str(config), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "market.interval_s" in result.output
    assert not (tmp_path / "r").exists()


def test_unreachable_device_stops_the_run_before_it_starts(tmp_path):
    port = free_port()  # nothing listens there
    config = tmp_path / "lab.toml"
    config.write_text(
        f"""
[clock]
mode = "wall"
[peers.C]
role = "consumer"
[peers.C.meter]
host = "127.0.0.1"
port = {port}
timeout_s = 0.5
"""
    )
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", "--config", str(config), "--out", str(out)])
    assert result.exit_code == 2
    assert "did not start" in result.output
    assert "C/meter" in result.output
    assert not out.exists()


def test_lab_example_config_is_valid():
    from testbed.config import load_config

    config = load_config(Path(__file__).resolve().parents[2] / "configs" / "lab.example.toml")
    assert config.clock.mode == "wall"
    assert config.peers["B"].ev_charger.security == "Basic256Sha256"


def test_progress_shows_plant_time_on_the_site_clock():
    import io
    from datetime import UTC, datetime

    from rich.console import Console
    from rich.progress import Progress, TextColumn

    from testbed.config import load_config
    from testbed.run_cli import _ProgressBar, _site_zone

    zone = _site_zone(load_config(Path(__file__).parents[2] / "configs" / "emulated.toml"))
    assert str(zone) == "Asia/Kolkata"
    console = Console(file=io.StringIO(), force_terminal=False)
    with Progress(TextColumn("{task.fields[plant_time]}"), console=console) as progress:
        bar = _ProgressBar(progress, 24.0, zone)
        bar(0, 86400, datetime(2026, 3, 20, 18, 30, tzinfo=UTC))
        assert progress.tasks[0].fields["plant_time"] == "2026-03-21 00:00 IST"
