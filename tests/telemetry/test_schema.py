"""The schema as InfluxDB stores it: what docs/telemetry.md promises a Grafana user, exactly."""

from __future__ import annotations

import json
import math
import re
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from testbed.documents import Clearing, Document, Interlock, RunStarted, Sample
from testbed.telemetry import InfluxConfig, InfluxSink, PointFormatter, influxql_records
from testbed.telemetry.line_protocol import timestamp_ns
from tests.fixtures.influx import InfluxServer
from tests.telemetry.readback import FAST, count_points
from tests.telemetry.stream import DEVICES, expected_points, synthetic_run

SCHEMA_DOC = Path(__file__).resolve().parents[2] / "docs" / "telemetry.md"
DYNAMIC_FIELD_PREFIXES = ("report_", "summary_")


def documented_schema() -> dict[str, dict[str, tuple[str, str]]]:
    """{measurement: {column: (kind, type)}} from the tables of docs/telemetry.md."""
    schema: dict[str, dict[str, tuple[str, str]]] = {}
    measurement = None
    for line in SCHEMA_DOC.read_text().splitlines():
        heading = re.match(r"#### `(\w+)`", line)
        if heading:
            measurement = heading.group(1)
            schema[measurement] = {}
            continue
        row = re.match(r"\| `(\w+)` \| (tag|field) \| ?(\w*) ?\|", line)
        if row and measurement:
            schema[measurement][row.group(1)] = (row.group(2), row.group(3))
    return schema


def edge_documents(run: str, start: datetime) -> list[Document]:
    """Documents that bring out the optional columns: seq, nonfinite_values, no clearing price."""
    moment = start + timedelta(hours=2, microseconds=123456)
    return [
        RunStarted(run, start - timedelta(seconds=1), {"blob": "x" * 70_000}),
        Sample(moment, "A", "meter", {"power_kw": 1.5, "voltage_v": math.nan}),
        Sample(moment, "A", "meter", {"power_kw": 1.6}),
        Sample(moment, "B", "meter", {"power_kw": math.inf, "voltage_v": math.nan}),
        Sample(moment, "C", "meter", {}),
        Clearing(moment, "pay_as_bid", None, 0.0, ()),
        Interlock(
            moment, "C", "load", "stale_measurement", 'meter said "0"\nthen \\ nothing', "held"
        ),
    ]


@pytest.fixture(scope="module")
def stored_run(influxd_server: InfluxServer, tmp_path_factory: pytest.TempPathFactory):
    """One synthetic run plus edge cases, written through the sink into a fresh database."""
    database = f"schema_{uuid.uuid4().hex[:8]}"
    influxd_server.create_database(database)
    config = InfluxConfig(url=influxd_server.url, database=database, **FAST)
    run = f"run-{uuid.uuid4().hex[:8]}"
    documents = list(synthetic_run(run, 200))
    documents += edge_documents(run, documents[0].time)  # type: ignore[union-attr]
    sink = InfluxSink(config, tmp_path_factory.mktemp("schema") / "buffer.sqlite")
    for doc in documents:
        sink.emit(doc)
    sink.close(timeout_s=20)
    final = sink.backlog()
    assert final.pending_points == 0 and final.dead_letter_points == 0
    return config, run, documents


def test_influxdb_holds_exactly_the_documented_tags_and_fields(stored_run) -> None:
    config, _, _ = stored_run
    documented = documented_schema()
    reading_fields = {field for fields in DEVICES.values() for field in fields}
    for measurement, columns in documented.items():
        tags = {
            row["tagKey"] for row in influxql_records(config, f'SHOW TAG KEYS FROM "{measurement}"')
        }
        fields = {
            row["fieldKey"]: row["fieldType"]
            for row in influxql_records(config, f'SHOW FIELD KEYS FROM "{measurement}"')
        }
        assert tags == {name for name, (kind, _) in columns.items() if kind == "tag"}, measurement
        documented_fields = {
            name: kind_type[1] for name, kind_type in columns.items() if kind_type[0] == "field"
        }
        extra = {
            name: kind
            for name, kind in fields.items()
            if name not in documented_fields
            and not name.startswith(DYNAMIC_FIELD_PREFIXES)
            and not (measurement == "telemetry" and name in reading_fields and kind == "float")
        }
        assert extra == {}, f"{measurement}: fields missing from docs/telemetry.md"
        assert {name: fields.get(name) for name in documented_fields} == documented_fields, (
            measurement
        )
    assert set(documented) == {row["name"] for row in influxql_records(config, "SHOW MEASUREMENTS")}


