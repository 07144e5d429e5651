"""Telemetry to InfluxDB that loses nothing: schema, config, buffered sink, InfluxQL read-back.

from testbed.telemetry import InfluxConfig, InfluxSink

sink = InfluxSink.in_run_dir(InfluxConfig(database="testbed"), run_dir)
sink.emit(doc)            # O(1), never blocks on the network
sink.backlog()            # pending / dead-lettered points, last error, last success
sink.close(timeout_s=5)   # sends what it can, leaves the rest in the file, returns backlog()
check_target(config)      # before a run: one-line InfluxTargetError, a missing v1 database created
"""

from testbed.telemetry.buffer import BufferState, DeadLetter, PointBuffer, read_buffer_state
from testbed.telemetry.config import InfluxConfig, influx_config_from_cli
from testbed.telemetry.query import InfluxQueryError, QuerySeries, influxql_query, influxql_records
from testbed.telemetry.schema import PointFormatter
from testbed.telemetry.sink import Backlog, BufferInUse, InfluxSink
from testbed.telemetry.target import (
    InfluxTargetError,
    InfluxUnreachable,
    TargetReport,
    check_target,
    prepare_target,
)

__all__ = [
    "Backlog",
    "BufferInUse",
    "BufferState",
    "DeadLetter",
    "InfluxConfig",
    "InfluxQueryError",
    "InfluxSink",
    "InfluxTargetError",
    "InfluxUnreachable",
    "PointBuffer",
    "PointFormatter",
    "QuerySeries",
    "TargetReport",
    "check_target",
    "influx_config_from_cli",
    "influxql_query",
    "influxql_records",
    "prepare_target",
    "read_buffer_state",
]
