"""Driver plugins: a vendor's driver kinds in a package of their own, found through the
`testbed.drivers` entry point group by every `testbed` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from testbed import driver_registry
from tests.fixtures.sites import write_site

REPO = Path(__file__).resolve().parents[2]

PLUGIN_MODULE = """
from instruments.config import SunSpecMeterConfig
from instruments.meter import SunSpecMeter
from testbed.driver_registry import MeterKind, register, sunspec_fields

register(
    MeterKind[SunSpecMeterConfig](
        name="acme_sunspec_meter",
        kinds=frozenset({"pcc_meter"}),
        config_model=SunSpecMeterConfig,
        protocol="modbus",
        build=lambda config, clock: SunSpecMeter(config, clock=clock),
        endpoint_fields=sunspec_fields,
        description="Acme's SunSpec meter, from a package of its own",
    )
)
"""


def _install_plugin(folder: Path, module: str, body: str) -> Path:
    """A minimal installed distribution (a dist-info with an entry point) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{module}.py").write_text(body, encoding="utf-8")
    info = folder / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[testbed.drivers]\nacme = {module}\n")
    return folder


def _site_check(site_file: Path, plugin_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_path), str(REPO)])}
    return subprocess.run(
        [sys.executable, "-m", "testbed", "site", "check", str(site_file)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=REPO,
    )


def test_an_installed_plugin_registers_its_driver_for_every_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugins = _install_plugin(tmp_path / "site-packages", "acme_drivers", PLUGIN_MODULE)
    monkeypatch.syspath_prepend(str(plugins))
    monkeypatch.setattr(driver_registry, "_plugins_loaded", False)
    try:
        assert "acme_sunspec_meter" in driver_registry.drivers_for("pcc_meter")
        assert driver_registry.driver_kind("acme_sunspec_meter").role == "meter"
    finally:
        driver_registry.unregister("acme_sunspec_meter")
    site_file = write_site(
        tmp_path / "acme.toml", {"devices": {"meter_A": {"driver": "acme_sunspec_meter"}}}
    )
    done = _site_check(site_file, plugins)
    assert done.returncode == 0, done.stdout + done.stderr
    without = _site_check(site_file, tmp_path)  # the plugin not installed: the name is unknown
    assert without.returncode == 2
    assert "no such driver" in " ".join(without.stdout.split())


def test_a_plugin_that_fails_to_load_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugins = _install_plugin(tmp_path, "broken_drivers", "raise ImportError('no acme sdk')\n")
    monkeypatch.syspath_prepend(str(plugins))
    monkeypatch.setattr(driver_registry, "_plugins_loaded", False)
    named = r"'acme'.*broken_drivers.*acme sdk"
    with pytest.raises(driver_registry.DriverPluginError, match=named):
        driver_registry.driver_names()
