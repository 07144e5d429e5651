"""The event loop the plant serves on: uvloop when installed (the default), or asyncio's own."""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys

import pytest

from hil_sim.__main__ import loop_factory
from hil_sim.config import ConfigError
from tests.fixtures.plant import REPO_ROOT

HAS_UVLOOP = importlib.util.find_spec("uvloop") is not None


def test_auto_takes_uvloop_when_installed_and_asyncio_on_request():
    name, new_loop = loop_factory("auto")
    assert name == ("uvloop" if HAS_UVLOOP else "asyncio")
    loop = new_loop()
    try:
        assert loop.run_until_complete(asyncio.sleep(0, result="ran")) == "ran"
        assert type(loop).__module__.startswith(name)
    finally:
        loop.close()
    assert loop_factory("asyncio")[0] == "asyncio"


def test_without_uvloop_auto_falls_back_and_asking_for_it_is_an_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` now fails
    assert loop_factory("auto")[0] == "asyncio"
    with pytest.raises(ConfigError, match="uvloop is not installed"):
        loop_factory("uvloop")


def test_the_plant_serves_on_asyncio_loop_when_asked(plant_process_factory):
    plant = plant_process_factory("--loop", "asyncio", "--log-level", "INFO")
    with plant.control() as control:
        assert control.advance(60.0).elapsed_s == 60.0
        assert control.state()["elapsed_s"] == 60.0
    assert "serving on the asyncio event loop" in plant.output()


def test_an_unknown_loop_is_refused_with_the_choices():
    result = subprocess.run(
        [sys.executable, "-m", "hil_sim", "--loop", "trio"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "invalid choice: 'trio'" in result.stderr and "uvloop" in result.stderr
