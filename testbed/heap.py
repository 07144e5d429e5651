"""The run's heap kept out of Python's full garbage collections.

A run allocates per step (snapshots, samples, documents) and some of it lives long enough to reach
the oldest generation, which makes the collector scan the whole heap now and then: every module,
the configuration, pandas and pydantic's own objects, hundreds of thousands of objects that the
run never frees. At 100 peers the full collections grew faster than the peers did (9 of them in a
300-step interval costing ~10 ms per step of a 20 ms step; 2 costing 0.5 s in all at 50 peers).
`frozen_heap()` moves what exists when the run starts into the permanent generation
(`gc.freeze`), so a full collection scans only what the run made; the run's own garbage is
collected as before. See docs/bench-site.md.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Collect once, freeze everything alive, and unfreeze at the end (even on errors)."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
