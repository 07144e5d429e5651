"""The dashboard on a real run: `testbed demo` (emulated plant, lockstep), watched as it writes.

One short demo run is started for the whole module; the first test watches it live in the browser,
the next ones wait for it to finish and compare every page with what it stored.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from dashboards.data import fmt_time
from testbed.ledger.verify import verify_run
from testbed.runstore import RunReader
from tests.dashboard import browser
from tests.dashboard.apptest import metrics, open_page, table
from tests.fixtures.ports import stop_process, wait_until
from tests.fixtures.streamlit_app import REPO, DashboardServer

DEMO_HOURS = 1.0
DEMO_TIMEOUT_S = 600.0


@dataclass
class Demo:
    runs: Path
    run_dir: Path
    process: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def wait_started(self) -> None:
        def started() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"testbed demo exited early:\n{self.output()}")
            return (self.run_dir / "meta.json").exists()

        wait_until(started, 180.0, "testbed demo's run directory")

    def wait_finished(self) -> RunReader:
        try:
            code = self.process.wait(timeout=DEMO_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"testbed demo still running:\n{self.output()}") from None
        assert code == 0, f"testbed demo failed ({code}):\n{self.output()}"
        return RunReader(self.run_dir)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    runs = tmp_path_factory.mktemp("demo-runs")
    run_dir = runs / "demo"
    log = runs.parent / f"{runs.name}-demo.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "testbed", "demo", "--hours", str(DEMO_HOURS)),
                *("--seed", "1", "--out", str(run_dir)),
            ],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "120"},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    yield Demo(runs, run_dir, process, log)
    stop_process(process)


@pytest.fixture
def browser_page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 3000})
    yield context.new_page()
    context.close()


def test_live_page_follows_the_demo_run_until_it_finishes(
    demo: Demo,
    dashboard_server: Callable[..., DashboardServer],
    browser_page: Any,
    screenshot_dir: Path,
) -> None:
    server = dashboard_server(demo.runs, refresh_s=2.0)
    demo.wait_started()
    browser.open_page(browser_page, server.url, "live", demo.run_dir.name)
    browser.wait_for_text(browser_page, "is in progress", browser.LOAD_TIMEOUT_MS)
    first = browser.last_sample_text(browser_page, 120_000)
    second = browser.wait_for_new_last_sample(browser_page, first, 60_000)
    assert second > first  # the page moved on with the run
    browser.screenshot(browser_page, screenshot_dir, "demo-live-in-progress")

    browser.wait_for_text(browser_page, "Run finished at", int(DEMO_TIMEOUT_S * 1000))
    browser.wait_for_text(browser_page, "Status: finished", 30_000)
    reader = demo.wait_finished()
    last = reader.latest_samples()["time"].max()
    assert browser.last_sample_text(browser_page) == fmt_time(last, ZoneInfo("Asia/Kolkata"))
    assert browser.exceptions(browser_page) == []
    browser.screenshot(browser_page, screenshot_dir, "demo-live-finished")

    for name, plots in (("market", 2), ("settlement", 5), ("runs", 0)):
        browser.open_page(browser_page, server.url, name, demo.run_dir.name)
        if plots:
            assert browser.rendered_plots(browser_page, plots) >= plots, name
        else:  # one run in the folder: nothing to compare it with
            browser.wait_for_text(browser_page, "Compare needs two", browser.LOAD_TIMEOUT_MS)
        if name == "settlement":  # the wallets and the ledger's verification status
            browser.wait_for_text(browser_page, "ledger verified", browser.LOAD_TIMEOUT_MS)
            browser.wait_for_text(browser_page, "Wallet of grid_retailer", 10_000)
        assert browser.exceptions(browser_page) == [], name
        browser.screenshot(browser_page, screenshot_dir, f"demo-{name}")


def test_live_page_numbers_are_the_demo_runs_numbers(
    demo: Demo, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader = demo.wait_finished()
    latest = reader.latest_samples().set_index(["peer", "device"])
    at = open_page(monkeypatch, demo.runs, "live", demo.run_dir.name)
    shown = metrics(at)
    assert not at.error
    for peer in ("A", "B", "C"):
        meter = latest.loc[(peer, "meter")]
        assert shown[f"{peer} PCC power"] == f"{meter['power_kw']:.3f} kW"
        assert shown[f"{peer} PCC voltage"] == f"{meter['voltage_v']:.1f} V"
        if "contract_kw" in latest:  # the contract the controller tracked at the PCC
            assert shown[f"{peer} contracted"] == f"{meter['contract_kw']:.3f} kW"
    assert shown["A inverter SoC"] == f"{latest.loc[('A', 'inverter'), 'soc_pct']:.1f} %"
    assert shown["B ev_charger SoC"] == f"{latest.loc[('B', 'ev_charger'), 'soc_pct']:.1f} %"
    assert any("Run finished at" in s.value for s in at.success)


def test_market_and_settlement_pages_show_the_demo_runs_figures(
    demo: Demo, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader = demo.wait_finished()
    clearings, settlements = reader.clearings(), reader.settlements()
    assert len(clearings) == round(DEMO_HOURS * 4)

    at = open_page(monkeypatch, demo.runs, "market", demo.run_dir.name)
    shown = metrics(at)
    assert shown["Intervals cleared"] == str(len(clearings))
    assert shown["Traded energy"] == f"{clearings['volume_kwh'].sum():.3f} kWh"
    assert shown["Trades"] == str(len(reader.trades()))

    at = open_page(monkeypatch, demo.runs, "settlement", demo.run_dir.name)
    shown = metrics(at)
    sums = settlements.groupby("peer").sum(numeric_only=True)
    for peer in sums.index:
        assert shown[f"Bill of {peer}"] == f"{sums.loc[peer, 'bill']:.2f} INR"

    # The wallets replayed from the ledger, which verifies; each peer's settled money is minus
    # its bills to the paisa.
    report = verify_run(demo.run_dir)
    assert report.ok, report.describe()
    assert any(s.value.startswith("ledger verified") for s in at.success)
    wallets = table(at, "wallet", "balance", "settled", "settlement_total").set_index("wallet")
    for row in report.wallet_rows():
        name = str(row["wallet"])
        assert shown[f"Wallet of {name}"] == f"{row['balance']:,.2f} INR"
        assert wallets.loc[name, "balance"] == pytest.approx(row["balance"])
    for peer in sums.index:
        assert wallets.loc[peer, "settled"] == pytest.approx(-sums.loc[peer, "bill"], abs=0.005)

    at = open_page(monkeypatch, demo.runs, "runs", demo.run_dir.name)
    summary = json.loads((demo.run_dir / "summary.json").read_text())
    peers = table(at, "peer", "bill", "bill_grid_only").set_index("peer")
    for peer, totals in summary["peers"].items():
        assert peers.loc[peer, "bill"] == pytest.approx(totals["bill"])
    assert not at.error


def test_settlement_page_names_the_first_bad_entry_of_an_edited_ledger(
    demo: Demo, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    demo.wait_finished()
    edited = tmp_path / "edited"
    shutil.copytree(demo.run_dir, edited)
    with sqlite3.connect(edited / "run.sqlite") as conn:
        seq = conn.execute("SELECT MAX(seq) FROM ledger WHERE kind = 'transfer'").fetchone()[0]
        conn.execute(
            "UPDATE ledger SET payload = replace(payload, '\"amount_paisa\":', "
            "'\"amount_paisa\":9') WHERE seq = ?",
            (seq,),
        )
    at = open_page(monkeypatch, tmp_path, "settlement", "edited")
    errors = [e.value for e in at.error]
    assert f"ledger NOT verified: entry {seq}: transfer: its hash does not match its contents" in (
        errors
    )


def test_settlement_page_says_what_went_on_chain(
    demo: Demo, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The demo's ledger sent to the contract on a real anvil node: the page shows the contract,
    the transactions and how far the ledger is anchored, from run.sqlite alone."""
    from testbed.ledger.chain.mirror import ChainMirror
    from testbed.ledger.chain.node import start_node

    demo.wait_finished()
    chained = tmp_path / "chained"
    shutil.copytree(demo.run_dir, chained)
    with start_node(log_path=tmp_path / "anvil.log") as node:
        mirror = ChainMirror(chained / "run.sqlite", node.url)
        address = mirror.connect(chained.name).address
        sent = mirror.sync()
        mirror.close()
    with sqlite3.connect(chained / "run.sqlite") as conn:
        last = conn.execute("SELECT MAX(seq) FROM ledger").fetchone()[0]
    at = open_page(monkeypatch, tmp_path, "settlement", "chained")
    captions = [c.value for c in at.caption]
    assert any(
        c.startswith(f"On chain: contract {address} (chain 31337, {node.url}): {sent} transactions")
        and f"up to {last} of 0-{last} sent" in c
        for c in captions
    ), captions
