"""The two write paths: v1 line protocol POSTed to `/write`, and influxdb-client's v2 write API.

A writer sends one batch synchronously and says what happened by returning (accepted) or raising:
`PointsRejected` when the server refuses the points themselves (HTTP 400, 413, 422: retrying the
same bytes cannot help) and `ServerUnavailable` for everything worth retrying (connection refused,
timeouts, 5xx, 429, and also 401/403/404, which an operator fixes without touching the points).
"""

from __future__ import annotations

from typing import Protocol

import requests
import urllib3

from testbed.telemetry.config import InfluxConfig

REJECTING_STATUSES = frozenset({400, 413, 422})
MAX_MESSAGE_CHARS = 2000


class ServerUnavailable(Exception):
    """The batch was not stored; send it again later."""


class PointsRejected(Exception):
    """The server refused (some of) the points as malformed; `message` is its answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class PointWriter(Protocol):
    def send(self, body: bytes) -> None:
        """Write newline-separated line-protocol points (nanosecond timestamps)."""
        ...

    def close(self) -> None: ...


def _classify(status: int, message: str) -> Exception:
    message = message.strip()[:MAX_MESSAGE_CHARS]
    if status in REJECTING_STATUSES:
        return PointsRejected(status, message)
    hint = ""
    if status in (401, 403):
        hint = " (check the token/password environment variable)"
    elif status == 404:
        hint = " (database/bucket missing or wrong API version)"
    return ServerUnavailable(f"HTTP {status}{hint}: {message}")


class V1LineWriter:
    """`POST {url}/write?db=&rp=&precision=ns` (InfluxDB 1.x and the 1.x-compatible APIs)."""

    def __init__(self, config: InfluxConfig) -> None:
        self._url = f"{config.url}/write"
        self._params = {"db": config.database, "precision": "ns"}
        if config.retention_policy:
            self._params["rp"] = config.retention_policy
        self._timeout = (config.connect_timeout_s, config.request_timeout_s)
        self._session = requests.Session()
        self._session.headers["Content-Type"] = "text/plain; charset=utf-8"
        password = config.password()
        if config.username:
            self._session.auth = (config.username, password or "")
        elif config.token():
            self._session.headers["Authorization"] = f"Token {config.token()}"

    def send(self, body: bytes) -> None:
        try:
            response = self._session.post(
                self._url, params=self._params, data=body, timeout=self._timeout
            )
        except requests.RequestException as error:
            raise ServerUnavailable(f"{type(error).__name__}: {error}") from error
        if response.status_code // 100 != 2:
            raise _classify(response.status_code, response.text)

    def close(self) -> None:
        self._session.close()


class V2ClientWriter:
    """influxdb-client's write API in SYNCHRONOUS mode: one call per batch, no client-side retries.

    (Its batching mode keeps points in memory only and drops them after its retries; the sink's
    buffer file does the batching and retrying instead.)
    """

    def __init__(self, config: InfluxConfig) -> None:
        from influxdb_client import InfluxDBClient, WritePrecision
        from influxdb_client.client.write_api import SYNCHRONOUS

        self._precision = WritePrecision.NS
        self._bucket = config.bucket
        self._org = config.org
        self._client = InfluxDBClient(
            url=config.url,
            token=config.token() or "",
            org=config.org,
            timeout=(int(config.connect_timeout_s * 1000), int(config.request_timeout_s * 1000)),
            retries=False,
        )
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)

    def send(self, body: bytes) -> None:
        from influxdb_client.client.exceptions import InfluxDBError
        from influxdb_client.rest import ApiException

        try:
            self._write_api.write(
                bucket=self._bucket, org=self._org, record=body, write_precision=self._precision
            )
        except ApiException as error:
            text = (
                error.body.decode(errors="replace") if isinstance(error.body, bytes) else error.body
            )
            raise _classify(error.status or 0, text or str(error.reason)) from error
        except (urllib3.exceptions.HTTPError, OSError, InfluxDBError) as error:
            raise ServerUnavailable(f"{type(error).__name__}: {error}") from error

    def close(self) -> None:
        self._write_api.close()
        self._client.close()


def make_writer(config: InfluxConfig) -> PointWriter:
    """The writer for the configured API."""
    return V2ClientWriter(config) if config.api == "v2" else V1LineWriter(config)
