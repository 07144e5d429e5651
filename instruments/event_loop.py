"""The event loop the drivers run on: uvloop when it is installed, else asyncio's own.

Every control step is a few dozen small socket operations, timers and callbacks per device;
uvloop (libuv, in C) does them with less CPU than asyncio's pure-Python loop (in the demo's
control step, about 0.4 ms less per step of the controller's ~2 ms). The drivers need nothing of
it: they run unchanged on either loop.

    name, new_loop = loop_factory("auto")
    with asyncio.Runner(loop_factory=new_loop) as runner:
        runner.run(main())
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Literal

LoopChoice = Literal["auto", "asyncio", "uvloop"]
LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def loop_factory(
    choice: LoopChoice = "auto",
) -> tuple[str, Callable[[], asyncio.AbstractEventLoop]]:
    """(name, factory) of the event loop to run on: "auto" takes uvloop when it is installed,
    "asyncio" asyncio's own loop; "uvloop" raises RuntimeError when uvloop is missing."""
    if choice not in ("auto", "asyncio", "uvloop"):
        raise ValueError(f"event loop {choice!r}: expected one of auto, asyncio, uvloop")
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise RuntimeError("event loop 'uvloop': uvloop is not installed") from None
        else:
            return "uvloop", uvloop.new_event_loop
    return "asyncio", asyncio.new_event_loop
