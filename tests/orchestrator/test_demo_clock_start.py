"""`testbed demo` starts the emulated plant's day at the configuration's clock.start."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
START = "2026-01-15T11:00:00+05:30"


def test_demo_runs_the_day_from_clock_start(tmp_path: Path) -> None:
    text = (REPO / "configs" / "emulated.toml").read_text(encoding="utf-8")
    config = tmp_path / "late_morning.toml"
    config.write_text(
        text.replace('mode = "lockstep"', f'mode = "lockstep"\nstart = {START}', 1),
        encoding="utf-8",
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "testbed",
            "demo",
            "--config",
            str(config),
            "--hours",
            "0.25",
            "--in-process",
            "--out",
            str(tmp_path / "run"),
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with closing(sqlite3.connect(tmp_path / "run" / "run.sqlite")) as conn:
        (first_s,) = conn.execute("SELECT min(time_s) FROM samples").fetchone()
    assert abs(first_s - datetime.fromisoformat(START).timestamp()) < 60
