"""First contact with a real influxd 1.6: a database it has never seen is created and gets the
points; a wrong URL, API version, retention policy or a database it may not create is one line
before anything starts."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from testbed.cli import app
from testbed.telemetry import InfluxConfig, InfluxSink
from testbed.telemetry.target import (
    InfluxTargetError,
    InfluxUnreachable,
    check_target,
    prepare_target,
)
from tests.fixtures.influx import InfluxServer
from tests.fixtures.ports import free_port
from tests.telemetry.readback import FAST, count_points
from tests.telemetry.stream import expected_points, synthetic_run

runner = CliRunner()


def new_name() -> str:
    return f"never_seen_{uuid.uuid4().hex[:8]}"


def databases(server: InfluxServer) -> set[str]:
    answer = server.query("SHOW DATABASES", "_internal")
    series = answer["results"][0].get("series", [{}])
    return {row[0] for row in series[0].get("values", [])}


def test_a_database_the_server_has_never_seen_is_created_and_receives_the_points(
    influxd_server: InfluxServer, tmp_path: Path
) -> None:
    influxd_server.start()
    config = InfluxConfig(url=influxd_server.url, database=new_name(), **FAST)
    assert config.database not in databases(influxd_server)

    report = check_target(config)
    assert report.created_database and report.server_version == "1.6.7"
    assert config.database in databases(influxd_server)
    assert not check_target(config).created_database  # the second contact finds it

    documents = list(synthetic_run("fresh-run", 300))
    sink = InfluxSink(config, tmp_path / "buffer.sqlite")
    for doc in documents:
        sink.emit(doc)
    sink.close(timeout_s=20)
    assert sink.backlog().pending_points == 0
    assert count_points(config, "fresh-run") == expected_points(documents)


def test_a_server_that_was_down_at_start_gets_the_database_when_it_is_back(
    influxd_server: InfluxServer, tmp_path: Path
) -> None:
    config = InfluxConfig(
        url=influxd_server.url, database=new_name(), spool_if_down_at_start=True, **FAST
    )
    influxd_server.stop()
    try:
        strict = config.model_copy(update={"spool_if_down_at_start": False})
        with pytest.raises(InfluxUnreachable, match=r"connection refused.*--influx-spool-if-down"):
            prepare_target(strict)
        report = prepare_target(config)
        assert report.down_reason == "connection refused"
        documents = list(synthetic_run("late-run", 200))
        sink = InfluxSink(config, tmp_path / "buffer.sqlite")
        for doc in documents:
            sink.emit(doc)
    finally:
        influxd_server.start()
    # The forwarder's first write is answered "database not found": it creates it and resends.
    assert sink.flush(timeout_s=30)
    sink.close()
    assert config.database in databases(influxd_server)
    assert count_points(config, "late-run") == expected_points(documents)


def test_skipping_database_creation_names_the_missing_database_and_creates_nothing(
    influxd_server: InfluxServer,
) -> None:
    influxd_server.start()
    name = new_name()
    config = InfluxConfig(url=influxd_server.url, database=name, skip_database_creation=True)
    with pytest.raises(InfluxTargetError, match=f"database '{name}' does not exist") as error:
        check_target(config)
    assert "skip_database_creation" in str(error.value)
    assert name not in databases(influxd_server)


def test_a_missing_retention_policy_is_named(influxd_server: InfluxServer) -> None:
    influxd_server.start()
    config = InfluxConfig(url=influxd_server.url, database=new_name(), retention_policy="one_week")
    with pytest.raises(InfluxTargetError, match="retention policy 'one_week' does not exist"):
        check_target(config)


def wrong_targets(server: InfluxServer) -> dict[str, tuple[list[str], str]]:
    """CLI flags of a wrong target, and what the one line must say."""
    nobody = f"http://127.0.0.1:{free_port()}"
    return {
        "nothing listens": (
            ["--influx-url", nobody, "--influx-api", "v1", "--influx-db", "lab"],
            f"InfluxDB at {nobody} does not answer (connection refused)",
        ),
        "v2 against 1.x": (
            [
                *("--influx-url", server.url, "--influx-api", "v2"),
                *("--influx-bucket", "lab", "--influx-org", "iitgn"),
            ],
            "InfluxDB 1.6.7 at " + server.url + " has no v2 write API",
        ),
        "a path in the URL": (
            ["--influx-url", f"{server.url}/influxdb", "--influx-db", "lab"],
            "has no v1 write API (POST /write: HTTP 404",
        ),
    }


@pytest.mark.parametrize("case", ["nothing listens", "v2 against 1.x", "a path in the URL"])
def test_a_wrong_url_or_api_version_fails_at_start_with_one_line(
    influxd_server: InfluxServer, tmp_path: Path, case: str
) -> None:
    influxd_server.start()
    flags, message = wrong_targets(influxd_server)[case]
    run_dir = tmp_path / "run"
    result = runner.invoke(app, ["demo", "--hours", "0.1", "--out", str(run_dir), *flags])

    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ") and message in lines[0]
    assert not run_dir.exists()  # nothing started: no plant, no run directory


def test_replay_without_settings_in_the_run_or_a_database_says_which_flag_is_missing(
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "old-run"
    run_dir.mkdir()
    (run_dir / "config.toml").write_text('[experiment]\nname = "made before settings were kept"\n')
    unreachable = InfluxConfig(url=f"http://127.0.0.1:{free_port()}", database="x", **FAST)
    sink = InfluxSink(unreachable, run_dir / "influx-buffer.sqlite")
    sink.emit_lines(["m,run=old value=1 1000000000"])
    sink.close(timeout_s=0.1)

    result = runner.invoke(
        app, ["telemetry", "replay", str(run_dir), "--influx-url", "http://127.0.0.1:8086"]
    )
    assert result.exit_code == 2, result.output  # not a pydantic traceback (exit status 1)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "api = 'v1' needs database (--influx-db)" in lines[0]

    status = runner.invoke(app, ["telemetry", "status", str(run_dir)])
    assert status.exit_code == 0, status.output
    assert "1 points pending" in status.output and "target: none" in status.output
