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
from testbed.telemetry.target import InfluxTargetError, create_v1_database

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
    """`POST {url}/write?db=&rp=&precision=ns` (InfluxDB 1.x and the 1.x-compatible APIs).

    A write answered "database not found" creates the database and is sent again (unless
    `skip_database_creation`), as Telegraf does: a server that was down when the run started, or
    was replaced by an empty one, gets its database when it is back.
    """

    def __init__(self, config: InfluxConfig) -> None:
        self._config = config
        self._url = f"{config.url}/write"
        self._params = {"db": config.database, "precision": "ns"}
        if config.retention_policy:
            self._params["rp"] = config.retention_policy
        self._timeout = (config.connect_timeout_s, config.request_timeout_s)
        self._session = requests.Session()
        self._session.headers["Content-Type"] = "text/plain; charset=utf-8"
        auth, headers = config.http_auth()
        self._session.auth = auth
        self._session.headers.update(headers)

    def send(self, body: bytes) -> None:
        response = self._post(body)
        if (
            response.status_code == 404
            and "database not found" in response.text
            and not self._config.skip_database_creation
        ):
            try:
                create_v1_database(self._config)
            except InfluxTargetError as error:
                raise ServerUnavailable(str(error)) from error
            response = self._post(body)
        if response.status_code // 100 != 2:
            raise _classify(response.status_code, response.text)

    def _post(self, body: bytes) -> requests.Response:
        try:
            return self._session.post(
                self._url, params=self._params, data=body, timeout=self._timeout
            )
        except requests.RequestException as error:
            raise ServerUnavailable(f"{type(error).__name__}: {error}") from error

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

        if config.bucket is None or config.org is None:  # InfluxConfig checks it for api = "v2"
            raise ValueError("an InfluxDB 2.x writer needs the org and the bucket")
        self._precision = WritePrecision.NS
        self._bucket: str = config.bucket
        self._org: str = config.org
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
                bucket=self._bucket,
                org=self._org,
                record=body,
                # influxdb-client annotates the class WritePrecision; its members are plain str
                write_precision=self._precision,  # type: ignore[arg-type]
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
