"""`[platform]` in the experiment configuration: how the roles meet on the broker."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class PlatformConfig(BaseModel):
    """The trading platform's settings (used by `testbed demo` without `--in-process`, and by
    `testbed broker|operator|agent`).

    `tls = true` is the one switch for TLS: the broker listens with `tls_dir`'s `server.crt` and
    `server.key`, and every client checks it against `ca.crt` (docs/platform.md has the commands).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    dir: Path = Path("platform")  # keys, broker passwords, broker files, the operator's journal
    broker_host: str = "127.0.0.1"
    broker_port: int = Field(0, ge=0, le=65535)  # 0: a free port (testbed demo, testbed broker)
    tls: bool = False
    tls_dir: Path = Path("certs")
    # wall time the operator waits for online agents at a gate (lockstep: at least
    # LOCKSTEP_GATE_WAIT_S, see `gate_wait_for`)
    gate_wait_s: PositiveFloat = 30.0
    # testbed demo: agents sharing one process (None: from the site's size and the CPUs, see
    # testbed/platform/sizing.py)
    agents_per_process: int | None = Field(None, ge=1)
    # testbed demo: wall time to wait for every agent (None: grows with the processes to start)
    start_timeout_s: PositiveFloat | None = None


LOCKSTEP_GATE_WAIT_S = 600.0


def gate_wait_for(gate_wait_s: float, clock_mode: str) -> float:
    """How long the operator waits for the online agents at a gate. With the lockstep clock
    plant time stands still meanwhile, so it waits for every online agent (up to
    LOCKSTEP_GATE_WAIT_S of wall time): a loaded machine then changes no order, and the same seed
    gives the same settlement as in one process."""
    return max(gate_wait_s, LOCKSTEP_GATE_WAIT_S) if clock_mode == "lockstep" else gate_wait_s
