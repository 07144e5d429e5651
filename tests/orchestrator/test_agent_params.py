"""The agents' parameters as a run uses them: in lockstep no seeded plan depends on speed."""

from __future__ import annotations

from pathlib import Path

from testbed.config import TestbedConfig, load_config, parse_config
from testbed.trading import LOCKSTEP_SOLVER_TIME_LIMIT_S, make_peer_agent

EMULATED = Path(__file__).resolve().parents[2] / "configs" / "emulated.toml"


def _config(mode: str, agent: str = "community", **params: object) -> TestbedConfig:
    data = load_config(EMULATED).model_dump(mode="json", exclude_none=True)
    data["clock"]["mode"] = mode
    data["peers"]["A"]["agent"] = agent
    data["peers"]["A"]["agent_params"] = params
    return parse_config(data)


def _time_limit_s(config: TestbedConfig) -> float:
    agent = make_peer_agent(config, "A")
    return float(agent.params.solver_time_limit_s)  # type: ignore[attr-defined]


def test_lockstep_gives_the_planner_a_backstop_not_a_deadline() -> None:
    assert _time_limit_s(_config("lockstep")) == LOCKSTEP_SOLVER_TIME_LIMIT_S
    assert _time_limit_s(_config("wall")) == 1.0  # a wall-clock run keeps the agent's own limit


def test_a_configured_time_limit_wins_in_lockstep() -> None:
    assert _time_limit_s(_config("lockstep", solver_time_limit_s=2.5)) == 2.5


def test_an_agent_without_a_solver_takes_no_time_limit() -> None:
    agent = make_peer_agent(_config("lockstep", agent="baseline"), "A")
    assert not hasattr(agent.params, "solver_time_limit_s")
