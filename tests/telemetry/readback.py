"""Reading a run back from the servers, for the assertions."""

from __future__ import annotations

from collections import Counter

from testbed.telemetry import InfluxConfig, influxql_query
from tests.fixtures.victoria import VictoriaServer
from tests.telemetry.stream import COUNTED_FIELDS

# Settings that make outages and recoveries take fractions of a second in tests.
FAST = {
    "batch_size": 500,
    "flush_interval_s": 0.05,
    "retry_initial_s": 0.05,
    "retry_max_s": 0.3,
    "connect_timeout_s": 0.5,
    "request_timeout_s": 1.0,
    "spool_interval_s": 0.01,
}


def count_points(config: InfluxConfig, run_id: str) -> Counter[str]:
    """Points per measurement of one run in InfluxDB (one COUNT per measurement)."""
    counts: Counter[str] = Counter()
    for measurement, fields in COUNTED_FIELDS.items():
        for field in fields:
            statement = f'SELECT COUNT("{field}") FROM "{measurement}" WHERE "run" = \'{run_id}\''
            for series in influxql_query(config, statement):
                counts[measurement] += int(series.values[0][1])
    return counts


def victoria_samples(server: VictoriaServer, run_id: str) -> dict[str, list[int]]:
    """Timestamps (ms) of every exported telemetry series of a run, keyed `metric{peer,device}`."""
    series = server.export(f'{{__name__=~"telemetry_.*",run="{run_id}"}}')
    samples = {}
    for item in series:
        labels = item["metric"]
        samples[f"{labels['__name__']}{{{labels['peer']},{labels['device']}}}"] = item["timestamps"]
    return samples
