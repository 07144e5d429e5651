"""The Live page for a large community: the community's total plus one chosen peer.

The synthetic run has three peers; the threshold is lowered to two so that the page takes its
many-peer layout (the same code path as a 12-home community, at a fraction of the cost)."""

from __future__ import annotations

import json
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from dashboards import aggregate, peer_focus
from dashboards.palette import OTHERS_COLOUR, peer_colour
from testbed.runstore import RunReader
from tests.dashboard.apptest import figures, metrics, number, numbers, open_page, table
from tests.dashboard.conftest import PAY_AS_BID, UNIFORM

IST = ZoneInfo("Asia/Kolkata")


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


def test_settlement_page_shows_the_community_bill_and_the_chosen_peer(
    monkeypatch: pytest.MonkeyPatch, synthetic_runs: Path
) -> None:
    monkeypatch.setattr(peer_focus, "MANY_PEERS", 2)
    settlements = RunReader(synthetic_runs / UNIFORM).settlements()
    bills = settlements.groupby("peer")["bill"].sum()
    at = open_page(monkeypatch, synthetic_runs, "settlement", UNIFORM)
    at.selectbox(key="settlement_peer").set_value("C").run()

    shown = metrics(at)
    assert number(shown["Bill of the community (3 peers)"]) == pytest.approx(bills.sum(), abs=0.01)
    assert number(shown["Bill of C"]) == pytest.approx(bills["C"], abs=0.01)
    assert "Bill of A" not in shown and "Wallet of A" not in shown
    plan = next(f for f in figures(at) if any("metered" in t["name"] for t in f["data"]))
    names = {trace["name"] for trace in plan["data"]}
    assert {"community metered", "C metered"} <= names and "A metered" not in names
    assert not at.exception


def test_three_peers_keep_one_card_each(
    monkeypatch: pytest.MonkeyPatch, synthetic_runs: Path
) -> None:
    shown = metrics(open_page(monkeypatch, synthetic_runs, "live", UNIFORM))
    assert {"A PCC power", "B PCC power", "C PCC power"} <= set(shown)
    assert "community PCC power" not in shown


def test_settlement_money_flows_name_the_top_peers_and_keep_every_total(
    monkeypatch: pytest.MonkeyPatch, synthetic_runs: Path
) -> None:
    monkeypatch.setattr(peer_focus, "MANY_PEERS", 2)  # one peer named, two summed as "others"
    reader = RunReader(synthetic_runs / UNIFORM)
    trades, settlements = reader.trades(), reader.settlements()
    bills = settlements.groupby("peer")["bill"].sum()
    at = open_page(monkeypatch, synthetic_runs, "settlement", UNIFORM)
    others = "others (2 peers)"
    flows = table(at, "payer", "payee")  # the table keeps every peer
    assert {"A", "B", "C"} <= set(flows["payer"]) | set(flows["payee"])

    sankey = next(f for f in figures(at) if f["data"][0]["type"] == "sankey")["data"][0]
    labels = sankey["node"]["label"]
    assert f"{others} pays" in labels
    assert sum(1 for p in "ABC" if f"{p} pays" in labels or f"{p} receives" in labels) == 1
    assert sum(sankey["link"]["value"]) == pytest.approx(flows["amount"].sum())
    # money out minus money in over the Sankey's peer nodes (named + others) is the whole bill
    values = sankey["link"]["value"]
    peer_nodes = {i for i, label in enumerate(labels) if label.split(" ")[0] in {"A", "B", "C"}}
    peer_nodes |= {i for i, label in enumerate(labels) if label.startswith(others)}
    paid = sum(v for s, v in zip(sankey["link"]["source"], values, strict=True) if s in peer_nodes)
    got = sum(v for t, v in zip(sankey["link"]["target"], values, strict=True) if t in peer_nodes)
    assert paid > 0 and paid - got == pytest.approx(bills.sum(), abs=1e-9)

    matrix = next(f for f in figures(at) if "paid" in json.dumps(f["data"][0].get("colorbar")))
    heat = matrix["data"][0]
    assert len(heat["x"]) == len(heat["y"]) == 2 and others in heat["x"]
    z = heat["z"] if isinstance(heat["z"], list) else None
    paid_total = sum(map(sum, z)) if z else sum(numbers(heat["z"]))
    assert paid_total == pytest.approx((trades["quantity_kwh"] * trades["price"]).sum())

    bars = next(f for f in figures(at) if f["data"][0].get("name") == "with P2P market")
    assert list(bars["data"][0]["x"]) == [bills.abs().idxmax(), others]
    assert sum(numbers(bars["data"][0]["y"])) == pytest.approx(bills.sum())
    assert not at.exception


