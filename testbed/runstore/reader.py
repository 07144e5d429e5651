"""The run store's reader: one run directory back as pandas DataFrames, also while it is written."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from testbed.runstore.schema import (
    CONFIG_FILE,
    DB_FILE,
    FORMAT_VERSION,
    META_FILE,
    PLAN_FIELDS,
    SAMPLE_KEYS,
    STATUSES,
    SUMMARY_FILE,
    RunDirError,
    bound_s,
    parse_time,
    to_utc,
)


@dataclass(frozen=True, slots=True)
class RunMeta:
    """What meta.json says about a run."""

    run_id: str
    format_version: int
    status: str
    started_at: datetime | None
    finished_at: datetime | None
    seed: int | None
    mechanism: str | None
    hours: float | None
    writer_pid: int | None
    writer_host: str | None


class RunReader:
    """Reads one run directory, also while its run is still writing it.

    Raises `RunDirError` at construction for a directory that is missing, has no meta.json or
    run.sqlite, has an unreadable meta.json, or was written in another format version.
    """

    def __init__(self, run_dir: Path | str) -> None:
        self.run_dir = Path(run_dir)
        if not self.run_dir.is_dir():
            raise RunDirError(f"run directory {self.run_dir} does not exist")
        meta_path = self.run_dir / META_FILE
        if not meta_path.is_file():
            raise RunDirError(
                f"{self.run_dir} is not a complete run directory: it has no {META_FILE} "
                "(the run never started, or this is not a run directory)"
            )
        try:
            raw = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise RunDirError(f"{meta_path} cannot be read: {error}") from None
        if not isinstance(raw, dict):
            raise RunDirError(f"{meta_path} does not hold a JSON object")
        version = raw.get("format_version")
        if version != FORMAT_VERSION:
            older = not isinstance(version, int) or version < FORMAT_VERSION
            raise RunDirError(
                f"{self.run_dir} was written in run-store format version {version}; this testbed "
                f"reads version {FORMAT_VERSION}"
                + (" (an older run: re-run it to view it here)" if older else " (a newer testbed)")
            )
        if not (self.run_dir / DB_FILE).is_file():
            raise RunDirError(f"{self.run_dir} is partial: it has {META_FILE} but no {DB_FILE}")
        status = raw.get("status")
        if status not in STATUSES:
            raise RunDirError(
                f"{meta_path}: status = {status!r}; allowed are {', '.join(STATUSES)}"
            )
        writer = raw.get("writer") or {}
        self.meta = RunMeta(
            run_id=str(raw.get("run_id", self.run_dir.name)),
            format_version=version,
            status=status,
            started_at=parse_time(raw.get("started_at")),
            finished_at=parse_time(raw.get("finished_at")),
            seed=raw.get("seed"),
            mechanism=raw.get("mechanism"),
            hours=raw.get("hours"),
            writer_pid=writer.get("pid"),
            writer_host=writer.get("host"),
        )
        with self._connect() as conn:
            row = conn.execute("SELECT version FROM format_version").fetchone()
        if row is None or row[0] != FORMAT_VERSION:
            raise RunDirError(
                f"{self.run_dir / DB_FILE} has format version {row and row[0]}; "
                f"this testbed reads version {FORMAT_VERSION}"
            )

    # -- files --------------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """The configuration the run used (config.toml)."""
        path = self.run_dir / CONFIG_FILE
        try:
            return tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunDirError(f"{self.run_dir} is partial: it has no {CONFIG_FILE}") from None
        except tomllib.TOMLDecodeError as error:
            raise RunDirError(f"{path} is not valid TOML: {error}") from None

    def config_text(self) -> str:
        """config.toml as written, or an empty string if the run has none."""
        path = self.run_dir / CONFIG_FILE
        return path.read_text(encoding="utf-8") if path.is_file() else ""

    def summary(self) -> dict[str, Any] | None:
        """summary.json, or None while the run has not written one."""
        path = self.run_dir / SUMMARY_FILE
        if not path.is_file():
            return None
        try:
            summary: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            return summary
        except ValueError as error:
            raise RunDirError(f"{path} is not valid JSON: {error}") from None

    def writer_alive(self) -> bool:
        """True while the run is marked running and its writing process still exists."""
        if self.meta.status != "running":
            return False
        if self.meta.writer_pid is None or self.meta.writer_host != socket.gethostname():
            return True  # another machine: trust meta.json
        try:
            os.kill(self.meta.writer_pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def version_key(self) -> tuple[float, ...]:
        """Changes whenever the run's files change: a cache key for readers of a live run."""
        key: list[float] = []
        for name in (META_FILE, DB_FILE, f"{DB_FILE}-wal", SUMMARY_FILE):
            try:
                stat = (self.run_dir / name).stat()
                key += [stat.st_mtime_ns, stat.st_size]
            except FileNotFoundError:
                key += [0, 0]
        return tuple(key)

    # -- tables -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        uri = f"{(self.run_dir / DB_FILE).resolve().as_uri()}?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=5.0)
        except sqlite3.Error as error:
            raise RunDirError(f"{self.run_dir / DB_FILE} cannot be opened: {error}") from None
        try:
            yield conn
        except sqlite3.DatabaseError as error:
            raise RunDirError(f"{self.run_dir / DB_FILE} cannot be read: {error}") from None
        finally:
            conn.close()

    def _query(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        with self._connect() as conn:
            return pd.read_sql_query(sql, conn, params=list(params))

    def sample_fields(self) -> list[str]:
        """The value columns of `samples` (every field name any Sample carried)."""
        with self._connect() as conn:
            columns = [row[1] for row in conn.execute("PRAGMA table_info(samples)")]
        return [c for c in columns if c not in SAMPLE_KEYS]

    def samples(
        self,
        peer: str | None = None,
        device: str | None = None,
        start: datetime | float | None = None,
        end: datetime | float | None = None,
        fields: Sequence[str] | None = None,
        every_s: float | None = None,
    ) -> pd.DataFrame:
        """Samples with start <= time < end, optionally averaged over `every_s` buckets.

        Averaged rows carry the mean time of the samples in their bucket.

        Columns: time_s, time (UTC timestamps), peer, device, then the value fields.
        """
        known = self.sample_fields()
        if fields is None:
            fields = known
        unknown = [f for f in fields if f not in known]
        if unknown:
            raise KeyError(f"no sample field {unknown[0]!r}; the run has {', '.join(known)}")
        where: list[str] = ["1"]
        params: list[str | float] = []
        for column, value in (("peer", peer), ("device", device)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        lo, hi = bound_s(start, "start"), bound_s(end, "end")
        if lo is not None:
            where.append("time_s >= ?")
            params.append(lo)
        if hi is not None:
            where.append("time_s < ?")
            params.append(hi)
        quoted = [f'"{f}"' for f in fields]
        if every_s:
            if every_s <= 0:
                raise ValueError(f"every_s = {every_s}: must be positive")
            bucket = f"CAST(time_s / {float(every_s)!r} AS INTEGER)"
            averages = [f"AVG({q}) AS {q}" for q in quoted]
            select = ", ".join(["AVG(time_s) AS time_s", "peer", "device", *averages])
            sql = (
                f"SELECT {select} FROM samples WHERE {' AND '.join(where)} "
                f"GROUP BY {bucket}, peer, device ORDER BY 1, peer, device"
            )
        else:
            select = ", ".join(["time_s", "peer", "device", *quoted])
            sql = f"SELECT {select} FROM samples WHERE {' AND '.join(where)} ORDER BY time_s, rowid"
        frame = self._query(sql, params)
        frame.insert(1, "time", pd.to_datetime(frame["time_s"], unit="s", utc=True))
        return frame

    def latest_samples(self, within_s: float = 3600.0) -> pd.DataFrame:
        """The newest sample of every (peer, device) seen in the last `within_s` of the run."""
        fields = self.sample_fields()
        quoted = "".join(f', "{f}"' for f in fields)
        # SQLite returns the bare columns of the row that holds MAX(time_s) in each group.
        sql = (
            f"SELECT MAX(time_s) AS time_s, peer, device{quoted} FROM samples "
            "WHERE time_s >= (SELECT MAX(time_s) FROM samples) - ? "
            "GROUP BY peer, device ORDER BY peer, device"
        )
        frame = self._query(sql, [within_s])
        frame.insert(1, "time", pd.to_datetime(frame["time_s"], unit="s", utc=True))
        return frame

    def time_range(self) -> tuple[datetime, datetime] | None:
        """First and last sample time, or None before the first sample."""
        with self._connect() as conn:
            lo, hi = conn.execute("SELECT MIN(time_s), MAX(time_s) FROM samples").fetchone()
        if lo is None:
            return None
        return datetime.fromtimestamp(lo, UTC), datetime.fromtimestamp(hi, UTC)

    def _interval_table(self, table: str, interval_start: datetime | float | None) -> pd.DataFrame:
        where, params = "", []
        if interval_start is not None:
            where, params = "WHERE interval_start = ?", [bound_s(interval_start, "interval_start")]
        frame = self._query(f"SELECT * FROM {table} {where} ORDER BY interval_start, rowid", params)
        return to_utc(frame, "interval_start")

    def orders(self, interval_start: datetime | float | None = None) -> pd.DataFrame:
        """Every submitted order (accepted and rejected, with the reason)."""
        frame = self._interval_table("orders", interval_start)
        frame["accepted"] = frame["accepted"].astype(bool)
        return frame

    def trades(self, interval_start: datetime | float | None = None) -> pd.DataFrame:
        """Every trade; `seller_price` is NaN where the seller got the buyer's `price`, and
        `network_charge` (per kWh) NaN where the flat prices.network_charge applied."""
        frame = self._interval_table("trades", interval_start)
        for column in ("seller_price", "network_charge"):
            if column in frame:
                frame[column] = frame[column].astype(float)
        return frame

    def clearings(self) -> pd.DataFrame:
        """One row per cleared interval; `clearing_price` is NaN where nothing cleared."""
        frame = self._interval_table("clearings", None)
        frame["clearing_price"] = frame["clearing_price"].astype(float)
        return frame

    def settlements(self, peer: str | None = None) -> pd.DataFrame:
        frame = self._interval_table("settlements", None)
        return frame[frame["peer"] == peer].reset_index(drop=True) if peer else frame

    def agent_plans(self, peer: str | None = None, first_step_only: bool = False) -> pd.DataFrame:
        """Each interval's agent decisions: one row per horizon step (`step` 0 is the interval
        traded), the forecast's mean and the plan in kW; `fallback_reason` on step 0 when the
        agent fell back to the safe plan. Empty for runs written before plans were recorded."""
        where, params = ["1"], []
        if peer is not None:
            where.append("peer = ?")
            params.append(peer)
        if first_step_only:
            where.append("step = 0")
        with self._connect() as conn:
            known = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'agent_plans'"
            ).fetchone()
        if not known:
            columns = ["interval_start", "peer", "agent", "step", "step_start", *PLAN_FIELDS]
            return pd.DataFrame(columns=[*columns, "fallback_reason"])
        frame = self._query(
            f"SELECT * FROM agent_plans WHERE {' AND '.join(where)} "
            "ORDER BY interval_start, peer, step",
            params,
        )
        frame["ev_plugged"] = frame["ev_plugged"] > 0
        return to_utc(frame, "interval_start", "step_start")

    def interlocks(
        self, start: datetime | float | None = None, end: datetime | float | None = None
    ) -> pd.DataFrame:
        where, params = ["1"], []
        if (lo := bound_s(start, "start")) is not None:
            where.append("time >= ?")
            params.append(lo)
        if (hi := bound_s(end, "end")) is not None:
            where.append("time < ?")
            params.append(hi)
        frame = self._query(
            f"SELECT * FROM interlocks WHERE {' AND '.join(where)} ORDER BY time, rowid", params
        )
        return to_utc(frame, "time")
