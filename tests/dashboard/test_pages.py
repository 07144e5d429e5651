"""Every page, run headless: the numbers it shows are the numbers in the run store."""

from __future__ import annotations

import json
import os
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from dashboards.data import fmt_time
from testbed.runstore import RunReader, RunStore
from tests.dashboard.apptest import (
    figures,
    metrics,
    number,
    numbers,
    open_page,
    table,
    texts,
    unlabelled_axes,
)
from tests.dashboard.conftest import HALF, NOT_STARTED, OLDER, PAY_AS_BID, UNIFORM
from tests.dashboard.synthetic import document_stream, write_run

IST = ZoneInfo("Asia/Kolkata")


@pytest.mark.parametrize("page", ["live", "market", "settlement", "runs"])
def test_every_chart_has_units_on_its_axes(
    monkeypatch: pytest.MonkeyPatch, synthetic_runs: Path, page: str
) -> None:
    at = open_page(monkeypatch, synthetic_runs, page, UNIFORM)
    charts = figures(at)
    assert charts, f"the {page} page drew no chart"
    for figure in charts:
        assert unlabelled_axes(figure) == []
    assert not at.error


def test_live_page_shows_the_latest_samples_and_contract(
    monkeypatch: pytest.MonkeyPatch, synthetic_runs: Path
) -> None:
    reader = RunReader(synthetic_runs / UNIFORM)
    latest = reader.latest_samples().set_index(["peer", "device"])
    at = open_page(monkeypatch, synthetic_runs, "live", UNIFORM)
    shown = metrics(at)

    for peer in "ABC":
        assert shown[f"{peer} PCC power"] == f"{latest.loc[(peer, 'meter'), 'power_kw']:.3f} kW"
        assert shown[f"{peer} PCC voltage"] == f"{latest.loc[(peer, 'meter'), 'voltage_v']:.1f} V"
    assert shown["A inverter SoC"] == f"{latest.loc[('A', 'inverter'), 'soc_pct']:.1f} %"
    assert shown["B ev_charger SoC"] == f"{latest.loc[('B', 'ev_charger'), 'soc_pct']:.1f} %"

    # The contract of the last interval, from its trades: + = sold, - = bought, in mean kW.
    trades = reader.trades()
    last = trades[trades["interval_start"] == reader.clearings()["interval_start"].max()]
    for peer in "ABC":
        kwh = (
            last.loc[last["seller"] == peer, "quantity_kwh"].sum()
            - last.loc[last["buyer"] == peer, "quantity_kwh"].sum()
        )
        assert number(shown[f"{peer} contracted"]) == pytest.approx(kwh * 4, abs=5e-4)

    page = texts(at)
    # times in the site's zone (the config's peers leave it at the default, Asia/Kolkata)
    assert f"Last sample:** <span id='last-sample'>{fmt_time(latest['time'].max(), IST)}" in page
    assert "Run finished at 2024-06-01 10:00:00 IST" in page  # 04:30 UTC
    interlocks = reader.interlocks()
    assert f"({len(interlocks)} in the" in page


def test_times_show_in_the_zone_asked_for(
    monkeypatch: pytest.MonkeyPatch, synthetic_runs: Path
) -> None:
    monkeypatch.setenv("TESTBED_DASHBOARD_TZ", "UTC")
    page = texts(open_page(monkeypatch, synthetic_runs, "live", UNIFORM))
    assert "Run finished at 2024-06-01 04:30:00 UTC" in page
    monkeypatch.setenv("TESTBED_DASHBOARD_TZ", "Mars/Olympus_Mons")
    page = texts(open_page(monkeypatch, synthetic_runs, "live", UNIFORM))
    assert "Unknown time zone 'Mars/Olympus_Mons': showing times in UTC." in page
    assert "Run finished at 2024-06-01 04:30:00 UTC" in page


