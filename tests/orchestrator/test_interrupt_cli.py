"""Ctrl-C on `testbed run`: the current interval ends cleanly and nothing recorded is lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from labspec.plant_control import SyncPlantControl
from testbed.runstore import RunReader

REPO = Path(__file__).resolve().parents[2]


def test_ctrl_c_ends_the_interval_settles_it_and_keeps_the_run(fresh_plant, tmp_path):
    with SyncPlantControl.from_endpoints(fresh_plant) as control:
        control.request("reset")
    endpoints = tmp_path / "plant.json"
    fresh_plant.write(endpoints)
    config = tmp_path / "short.toml"
    text = (REPO / "configs" / "emulated.toml").read_text()
    config.write_text(text.replace("interval_s = 900", "interval_s = 120"))
    out = tmp_path / "run"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "testbed",
            "run",
            "--config",
            str(config),
            "--hours",
            "1",
            "--endpoints-json",
            str(endpoints),
            "--out",
            str(out),
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if (out / "meta.json").exists():
                settled = RunReader(out).settlements()["interval_start"].nunique()
                if settled >= 2:
                    break
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    reader = RunReader(out)
    assert reader.meta.status == "interrupted"
    settled = sorted(reader.settlements()["interval_start"].unique())
    assert 3 <= len(settled) < 30  # went on to the end of the interval it was in, then stopped
    samples = reader.samples(peer="C", device="meter")
    # every step up to the last settled interval's end was recorded
    assert samples["time_s"].max() >= settled[-1].timestamp() + 120 - 1e-6
    summary = json.loads((out / "summary.json").read_text())
    assert summary["market"]["intervals"] >= len(settled)
    assert "interrupted" in output
