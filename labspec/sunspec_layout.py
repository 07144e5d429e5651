"""Which SunSpec models the lab's Modbus devices carry, and how the project reads them.

Register layouts come from the model definitions shipped in pysunspec2; this module only names the
models and the conventions the standard leaves to the device.
"""

from __future__ import annotations

SUNSPEC_MARKER = b"SunS"
DEFAULT_BASE_ADDRESS = 40000  # the usual SunSpec base; drivers scan 0, 40000 and 50000
CANDIDATE_BASE_ADDRESSES = (40000, 0, 50000)
END_MODEL_ID = 0xFFFF

COMMON_MODEL = 1
# Hybrid inverter (peer A): DER AC measurement, capacity, AC controls, storage capacity,
# DC measurement.
INVERTER_MODELS = (COMMON_MODEL, 701, 702, 704, 713, 714)
# Battery inverter: the same models, model 714 with one DC port (ESS).
BATTERY_INVERTER_MODELS = INVERTER_MODELS
# PV inverter: no storage and no active-power control; model 714 with one DC port (PV).
PV_INVERTER_MODELS = (COMMON_MODEL, 701, 702, 714)
# PCC meter: single-phase float meter.
METER_MODELS = (COMMON_MODEL, 211)

# A hybrid inverter's model 714 carries one group per DC port, in this order (single-port devices
# carry just theirs); drivers find the ports by their PrtTyp.
DC_PORT_PV = 0
DC_PORT_BATTERY = 1
DC_PORT_TYPE_PV = 0  # model 714 PrtTyp enum: PV
DC_PORT_TYPE_ESS = 1  # model 714 PrtTyp enum: ESS

# Model 704 WSet is the inverter's signed AC active-power target (W, positive = injected into the
# grid). The battery covers the difference between the target and the available PV, within its
# limits; PV is curtailed when the battery cannot absorb the rest. When WSetEna is off, or the
# WSetRvrtTms timeout expires without a new write, the battery idles (AC power = PV power).
WSET_ENA_DISABLED = 0
WSET_ENA_ENABLED = 1
WSET_MOD_WATTS = 1  # model 704 WSetMod enum: W_MAX_PCT = 0, WATTS = 1

# Model 211 W follows the meter convention: positive = imported from the grid (consumed).
METER_W_POSITIVE_IS_IMPORT = True
