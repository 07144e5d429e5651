"""The InfluxDB sink against a real influxd 1.6 (v1 write API): nothing lost, nothing doubled."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from testbed.documents import Document
from testbed.telemetry import (
    BufferInUse,
    InfluxConfig,
    InfluxSink,
    PointBuffer,
    influxql_records,
)
from tests.fixtures.influx import InfluxServer
from tests.fixtures.ports import free_port, wait_until
from tests.telemetry.readback import FAST, count_points
from tests.telemetry.stream import expected_points, reading, synthetic_run

REPO = Path(__file__).resolve().parents[2]


def influx_config(url: str, database: str, **overrides: object) -> InfluxConfig:
    return InfluxConfig(api="v1", url=url, database=database, **{**FAST, **overrides})


def run_id() -> str:
    return f"run-{uuid.uuid4().hex[:8]}"


def emit_all(sink: InfluxSink, documents: list[Document], pace_every: int = 0) -> None:
    for index, doc in enumerate(documents):
        sink.emit(doc)
        if pace_every and index % pace_every == 0:
            time.sleep(0.002)  # a control loop between steps


def test_every_document_of_a_run_is_stored_once_with_its_values(
    influxd_server: InfluxServer, influx_database: str, tmp_path: Path
) -> None:
    config = influx_config(influxd_server.url, influx_database)
    run = run_id()
    documents = list(synthetic_run(run, 600))
    sink = InfluxSink(config, tmp_path / "buffer.sqlite")
    emit_all(sink, documents)
    sink.close(timeout_s=20)
    final = sink.backlog()

    assert final.pending_points == 0 and final.dead_letter_points == 0
    assert count_points(config, run) == expected_points(documents)
    assert final.sent_points == sum(expected_points(documents).values())
    rows = influxql_records(
        config,
        f'SELECT "soc_pct", "setpoint_kw" FROM "telemetry" WHERE "run" = \'{run}\' '
        "AND \"peer\" = 'B' AND \"device\" = 'ev_charger' ORDER BY time LIMIT 1 OFFSET 321",
    )
    assert rows[0]["soc_pct"] == pytest.approx(reading(321, "B", "ev_charger", "soc_pct"))
    assert rows[0]["setpoint_kw"] == pytest.approx(reading(321, "B", "ev_charger", "setpoint_kw"))


def test_server_killed_mid_run_then_restarted_loses_and_doubles_nothing(
    influxd_server: InfluxServer, influx_database: str, tmp_path: Path
) -> None:
    config = influx_config(influxd_server.url, influx_database)
    run = run_id()
    documents = list(synthetic_run(run, 1500))
    third = len(documents) // 3
    sink = InfluxSink(config, tmp_path / "buffer.sqlite")

    emit_all(sink, documents[:third], pace_every=50)
    influxd_server.stop(kill=True)  # crash while batches are going out
    emit_all(sink, documents[third : 2 * third], pace_every=50)
    wait_until(lambda: sink.backlog().last_error is not None, 10, "a failed write")
    wait_until(lambda: sink.backlog().queued_documents == 0, 10, "points spooled to disk")
    down = sink.backlog()
    assert down.pending_points > 0  # the backlog grows on disk while the server is down
    assert not down.healthy and "Connection" in (down.last_error or "")

    influxd_server.start()
    emit_all(sink, documents[2 * third :], pace_every=50)
    assert sink.flush(timeout_s=30)
    sink.close()
    final = sink.backlog()

    assert final.healthy and final.dead_letter_points == 0
    assert count_points(config, run) == expected_points(documents)
    # A reading emitted while the server was down arrived with its value.
    step = 800
    rows = influxql_records(
        config,
        f'SELECT "pv_power_kw" FROM "telemetry" WHERE "run" = \'{run}\' AND "peer" = \'A\' '
        f"AND \"device\" = 'inverter' ORDER BY time LIMIT 1 OFFSET {step}",
    )
    assert rows[0]["pv_power_kw"] == pytest.approx(reading(step, "A", "inverter", "pv_power_kw"))


def test_hung_server_leaves_points_on_disk_until_it_answers_again(
    influxd_server: InfluxServer, influx_database: str, tmp_path: Path
) -> None:
    config = influx_config(influxd_server.url, influx_database, request_timeout_s=0.5)
    run = run_id()
    documents = list(synthetic_run(run, 400))
    sink = InfluxSink(config, tmp_path / "buffer.sqlite")
    influxd_server.freeze()  # accepts connections, answers nothing
    try:
        emit_all(sink, documents)
        wait_until(lambda: "Timeout" in (sink.backlog().last_error or ""), 10, "a timed-out write")
        wait_until(lambda: sink.backlog().queued_documents == 0, 10, "points spooled to disk")
        assert sink.backlog().pending_points == sum(expected_points(documents).values())
    finally:
        influxd_server.thaw()
    assert sink.flush(timeout_s=30)
    sink.close()
    assert count_points(config, run) == expected_points(documents)


def test_new_sink_on_the_same_buffer_sends_what_the_closed_one_left(
    influxd_server: InfluxServer, influx_database: str, tmp_path: Path
) -> None:
    config = influx_config(influxd_server.url, influx_database)
    buffer_path = tmp_path / "buffer.sqlite"
    run = run_id()
    documents = list(synthetic_run(run, 300))
    total = sum(expected_points(documents).values())

    influxd_server.stop()
    first = InfluxSink(config, buffer_path)
    emit_all(first, documents)
    first.close(timeout_s=0.3)
    left = first.backlog()
    assert left.pending_points == total

    # The buffer keeps the emission order: the run starts first and finishes last.
    buffer = PointBuffer(buffer_path)
    lines = buffer.pending_lines()
    buffer.close()
    assert len(lines) == total
    assert lines[0].startswith("run,event=started") and lines[-1].startswith("run,event=finished")

    influxd_server.start()
    second = InfluxSink(config, buffer_path)
    assert second.flush(timeout_s=30)
    second.close()
    final = second.backlog()
    assert final.sent_points == total and final.pending_points == 0
    assert count_points(config, run) == expected_points(documents)


CRASHING_CONTROLLER = """
import os, signal, sys, time
from datetime import datetime
from testbed.telemetry import InfluxConfig, InfluxSink
from tests.telemetry.stream import expected_points, synthetic_run