def test_no_point_overwrote_another(stored_run) -> None:
    config, run, documents = stored_run
    counts = count_points(config, run)
    assert counts == expected_points(documents)
    # The two interlocks of one kind at one time are apart by their seq tag.
    rows = influxql_records(
        config,
        f'SELECT "reason", "seq" FROM "interlock" WHERE "run" = \'{run}\' '
        "AND \"kind\" = 'power_limit' LIMIT 2",
    )
    assert sorted((row["reason"], row["seq"] or "") for row in rows) == [
        ("read-back 3.6 kW", "1"),
        ("setpoint 4.2 kW > 3.5 kW", ""),
    ]


def test_edge_values_come_back_as_documented(stored_run) -> None:
    config, run, documents = stored_run
    moment = documents[-1].time  # type: ignore[union-attr]
    ns = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000
    meter_a = influxql_records(
        config,
        f'SELECT * FROM "telemetry" WHERE "run" = \'{run}\' AND "peer" = \'A\' AND time = {ns}',
    )
    # `SELECT *` lists the fields of the shards it reads: when the edge moment falls in a shard of
    # its own (a week boundary), no voltage was ever stored there and the column is absent.
    assert [(row["power_kw"], row.get("voltage_v"), row["seq"]) for row in meter_a] == [
        (1.5, None, None),  # NaN voltage left out
        (1.6, None, "1"),  # a second sample of the device at the same time
    ]
    meter_b = influxql_records(
        config,
        f'SELECT "nonfinite_values", "power_kw" FROM "telemetry" WHERE "run" = \'{run}\' '
        f"AND \"peer\" = 'B' AND time = {ns}",
    )
    assert [(row["nonfinite_values"], row["power_kw"]) for row in meter_b] == [(1.0, None)]
    meter_c = influxql_records(
        config,
        f'SELECT "nonfinite_values" FROM "telemetry" WHERE "run" = \'{run}\' '
        f"AND \"peer\" = 'C' AND \"device\" = 'meter' AND time = {ns}",
    )
    assert [row["nonfinite_values"] for row in meter_c] == [1.0]
    clearing = influxql_records(
        config, f'SELECT * FROM "clearing" WHERE "run" = \'{run}\' AND "mechanism" = \'pay_as_bid\''
    )
    assert [(row["cleared"], row["clearing_price"], row["trade_count"]) for row in clearing] == [
        (False, None, 0)
    ]
    interlock = influxql_records(
        config,
        f'SELECT "reason" FROM "interlock" WHERE "run" = \'{run}\' '
        "AND \"kind\" = 'stale_measurement'",
    )
    assert interlock[0]["reason"] == 'meter said "0"\\nthen \\ nothing'
    started = influxql_records(
        config, f'SELECT * FROM "run" WHERE "run" = \'{run}\' AND "event" = \'started\''
    )
    # The edge RunStarted (one second before the run's own) carried a 70,000-character config.
    assert [row["config_truncated"] for row in started] == [True, None]
    assert len(started[0]["config_json"]) == 60_000


def test_tag_values_with_separators_arrive_unchanged(
    influxd_server: InfluxServer, influx_database: str, tmp_path: Path
) -> None:
    config = InfluxConfig(url=influxd_server.url, database=influx_database, **FAST)
    moment = datetime(2026, 6, 1, 12, 0, 0, 654321, tzinfo=UTC)
    sink = InfluxSink(config, tmp_path / "buffer.sqlite", run_id="run 7, rev=2")
    sink.emit(Sample(moment, "Peer A,1", "meter=main bus", {"power kw": -1.25, "soc,pct": 40.0}))
    sink.close(timeout_s=10)
    assert sink.backlog().sent_points == 1
    rows = influxql_records(config, 'SELECT * FROM "telemetry"')
    assert rows == [
        {
            "time": 1780315200654321000,
            "device": "meter=main bus",
            "peer": "Peer A,1",
            "run": "run 7, rev=2",
            "power kw": -1.25,
            "soc,pct": 40.0,
        }
    ]


def test_document_that_cannot_be_formatted_is_dead_lettered_and_the_run_goes_on(
    influxd_server: InfluxServer, influx_database: str, tmp_path: Path
) -> None:
    config = InfluxConfig(url=influxd_server.url, database=influx_database, **FAST)
    naive = Sample(datetime(2026, 6, 1, 12, 0), "A", "meter", {"power_kw": 1.0})
    good = Sample(datetime(2026, 6, 1, 12, 0, tzinfo=UTC), "A", "meter", {"power_kw": 2.0})
    sink = InfluxSink(config, tmp_path / "buffer.sqlite", run_id="r")
    sink.emit(naive)
    sink.emit(good)
    assert sink.flush(timeout_s=10)
    letters = sink.dead_letters()
    sink.close()
    final = sink.backlog()
    assert (final.sent_points, final.dead_letter_points) == (1, 1)
    assert "timezone-aware" in letters[0].error and "Sample(" in letters[0].line
    assert [row["power_kw"] for row in influxql_records(config, 'SELECT * FROM "telemetry"')] == [
        2.0
    ]


