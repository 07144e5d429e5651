"""The run store: what a run writes is what a reader (the dashboard) gets back."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from testbed.documents import Interlock, RunFinished, RunStarted, Sample
from testbed.runstore import (
    FORMAT_VERSION,
    RunDirError,
    RunReader,
    RunStore,
    dump_toml,
    list_runs,
)
from tests.dashboard.synthetic import DEFAULT_START, document_stream, write_run

T0 = datetime(2024, 6, 1, 6, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_run(tmp_path_factory.mktemp("runs") / "r1", hours=1.0, step_s=2.0)


def test_a_finished_run_reads_back_what_was_emitted(finished_run: Path) -> None:
    docs = list(document_stream(run_id="r1", hours=1.0, step_s=2.0))
    reader = RunReader(finished_run)

    assert reader.meta.status == "finished"
    assert reader.meta.format_version == FORMAT_VERSION
    assert (reader.meta.seed, reader.meta.mechanism, reader.meta.hours) == (1, "uniform", 1.0)
    assert reader.meta.started_at == DEFAULT_START
    assert reader.meta.finished_at == DEFAULT_START + timedelta(hours=1)

    samples = [d for d in docs if isinstance(d, Sample)]
    stored = reader.samples()
    assert len(stored) == len(samples) == 1800 * 6
    meter_a = reader.samples(peer="A", device="meter")
    expected = [d.values["power_kw"] for d in samples if (d.peer, d.device) == ("A", "meter")]
    assert meter_a["power_kw"].tolist() == pytest.approx(expected)
    assert meter_a["time"].iloc[0] == DEFAULT_START

    started = docs[0]
    assert isinstance(started, RunStarted)
    assert reader.config() == started.config
    assert reader.config()["market"]["mechanism"] == "uniform"


def test_trades_clearings_and_settlements_add_up(finished_run: Path) -> None:
    reader = RunReader(finished_run)
    clearings, trades, settlements = reader.clearings(), reader.trades(), reader.settlements()
    assert len(clearings) == 4  # one hour of 15-minute intervals
    assert trades["quantity_kwh"].sum() == pytest.approx(clearings["volume_kwh"].sum())
    per_interval = trades.groupby("interval_start")["quantity_kwh"].sum()
    assert per_interval.tolist() == pytest.approx(
        clearings.set_index("interval_start").loc[per_interval.index, "volume_kwh"].tolist()
    )
    # Every P2P kWh sold was bought by someone.
    assert settlements["p2p_sold_kwh"].sum() == pytest.approx(settlements["p2p_bought_kwh"].sum())
    assert sorted(settlements["peer"].unique()) == ["A", "B", "C"]

    orders = reader.orders()
    rejected = orders[~orders["accepted"]]
    assert len(rejected) == 4 and set(rejected["reason"]) == {"arrived after gate closure"}

    summary = reader.summary()
    assert summary is not None
    bills = settlements.groupby("peer")["bill"].sum()
    for peer in "ABC":
        assert summary["peers"][peer]["bill"] == pytest.approx(bills[peer])
    assert summary["market"]["traded_kwh"] == pytest.approx(trades["quantity_kwh"].sum())
    assert summary["market"]["intervals"] == len(clearings)
    assert summary["market"]["network_charges"] == pytest.approx(
        settlements["network_charge"].sum()
    )
    # rebuilt from the tables: no meter registers, so no metering energy balance
    assert summary["energy_balance_error_kwh"] is None


def test_samples_filter_by_time_and_average_into_buckets(finished_run: Path) -> None:
    reader = RunReader(finished_run)
    start = DEFAULT_START + timedelta(minutes=10)
    window = reader.samples(device="meter", start=start, end=start + timedelta(minutes=5))
    assert window["time"].min() == start
    assert window["time"].max() < start + timedelta(minutes=5)
    assert set(window["peer"]) == {"A", "B", "C"}
    assert len(window) == 150 * 3

    minutes = reader.samples(peer="C", device="meter", fields=["power_kw"], every_s=60)
    assert len(minutes) == 60
    assert list(minutes.columns) == ["time_s", "time", "peer", "device", "power_kw"]
    assert minutes["power_kw"].mean() == pytest.approx(window_mean(reader, "C"), rel=1e-9)

    latest = reader.latest_samples()
    assert len(latest) == 6
    assert (latest["time"] == DEFAULT_START + timedelta(hours=1, seconds=-2)).all()

    with pytest.raises(KeyError, match="no sample field 'power_w'"):
        reader.samples(fields=["power_w"])


def window_mean(reader: RunReader, peer: str) -> float:
    return float(reader.samples(peer=peer, device="meter")["power_kw"].mean())


def test_a_reader_sees_a_running_run_and_new_fields(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "live", flush_interval_s=0.0)
    store.emit(RunStarted("live", T0, {"experiment": {"seed": 7, "hours": 24.0}}))
    store.emit(Sample(T0, "A", "meter", {"power_kw": 1.5}))
    reader = RunReader(tmp_path / "live")
    assert reader.meta.status == "running"
    assert reader.writer_alive()
    assert reader.summary() is None
    assert reader.samples()["power_kw"].tolist() == [1.5]

    later = T0 + timedelta(seconds=1)
    store.emit(Sample(later, "A", "meter", {"power_kw": 1.4, "voltage_v": 231.0}))
    store.emit(
        Interlock(later, "A", "inverter", "power_limit", "setpoint 5 kW > 3.5 kW", "clamped")
    )
    frame = reader.samples()
    assert frame["voltage_v"].isna().tolist() == [True, False]
    assert reader.interlocks()["kind"].tolist() == ["power_limit"]

    store.close()  # no RunFinished: the run did not finish
    reader = RunReader(tmp_path / "live")
    assert reader.meta.status == "interrupted"
    assert not reader.writer_alive()
    assert reader.summary() is None


def test_a_trade_keeps_its_own_network_charge(tmp_path: Path) -> None:
    from testbed.documents import Clearing
    from testbed.market.book import Trade

    store = RunStore(tmp_path / "charges", flush_interval_s=0.0)
    store.emit(RunStarted("charges", T0, {}))
    trades = (
        Trade("b1", "s1", "C", "A", 0.5, 5.0, network_charge=0.75),
        Trade("b2", "s2", "C", "B", 0.25, 5.0),
    )
    store.emit(Clearing(T0, "welfare", 5.0, 0.75, trades, {}))
    store.close()
    frame = RunReader(tmp_path / "charges").trades()
    assert frame["network_charge"].iloc[0] == 0.75
    assert frame["network_charge"].isna().tolist() == [False, True]  # flat charge


def test_run_finished_summary_is_written_as_given(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "r")
    store.emit(RunStarted("r", T0, {}))
    summary = {"peers": {}, "market": {"traded_kwh": 0.0}, "energy_balance_error_kwh": 0.01}
    store.emit(RunFinished("r", T0 + timedelta(hours=1), "finished", summary))
    store.close()
    assert RunReader(tmp_path / "r").summary() == summary


def test_a_failure_inside_the_context_marks_the_run_failed(tmp_path: Path) -> None:
    with pytest.raises(ZeroDivisionError), RunStore(tmp_path / "r") as store:
        store.emit(RunStarted("r", T0, {}))
        store.emit(Sample(T0, "B", "ev_charger", {"soc_pct": 50.0}))
        _ = 1 / 0
    reader = RunReader(tmp_path / "r")
    assert reader.meta.status == "failed"
    assert reader.samples()["soc_pct"].tolist() == [50.0]


def test_bad_documents_are_refused_with_the_reason(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "r")
    with pytest.raises(RuntimeError, match="before RunStarted"):
        store.emit(Sample(T0, "A", "meter", {"power_kw": 1.0}))
    with pytest.raises(ValueError, match=r"RunStarted\.time = 2024-06-01T06:00:00 has no timezone"):
        store.emit(RunStarted("r", T0.replace(tzinfo=None), {}))
    store.emit(RunStarted("r", T0, {}))
    with pytest.raises(ValueError, match="sample field 'power kW' cannot be a column"):
        store.emit(Sample(T0, "A", "meter", {"power kW": 1.0}))
    with pytest.raises(ValueError, match="status = 'done': allowed are"):
        store.close("done")
    with pytest.raises(FileExistsError, match="already holds a run"):
        RunStore(tmp_path / "r")


def test_missing_partial_and_older_directories_raise_a_clear_error(
    tmp_path: Path, finished_run: Path
) -> None:
    with pytest.raises(RunDirError, match="does not exist"):
        RunReader(tmp_path / "nowhere")

    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDirError, match=r"has no meta\.json"):
        RunReader(tmp_path / "empty")

    no_db = tmp_path / "no_db"
    no_db.mkdir()
    (no_db / "meta.json").write_text((finished_run / "meta.json").read_text())
    with pytest.raises(RunDirError, match=r"partial: it has meta\.json but no run\.sqlite"):
        RunReader(no_db)

    older = tmp_path / "older"
    older.mkdir()
    meta = json.loads((finished_run / "meta.json").read_text())
    (older / "meta.json").write_text(json.dumps({**meta, "format_version": 0}))
    sqlite3.connect(older / "run.sqlite").close()
    with pytest.raises(RunDirError, match="format version 0; this testbed reads version 1"):
        RunReader(older)

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "meta.json").write_text("{not json")
    with pytest.raises(RunDirError, match=r"meta\.json cannot be read"):
        RunReader(broken)


def test_list_runs_shows_readable_and_broken_runs(tmp_path: Path) -> None:
    write_run(tmp_path / "early", hours=0.25, step_s=5.0)
    write_run(tmp_path / "late", hours=0.25, step_s=5.0, start=DEFAULT_START + timedelta(days=1))
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.toml").write_text("")
    (tmp_path / "unrelated").mkdir()

    listings = list_runs(tmp_path)
    readable = [item.name for item in listings if item.reader]
    assert readable == ["late", "early"]
    broken = {item.name: item.error for item in listings if item.error}
    assert list(broken) == ["half"] and "has no meta.json" in broken["half"]

    with pytest.raises(RunDirError, match=r"runs folder .* does not exist"):
        list_runs(tmp_path / "missing")


def test_config_toml_round_trips() -> None:
    import tomllib

    data = {
        "name": 'lab "one"',
        "n": 3,
        "x": 0.1,
        "on": True,
        "list": [1, 2.5],
        "when": datetime(2024, 6, 1, tzinfo=UTC),
        "nested": {"a": {"b": 1}, "c": "d"},
        "empty": {},
    }
    assert tomllib.loads(dump_toml(data)) == data
    # TOML has no null: None values are left out, also inside lists of tables
    with_none = {"a": None, "b": {"c": None, "d": 1}, "e": [{"f": None, "g": 2}]}
    assert tomllib.loads(dump_toml(with_none)) == {"b": {"d": 1}, "e": [{"g": 2}]}
