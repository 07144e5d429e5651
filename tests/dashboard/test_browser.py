"""The dashboard served by `testbed dashboard`, opened in headless Chromium."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard import browser
from tests.dashboard.conftest import OLDER, UNIFORM
from tests.fixtures.ports import stop_process, wait_until
from tests.fixtures.streamlit_app import REPO, DashboardServer

# Charts each page draws for a finished synthetic run.
EXPECTED_PLOTS = {"live": 9, "market": 2, "settlement": 4, "runs": 1}


def test_every_page_draws_its_charts_without_an_exception(
    runs_with_broken: Path,
    dashboard_server: Callable[..., DashboardServer],
    browser_page: Any,
    screenshot_dir: Path,
) -> None:
    server = dashboard_server(runs_with_broken)
    for name, expected in EXPECTED_PLOTS.items():
        browser.open_page(browser_page, server.url, name, UNIFORM)
        assert browser.rendered_plots(browser_page, expected) >= expected, name
        assert browser.drawn_traces(browser_page) >= expected, name
        assert browser.exceptions(browser_page) == [], name
        browser.screenshot(browser_page, screenshot_dir, f"{name}-{UNIFORM}")

    # An older run directory: a clear message on the page, no stack trace.
    browser.open_page(browser_page, server.url, "market", OLDER)
    browser.wait_for_text(browser_page, "format version 0", browser.LOAD_TIMEOUT_MS)
    alerts = " ".join(browser_page.locator(browser.ALERT).all_inner_texts())
    assert "this testbed reads version 1" in alerts
    assert browser.exceptions(browser_page) == []
    browser.screenshot(browser_page, screenshot_dir, f"market-{OLDER}")


def test_live_page_follows_a_run_while_it_is_written(
    tmp_path: Path,
    dashboard_server: Callable[..., DashboardServer],
    browser_page: Any,
    screenshot_dir: Path,
) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    server = dashboard_server(runs, refresh_s=2.0)
    run_dir = runs / "live-synthetic"
    writer = subprocess.Popen(
        [
            *(sys.executable, "-m", "tests.dashboard.synthetic", "--out", str(run_dir)),
            *("--hours", "0.5", "--step-s", "1", "--pace-s", "0.01"),
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(lambda: (run_dir / "run.sqlite").exists(), 30.0, "the writer's run directory")
        browser.open_page(browser_page, server.url, "live", run_dir.name)
        browser.wait_for_text(browser_page, "is in progress", browser.LOAD_TIMEOUT_MS)
        assert "Status: running" in browser_page.inner_text("section[data-testid='stSidebar']")
        first = browser.last_sample_text(browser_page)
        second = browser.wait_for_new_last_sample(browser_page, first, 30_000)
        assert second > first  # "YYYY-mm-dd HH:MM:SS UTC" sorts as time
        browser.screenshot(browser_page, screenshot_dir, "live-in-progress")

        browser.wait_for_text(browser_page, "Run finished at", 120_000)
        # The whole page was redrawn once the run ended: the sidebar says so too.
        browser.wait_for_text(browser_page, "Status: finished", 30_000)
        assert writer.wait(timeout=60) == 0, writer.stderr.read().decode() if writer.stderr else ""
        assert browser.last_sample_text(browser_page) == "2024-06-01 02:59:59 UTC"
        assert browser.exceptions(browser_page) == []
        browser.screenshot(browser_page, screenshot_dir, "live-finished")
    finally:
        stop_process(writer)


@pytest.fixture
def browser_page(browser: Any) -> Any:
    context = browser.new_context(viewport={"width": 1400, "height": 3000})
    page = context.new_page()
    yield page
    context.close()