url, database, buffer_path, run, steps, start = sys.argv[1:7]
sink = InfluxSink(InfluxConfig(url=url, database=database, retry_max_s=0.5), buffer_path)
documents = list(synthetic_run(run, int(steps), start=datetime.fromisoformat(start)))
for doc in documents:
    sink.emit(doc)
total = sum(expected_points(documents).values())
while sink.backlog().pending_points < total:
    time.sleep(0.01)
print("spooled", total, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_controller_killed_with_a_backlog_resumes_after_restart(
    influxd_server: InfluxServer, influx_database: str, tmp_path: Path
) -> None:
    buffer_path = tmp_path / "buffer.sqlite"
    run, steps = run_id(), 250
    documents = list(synthetic_run(run, steps))
    start = documents[0].time.isoformat()  # type: ignore[union-attr]
    unreachable = f"http://127.0.0.1:{free_port()}"
    arguments = [unreachable, influx_database, str(buffer_path), run, str(steps), start]
    crashed = subprocess.run(
        [sys.executable, "-c", CRASHING_CONTROLLER, *arguments],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert crashed.returncode == -9, crashed.stderr
    assert crashed.stdout.split() == ["spooled", str(sum(expected_points(documents).values()))]

    config = influx_config(influxd_server.url, influx_database)
    sink = InfluxSink(config, buffer_path)  # the lock died with the process
    assert sink.flush(timeout_s=30)
    sink.close()
    assert count_points(config, run) == expected_points(documents)


def test_points_the_server_refuses_go_to_dead_letters_with_its_answer(
    influxd_server: InfluxServer, influx_database: str, tmp_path: Path
) -> None:
    config = influx_config(influxd_server.url, influx_database)
    run = run_id()
    documents = list(synthetic_run(run, 400))
    half = len(documents) // 2
    not_a_number = f"telemetry,run={run},peer=A,device=inverter power_kw=lots 1000000000"
    interlock_ns = next(
        int(doc.time.timestamp()) * 10**9 for doc in documents if type(doc).__name__ == "Interlock"
    )
    # `count` is an integer field in this shard already: a string is a type conflict.
    wrong_type = f'interlock,run={run},peer=X,device=y,kind=z,action=w count="many" {interlock_ns}'
    sink = InfluxSink(config, tmp_path / "buffer.sqlite")
    emit_all(sink, documents[:half])
    assert sink.flush(timeout_s=30)
    sink.emit_lines([not_a_number, wrong_type])
    emit_all(sink, documents[half:])
    assert sink.flush(timeout_s=30)

    backlog = sink.backlog()
    assert backlog.dead_letter_points == 2 and backlog.pending_points == 0
    dead = {letter.line: letter for letter in sink.dead_letters()}
    sink.close()
    assert set(dead) == {not_a_number, wrong_type}
    assert dead[not_a_number].http_status == 400
    assert "unable to parse" in dead[not_a_number].error
    assert "field type conflict" in dead[wrong_type].error
    # Every good point of the batches the bad ones were in arrived.
    assert count_points(config, run) == expected_points(documents)


def test_dead_letters_can_be_sent_again_once_the_cause_is_fixed(
    influxd_server: InfluxServer, influx_database: str, tmp_path: Path
) -> None:
    buffer_path = tmp_path / "buffer.sqlite"
    config = influx_config(influxd_server.url, influx_database)
    first = 'clash,run=r value=1.5 1000000000\nclash,run=r value="text" 2000000000'
    sink = InfluxSink(config, buffer_path)
    sink.emit_lines(first.splitlines())
    assert sink.flush(timeout_s=10)
    sink.close()
    assert sink.backlog().dead_letter_points == 1

    fixed_database = f"{influx_database}_fixed"  # a database where `value` may be a string
    influxd_server.create_database(fixed_database)
    buffer = PointBuffer(buffer_path)
    assert buffer.requeue_dead_letters() == 1
    buffer.close()
    fixed = config.model_copy(update={"database": fixed_database})
    sink = InfluxSink(fixed, buffer_path)
    assert sink.flush(timeout_s=10)
    sink.close()
    assert sink.backlog().dead_letter_points == 0
    rows = influxql_records(fixed, 'SELECT "value" FROM "clash"')
    assert [row["value"] for row in rows] == ["text"]


def test_one_buffer_file_serves_one_sink_at_a_time(
    influxd_server: InfluxServer, influx_database: str, tmp_path: Path
) -> None:
    config = influx_config(influxd_server.url, influx_database)
    sink = InfluxSink(config, tmp_path / "buffer.sqlite")
    with pytest.raises(BufferInUse, match=r"buffer\.sqlite"):
        InfluxSink(config, tmp_path / "buffer.sqlite")
    sink.close()
    InfluxSink(config, tmp_path / "buffer.sqlite").close()
