"""How `testbed demo` spreads the agents over processes, and how long it waits for them.

An agent process costs ~280 MiB and 20-30 s to start on a loaded 2-core machine, so one process
per peer does not scale past a handful of peers. By default the agents share at most
`max(MIN_AGENT_PROCESSES, min(cpus, MAX_AGENT_PROCESSES))` processes, and the wait for them grows
with how many processes and agents must start.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

MIN_AGENT_PROCESSES = 4  # up to this many peers: one process each (a fault hits one peer)
MAX_AGENT_PROCESSES = 8  # ~2.2 GiB of agent processes at most, however many CPUs
BASE_START_WAIT_S = 60.0  # the broker and the operator, before any agent
START_WAIT_PER_PROCESS_S = 45.0  # one agent process starting on a loaded 2-core machine
START_WAIT_PER_AGENT_S = 5.0  # one more agent session in a process


def usable_cpus() -> int:
    """CPUs this process may run on (the affinity mask where the platform has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def agents_per_process_for(peer_count: int, cpus: int, configured: int | None = None) -> int:
    """`configured` if set, else the fewest agents per process that keeps the processes within
    `max(MIN_AGENT_PROCESSES, min(cpus, MAX_AGENT_PROCESSES))`."""
    if configured is not None:
        return configured
    budget = max(MIN_AGENT_PROCESSES, min(cpus, MAX_AGENT_PROCESSES))
    return max(1, math.ceil(peer_count / budget))


def agent_groups(peers: Sequence[str], per_process: int) -> list[list[str]]:
    """The peers in order, `per_process` to a process (the last group may be smaller)."""
    return [list(peers[i : i + per_process]) for i in range(0, len(peers), per_process)]


def start_wait_for(
    process_count: int, agent_count: int, configured_s: float | None = None
) -> float:
    """Wall time to wait for every agent to come online: `configured_s` if set, else it grows
    with the processes and agents that must start."""
    if configured_s is not None:
        return configured_s
    return (
        BASE_START_WAIT_S
        + START_WAIT_PER_PROCESS_S * process_count
        + START_WAIT_PER_AGENT_S * agent_count
    )


@dataclass(frozen=True)
class AgentLayout:
    """The agent processes `testbed demo` starts and how long it waits for them."""

    groups: list[list[str]]
    start_wait_s: float

    @property
    def agent_count(self) -> int:
        return sum(len(group) for group in self.groups)

    def describe(self) -> str:
        return (
            f"{self.agent_count} agent(s) in {len(self.groups)} process(es), "
            f"waiting up to {self.start_wait_s:.0f} s for them to come online"
        )


def agent_layout(
    peers: Sequence[str],
    *,
    agents_per_process: int | None = None,
    start_timeout_s: float | None = None,
    cpus: int | None = None,
) -> AgentLayout:
    """The grouping and the wait for `peers` (settings from `[platform]`, None: automatic)."""
    per_process = agents_per_process_for(
        len(peers), cpus if cpus is not None else usable_cpus(), agents_per_process
    )
    groups = agent_groups(peers, per_process)
    return AgentLayout(groups, start_wait_for(len(groups), len(peers), start_timeout_s))
