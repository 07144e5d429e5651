"""The `[sinks.influx]` config, the CLI flags, and secrets that come only from the environment."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from testbed.documents import Sample
from testbed.telemetry import (
    InfluxConfig,
    InfluxQueryError,
    InfluxSink,
    influx_config_from_cli,
    influxql_records,
    read_buffer_state,
)
from tests.fixtures.influx import InfluxServer
from tests.fixtures.ports import wait_until
from tests.telemetry.readback import FAST

RUN_TOML = """
[sinks.influx]
api = "v2"
url = "http://influx.lab:8086/"
org = "lab"
bucket = "p2p"
token_env = "LAB_INFLUX_TOKEN"
batch_size = 2000
"""


def test_toml_section_becomes_the_config_and_the_token_comes_from_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = InfluxConfig.model_validate(tomllib.loads(RUN_TOML)["sinks"]["influx"])
    assert (config.api, config.url, config.org, config.bucket) == (
        "v2",
        "http://influx.lab:8086",
        "lab",
        "p2p",
    )
    assert config.batch_size == 2000 and config.database_name == "p2p"
    monkeypatch.delenv("LAB_INFLUX_TOKEN", raising=False)
    assert config.token() is None
    monkeypatch.setenv("LAB_INFLUX_TOKEN", "s3cret")
    assert config.token() == "s3cret"


@pytest.mark.parametrize("secret", ["token", "password"])
def test_a_secret_in_the_file_is_refused_with_where_it_belongs(secret: str) -> None:
    with pytest.raises(ValidationError, match=f"sinks.influx.{secret}.*environment variable"):
        InfluxConfig.model_validate({"database": "testbed", secret: "hunter2"})


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"api": "v2", "bucket": "b"}, "needs org"),
        ({"api": "v2"}, "needs org and bucket"),
        ({"api": "v1"}, r"needs database \(--influx-db\)"),
        ({"api": "v3", "database": "d"}, "'v1' or 'v2'"),
        ({"database": "d", "url": "influx.lab:8086"}, "must look like http://host:port"),
        ({"database": "d", "batch_size": 0}, "batch_size"),
        ({"database": "d", "retry_initial_s": 5, "retry_max_s": 1}, "retry_max_s"),
        ({"database": "d", "flush_intervall_s": 1}, "flush_intervall_s"),
    ],
)
def test_bad_settings_name_what_is_wrong(settings: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        InfluxConfig.model_validate(settings)


def test_cli_flags_build_or_override_the_config() -> None:
    assert influx_config_from_cli() is None
    v1 = influx_config_from_cli(url="http://127.0.0.1:8086", database="testbed")
    assert v1 is not None and (v1.api, v1.database) == ("v1", "testbed")
    v2 = influx_config_from_cli(url="http://127.0.0.1:8086", bucket="b", org="o")
    assert v2 is not None and (v2.api, v2.bucket, v2.org) == ("v2", "b", "o")
    from_file = InfluxConfig.model_validate(tomllib.loads(RUN_TOML)["sinks"]["influx"])
    moved = influx_config_from_cli(from_file, url="http://127.0.0.1:9999")
    assert moved is not None
    assert (moved.url, moved.bucket, moved.batch_size) == ("http://127.0.0.1:9999", "p2p", 2000)
    with pytest.raises(ValidationError, match="needs org"):
        influx_config_from_cli(api="v2", bucket="b")


@pytest.fixture(scope="module")
def secured_influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxServer]:
    server = InfluxServer(tmp_path_factory.mktemp("influxd-auth"), admin=("admin", "adminpw"))
    server.start()
    server.create_database("secured")
    try:
        yield server
    finally:
        server.stop()


def test_wrong_password_keeps_points_until_an_operator_fixes_it(
    secured_influxd: InfluxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = InfluxConfig(
        url=secured_influxd.url,
        database="secured",
        username="admin",
        password_env="TEST_INFLUX_PASSWORD",
        **FAST,
    )
    buffer_path = tmp_path / "buffer.sqlite"
    sample = Sample(datetime(2026, 6, 1, tzinfo=UTC), "A", "meter", {"power_kw": 2.5})
    monkeypatch.setenv("TEST_INFLUX_PASSWORD", "wrong")
    sink = InfluxSink(config, buffer_path, run_id="r")
    sink.emit(sample)
    wait_until(lambda: sink.backlog().last_error is not None, 10, "a refused write")
    sink.close(timeout_s=0.2)
    refused = sink.backlog()
    assert refused.pending_points == 1 and refused.dead_letter_points == 0
    assert "HTTP 401" in (refused.last_error or "") and "password" in (refused.last_error or "")
    state = read_buffer_state(buffer_path)
    assert state.pending_points == 1 and "HTTP 401" in (state.last_error or "")
    with pytest.raises(InfluxQueryError, match="authorization failed"):
        influxql_records(config, 'SELECT * FROM "telemetry"')

    monkeypatch.setenv("TEST_INFLUX_PASSWORD", "adminpw")
    sink = InfluxSink(config, buffer_path)
    assert sink.flush(timeout_s=10)
    sink.close()
    assert [row["power_kw"] for row in influxql_records(config, 'SELECT * FROM "telemetry"')] == [
        2.5
    ]
    assert read_buffer_state(buffer_path).last_success_time is not None


def test_stored_settings_come_back_and_a_flag_overrides_one_key() -> None:
    ran = influx_config_from_cli(
        url="http://127.0.0.1:8086", database="lab", skip_database_creation=True
    )
    assert ran is not None
    stored = ran.stored_settings()
    assert stored == {
        "api": "v1",
        "url": "http://127.0.0.1:8086",
        "database": "lab",
        "skip_database_creation": True,
    }
    moved = influx_config_from_cli(InfluxConfig.model_validate(stored), url="http://127.0.0.9:8086")
    assert moved is not None
    assert (moved.url, moved.database, moved.skip_database_creation) == (
        "http://127.0.0.9:8086",
        "lab",
        True,
    )


def test_first_contact_names_bad_credentials_and_a_user_who_may_not_create_the_database(
    secured_influxd: InfluxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import requests

    from testbed.telemetry.target import InfluxTargetError, check_target

    requests.post(
        f"{secured_influxd.url}/query",
        params={"q": "CREATE USER \"lab\" WITH PASSWORD 'labpw'"},
        auth=("admin", "adminpw"),
        timeout=5,
    ).raise_for_status()
    monkeypatch.setenv("TEST_INFLUX_PASSWORD", "wrong")
    admin = InfluxConfig(
        url=secured_influxd.url,
        database="first_contact",
        username="admin",
        password_env="TEST_INFLUX_PASSWORD",
    )
    with pytest.raises(InfluxTargetError, match=r"HTTP 401.*\$TEST_INFLUX_PASSWORD"):
        check_target(admin)
    monkeypatch.delenv("TEST_INFLUX_PASSWORD")
    with pytest.raises(InfluxTargetError, match="TEST_INFLUX_PASSWORD, which is not set"):
        check_target(admin)

    monkeypatch.setenv("TEST_INFLUX_PASSWORD", "labpw")
    lab = admin.model_copy(update={"username": "lab"})
    with pytest.raises(InfluxTargetError, match="requires admin privilege") as refused:
        check_target(lab)
    assert "create it as an administrator" in str(refused.value)
    secured_influxd.create_database("first_contact")
    with pytest.raises(InfluxTargetError, match=r"HTTP 403.*not authorized to write"):
        check_target(lab)

    monkeypatch.setenv("TEST_INFLUX_PASSWORD", "adminpw")
    assert check_target(admin.model_copy(update={"database": "made_by_admin"})).created_database
