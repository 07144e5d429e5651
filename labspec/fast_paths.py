"""One switch for every fast path of the control loop, on by default.

The drivers (and the emulated plant's servers) take quicker routes than their libraries' generic
ones on the paths a control step runs through: Modbus TCP frames built and parsed in place
(`instruments.modbus_wire`), OPC UA Read requests encoded once and answers decoded from the bytes
(`instruments.opcua_read`), the SCPI program message written from the event loop
(`instruments.programmable_load`), and on the plant's side, answers served from prebuilt images.
Each is tested against the library's own codec; with the switch off the libraries do all of it,
so any difference in behaviour can be told apart from a fast path in one run:

    TESTBED_FAST_PATHS=0 python -m testbed demo --hours 1

The switch is read when a session opens (a driver's `connect`) or a server starts, so a process
runs either way throughout. The emulated plant started by `testbed demo` inherits it.
"""

from __future__ import annotations

import os

ENV_VAR = "TESTBED_FAST_PATHS"
_OFF = ("0", "off", "false", "no")
_ON = ("", "1", "on", "true", "yes")


def enabled() -> bool:
    """Whether the fast paths are on: TESTBED_FAST_PATHS unset, 1/on/true/yes (the default)
    or 0/off/false/no; any other value is a ValueError naming the variable and what is allowed."""
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise ValueError(
        f"{ENV_VAR} = {os.environ[ENV_VAR]!r}: expected 1/on/true/yes or 0/off/false/no"
    )
