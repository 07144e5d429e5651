"""How `testbed demo` groups a site's agents into processes and how long it waits for them."""

from __future__ import annotations

import pytest

from testbed.config import parse_config
from testbed.platform.sizing import agent_layout


def peers(n: int) -> list[str]:
    return [f"h{i:02d}" for i in range(n)]


def test_three_peers_keep_one_process_each() -> None:
    """The default site: a fault in one agent process still hits one peer only."""
    layout = agent_layout(["A", "B", "C"], cpus=2)
    assert layout.groups == [["A"], ["B"], ["C"]]


def test_twelve_homes_on_two_cpus_share_four_processes() -> None:
    layout = agent_layout(peers(12), cpus=2)
    assert len(layout.groups) == 4
    assert [p for group in layout.groups for p in group] == peers(12)  # each once, in order
    assert {len(group) for group in layout.groups} == {3}


def test_a_hundred_peers_on_many_cpus_stay_within_eight_processes() -> None:
    layout = agent_layout(peers(100), cpus=64)
    assert len(layout.groups) == 8
    assert sorted(p for group in layout.groups for p in group) == peers(100)


def test_the_wait_grows_with_what_must_start() -> None:
    three = agent_layout(["A", "B", "C"], cpus=2)
    twelve = agent_layout(peers(12), cpus=2)
    hundred = agent_layout(peers(100), cpus=2)
    assert three.start_wait_s < twelve.start_wait_s < hundred.start_wait_s
    assert "12 agent(s) in 4 process(es)" in twelve.describe()


def test_configured_settings_win() -> None:
    layout = agent_layout(peers(12), agents_per_process=1, start_timeout_s=90.0, cpus=2)
    assert len(layout.groups) == 12
    assert layout.start_wait_s == 90.0


@pytest.mark.parametrize("value", [0, -1])
def test_agents_per_process_below_one_is_refused(value: int) -> None:
    with pytest.raises(Exception, match="agents_per_process"):
        parse_config({"platform": {"agents_per_process": value}})
