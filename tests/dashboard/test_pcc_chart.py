"""The PCC chart: the contract dashed and, where the dispatcher held another power, its target."""

from __future__ import annotations

import pandas as pd

from dashboards.charts import pcc_power_figure
from dashboards.fields import live_fields


def _meter(peer: str, contract_kw: list[float], target_kw: list[float]) -> pd.DataFrame:
    times = pd.date_range("2026-03-21 06:00", periods=len(contract_kw), freq="1s", tz="UTC")
    return pd.DataFrame(
        {
            "time": times,
            "peer": peer,
            "device": "meter",
            "power_kw": target_kw,
            "contract_kw": contract_kw,
            "target_kw": target_kw,
        }
    )


def test_the_target_is_drawn_only_where_it_leaves_the_contract() -> None:
    meter = pd.concat(
        [
            _meter("A", [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]),  # a seller exporting what it sold
            _meter("B", [0.0, 0.0, 0.0], [-0.4, -0.4, -0.3]),  # a buyer importing its plan's need
        ]
    )
    figure = pcc_power_figure(meter)
    names = [trace.name for trace in figure.data]
    assert names == ["A PCC", "A contracted", "B PCC", "B contracted", "B target"]
    target = next(trace for trace in figure.data if trace.name == "B target")
    assert list(target.y) == [-0.4, -0.4, -0.3] and target.line.dash == "dot"


def test_the_live_page_reads_the_target() -> None:
    assert "target_kw" in live_fields(["power_kw", "contract_kw", "target_kw", "import_kwh"])
