"""Start the emulated plant (`python -m hil_sim`) as a child process for `testbed demo`.

The plant runs in a session of its own: a Ctrl-C in the terminal goes to the terminal's process
group, so it reaches the controller alone, which ends the interval, settles it and then stops the
plant. The plant stops by itself when the controller is gone (`--exit-with-parent`), so a
controller killed with SIGKILL leaves no plant behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import tomli_w

from labspec.endpoints import PlantEndpoints
from labspec.site import Site


class PlantStartError(RuntimeError):
    """The emulated plant did not come up."""


@contextlib.contextmanager
def emulated_plant(
    seed: int, timeout_s: float = 60.0, plant_toml: str = "", site: Site | None = None
) -> Iterator[PlantEndpoints]:
    """Serve a lockstep plant of `site` (default: the default site) with `seed` on free loopback
    ports; stop it (by its pid) on exit.

    `plant_toml`: more of the `[plant]` table after `seed` (e.g. `start = ...`), for benchmarks
    that vary the day.
    """
    with tempfile.TemporaryDirectory(prefix="hil_sim-") as folder:
        config = Path(folder) / "plant.toml"
        site_line = ""
        if site is not None:
            site_file = Path(folder) / "site.toml"
            site_file.write_text(tomli_w.dumps(site.to_toml_dict()), encoding="utf-8")
            site_line = f"site = {json.dumps(str(site_file))}\n"
        config.write_text(
            f"[plant]\nseed = {int(seed)}\n{site_line}{plant_toml}\n", encoding="utf-8"
        )
        endpoints_file = Path(folder) / "endpoints.json"
        log = Path(folder) / "plant.log"
        with log.open("wb") as log_file:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "hil_sim",
                    "--config",
                    str(config),
                    "--endpoints-json",
                    str(endpoints_file),
                    "--exit-with-parent",
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,
            )
            try:
                yield _wait_for_endpoints(process, endpoints_file, log, timeout_s)
            finally:
                _stop(process)


def _wait_for_endpoints(
    process: subprocess.Popen[bytes], path: Path, log: Path, timeout_s: float
) -> PlantEndpoints:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = log.read_text(encoding="utf-8", errors="replace").strip()
            raise PlantStartError(f"the emulated plant exited at start: {output[-2000:]}")
        if path.exists():
            with contextlib.suppress(ValueError):
                return PlantEndpoints.model_validate_json(path.read_text(encoding="utf-8"))
        time.sleep(0.05)
    raise PlantStartError(f"the emulated plant wrote no endpoints within {timeout_s:.0f} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
