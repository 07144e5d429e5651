"""A PCC meter's energy registers over a run, and their values at interval boundaries.

Settlement needs each peer's import and export registers at every interval boundary. A meter can
miss a boundary (dropped, timing out, frozen): its registers go on counting inside the meter, so
the first reading after the gap holds all the energy of the gap. The value at the boundary is
then interpolated between the last trusted reading before it and the first one after it, in
time: the energy of the gap is split between the two intervals, and none is lost or invented.
A boundary value is fixed the first time settlement uses it, so the intervals on both sides of
it always add up to the registers' difference.

A meter whose registers restarted (reset, replaced, or a first reference that was a glitch: the
driver reports a `RegisterBreak`) starts a new series. The engine logs the new series shifted so
that it continues from the last trusted reading before the break: the registers of each series
count as read, and the energy between the two readings around the break, which no register
holds, is counted as none. A boundary inside that gap is `across_break`.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BoundaryReading:
    """The registers at a boundary step; `filled` when interpolated across a gap."""

    import_kwh: float
    export_kwh: float
    filled: bool = False
    gap_steps: tuple[int, int] = (0, 0)  # the trusted readings it was filled between
    across_break: bool = False  # inside the gap of a register break (the registers held flat)


class RegisterLog:
    """Trusted register readings of one meter (ascending steps) and the fixed boundaries."""

    def __init__(self) -> None:
        self._steps: list[int] = []
        self._values: list[tuple[float, float]] = []
        self._fixed: dict[int, BoundaryReading] = {}
        self._breaks: list[tuple[int, int]] = []  # (last step before, first step after)

    def last(self) -> tuple[int, tuple[float, float]] | None:
        """The latest trusted reading: (step, (import, export)), or None."""
        return (self._steps[-1], self._values[-1]) if self._steps else None

    def add_break(self, step: int) -> None:
        """The reading about to be added at `step` begins a new register series."""
        if self._steps:
            self._breaks.append((self._steps[-1], step))

    def add(self, step: int, import_kwh: float, export_kwh: float) -> None:
        """A trusted reading taken at `step` (steps only increase)."""
        if self._steps and step <= self._steps[-1]:
            return
        self._steps.append(step)
        self._values.append((import_kwh, export_kwh))

    def breaks_in(self, first: int, last: int) -> list[tuple[int, int]]:
        """The breaks (last step before, first step after) whose gap overlaps steps first-last."""
        return [b for b in self._breaks if b[0] < last and b[1] > first]

    def drop_after(self, step: int) -> None:
        """Forget the readings after `step` (found frozen since then)."""
        cut = bisect.bisect_right(self._steps, step)
        del self._steps[cut:]
        del self._values[cut:]
        self._breaks = [b for b in self._breaks if b[1] <= step]

    def boundary(self, step: int) -> BoundaryReading | None:
        """The registers at `step`: as read, interpolated across a gap, or None while no trusted
        reading after the gap has come in yet."""
        fixed = self._fixed.get(step)
        if fixed is not None:
            return fixed
        at = bisect.bisect_left(self._steps, step)
        if at < len(self._steps) and self._steps[at] == step:
            reading = BoundaryReading(*self._values[at])
        elif 0 < at < len(self._steps):
            before, after = self._steps[at - 1], self._steps[at]
            weight = (step - before) / (after - before)
            (i0, e0), (i1, e1) = self._values[at - 1], self._values[at]
            broken = (before, after) in self._breaks
            reading = BoundaryReading(
                i0 + weight * (i1 - i0),
                e0 + weight * (e1 - e0),
                not broken,
                (before, after),
                broken,
            )
        else:
            return None
        return reading

    def fix(self, step: int, reading: BoundaryReading) -> None:
        """Settlement used `reading` for the boundary at `step`: it stays so."""
        self._fixed[step] = reading

    def forget_before(self, step: int) -> None:
        """Drop what no boundary at or after `step` needs (keeps one reading before it)."""
        keep_from = max(0, bisect.bisect_right(self._steps, step) - 1)
        del self._steps[:keep_from]
        del self._values[:keep_from]
        for old in [s for s in self._fixed if s < step]:
            del self._fixed[old]
        first = self._steps[0] if self._steps else step
        self._breaks = [b for b in self._breaks if b[1] > first]