def test_live_page_shows_the_whole_run_or_the_last_minutes(
    monkeypatch: pytest.MonkeyPatch, synthetic_runs: Path
) -> None:
    def pcc_times(at: AppTest) -> list[pd.Timestamp]:
        pcc = figures(at)[0]
        times = [x for trace in pcc["data"] if trace["name"] == "A PCC" for x in trace["x"]]
        return [pd.Timestamp(t).tz_localize(IST) for t in times]  # the site's wall clock

    start = pd.Timestamp("2024-06-01 02:30:00+00:00")
    last = start + pd.Timedelta(hours=2, seconds=-2)
    at = open_page(monkeypatch, synthetic_runs, "live", UNIFORM)
    whole = pcc_times(at)  # a finished run opens on the whole run, averaged into buckets
    assert start <= min(whole) < start + pd.Timedelta(seconds=10)
    assert len(whole) <= 1500

    at.radio(key="live_window").set_value("last 15 min").run()
    assert not at.exception
    recent = pcc_times(at)
    assert min(recent) == last - pd.Timedelta(minutes=15)
    assert max(recent) == last
    assert len(recent) == 451  # every 2 s sample, not averaged


def test_market_page_shows_the_cleared_prices_and_volumes(
    monkeypatch: pytest.MonkeyPatch, synthetic_runs: Path
) -> None:
    reader = RunReader(synthetic_runs / UNIFORM)
    clearings, trades = reader.clearings(), reader.trades()
    at = open_page(monkeypatch, synthetic_runs, "market", UNIFORM)
    shown = metrics(at)
    assert shown["Intervals cleared"] == str(len(clearings))
    assert shown["Traded energy"] == f"{clearings['volume_kwh'].sum():.3f} kWh"
    priced = clearings[clearings["volume_kwh"] > 0]
    assert shown["Mean clearing price"] == f"{priced['clearing_price'].mean():.2f} INR/kWh"
    assert shown["Trades"] == str(len(trades))

    # Pick the second interval with trades: its clearing point and trades are the stored ones.
    chosen = clearings[clearings["n_trades"] > 0].iloc[1]
    at.select_slider(key="market_interval").set_value(
        chosen["interval_start"].tz_convert(IST).strftime("%Y-%m-%d %H:%M IST")
    ).run()
    shown = metrics(at)
    assert shown["Clearing price"] == f"{chosen['clearing_price']:.2f} INR/kWh"
    assert shown["Cleared volume"] == f"{chosen['volume_kwh']:.3f} kWh"
    curve = figures(at)[0]
    point = next(t for t in curve["data"] if t["name"].startswith("clearing:"))
    assert point["x"] == [pytest.approx(chosen["volume_kwh"])]
    assert point["y"] == [pytest.approx(chosen["clearing_price"])]
    demand = next(t for t in curve["data"] if t["name"] == "demand (bids)")
    orders = reader.orders(chosen["interval_start"])
    bids = orders[(orders["side"] == "buy") & orders["accepted"]]
    assert max(demand["x"]) == pytest.approx(bids["quantity_kwh"].sum())
    assert max(demand["y"]) == pytest.approx(bids["price"].max())

    shown_trades = table(at, "amount", "buyer")
    stored = trades[trades["interval_start"] == chosen["interval_start"]]
    assert shown_trades["quantity_kwh"].tolist() == pytest.approx(stored["quantity_kwh"].tolist())
    assert shown_trades["amount"].sum() == pytest.approx(
        (stored["quantity_kwh"] * stored["price"]).sum()
    )


