"""Configuration of the InfluxDB sink (`[sinks.influx]` in the run's TOML file, or CLI flags).

Secrets never live in the file: the token (v2) and the password (v1) are read from the environment
variables the config names.
"""

from __future__ import annotations

import os
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

SECRET_KEYS = ("token", "password", "api_token")


class InfluxConfig(BaseModel):
    """Where and how the InfluxDB sink writes.

    `api = "v1"`: line protocol POSTed to `/write?db=&rp=` (InfluxDB 1.x, the 1.x-compatible API of
    2.x/3.x, VictoriaMetrics). `api = "v2"`: influxdb-client's write API to `/api/v2/write`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    api: Literal["v1", "v2"] = "v1"
    url: str = "http://127.0.0.1:8086"
    # v2
    org: str | None = None
    bucket: str | None = None
    token_env: str = "INFLUX_TOKEN"
    # v1
    database: str | None = None
    retention_policy: str | None = None
    username: str | None = None
    password_env: str = "INFLUX_PASSWORD"
    # batching, timing, local buffer
    batch_size: int = Field(5000, ge=1, le=100_000, description="points per write request")
    flush_interval_s: float = Field(
        1.0, gt=0, le=3600, description="longest wait before a partial batch is sent"
    )
    connect_timeout_s: float = Field(3.0, gt=0, le=600)
    request_timeout_s: float = Field(10.0, gt=0, le=600, description="read timeout per request")
    retry_initial_s: float = Field(0.5, gt=0, le=600, description="first wait after a failure")
    retry_max_s: float = Field(10.0, gt=0, le=3600, description="longest wait between retries")
    spool_interval_s: float = Field(
        0.1, gt=0, le=5, description="how often queued documents are written to the buffer file"
    )
    buffer_file: str = Field(
        "influx-buffer.sqlite", description="buffer file, relative to the run directory"
    )
    # first contact
    skip_database_creation: bool = Field(
        False, description="v1: never CREATE DATABASE (as Telegraf's option of the same name)"
    )
    spool_if_down_at_start: bool = Field(
        False,
        description="start the run even when the server does not answer at start, keeping the "
        "points in the buffer file until it does (default: refuse to start)",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_secrets_in_file(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in SECRET_KEYS:
                if key in data:
                    raise ValueError(
                        f"sinks.influx.{key}: secrets are not read from the config file; put it "
                        f"in an environment variable and name the variable in "
                        f"{'password_env' if key == 'password' else 'token_env'}"
                    )
        return data

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"url {url!r} must look like http://host:port")
        return url.rstrip("/")

    @model_validator(mode="after")
    def _target_named(self) -> InfluxConfig:
        if self.api == "v2":
            missing = [name for name in ("org", "bucket") if not getattr(self, name)]
            if missing:
                raise ValueError(
                    f"api = 'v2' needs {' and '.join(missing)} (--influx-org, --influx-bucket)"
                )
        elif not self.database:
            raise ValueError("api = 'v1' needs database (--influx-db)")
        if self.retry_max_s < self.retry_initial_s:
            raise ValueError(
                f"retry_max_s ({self.retry_max_s}) must be at least "
                f"retry_initial_s ({self.retry_initial_s})"
            )
        return self

    @property
    def database_name(self) -> str:
        """The database InfluxQL queries use: the v1 database, or the v2 bucket (DBRP mapping)."""
        name = self.database if self.api == "v1" else self.bucket
        if name is None:  # _target_named requires it
            raise ValueError(f"api = {self.api!r} without its database or bucket name")
        return name

    def token(self) -> str | None:
        """The API token from the environment variable `token_env`, or None when it is unset."""
        return os.environ.get(self.token_env) or None

    def password(self) -> str | None:
        """The v1 password from the environment variable `password_env`, or None when unset."""
        return os.environ.get(self.password_env) or None

    def http_auth(self) -> tuple[tuple[str, str] | None, dict[str, str]]:
        """(basic auth, headers) for a request: v1 user and password, else the token if set."""
        if self.api == "v1" and self.username:
            return (self.username, self.password() or ""), {}
        token = self.token()
        return None, ({"Authorization": f"Token {token}"} if token else {})

    def target_text(self) -> str:
        """Where the points go, for messages: `v1 http://host:8086 database 'testbed'`."""
        if self.api == "v1":
            where = f"database {self.database!r}"
            if self.retention_policy:
                where += f" (retention policy {self.retention_policy!r})"
        else:
            where = f"bucket {self.bucket!r} of org {self.org!r}"
        return f"{self.api} {self.url} {where}"

    def stored_settings(self) -> dict[str, Any]:
        """The settings a run directory keeps in its config.toml (`[sinks.influx]`): the keys
        that differ from the defaults, and `api` and `url` always."""
        settings = self.model_dump(mode="json", exclude_defaults=True)
        return {"api": self.api, "url": self.url, **settings}


def influx_config_from_cli(
    base: InfluxConfig | None = None,
    *,
    url: str | None = None,
    api: str | None = None,
    database: str | None = None,
    bucket: str | None = None,
    org: str | None = None,
    skip_database_creation: bool | None = None,
    spool_if_down_at_start: bool | None = None,
) -> InfluxConfig | None:
    """The config from `--influx-url/--influx-api/--influx-db/--influx-bucket/--influx-org` (and
    `--influx-skip-database-creation`, `--influx-spool-if-down`).

    Flags override single keys of the TOML file's `[sinks.influx]` or of a run's stored settings
    (`base`). Without `base` and without flags there is no InfluxDB sink (None). Without
    `--influx-api`, giving a bucket or an org selects v2.
    Raises pydantic.ValidationError naming the flag/key that is wrong or missing.
    """
    flags = {
        "url": url,
        "api": api,
        "database": database,
        "bucket": bucket,
        "org": org,
        "skip_database_creation": skip_database_creation,
        "spool_if_down_at_start": spool_if_down_at_start,
    }
    given = {key: value for key, value in flags.items() if value is not None}
    if base is None and not given:
        return None
    merged = base.model_dump() if base is not None else {}
    if "api" not in given and base is None and ("bucket" in given or "org" in given):
        given["api"] = "v2"
    merged.update(given)
    return InfluxConfig.model_validate(merged)


def describe_settings_error(error: ValidationError) -> str:
    """A pydantic error of the InfluxDB settings as one line: `key: what is wrong; ...`."""
    problems = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key (check its spelling)"
        problems.append(f"{key}: {message}" if key else message)
    return "; ".join(problems)