def test_market_page_groups_the_trade_matrix_and_the_order_markers(
    monkeypatch: pytest.MonkeyPatch, synthetic_runs: Path
) -> None:
    monkeypatch.setattr(peer_focus, "MANY_PEERS", 2)
    reader = RunReader(synthetic_runs / UNIFORM)
    clearings, trades = reader.clearings(), reader.trades()
    chosen = clearings[clearings["n_trades"] > 0].iloc[1]
    at = open_page(monkeypatch, synthetic_runs, "market", UNIFORM)
    at.select_slider(key="market_interval").set_value(
        chosen["interval_start"].tz_convert(IST).strftime("%Y-%m-%d %H:%M IST")
    ).run()
    shown = {f["data"][0].get("name"): f for f in figures(at)}
    matrix = shown["trade matrix"]["data"][0]
    interval = trades[trades["interval_start"] == chosen["interval_start"]]
    traders = set(interval["buyer"]) | set(interval["seller"])
    assert len(matrix["x"]) == 2 and matrix["x"][1] == f"others ({len(traders) - 1} peers)"
    assert sum(map(sum, matrix["z"])) == pytest.approx(interval["quantity_kwh"].sum())
    assert sum(map(sum, matrix["z"])) == pytest.approx(chosen["volume_kwh"])

    book = figures(at)[0]["data"]
    orders = reader.orders(chosen["interval_start"])
    accepted = orders[orders["accepted"]]
    markers = [t for t in book if t.get("mode") == "markers" and t["name"].endswith(" orders")]
    colours = [c for t in markers for c in t["marker"]["color"]]
    assert len(colours) == len(accepted)  # one marker per order, none dropped
    top = accepted.groupby("peer")["quantity_kwh"].sum().abs().idxmax()
    assert set(colours) <= {peer_colour(top), OTHERS_COLOUR} and OTHERS_COLOUR in colours
    legend = {t["name"] for t in book if t["name"].startswith("orders of ")}
    assert legend == {f"orders of {top}", "orders of others (2 peers)"}
    assert not at.exception


def test_runs_page_bills_chart_sums_the_other_peers(
    monkeypatch: pytest.MonkeyPatch, synthetic_runs: Path
) -> None:
    monkeypatch.setattr(peer_focus, "MANY_PEERS", 2)
    at = open_page(monkeypatch, synthetic_runs, "runs", UNIFORM)
    at.selectbox(key="compare_1").set_value(UNIFORM)
    at.selectbox(key="compare_2").set_value(PAY_AS_BID).run()
    chart = next(f for f in figures(at) if "(hatched)" in f["data"][-1]["name"])
    for trace, name in zip(chart["data"], (UNIFORM, PAY_AS_BID), strict=True):
        summary = json.loads((synthetic_runs / name / "summary.json").read_text())
        assert list(trace["x"])[1] == "others (2 peers)" and len(trace["x"]) == 2
        total = sum(peer["bill"] for peer in summary["peers"].values())
        assert sum(numbers(trace["y"])) == pytest.approx(total)
    assert len(table(at, "difference")) == 3  # the table keeps every peer
    assert not at.exception


def test_a_hundred_peer_matrix_keeps_its_total_and_names_the_busiest() -> None:
    peers = [f"H{i:03d}" for i in range(100)]
    rng = np.random.default_rng(7)
    kwh = pd.DataFrame(rng.random((100, 100)), index=peers, columns=peers)
    kwh.loc["H042"] *= 50.0  # the busiest buyer
    traded = kwh.sum(axis=0) + kwh.sum(axis=1)
    named = aggregate.top_peers(traded, 5)
    assert named[0] == "H042" and len(named) == 5
    grouped = aggregate.grouped_matrix(kwh, aggregate.grouping(peers, named))
    assert list(grouped.index) == [*named, "others (95 peers)"] == list(grouped.columns)
    assert grouped.to_numpy().sum() == pytest.approx(kwh.to_numpy().sum(), rel=1e-12)
    assert grouped.loc["H042"].sum() == pytest.approx(kwh.loc["H042"].sum())