def test_every_point_of_a_long_run_has_its_own_series_and_time() -> None:
    formatter = PointFormatter()
    lines: list[str] = []
    documents = list(synthetic_run("r", 3000, interlock_every=7))
    for doc in documents:
        formatter.lines(doc, lines)
    keys = Counter((line.split(" ")[0], line.rsplit(" ", 1)[1]) for line in lines)
    assert len(lines) == sum(expected_points(documents).values())
    assert keys.most_common(1)[0][1] == 1


def documented_queries() -> list[str]:
    """The InfluxQL statements of docs/telemetry.md's Grafana section, one per SELECT."""
    text = SCHEMA_DOC.read_text()
    statements: list[str] = []
    for line in text.split("```sql")[1].split("```")[0].splitlines():
        if line.startswith("SELECT"):
            statements.append(line)
        elif line.strip() and not line.startswith("--"):
            statements[-1] += " " + line.strip()
    return [*statements, *re.findall(r"`(SHOW TAG VALUES[^`]*)`", text)]


def test_every_grafana_query_of_the_docs_answers_with_rows(stored_run) -> None:
    config, run, documents = stored_run
    first, last = documents[0].time, documents[-1].time  # type: ignore[union-attr]
    time_filter = f"time >= {timestamp_ns(first)} AND time <= {timestamp_ns(last)}"
    queries = documented_queries()
    assert len(queries) >= 10
    for query in queries:
        statement = query.replace("$run", run).replace("$timeFilter", time_filter)
        rows = influxql_records(config, statement.replace("$__interval", "60s"))
        assert rows, query


def test_an_optimisation_clearing_is_recorded_with_its_iterations_and_network_check(
    influxd_server: InfluxServer, influx_database: str, tmp_path: Path
) -> None:
    """ADMM on the site's feeder: welfare, iterations, residuals and the AC check's voltages reach
    InfluxDB as report_ fields and the run store's clearing report, and the trades' network
    charges both."""
    from testbed.market import Order, Side, get_mechanism
    from testbed.runstore import RunReader, RunStore

    start = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    orders = [
        Order("b1", "A", Side.BUY, 1.0, 9.0, start, 1.0),
        Order("a1", "C", Side.SELL, 0.6, 3.0, start, 2.0),
        Order("a2", "B", Side.SELL, 0.6, 4.0, start, 3.0),
    ]
    result = get_mechanism("admm", feeder="site", charges="distance").clear(orders)
    report = result.report
    assert report["iterations"] > 1 and report["network_ok"] is True
    clearing = result.to_document(start)
    run = f"run-{uuid.uuid4().hex[:8]}"
    documents = [RunStarted(run, start, {"market": {"mechanism": "admm"}}), clearing]
    config = InfluxConfig(url=influxd_server.url, database=influx_database, **FAST)
    sink = InfluxSink(config, tmp_path / "buffer.sqlite", run_id=run)
    store = RunStore(tmp_path / "run")
    for doc in documents:
        sink.emit(doc)
        store.emit(doc)
    sink.close(timeout_s=10)
    store.close()

    [row] = influxql_records(config, f'SELECT * FROM "clearing" WHERE "run" = \'{run}\'')
    assert row["mechanism"] == "admm"
    assert row["report_iterations"] == report["iterations"]
    assert row["report_welfare"] == pytest.approx(report["welfare"])
    assert row["report_primal_residual"] == pytest.approx(report["primal_residual"])
    assert row["report_dual_residual"] == pytest.approx(report["dual_residual"])
    assert (
        0.94 < row["report_network_min_voltage_pu"] <= row["report_network_max_voltage_pu"] < 1.06
    )
    trades = influxql_records(config, f'SELECT * FROM "trade" WHERE "run" = \'{run}\'')
    assert sorted(t["network_charge"] for t in trades) == pytest.approx(
        sorted(t.network_charge for t in result.trades)
    )
    stored = RunReader(tmp_path / "run")
    [stored_report] = [json.loads(text) for text in stored.clearings()["report_json"]]
    assert stored_report["iterations"] == report["iterations"]
    assert stored_report["network"]["check"]["ok"] is True
    assert stored.trades()["network_charge"].tolist() == pytest.approx(
        [t.network_charge for t in result.trades]
    )
