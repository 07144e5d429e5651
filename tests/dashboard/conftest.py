"""Runs for the dashboard tests: synthetic ones (two mechanisms, same seed) and broken ones."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.dashboard.synthetic import write_run

UNIFORM = "synthetic-uniform"
PAY_AS_BID = "synthetic-pab"
HALF = "half-written"
OLDER = "older-format"
NOT_STARTED = "no-database"


def make_broken_runs(root: Path, template: Path) -> None:
    """A directory with only config.toml, one of an older format, one without run.sqlite."""
    (root / HALF).mkdir()
    shutil.copy(template / "config.toml", root / HALF / "config.toml")
    (root / OLDER).mkdir()
    meta = json.loads((template / "meta.json").read_text())
    (root / OLDER / "meta.json").write_text(json.dumps({**meta, "format_version": 0}))
    sqlite3.connect(root / OLDER / "run.sqlite").close()
    (root / NOT_STARTED).mkdir()
    shutil.copy(template / "meta.json", root / NOT_STARTED / "meta.json")


@pytest.fixture(scope="session")
def synthetic_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs folder: two finished two-hour synthetic runs (uniform and pay-as-bid, seed 3)."""
    root = tmp_path_factory.mktemp("runs")
    write_run(root / UNIFORM, hours=2.0, step_s=2.0, seed=3, mechanism="uniform")
    write_run(root / PAY_AS_BID, hours=2.0, step_s=2.0, seed=3, mechanism="pay_as_bid")
    return root


@pytest.fixture(scope="session")
def runs_with_broken(tmp_path_factory: pytest.TempPathFactory, synthetic_runs: Path) -> Path:
    """The synthetic runs plus a half-written, an older-format and a database-less directory."""
    root = tmp_path_factory.mktemp("mixed-runs")
    for name in (UNIFORM, PAY_AS_BID):
        shutil.copytree(synthetic_runs / name, root / name)
    make_broken_runs(root, synthetic_runs / UNIFORM)
    return root
