"""The run store: one directory per run, written by a document sink and read back as DataFrames.

A run directory holds:
- `config.toml`: the configuration the run used,
- `meta.json`: run_id, format_version, started_at, finished_at, status, seed, mechanism, hours,
- `run.sqlite`: tables `samples` (wide: one REAL column per sample field), `orders`, `trades`,
  `clearings`, `settlements`, `interlocks`, `agent_plans` and `format_version`, in WAL mode so a
  reader can read while the run writes,
- `summary.json`: per-peer and market totals, written when the run ends.

Modules: `schema` (file names, format, tables), `files` (config.toml and JSON), `writer`
(`RunStore`), `reader` (`RunReader`), `listing` (`list_runs`), `summary` (`summarize`).
"""

from testbed.runstore.files import dump_toml
from testbed.runstore.listing import RunListing, list_runs, path_mtime
from testbed.runstore.reader import RunMeta, RunReader
from testbed.runstore.schema import (
    CONFIG_FILE,
    DB_FILE,
    FORMAT_VERSION,
    META_FILE,
    STATUSES,
    SUMMARY_FILE,
    RunDirError,
)
from testbed.runstore.summary import summarize
from testbed.runstore.writer import RunStore

__all__ = [
    "CONFIG_FILE",
    "DB_FILE",
    "FORMAT_VERSION",
    "META_FILE",
    "STATUSES",
    "SUMMARY_FILE",
    "RunDirError",
    "RunListing",
    "RunMeta",
    "RunReader",
    "RunStore",
    "dump_toml",
    "list_runs",
    "path_mtime",
    "summarize",
]