@pytest.mark.parametrize("run", [UNIFORM, PAY_AS_BID])
def test_settlement_page_shows_each_bill_and_the_money_flows(
    monkeypatch: pytest.MonkeyPatch, synthetic_runs: Path, run: str
) -> None:
    reader = RunReader(synthetic_runs / run)
    settlements = reader.settlements()
    sums = settlements.groupby("peer").sum(numeric_only=True)
    at = open_page(monkeypatch, synthetic_runs, "settlement", run)
    shown = metrics(at)
    for peer in "ABC":
        assert shown[f"Bill of {peer}"] == f"{sums.loc[peer, 'bill']:.2f} INR"
    totals = table(at, "saving").set_index("peer")
    for column in ("bill", "bill_grid_only", "penalty", "network_charge", "deviation_kwh"):
        assert totals[column].tolist() == pytest.approx(sums[column].tolist())
    assert totals["saving"].tolist() == pytest.approx(
        (sums["bill_grid_only"] - sums["bill"]).tolist()
    )

    # Money out minus money in is each peer's bill, in the Sankey as in the settlements.
    flows = table(at, "payer", "payee")
    for peer in "ABC":
        out = flows.loc[flows["payer"] == peer, "amount"].sum()
        into = flows.loc[flows["payee"] == peer, "amount"].sum()
        assert out - into == pytest.approx(sums.loc[peer, "bill"], abs=1e-9)
    sankey = next(f for f in figures(at) if f["data"][0]["type"] == "sankey")
    assert sum(sankey["data"][0]["link"]["value"]) == pytest.approx(flows["amount"].sum())

    # Plan against delivery: the agents' plans and the metered energy, interval by interval.
    plans = reader.agent_plans(first_step_only=True)
    drawn = next(f for f in figures(at) if any(t.get("name") == "A planned" for t in f["data"]))
    traces = {t["name"]: t for t in drawn["data"]}
    for peer in "ABC":
        mine = plans[plans["peer"] == peer]
        metered = settlements[settlements["peer"] == peer]
        planned = numbers(traces[f"{peer} planned"]["y"])
        assert planned == pytest.approx((mine["net_kw"] / 4).tolist())
        assert numbers(traces[f"{peer} metered"]["y"]) == pytest.approx(
            metered["metered_kwh"].tolist()
        )
    assert "energy (kWh, + = export)" in json.dumps(drawn["layout"])


def test_runs_page_compares_two_mechanisms_on_the_same_seed(
    monkeypatch: pytest.MonkeyPatch, synthetic_runs: Path
) -> None:
    at = open_page(monkeypatch, synthetic_runs, "runs", UNIFORM)
    listed = table(at, "run", "problem")
    assert set(listed["run"]) == {UNIFORM, PAY_AS_BID}
    assert set(listed["mechanism"]) == {"uniform", "pay_as_bid"}

    at.selectbox(key="compare_1").set_value(UNIFORM)
    at.selectbox(key="compare_2").set_value(PAY_AS_BID).run()
    assert not at.exception
    diff = table(at, "key")
    assert diff["key"].tolist() == ["market.mechanism"]
    bills = table(at, f"{UNIFORM} bill", f"{PAY_AS_BID} bill").set_index("peer")
    for name in (UNIFORM, PAY_AS_BID):
        summary = json.loads((synthetic_runs / name / "summary.json").read_text())
        for peer in "ABC":
            assert bills.loc[peer, f"{name} bill"] == pytest.approx(summary["peers"][peer]["bill"])
    market = table(at, "figure").set_index("figure")
    summary = json.loads((synthetic_runs / PAY_AS_BID / "summary.json").read_text())
    traded = summary["market"]["traded_kwh"]
    assert market.loc["Traded energy", PAY_AS_BID] == f"{traded:.3f} kWh"
    assert "market.mechanism" in table(at, "key")["key"].tolist()
    assert 'mechanism = "uniform"' in at.code[0].value


@pytest.mark.parametrize(
    ("run", "message"),
    [
        (OLDER, "format version 0; this testbed reads version 1"),
        (NOT_STARTED, "partial: it has meta.json but no run.sqlite"),
        (HALF, "has no meta.json"),
    ],
)
@pytest.mark.parametrize("page", ["live", "market", "settlement", "runs"])
def test_a_broken_run_gives_a_message_not_a_stack_trace(
    monkeypatch: pytest.MonkeyPatch, runs_with_broken: Path, page: str, run: str, message: str
) -> None:
    at = open_page(monkeypatch, runs_with_broken, page, run)
    assert not at.exception
    if page == "runs":
        listed = table(at, "run", "problem").set_index("run")
        assert message in listed.loc[run, "problem"]
    else:
        assert any(message in e.value for e in at.error), [e.value for e in at.error]


