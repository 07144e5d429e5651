"""Looking at the served dashboard with Playwright, as a person would."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

PAGE_PATHS = {"live": "", "market": "market", "settlement": "settlement", "runs": "runs"}
EXCEPTION = '[data-testid="stException"]'
ALERT = '[data-testid="stAlert"]'
DRAWN_PLOTS_JS = (
    "Array.from(document.querySelectorAll('.js-plotly-plot'))"
    ".filter(e => e.querySelector('.main-svg')).length"
)
LOAD_TIMEOUT_MS = 90_000


def open_page(page: Any, base_url: str, name: str, run: str) -> None:
    """Go to one page of the dashboard with `run` picked, and wait until Streamlit has drawn it."""
    page.goto(f"{base_url}/{PAGE_PATHS[name]}?run={run}")
    page.wait_for_selector("h1", timeout=LOAD_TIMEOUT_MS)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')",
        timeout=LOAD_TIMEOUT_MS,
    )


def rendered_plots(page: Any, expected: int) -> int:
    """Wait until `expected` plotly charts have drawn their SVG, and count the drawn ones."""
    page.wait_for_function(f"() => {DRAWN_PLOTS_JS} >= {expected}", timeout=LOAD_TIMEOUT_MS)
    return page.evaluate(f"() => {DRAWN_PLOTS_JS}")


def drawn_traces(page: Any) -> int:
    """Traces plotly has drawn (lines, bars, heatmaps, Sankey links) on the page."""
    return page.evaluate("() => document.querySelectorAll('.js-plotly-plot .trace').length")


def last_sample_text(page: Any, timeout_ms: int = LOAD_TIMEOUT_MS) -> str:
    """The live page's "Last sample" time (read in one go: the live panel redraws itself)."""
    handle = page.wait_for_function(
        "() => { const e = document.querySelector('#last-sample'); return e && e.textContent; }",
        timeout=timeout_ms,
    )
    return handle.json_value()


def wait_for_new_last_sample(page: Any, previous: str, timeout_ms: int) -> str:
    handle = page.wait_for_function(
        "(previous) => { const e = document.querySelector('#last-sample');"
        " return e && e.textContent !== previous && e.textContent; }",
        arg=previous,
        timeout=timeout_ms,
    )
    return handle.json_value()


def wait_for_text(page: Any, pattern: str, timeout_ms: int) -> None:
    page.wait_for_function(
        "(pattern) => new RegExp(pattern).test(document.body.innerText)",
        arg=pattern,
        timeout=timeout_ms,
    )


def exceptions(page: Any) -> list[str]:
    return page.locator(EXCEPTION).all_inner_texts()


def screenshot(page: Any, folder: Path, name: str) -> Path:
    """A full-height screenshot of the page (Streamlit scrolls inside its own container)."""
    height = page.evaluate(
        "() => { const main = document.querySelector('[data-testid=\"stMainBlockContainer\"]');"
        " return main ? main.getBoundingClientRect().bottom : 2000; }"
    )
    page.set_viewport_size({"width": 1400, "height": min(max(int(height) + 120, 900), 6000)})
    page.wait_for_timeout(500)
    path = folder / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.png"
    page.screenshot(path=str(path), animations="disabled", timeout=LOAD_TIMEOUT_MS)
    print(f"screenshot: {path}")
    return path
