"""Running the dashboard's pages headless with streamlit.testing.v1.AppTest."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parents[2] / "dashboards" / "app.py"
PAGES = {
    "live": None,
    "market": "views/market.py",
    "settlement": "views/settlement.py",
    "runs": "views/runs.py",
}


def open_page(
    monkeypatch: pytest.MonkeyPatch, runs_root: Path, page: str, run: str | None = None
) -> AppTest:
    """The page as a browser would first show it, for `run` picked in the sidebar."""
    monkeypatch.setenv("TESTBED_RUNS_DIR", str(runs_root))
    at = AppTest.from_file(str(APP), default_timeout=60)
    if run is not None:
        at.session_state["run"] = run
    if PAGES[page]:
        at.switch_page(PAGES[page])
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def table(at: AppTest, *columns: str) -> pd.DataFrame:
    """The first table on the page that has all of `columns`."""
    for element in at.dataframe:
        frame = element.value
        if all(column in frame.columns for column in columns):
            return frame
    raise AssertionError(f"no table with columns {columns} on the page")


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def number(text: str) -> float:
    """The first number in a metric's text ("-36.93 INR" -> -36.93)."""
    match = re.search(r"[-−+]?\d+(\.\d+)?", text)
    assert match, f"no number in {text!r}"
    return float(match.group().replace("−", "-"))


def figures(at: AppTest) -> list[dict[str, Any]]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def texts(at: AppTest) -> str:
    """Every message and markdown text of the page, one per line."""
    parts = []
    for kind in ("error", "warning", "info", "success", "markdown", "caption"):
        parts += [element.value for element in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


def numbers(values: Any) -> list[float]:
    """A figure's data array as floats: a plain list, or plotly's typed array (`bdata`)."""
    if isinstance(values, dict) and "bdata" in values:
        array = np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"])
        return array.astype(float).tolist()
    return [float(v) for v in values]


def unlabelled_axes(figure: dict[str, Any]) -> list[str]:
    """Axes without a title, and value axes whose title has no unit in parentheses."""
    problems = []
    for name, axis in figure["layout"].items():
        if not re.fullmatch(r"[xy]axis\d*", name) or not axis.get("anchor", True):
            continue
        title = (axis.get("title") or {}).get("text", "")
        if axis.get("matches") or (not title and _shared(figure, name)):
            continue
        if not title:
            problems.append(f"{name}: no title")
        elif axis.get("type") != "category" and "(" not in title:
            problems.append(f"{name}: {title!r} has no unit")
    return problems


def _shared(figure: dict[str, Any], name: str) -> bool:
    """An x axis of a stacked subplot whose label is on the bottom subplot."""
    axis = figure["layout"][name]
    return name.startswith("xaxis") and bool(
        axis.get("showticklabels") is False or axis.get("matches")
    )
