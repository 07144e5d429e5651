"""First contact with the InfluxDB target: does it take the run's points, and (v1) create the
database when it is missing, as Telegraf does.

One empty write request to the configured write endpoint answers it all. InfluxDB 1.x checks the
credentials (401/403), the database (404 "database not found") and the retention policy (500
"retention policy not found") before it reads the body, then accepts the empty body (204).
InfluxDB 2.x checks token, org and bucket (401/404) and then answers 400 "writing requires points".
VictoriaMetrics takes anything (204). A 404 without such a message means there is no write API of
that version at the URL: a wrong URL or the other API version.

Every error is one line that names the URL, what is wrong and what to change.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import requests

from testbed.telemetry.config import InfluxConfig
from testbed.telemetry.query import InfluxQueryError, influxql_query

log = logging.getLogger(__name__)

UNAVAILABLE_STATUSES = frozenset({502, 503, 504})
MAX_ANSWER_CHARS = 300


class InfluxTargetError(RuntimeError):
    """The target cannot take the run's points; the message (one line) says why."""


class InfluxUnreachable(InfluxTargetError):
    """Nothing answered at the URL (connection refused, timeout, unknown host, HTTP 502/503/504)."""

    def __init__(self, config: InfluxConfig, reason: str) -> None:
        super().__init__(
            f"InfluxDB at {config.url} does not answer ({reason}); start it or correct the URL "
            "(--influx-url), or run anyway and send the points when it is back with "
            "spool_if_down_at_start = true (--influx-spool-if-down)"
        )
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TargetReport:
    """The outcome of the first contact."""

    config: InfluxConfig
    server_version: str | None = None  # the X-Influxdb-Version header, when the server sent one
    created_database: bool = False
    down_reason: str | None = None  # set when spool_if_down_at_start let a run start without it

    def text(self) -> str:
        """One line for the console."""
        target = self.config.target_text()
        if self.down_reason is not None:
            return (
                f"InfluxDB {target} does not answer ({self.down_reason}); the run keeps its points "
                "in the run directory and sends them when it answers (spool_if_down_at_start)"
            )
        server = f" (server version {self.server_version})" if self.server_version else ""
        created = "; created the database" if self.created_database else ""
        return f"InfluxDB {target}{server}: ready{created}"


def check_target(config: InfluxConfig, *, create_database: bool = True) -> TargetReport:
    """Check that the target takes points; create a missing v1 database unless told not to
    (`create_database=False` or `config.skip_database_creation`).

    Raises InfluxUnreachable when nothing answers, InfluxTargetError for everything else.
    """
    response = _probe_write(config)
    created = False
    if config.api == "v1" and _database_missing(response):
        if config.skip_database_creation or not create_database:
            raise InfluxTargetError(
                f"database {config.database!r} does not exist at {config.url}; create it "
                f"(CREATE DATABASE {quote_identifier(config.database or '')}) or let the "
                "testbed create it (skip_database_creation = false)"
            )
        create_v1_database(config)
        created = True
        response = _probe_write(config)
    _raise_for_answer(config, response)
    return TargetReport(config, _server_version(response), created_database=created)


def prepare_target(config: InfluxConfig) -> TargetReport:
    """`check_target` before a run: a server that does not answer is an error, unless
    `spool_if_down_at_start` lets the run start and keep its points until the server is back."""
    try:
        return check_target(config)
    except InfluxUnreachable as error:
        if not config.spool_if_down_at_start:
            raise
        return TargetReport(config, down_reason=error.reason)


def create_v1_database(config: InfluxConfig) -> None:
    """`CREATE DATABASE` (a no-op when it exists). Raises InfluxTargetError with the server's
    answer (e.g. a user without admin privilege, or a server without InfluxQL DDL)."""
    name = config.database or ""
    statement = f"CREATE DATABASE {quote_identifier(name)}"
    try:
        influxql_query(config, statement, database=name, epoch=None)
    except InfluxQueryError as error:
        raise InfluxTargetError(
            f"database {name!r} does not exist at {config.url} and creating it failed "
            f"({_one_line(str(error))}); create it as an administrator ({statement})"
        ) from None
    log.info("created InfluxDB database %r at %s", name, config.url)


