"""An experiment with InfluxDB configured leaves in the database exactly what it recorded."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from labspec.plant_control import SyncPlantControl
from testbed.config import load_config, parse_config
from testbed.experiment import run_experiment, with_plant_endpoints
from testbed.runstore import RunReader
from testbed.telemetry.config import InfluxConfig
from tests.fixtures.ports import free_port

REPO = Path(__file__).resolve().parents[2]


def count(server, database: str, measurement: str, field: str) -> int:
    answer = server.query(f'SELECT count("{field}") FROM "{measurement}"', database)
    series = answer["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


def test_every_sample_trade_and_settlement_reaches_influxdb(fresh_plant, influxd_server, tmp_path):
    data = load_config(REPO / "configs" / "emulated.toml").model_dump(mode="json")
    data["experiment"]["hours"] = 0.2
    data["market"].update(interval_s=240.0, gate_closure_s=30.0)
    config = with_plant_endpoints(parse_config(data), fresh_plant)
    with SyncPlantControl.from_endpoints(fresh_plant) as control:
        control.request("reset")
    influxd_server.start()
    influx_database = f"never_seen_{uuid.uuid4().hex[:8]}"  # the run creates it
    influx = InfluxConfig(api="v1", url=influxd_server.url, database=influx_database)

    result = asyncio.run(run_experiment(config, tmp_path / "run", influx=influx))

    assert result.finished.status == "finished"
    stored = RunReader(result.run_dir).config()["sinks"]["influx"]
    assert (stored["url"], stored["database"]) == (influxd_server.url, influx_database)
    assert result.influx_backlog.drained
    assert result.influx_backlog.pending_points == 0
    assert result.influx_backlog.dead_letter_points == 0
    reader = RunReader(result.run_dir)
    samples = reader.samples()
    meters = samples[samples["device"] == "meter"]
    assert count(influxd_server, influx_database, "telemetry", "power_kw") == len(
        samples.dropna(subset=["power_kw"])
    )
    assert count(influxd_server, influx_database, "telemetry", "import_kwh") == len(meters)
    settlements = reader.settlements()
    assert count(influxd_server, influx_database, "settlement", "bill") == len(settlements)
    assert count(influxd_server, influx_database, "order", "quantity_kwh") == len(reader.orders())
    assert count(influxd_server, influx_database, "trade", "quantity_kwh") == len(reader.trades())
    assert count(influxd_server, influx_database, "interlock", "count") == len(reader.interlocks())
    # each interval's decision of each agent: its first plan step
    plans = reader.agent_plans(first_step_only=True)
    assert len(plans) == 3 * len(reader.clearings())
    assert count(influxd_server, influx_database, "agent_plan", "net_kw") == len(plans)
    # the bills add up to the same money in both places
    answer = influxd_server.query('SELECT sum("bill") FROM "settlement"', influx_database)
    assert abs(answer["results"][0]["series"][0]["values"][0][1] - settlements["bill"].sum()) < 1e-6


def test_backlog_of_a_run_made_while_influxdb_was_unreachable_is_replayed_with_only_a_url(
    fresh_plant, influxd_server, tmp_path
):
    """The run's InfluxDB address was wrong (nothing listens there) and it ran anyway with
    spool_if_down_at_start; `replay --influx-url` alone sends its backlog to a server that has
    never seen the run's database, which the run's stored settings name."""
    from typer.testing import CliRunner

    from testbed.cli import app

    data = load_config(REPO / "configs" / "emulated.toml").model_dump(mode="json")
    data["experiment"]["hours"] = 0.1
    data["market"].update(interval_s=180.0, gate_closure_s=30.0)
    config = with_plant_endpoints(parse_config(data), fresh_plant)
    database = f"never_seen_{uuid.uuid4().hex[:8]}"
    influx = InfluxConfig(
        api="v1",
        url=f"http://127.0.0.1:{free_port()}",
        database=database,
        retry_max_s=0.5,
        spool_if_down_at_start=True,
    )
    result = asyncio.run(run_experiment(config, tmp_path / "run", influx=influx))
    assert result.finished.status == "finished"
    pending = result.influx_backlog.pending_points
    assert pending > 0

    runner = CliRunner()
    status = runner.invoke(app, ["telemetry", "status", str(result.run_dir)])
    assert f"{pending} points pending" in status.output
    assert f"target: v1 {influx.url} database '{database}'" in status.output
    influxd_server.start()
    replay = runner.invoke(
        app, ["telemetry", "replay", str(result.run_dir), "--influx-url", influxd_server.url]
    )
    assert replay.exit_code == 0, replay.output
    assert "created the database" in replay.output
    assert f"{pending} points sent, 0 pending" in replay.output
    samples = RunReader(result.run_dir).samples()
    assert count(influxd_server, database, "telemetry", "power_kw") == len(
        samples.dropna(subset=["power_kw"])
    )
