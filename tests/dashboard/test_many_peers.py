"""The Live page for a large community: the community's total plus one chosen peer.

The synthetic run has three peers; the threshold is lowered to two so that the page takes its
many-peer layout (the same code path as a 12-home community, at a fraction of the cost)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dashboards import peer_focus
from testbed.runstore import RunReader
from tests.dashboard.apptest import figures, metrics, numbers, open_page
from tests.dashboard.conftest import UNIFORM


def test_live_page_shows_the_community_total_and_the_chosen_peer(
    monkeypatch: pytest.MonkeyPatch, synthetic_runs: Path
) -> None:
    monkeypatch.setattr(peer_focus, "MANY_PEERS", 2)
    latest = RunReader(synthetic_runs / UNIFORM).latest_samples()
    meters = latest[latest["device"] == "meter"].set_index("peer")
    at = open_page(monkeypatch, synthetic_runs, "live", UNIFORM)

    shown = metrics(at)
    total_kw = meters["power_kw"].sum()
    assert shown["community PCC power"] == f"{total_kw:.3f} kW"
    assert "A PCC power" in shown  # the first peer is chosen at first
    assert "B PCC power" not in shown and "C PCC power" not in shown
    names = {trace["name"] for trace in figures(at)[0]["data"]}
    assert {"community PCC", "A PCC"} <= names and "B PCC" not in names

    at.selectbox(key="live_peer").set_value("B")
    at.radio(key="live_window").set_value("last 15 min").run()  # every step, none averaged
    shown = metrics(at)
    assert shown["B PCC power"] == f"{meters.loc['B', 'power_kw']:.3f} kW"
    assert "A PCC power" not in shown
    pcc = figures(at)[0]["data"]
    by_name = {trace["name"]: trace for trace in pcc}
    assert "B PCC" in by_name and "A PCC" not in by_name
    # the community line is the sum of every peer's PCC power: its last point is the total
    assert numbers(by_name["community PCC"]["y"])[-1] == pytest.approx(total_kw, abs=1e-6)
    assert not at.exception


def test_three_peers_keep_one_card_each(
    monkeypatch: pytest.MonkeyPatch, synthetic_runs: Path
) -> None:
    shown = metrics(open_page(monkeypatch, synthetic_runs, "live", UNIFORM))
    assert {"A PCC power", "B PCC power", "C PCC power"} <= set(shown)
    assert "community PCC power" not in shown
