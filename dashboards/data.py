"""What the pages read: the app's settings, the selected run and cached tables of the run store.

Every page goes through `page_guard()` and `current_run()`, so a missing, partial or older run
directory shows a message on the page instead of a stack trace.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
import streamlit as st

from dashboards.sources import RunStoreSource, TelemetrySource, influx_source
from labspec.site import SITE_TIMEZONE
from testbed.runstore import RunDirError, RunListing, RunReader, list_runs, summarize

RUNS_ENV = "TESTBED_RUNS_DIR"
TZ_ENV = "TESTBED_DASHBOARD_TZ"
UTC_ZONE = ZoneInfo("UTC")
DEFAULT_REFRESH_S = 2.0


@dataclass(frozen=True, slots=True)
class Settings:
    """How the dashboard was started (`-- --runs DIR --refresh-s N` or the environment)."""

    runs_root: Path
    refresh_s: float
    influx_url: str | None
    influx_db: str | None
    display_tz: str | None = None  # None: the site's zone from each run's config


def parse_settings(argv: list[str], environ: dict[str, str] | os._Environ) -> Settings:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--runs", type=Path, default=None)
    parser.add_argument("--refresh-s", type=float, default=None)
    parser.add_argument("--influx-url", default=None)
    parser.add_argument("--influx-db", default=None)
    parser.add_argument("--tz", default=None)
    args, _ = parser.parse_known_args(argv)
    runs = args.runs or Path(environ.get(RUNS_ENV, "runs"))
    refresh_s = args.refresh_s or float(
        environ.get("TESTBED_DASHBOARD_REFRESH_S", DEFAULT_REFRESH_S)
    )
    return Settings(
        runs_root=runs.expanduser().resolve(),
        refresh_s=max(0.2, refresh_s),
        influx_url=args.influx_url or environ.get("TESTBED_INFLUX_URL"),
        influx_db=args.influx_db or environ.get("TESTBED_INFLUX_DB"),
        display_tz=args.tz or environ.get(TZ_ENV) or None,
    )


def settings() -> Settings:
    return parse_settings(sys.argv[1:], os.environ)


# --------------------------------------------------------------------------------------------
# Guarding pages


@contextlib.contextmanager
def page_guard() -> Iterator[None]:
    """Turn any error while drawing a page into a message (Streamlit's own control flow passes)."""
    try:
        yield
    except RunDirError as error:
        st.error(f"This run cannot be shown: {error}")
    except Exception as error:  # a page must never show a stack trace
        st.error(f"This page could not be drawn: {type(error).__name__}: {error}")


# --------------------------------------------------------------------------------------------
# Choosing a run


def _status(item: RunListing) -> str:
    if item.reader is None:
        return "unreadable"
    if item.reader.meta.status == "running" and not item.reader.writer_alive():
        return "stopped without finishing"
    return item.reader.meta.status


def listings(root: Path) -> list[RunListing]:
    """The runs under `root`; an empty list (and a message in the sidebar) if there are none."""
    try:
        return list_runs(root)
    except RunDirError:
        return []


def sidebar_run_picker(app: Settings) -> None:
    """The run selector shared by every page; `?run=NAME` in the address picks one."""
    items = listings(app.runs_root)
    st.sidebar.caption(f"Runs folder: `{app.runs_root}`")
    if not items:
        return
    by_name = {item.name: item for item in items}
    wanted = st.query_params.get("run")
    if st.session_state.get("run") not in by_name:
        readable = [item.name for item in items if item.reader]
        st.session_state["run"] = wanted if wanted in by_name else (readable or list(by_name))[0]
    name = st.sidebar.selectbox("Run", list(by_name), key="run")
    st.sidebar.caption(f"Status: {_status(by_name[name])}")
    st.query_params["run"] = name


@dataclass(frozen=True)
class Run:
    """The selected run with what every page needs to know about it."""

    name: str
    reader: RunReader
    config: dict[str, Any]
    zone: ZoneInfo = UTC_ZONE  # times on the pages are shown in this zone

    @property
    def currency(self) -> str:
        return str(self.config.get("prices", {}).get("currency", "INR"))

    @property
    def interval_s(self) -> float:
        return float(self.config.get("market", {}).get("interval_s", 900.0))

    @property
    def step_s(self) -> float:
        return float(self.config.get("control", {}).get("step_s", 1.0))

    @property
    def status(self) -> str:
        return self.reader.meta.status

    def is_live(self) -> bool:
        return self.reader.writer_alive()

    def version(self) -> tuple[float, ...]:
        return self.reader.version_key()


def current_run(app: Settings) -> Run | None:
    """The run picked in the sidebar, or None after showing why there is none."""
    root = app.runs_root
    if not root.is_dir():
        st.error(
            f"There is no runs folder at `{root}`. Write a run with `testbed demo --out {root}`, "
            "or start the dashboard on another folder with `testbed dashboard --runs DIR`."
        )
        return None
    items = {item.name: item for item in listings(root)}
    if not items:
        st.info(f"No runs in `{root}` yet. Start one with `testbed demo --out {root}`.")
        return None
    name = st.session_state.get("run")
    item = items.get(name) if name else next(iter(items.values()))
    if item is None:
        st.error(f"Run `{name}` is no longer in `{root}`.")
        return None
    if item.reader is None:
        st.error(f"Run `{item.name}` cannot be shown: {item.error}")
        return None
    try:
        config = item.reader.config()
    except RunDirError as error:
        st.warning(f"Run `{item.name}`: {error}; showing it with default settings.")
        config = {}
    return Run(item.name, item.reader, config, display_zone(config, app.display_tz))


def display_zone(config: dict[str, Any], wanted: str | None = None) -> ZoneInfo:
    """The zone the pages show times in: `wanted` (`--tz`), else the site's zone from the run's
    config (its first peer's `assets.timezone`, the site's default when the config has peers but
    leaves it out), else UTC. An unknown name shows a warning and falls back to UTC."""
    name = wanted or _site_timezone(config)
    if name is None:
        return UTC_ZONE
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        st.warning(f"Unknown time zone {name!r}: showing times in UTC.")
    return UTC_ZONE


def _site_timezone(config: dict[str, Any]) -> str | None:
    """The first peer's `assets.timezone` (the site's default if left out); None without peers."""
    peer = next(iter((config.get("peers") or {}).values()), None)
    if not isinstance(peer, dict):
        return None
    assets = peer.get("assets")
    zone = assets.get("timezone") if isinstance(assets, dict) else None
    return str(zone or SITE_TIMEZONE)


def localised(frame: pd.DataFrame, zone: ZoneInfo) -> pd.DataFrame:
    """`frame` with every timezone-aware time column converted to `zone` (in place)."""
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
            frame[column] = frame[column].dt.tz_convert(zone)
    return frame


def status_banner(run: Run) -> None:
    """A clear line about whether the run is live, finished or stopped early."""
    meta = run.reader.meta
    if meta.status == "running" and run.is_live():
        st.info(f"Run `{run.name}` is in progress.", icon=":material/sync:")
    elif meta.status == "running":
        st.warning(
            f"Run `{run.name}` stopped without finishing (its writer is gone): partial data."
        )
    elif meta.status == "finished":
        st.success(
            f"Run finished at {fmt_time(meta.finished_at, run.zone)}.",
            icon=":material/check_circle:",
        )
    else:
        ended = fmt_time(meta.finished_at, run.zone)
        st.warning(f"Run `{run.name}` ended as **{meta.status}** at {ended}: partial data.")


def fmt_time(moment: datetime | pd.Timestamp | None, zone: ZoneInfo | None = None) -> str:
    """`2024-06-01 10:00:00 IST`: in `zone`, or in the moment's own zone (naive = UTC)."""
    if moment is None or pd.isna(moment):
        return "—"
    stamp = pd.Timestamp(moment)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp
    return stamp.tz_convert(zone or stamp.tzinfo).strftime("%Y-%m-%d %H:%M:%S %Z")


# --------------------------------------------------------------------------------------------
# Cached tables (the cache key includes the run's file versions, so a live run is re-read)


@st.cache_data(max_entries=48, show_spinner=False)
def _table(run_dir: str, version: tuple[float, ...], name: str, kwargs: tuple) -> pd.DataFrame:
    reader = RunReader(run_dir)
    return getattr(reader, name)(**dict(kwargs))


def table(run: Run, name: str, **kwargs: Any) -> pd.DataFrame:
    """`reader.<name>(**kwargs)` for the run, cached until the run's files change."""
    key = tuple(sorted((k, _hashable(v)) for k, v in kwargs.items()))
    return localised(_table(str(run.reader.run_dir), run.version(), name, key).copy(), run.zone)


@st.cache_data(max_entries=8, show_spinner="Solving the perfect-foresight optimum ...")
def _value(run_dir: str, version: tuple[float, ...]) -> tuple[dict[str, Any], pd.DataFrame] | str:
    from testbed.value import IncompleteRun, InfeasibleOptimum, value_report

    try:
        report = value_report(run_dir)
    except (IncompleteRun, InfeasibleOptimum) as error:
        return str(error)
    return report.as_dict(), report.schedules


def value(run: Run) -> tuple[dict[str, Any], pd.DataFrame] | str:
    """The yardstick for the run (`testbed.value`): (report, schedules), or why there is none."""
    result = _value(str(run.reader.run_dir), run.version())
    if isinstance(result, str):
        return result
    report, schedules = result
    return report, localised(schedules.copy(), run.zone)


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def summary(run: Run) -> tuple[dict[str, Any], bool]:
    """The run's summary and whether it comes from summary.json (False: computed from tables)."""
    stored = run.reader.summary()
    if stored is not None:
        return stored, True
    return summarize(run.reader), False


@st.cache_data(max_entries=16, show_spinner=False)
def _ledger(run_dir: str, version: tuple[float, ...]) -> dict[str, Any] | None:
    from testbed.ledger.verify import verify_run

    report = verify_run(run_dir)
    if report.state is None and report.problem is not None and "no ledger" in report.problem.what:
        return None
    return {
        "ok": report.ok,
        "text": report.describe(),
        "entries": report.n_entries,
        "closed": report.closed,
        "wallets": pd.DataFrame(report.wallet_rows()),
        "chain": _chain_text(Path(run_dir)),
    }


def _chain_text(run_dir: Path) -> str | None:
    """What the run sent to the smart-contract chain (`[ledger.chain]`), or None."""
    import sqlite3

    from testbed.ledger.chain.status import chain_status

    path = run_dir / "run.sqlite"
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        status = chain_status(conn)
    finally:
        conn.close()
    return status.describe() if status is not None else None


def ledger(run: Run) -> dict[str, Any] | None:
    """The run's ledger verified (ok, text, entries, closed, wallets), or None without a ledger;
    cached until the run's files change."""
    return _ledger(str(run.reader.run_dir), run.version())


def telemetry(run: Run, app: Settings) -> TelemetrySource:
    """Where the live page reads samples: InfluxDB when configured, else the run store."""
    if app.influx_url:
        try:
            source = influx_source(app.influx_url, app.influx_db, run.reader.meta.run_id)
            return LocalisedSource(source, run.zone)
        except Exception as error:  # testbed.telemetry missing or a bad setting
            st.warning(f"InfluxDB at {app.influx_url} not used ({error}); reading the run store.")
    return RunStoreSource(run.reader, fetch=lambda name, **kwargs: table(run, name, **kwargs))


class LocalisedSource:
    """A telemetry source whose sample times come in the run's display zone."""

    def __init__(self, source: TelemetrySource, zone: ZoneInfo) -> None:
        self._source = source
        self._zone = zone
        self.label = source.label

    def samples(self, **kwargs: Any) -> pd.DataFrame:
        return localised(self._source.samples(**kwargs), self._zone)

    def latest_samples(self) -> pd.DataFrame:
        return localised(self._source.latest_samples(), self._zone)
