"""Where the live page's samples come from: the run store (default) or InfluxDB.

Both give the same DataFrame shape as `RunReader.samples`: time_s, time (UTC), peer, device, then
one column per sample field. InfluxDB is read with `testbed.telemetry`'s InfluxQL helper from the
`telemetry` measurement (tags run, peer, device; one field per Sample value).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

import pandas as pd

from testbed.runstore import RunReader

TimeBound = datetime | float | None


class TelemetrySource(Protocol):
    """Samples of one run."""

    label: str

    def samples(
        self,
        *,
        peer: str | None = None,
        device: str | None = None,
        start: TimeBound = None,
        end: TimeBound = None,
        fields: Sequence[str] | None = None,
        every_s: float | None = None,
    ) -> pd.DataFrame: ...

    def latest_samples(self) -> pd.DataFrame: ...


class RunStoreSource:
    """Samples from the run directory; `fetch(name, **kwargs)` may add caching."""

    label = "run store"

    def __init__(self, reader: RunReader, fetch: Callable[..., pd.DataFrame] | None = None):
        self._fetch = fetch or (lambda name, **kwargs: getattr(reader, name)(**kwargs))

    def samples(self, **kwargs: Any) -> pd.DataFrame:
        return self._fetch("samples", **kwargs)

    def latest_samples(self) -> pd.DataFrame:
        return self._fetch("latest_samples")


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _ns(bound: TimeBound) -> int | None:
    if bound is None:
        return None
    seconds = bound.timestamp() if isinstance(bound, datetime) else float(bound)
    return round(seconds * 1e9)


class InfluxSource:
    """Samples of one run from InfluxDB through `testbed.telemetry.query.influxql_records`."""

    label = "InfluxDB"

    def __init__(self, config: Any, run_id: str, measurement: str = "telemetry") -> None:
        from testbed.telemetry.query import influxql_records

        self._records = influxql_records
        self._config = config
        self._run_id = run_id
        self._measurement = measurement

    def _where(self, peer: str | None, device: str | None, start: TimeBound, end: TimeBound):
        clauses = [f'"run" = {_quote(self._run_id)}']
        if peer is not None:
            clauses.append(f'"peer" = {_quote(peer)}')
        if device is not None:
            clauses.append(f'"device" = {_quote(device)}')
        if (lo := _ns(start)) is not None:
            clauses.append(f"time >= {lo}")
        if (hi := _ns(end)) is not None:
            clauses.append(f"time < {hi}")
        return " AND ".join(clauses)

    def samples(
        self,
        *,
        peer: str | None = None,
        device: str | None = None,
        start: TimeBound = None,
        end: TimeBound = None,
        fields: Sequence[str] | None = None,
        every_s: float | None = None,
    ) -> pd.DataFrame:
        where = self._where(peer, device, start, end)
        if every_s:
            chosen = ", ".join(f'MEAN("{f}") AS "{f}"' for f in fields) if fields else "MEAN(*)"
            statement = (
                f'SELECT {chosen} FROM "{self._measurement}" WHERE {where} '
                f'GROUP BY time({max(1, round(every_s))}s), "peer", "device" fill(none)'
            )
        else:
            chosen = ", ".join(f'"{f}"' for f in fields) if fields else "*"
            statement = (
                f'SELECT {chosen} FROM "{self._measurement}" WHERE {where} '
                'GROUP BY "peer", "device"'
            )
        rows = self._records(self._config, statement, epoch="ns")
        return self._frame(rows, "mean_" if every_s and not fields else None)

    def latest_samples(self) -> pd.DataFrame:
        where = self._where(None, None, None, None)
        statement = (
            f'SELECT * FROM "{self._measurement}" WHERE {where} '
            'GROUP BY "peer", "device" ORDER BY time DESC LIMIT 1'
        )
        return self._frame(self._records(self._config, statement, epoch="ns"))

    @staticmethod
    def _frame(rows: list[dict[str, Any]], prefix: str | None = None) -> pd.DataFrame:
        """Rows of a query as the run store's sample frame; `prefix` (`mean_`) is taken off."""
        frame = pd.DataFrame(rows)
        if frame.empty:
            return pd.DataFrame(columns=["time_s", "time", "peer", "device"])
        if prefix:
            frame = frame.rename(
                columns={c: c[len(prefix) :] for c in frame.columns if c.startswith(prefix)}
            )
        drop = [c for c in ("run", "seq") if c in frame]
        frame = frame.drop(columns=drop)
        frame.insert(0, "time_s", frame.pop("time") / 1e9)
        frame.insert(1, "time", pd.to_datetime(frame["time_s"], unit="s", utc=True))
        columns = ["time_s", "time", "peer", "device"]
        rest = [c for c in frame.columns if c not in columns]
        return (
            frame[columns + rest].sort_values(["time_s", "peer", "device"]).reset_index(drop=True)
        )


def influx_source(url: str, database: str | None, run_id: str) -> TelemetrySource:
    """An InfluxDB source for `run_id` (needs `testbed.telemetry`)."""
    from testbed.telemetry.config import InfluxConfig

    settings: dict[str, Any] = {"api": "v1", "url": url}
    if database:
        settings["database"] = database
    return InfluxSource(InfluxConfig(**settings), run_id)
