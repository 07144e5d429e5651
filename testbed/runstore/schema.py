"""What a run directory holds: its file names, format version, statuses and the SQLite schema.

Every time in the database is a REAL of unix seconds (UTC); `unix_s` and `to_utc` convert.
"""

from __future__ import annotations

import dataclasses
import math
import re
from datetime import UTC, datetime

import pandas as pd

from testbed.documents import Interlock, Settlement

FORMAT_VERSION = 1
CONFIG_FILE = "config.toml"
META_FILE = "meta.json"
DB_FILE = "run.sqlite"
SUMMARY_FILE = "summary.json"
STATUSES = ("running", "finished", "interrupted", "failed")

FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SAMPLE_KEYS = ("time_s", "peer", "device")
SETTLEMENT_FIELDS = tuple(f.name for f in dataclasses.fields(Settlement))
INTERLOCK_FIELDS = tuple(f.name for f in dataclasses.fields(Interlock))
# one agent_plans row per horizon step: the forecast's mean, then the plan (generator convention)
PLAN_FIELDS = (
    "forecast_load_kw",
    "forecast_pv_kw",
    "load_kw",
    "pv_kw",
    "battery_kw",
    "ev_kw",
    "net_kw",
    "soc_pct",
    "ev_soc_pct",
    "ev_plugged",
    "value_per_kwh",
)

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS format_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS samples (time_s REAL NOT NULL, peer TEXT NOT NULL, device TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS samples_time ON samples (time_s);
CREATE TABLE IF NOT EXISTS orders (
    interval_start REAL NOT NULL, order_id TEXT NOT NULL, peer TEXT NOT NULL, side TEXT NOT NULL,
    quantity_kwh REAL NOT NULL, price REAL NOT NULL, time REAL, accepted INTEGER NOT NULL,
    reason TEXT
);
CREATE TABLE IF NOT EXISTS trades (
    interval_start REAL NOT NULL, buy_order_id TEXT, sell_order_id TEXT, buyer TEXT NOT NULL,
    seller TEXT NOT NULL, quantity_kwh REAL NOT NULL, price REAL NOT NULL, seller_price REAL,
    network_charge REAL
);
CREATE TABLE IF NOT EXISTS clearings (
    interval_start REAL NOT NULL, mechanism TEXT NOT NULL, clearing_price REAL,
    volume_kwh REAL NOT NULL, n_trades INTEGER NOT NULL, report_json TEXT
);
CREATE TABLE IF NOT EXISTS settlements (
    interval_start REAL NOT NULL, peer TEXT NOT NULL,
    {", ".join(f"{name} REAL" for name in SETTLEMENT_FIELDS[2:])}
);
CREATE TABLE IF NOT EXISTS interlocks (
    time REAL NOT NULL, peer TEXT NOT NULL, device TEXT NOT NULL, kind TEXT NOT NULL,
    reason TEXT, action TEXT
);
CREATE TABLE IF NOT EXISTS agent_plans (
    interval_start REAL NOT NULL, peer TEXT NOT NULL, agent TEXT NOT NULL, step INTEGER NOT NULL,
    step_start REAL NOT NULL, {", ".join(f"{name} REAL" for name in PLAN_FIELDS)},
    fallback_reason TEXT
);
"""


class RunDirError(Exception):
    """A run directory that cannot be read: missing, partial, or written by another format."""


def finite_or_none(value: float | None) -> float | None:
    """A finite float, or None (NULL) for a missing or non-finite value."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def unix_s(moment: datetime, what: str) -> float:
    """Unix seconds of a timezone-aware datetime; `what` names it in the error for a naive one."""
    if moment.tzinfo is None:
        raise ValueError(f"{what} = {moment.isoformat()} has no timezone; give a UTC datetime")
    return moment.timestamp()


def iso_utc(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment is not None else None


def parse_time(text: object) -> datetime | None:
    return datetime.fromisoformat(text) if isinstance(text, str) else None


def to_utc(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """The frame with `columns` of unix seconds turned into UTC timestamps."""
    for column in columns:
        if column in frame:
            frame[column] = pd.to_datetime(frame[column], unit="s", utc=True)
    return frame


def bound_s(moment: datetime | float | None, what: str) -> float | None:
    """A query bound (datetime, pandas Timestamp or unix seconds) as unix seconds."""
    if moment is None or isinstance(moment, int | float):
        return moment
    if isinstance(moment, pd.Timestamp):
        return unix_s(moment.to_pydatetime(), what)
    return unix_s(moment, what)
