"""The v2 write path (influxdb-client's write API) against a real VictoriaMetrics server."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from testbed.documents import Sample
from testbed.telemetry import InfluxConfig, InfluxSink
from tests.fixtures.ports import wait_until
from tests.fixtures.victoria import VictoriaServer
from tests.telemetry.readback import FAST, victoria_samples
from tests.telemetry.stream import DEVICES, reading, synthetic_run


def v2_config(server: VictoriaServer, **overrides: object) -> InfluxConfig:
    return InfluxConfig(
        api="v2", url=server.url, org="lab", bucket="testbed", **{**FAST, **overrides}
    )


def expected_series(steps: int) -> dict[str, int]:
    """Samples per exported series: one per step for every field of every device."""
    return {
        f"telemetry_{field}{{{peer},{device}}}": steps
        for (peer, device), fields in DEVICES.items()
        for field in fields
    }


def assert_each_sample_once(server: VictoriaServer, run: str, steps: int) -> None:
    timestamps = victoria_samples(server, run)
    assert {name: len(stamps) for name, stamps in timestamps.items()} == expected_series(steps)
    assert all(len(set(stamps)) == len(stamps) for stamps in timestamps.values())


def test_v2_write_api_delivers_every_field_of_every_step(
    victoria_server: VictoriaServer, tmp_path: Path
) -> None:
    run, steps = f"run-{uuid.uuid4().hex[:8]}", 500
    sink = InfluxSink(v2_config(victoria_server), tmp_path / "buffer.sqlite")
    for doc in synthetic_run(run, steps):
        sink.emit(doc)
    sink.close(timeout_s=20)
    final = sink.backlog()
    assert final.pending_points == 0 and final.dead_letter_points == 0
    assert_each_sample_once(victoria_server, run, steps)
    series = victoria_server.export(f'telemetry_soc_pct{{run="{run}",peer="A",device="inverter"}}')[
        0
    ]
    assert series["values"][123] == pytest.approx(reading(123, "A", "inverter", "soc_pct"))


def test_v2_outage_mid_run_loses_and_doubles_nothing(
    victoria_server: VictoriaServer, tmp_path: Path
) -> None:
    run, steps = f"run-{uuid.uuid4().hex[:8]}", 900
    documents = list(synthetic_run(run, steps))
    third = len(documents) // 3
    sink = InfluxSink(v2_config(victoria_server), tmp_path / "buffer.sqlite")
    for index, doc in enumerate(documents):
        if index == third:
            victoria_server.stop()
        if index == 2 * third:
            wait_until(lambda: sink.backlog().last_error is not None, 10, "a failed write")
            assert sink.backlog().pending_points > 0
            victoria_server.start()
        sink.emit(doc)
        if index % 50 == 0:
            time.sleep(0.002)
    assert sink.flush(timeout_s=30)
    sink.close()
    final = sink.backlog()
    assert final.dead_letter_points == 0
    assert_each_sample_once(victoria_server, run, steps)


def test_v2_point_the_server_refuses_is_dead_lettered_with_its_answer(
    victoria_server: VictoriaServer, tmp_path: Path
) -> None:
    run = f"run-{uuid.uuid4().hex[:8]}"
    documents = list(synthetic_run(run, 60))
    moment = next(doc.time for doc in documents if isinstance(doc, Sample))
    ns = int(moment.timestamp()) * 10**9
    # VictoriaMetrics answers 400 to a request whose last line is over 256 KiB
    # (-influx.maxLineSize); it stores the lines before it, so the bad point goes on its own here.
    oversized = f'notes,run={run} text="{"x" * 300_000}",size_kb=300 {ns}'
    sink = InfluxSink(v2_config(victoria_server), tmp_path / "buffer.sqlite")
    for doc in documents[:200]:
        sink.emit(doc)
    assert sink.flush(timeout_s=30)
    sink.emit_lines([oversized])
    assert sink.flush(timeout_s=30)
    for doc in documents[200:]:
        sink.emit(doc)
    assert sink.flush(timeout_s=30)
    letters = sink.dead_letters()
    sink.close()
    final = sink.backlog()
    assert final.dead_letter_points == 1 and final.pending_points == 0
    assert [letter.line for letter in letters] == [oversized]
    assert letters[0].http_status == 400 and "too long line" in letters[0].error
    # The run went on: every point after the refused one arrived, once.
    assert_each_sample_once(victoria_server, run, 60)


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_first_contact_passes_on_victoria_metrics_through_either_write_api(
    victoria_server: VictoriaServer, api: str
) -> None:
    from testbed.telemetry.target import check_target

    victoria_server.start()
    settings = {"database": "testbed"} if api == "v1" else {"org": "lab", "bucket": "testbed"}
    report = check_target(InfluxConfig(api=api, url=victoria_server.url, **settings))
    # VictoriaMetrics takes any database and has no CREATE DATABASE: nothing to create.
    assert not report.created_database and report.down_reason is None
