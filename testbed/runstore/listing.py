"""Listing the run directories of a runs folder, newest first."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from testbed.runstore.reader import RunReader
from testbed.runstore.schema import CONFIG_FILE, DB_FILE, META_FILE, RunDirError


@dataclass(frozen=True, slots=True)
class RunListing:
    """One directory under a runs folder: its reader, or why it cannot be read."""

    path: Path
    reader: RunReader | None
    error: str | None

    @property
    def name(self) -> str:
        return self.path.name


def list_runs(root: Path | str) -> list[RunListing]:
    """Every run directory under `root`, most recently started or ended first; unreadable ones
    carry their error."""
    root = Path(root)
    if not root.is_dir():
        raise RunDirError(f"runs folder {root} does not exist")
    listings = []
    for path in root.iterdir():
        if not path.is_dir() or not any(
            (path / name).exists() for name in (META_FILE, DB_FILE, CONFIG_FILE)
        ):
            continue
        try:
            listings.append(RunListing(path, RunReader(path), None))
        except RunDirError as error:
            listings.append(RunListing(path, None, str(error)))

    def newest_first(item: RunListing) -> tuple[float, str]:
        # Wall time of the last meta.json write (start or end): simulated start times can tie.
        meta = item.path / META_FILE
        return (path_mtime(meta if meta.exists() else item.path), item.name)

    return sorted(listings, key=newest_first, reverse=True)


def path_mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