@pytest.mark.parametrize("page", ["live", "market", "settlement", "runs"])
def test_a_missing_or_empty_runs_folder_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, page: str
) -> None:
    at = open_page(monkeypatch, tmp_path / "nowhere", page)
    assert any("There is no runs folder" in e.value for e in at.error)
    (tmp_path / "empty").mkdir()
    at = open_page(monkeypatch, tmp_path / "empty", page)
    assert any("No runs in" in i.value for i in at.info)


def test_an_interrupted_run_shows_its_partial_data(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    store = RunStore(tmp_path / "cut")
    for doc in document_stream(run_id="cut", hours=1.0, step_s=5.0):
        if type(doc).__name__ == "RunFinished":
            break
        store.emit(doc)
    store.close("interrupted")
    for page in ("live", "market", "settlement"):
        at = open_page(monkeypatch, tmp_path, page, "cut")
        assert any("ended as **interrupted**" in w.value for w in at.warning), page
        assert figures(at), page


def test_a_run_whose_writer_died_is_not_shown_as_live(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    store = RunStore(tmp_path / "crashed", flush_interval_s=0.0)
    stream = document_stream(run_id="crashed", hours=0.5, step_s=5.0)
    for _ in range(200):
        store.emit(next(stream))
    store.flush()
    meta_path = tmp_path / "crashed" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["writer"]["pid"] = _dead_pid()
    meta_path.write_text(json.dumps(meta))
    at = open_page(monkeypatch, tmp_path, "live", "crashed")
    assert any("stopped without finishing" in w.value for w in at.warning)
    assert metrics(at)["A PCC power"].endswith("kW")


def _dead_pid() -> int:
    """A process id that no process has now."""
    pid = os.getpid() + 100_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid += 1


@pytest.fixture(scope="module")
def welfare_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One hour cleared by bilateral welfare on the site's feeder, with charges by distance."""
    root = tmp_path_factory.mktemp("welfare-runs")
    params = {"bilateral": True, "feeder": "site", "charges": "distance"}
    write_run(root / "welfare", hours=1.0, step_s=5.0, seed=3, mechanism="welfare", params=params)
    return root


def test_market_page_shows_who_traded_with_whom_and_the_feeder(
    monkeypatch: pytest.MonkeyPatch, welfare_run: Path
) -> None:
    reader = RunReader(welfare_run / "welfare")
    clearings, trades = reader.clearings(), reader.trades()
    chosen = clearings[clearings["n_trades"] > 0].iloc[0]
    at = open_page(monkeypatch, welfare_run, "market", "welfare")
    at.select_slider(key="market_interval").set_value(
        chosen["interval_start"].tz_convert(IST).strftime("%Y-%m-%d %H:%M IST")
    ).run()
    assert not at.exception
    shown = {f["data"][0].get("name"): f for f in figures(at)}
    matrix = shown["trade matrix"]["data"][0]
    interval = trades[trades["interval_start"] == chosen["interval_start"]]
    expected = interval.groupby(["buyer", "seller"])["quantity_kwh"].sum()
    assert expected.sum() > 0
    for (buyer, seller), kwh in expected.items():
        row, column = matrix["y"].index(buyer), matrix["x"].index(seller)
        assert matrix["z"][row][column] == pytest.approx(kwh)
    assert sum(map(sum, matrix["z"])) == pytest.approx(chosen["volume_kwh"])
    # the feeder picture: every bus with the AC power flow's voltage from the stored report
    report = json.loads(chosen["report_json"])
    feeder = next(f for f in figures(at) if any(t.get("name") == "buses" for t in f["data"]))
    buses = next(t for t in feeder["data"] if t.get("name") == "buses")
    for bus, volts in report["network"]["check"]["voltages_v"].items():
        assert f"{bus}<br>{volts:.1f} V" in buses["text"]
    arrows = [a for a in feeder["layout"]["annotations"] if a.get("showarrow")]
    assert len(arrows) == len(expected)  # one arrow per trading pair, labelled with its kWh
    labels = {a["text"] for a in feeder["layout"]["annotations"] if not a.get("showarrow")}
    assert labels == {f"{s}→{b} {kwh:.3f} kWh" for (b, s), kwh in expected.items()}
    assert "iterations" in texts(at) or "welfare" in texts(at)
