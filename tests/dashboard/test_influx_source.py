"""The Live page reading its samples from a real InfluxDB 1.x (written by the telemetry sink)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from dashboards.sources import influx_source
from testbed.runstore import RunReader, RunStore
from testbed.telemetry.config import InfluxConfig
from testbed.telemetry.sink import InfluxSink
from tests.dashboard.apptest import metrics, open_page, texts
from tests.dashboard.synthetic import document_stream


@pytest.fixture
def run_in_both(tmp_path: Path, influxd_server, influx_database: str) -> Path:
    """A 30-minute synthetic run written to the run store and to InfluxDB at once."""
    run_dir = tmp_path / "runs" / "both"
    config = InfluxConfig(url=influxd_server.url, database=influx_database)
    store = RunStore(run_dir)
    sink = InfluxSink.in_run_dir(config, run_dir, run_id="both")
    for doc in document_stream(run_id="both", hours=0.5, step_s=5.0):
        store.emit(doc)
        sink.emit(doc)
    store.close()
    assert sink.close(timeout_s=30.0).drained
    return run_dir


def test_influx_source_gives_the_run_stores_samples(
    run_in_both: Path, influxd_server, influx_database: str
) -> None:
    reader = RunReader(run_in_both)
    source = influx_source(influxd_server.url, influx_database, "both")

    latest = source.latest_samples().set_index(["peer", "device"])
    stored = reader.latest_samples().set_index(["peer", "device"])
    assert sorted(latest.index) == sorted(stored.index)
    for key in stored.index:
        assert latest.loc[key, "time"] == stored.loc[key, "time"]
        assert latest.loc[key, "power_kw"] == pytest.approx(
            stored.loc[key, "power_kw"], nan_ok=True
        )

    start, last = reader.time_range()
    end = last + timedelta(seconds=1)
    minutes = source.samples(
        peer="C", device="meter", start=start, end=end, fields=["power_kw"], every_s=60
    )
    expected = reader.samples(peer="C", device="meter", fields=["power_kw"], every_s=60)
    assert minutes["power_kw"].tolist() == pytest.approx(expected["power_kw"].tolist())

    window = source.samples(device="ev_charger", start=start, end=end, fields=["soc_pct"])
    assert window["soc_pct"].tolist() == pytest.approx(
        reader.samples(device="ev_charger")["soc_pct"].tolist()
    )


def test_live_page_reads_influxdb_when_configured(
    run_in_both: Path, influxd_server, influx_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TESTBED_INFLUX_URL", influxd_server.url)
    monkeypatch.setenv("TESTBED_INFLUX_DB", influx_database)
    at = open_page(monkeypatch, run_in_both.parent, "live", "both")
    assert "read from the InfluxDB" in texts(at)
    assert not at.error and not at.warning
    latest = RunReader(run_in_both).latest_samples().set_index(["peer", "device"])
    shown = metrics(at)
    for peer in "ABC":
        assert shown[f"{peer} PCC power"] == f"{latest.loc[(peer, 'meter'), 'power_kw']:.3f} kW"
