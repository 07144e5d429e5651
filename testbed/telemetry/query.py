"""Reading back with InfluxQL on `/query`: InfluxDB 1.x, 2.x (1.x compatibility API, the bucket
as database) and 3.x answer it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import requests

from testbed.telemetry.config import InfluxConfig

READ_ONLY_PREFIXES = ("SELECT", "SHOW", "EXPLAIN")


class InfluxQueryError(RuntimeError):
    """The server refused the query or could not be reached."""


@dataclass(frozen=True, slots=True)
class QuerySeries:
    """One series of a query result: its name, its GROUP BY tags, its columns and rows."""

    name: str
    columns: list[str]
    values: list[list[Any]]
    tags: dict[str, str] = field(default_factory=dict)

    def records(self) -> list[dict[str, Any]]:
        """The rows as dicts, with the series' GROUP BY tags added to each."""
        return [{**self.tags, **dict(zip(self.columns, row, strict=True))} for row in self.values]


def influxql_query(
    config: InfluxConfig,
    statement: str,
    *,
    database: str | None = None,
    epoch: str | None = "ns",
    timeout_s: float | None = None,
) -> list[QuerySeries]:
    """Run InfluxQL statement(s) and return every series of every result.

    Time columns are integers in `epoch` units (ns, u, ms, s) or RFC 3339 strings with `epoch=None`.
    Read statements go as GET, others (CREATE DATABASE, DROP ...) as POST. Raises InfluxQueryError
    with the server's message.
    """
    params: dict[str, str] = {"q": statement, "db": database or config.database_name}
    if epoch:
        params["epoch"] = epoch
    if config.api == "v1" and config.retention_policy:
        params["rp"] = config.retention_policy
    auth, headers = config.http_auth()
    headers["Accept"] = "application/json"
    method = "GET" if statement.lstrip().upper().startswith(READ_ONLY_PREFIXES) else "POST"
    timeout = (config.connect_timeout_s, timeout_s or config.request_timeout_s)
    try:
        response = requests.request(
            method,
            f"{config.url}/query",
            params=params,
            headers=headers,
            auth=auth,
            timeout=timeout,
        )
    except requests.RequestException as error:
        raise InfluxQueryError(f"{config.url}/query unreachable: {error}") from error
    try:
        body = response.json()
    except ValueError:
        raise InfluxQueryError(
            f"HTTP {response.status_code} from {config.url}/query: {response.text[:500]}"
        ) from None
    if response.status_code // 100 != 2 or "error" in body:
        raise InfluxQueryError(
            f"HTTP {response.status_code}: {body.get('error', response.text[:500])}"
        )
    series: list[QuerySeries] = []
    for result in body.get("results", []):
        if "error" in result:
            raise InfluxQueryError(f"{statement!r}: {result['error']}")
        for item in result.get("series", []):
            series.append(
                QuerySeries(
                    name=item.get("name", ""),
                    columns=item.get("columns", []),
                    values=item.get("values", []),
                    tags=item.get("tags", {}) or {},
                )
            )
    return series


def influxql_records(config: InfluxConfig, statement: str, **kwargs: Any) -> list[dict[str, Any]]:
    """Every row of every series of `statement`, as dicts (see `influxql_query`)."""
    return [
        record for item in influxql_query(config, statement, **kwargs) for record in item.records()
    ]
