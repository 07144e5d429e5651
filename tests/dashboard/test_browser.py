"""The dashboard served by `testbed dashboard`, opened in headless Chromium."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard import browser
from tests.dashboard.conftest import OLDER, UNIFORM
from tests.fixtures.streamlit_app import DashboardServer

# Charts each page draws for a finished synthetic run.
EXPECTED_PLOTS = {"live": 9, "market": 2, "settlement": 5, "runs": 1}


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


@pytest.fixture
def browser_page(browser: Any) -> Any:
    context = browser.new_context(viewport={"width": 1400, "height": 3000})
    page = context.new_page()
    yield page
    context.close()