def quote_identifier(name: str) -> str:
    """An InfluxQL double-quoted identifier."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


# -- the probe -------------------------------------------------------------------------------------


def _write_endpoint(config: InfluxConfig) -> tuple[str, dict[str, str]]:
    if config.api == "v2":
        return "/api/v2/write", {
            "org": config.org or "",
            "bucket": config.bucket or "",
            "precision": "ns",
        }
    params = {"db": config.database or "", "precision": "ns"}
    if config.retention_policy:
        params["rp"] = config.retention_policy
    return "/write", params


def _probe_write(config: InfluxConfig) -> requests.Response:
    path, params = _write_endpoint(config)
    auth, headers = config.http_auth()
    if config.api == "v2":  # influxdb-client sends the token header even when it is empty
        headers = {"Authorization": f"Token {config.token() or ''}"}
        auth = None
    headers["Content-Type"] = "text/plain; charset=utf-8"
    try:
        return requests.post(
            f"{config.url}{path}",
            params=params,
            data=b"",
            headers=headers,
            auth=auth,
            timeout=(config.connect_timeout_s, config.request_timeout_s),
        )
    except requests.exceptions.SSLError as error:
        raise InfluxTargetError(
            f"TLS with {config.url} failed ({_one_line(str(error))}); check http:// or https://"
        ) from None
    except requests.exceptions.ConnectTimeout:
        raise InfluxUnreachable(
            config, f"no connection within {config.connect_timeout_s:g} s"
        ) from None
    except requests.exceptions.ReadTimeout:
        reason = f"no answer within {config.request_timeout_s:g} s"
        raise InfluxUnreachable(config, reason) from None
    except requests.exceptions.ConnectionError as error:
        raise InfluxUnreachable(config, _connection_reason(error)) from None
    except requests.RequestException as error:
        raise InfluxTargetError(f"cannot reach {config.url}: {_one_line(str(error))}") from None


def _connection_reason(error: requests.exceptions.ConnectionError) -> str:
    text = str(error)
    if "Connection refused" in text:
        return "connection refused"
    if "NameResolution" in text or "Name or service not known" in text:
        return "host name not found"
    if "No route to host" in text or "Network is unreachable" in text:
        return "no route to the host"
    return _one_line(text)


def _answer(response: requests.Response) -> str:
    """The server's message: `error` (1.x) or `message` (2.x) of a JSON body, else the text."""
    text = response.text
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        text = str(body.get("error") or body.get("message") or text)
    return _one_line(text) or response.reason or ""


def _one_line(text: str) -> str:
    return " ".join(text.split())[:MAX_ANSWER_CHARS]


def _server_version(response: requests.Response) -> str | None:
    version = response.headers.get("X-Influxdb-Version")
    return version.removesuffix("~rc0") if version else None


def _database_missing(response: requests.Response) -> bool:
    return response.status_code == 404 and "database not found" in response.text


def _raise_for_answer(config: InfluxConfig, response: requests.Response) -> None:
    """Nothing when the probe got as far as the points; else the error that says why not."""
    status = response.status_code
    if status // 100 == 2 or status == 400:  # 400: the server objects to the empty body only
        return
    answer = _answer(response)
    path, _ = _write_endpoint(config)
    where = (
        f"bucket {config.bucket!r} of org {config.org!r}"
        if config.api == "v2"
        else f"database {config.database!r}"
    )
    if status in UNAVAILABLE_STATUSES:
        raise InfluxUnreachable(config, f"HTTP {status}: {answer}")
    if status == 401:
        raise InfluxTargetError(
            f"InfluxDB at {config.url} refused the credentials (HTTP 401: {answer}); "
            f"{_credentials_hint(config)}"
        )
    if status == 403:
        raise InfluxTargetError(
            f"InfluxDB at {config.url} does not let this {_credential_name(config)} write to "
            f"{where} (HTTP 403: {answer}); grant it write permission or use another one"
        )
    if status == 404 and "not found" in answer and "page not found" not in answer:
        raise InfluxTargetError(
            f"{where} not found at {config.url} (HTTP 404: {answer}); create it first"
        )
    if status == 404:
        raise InfluxTargetError(_no_write_api(config, response, path, answer))
    if "retention policy not found" in answer:
        raise InfluxTargetError(
            f"retention policy {config.retention_policy!r} does not exist in database "
            f"{config.database!r} at {config.url}; create it or remove retention_policy"
        )
    raise InfluxTargetError(
        f"InfluxDB at {config.url} answered POST {path} with HTTP {status}: {answer}"
    )


def _no_write_api(config: InfluxConfig, response: requests.Response, path: str, answer: str) -> str:
    version = _server_version(response)
    if version and config.api == "v2" and version.startswith("1."):
        return (
            f"InfluxDB {version} at {config.url} has no v2 write API (POST {path}: HTTP 404); "
            "InfluxDB 1.x takes api = 'v1' (--influx-api v1 --influx-db NAME)"
        )
    server = f"InfluxDB {version}" if version else "the server"
    return (
        f"{server} at {config.url} has no {config.api} write API (POST {path}: HTTP 404 {answer}); "
        "check the URL (scheme, host, port, no path) and the API version: 'v1' writes to /write "
        "(InfluxDB 1.x, VictoriaMetrics, the 1.x API of 2.x/3.x), 'v2' to /api/v2/write "
        "(InfluxDB 2.x/3.x)"
    )


def _credential_name(config: InfluxConfig) -> str:
    return "user" if config.api == "v1" and config.username else "token"


def _credentials_hint(config: InfluxConfig) -> str:
    if config.api == "v1" and config.username:
        unset = "" if config.password() else ", which is not set"
        return (
            f"check username {config.username!r} and the password in ${config.password_env}{unset}"
        )
    if config.api == "v1" and not config.token():
        return (
            f"the server wants a user: set username and put the password in ${config.password_env}"
        )
    unset = "" if config.token() else ", which is not set"
    return f"check the token in ${config.token_env}{unset}"
