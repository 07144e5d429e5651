"""The SCPI command set of the programmable AC electronic load (peer C).

Served by the emulated load (hil_sim) and declared by the driver (instruments). Commands are
newline-terminated ASCII over a raw TCP socket (port 5025 on real instruments). Power is in W as
on the instrument's front panel, as a magnitude of consumption (the driver converts to kW and the
generator convention).
"""

from __future__ import annotations

IDN_MANUFACTURER = "P2P-Testbed"
IDN_MODEL = "EL-AC-3000"

MAX_POWER_W = 3000.0
MIN_POWER_W = 0.0

# Queries and commands (short forms; the long forms are accepted by the instrument too).
IDN = "*IDN?"
RESET = "*RST"
CLEAR_STATUS = "*CLS"
OPERATION_COMPLETE = "*OPC?"
INPUT = "INP"  # INP ON|OFF, INP? -> 1|0
FUNCTION = "FUNC"  # FUNC POW|LIST, FUNC? -> POW|LIST (LIST plays the stored house-load program)
POWER = "POW"  # POW <W>, POW? -> setpoint in W
MEASURE_POWER = "MEAS:POW?"  # W consumed
MEASURE_VOLTAGE = "MEAS:VOLT?"  # V rms
MEASURE_CURRENT = "MEAS:CURR?"  # A rms
MEASURE_ENERGY = "MEAS:ENER?"  # Wh consumed since power-on
SYSTEM_ERROR = "SYST:ERR?"  # <code>,"<message>"; 0,"No error" when the queue is empty

NO_ERROR = (0, "No error")
ERROR_UNDEFINED_HEADER = (-113, "Undefined header")
ERROR_DATA_OUT_OF_RANGE = (-222, "Data out of range")
ERROR_DATA_TYPE = (-104, "Data type error")
ERROR_QUEUE_OVERFLOW = (-350, "Queue overflow")
ERROR_QUEUE_SIZE = 16
