"""The SunSpec images of the lab's Modbus devices and how plant state maps onto their points.

A hybrid inverter carries models 1, 701, 702, 704, 713 and 714 (two DC ports: PV, battery); a
battery inverter the same models with one DC port (battery); a PV inverter models 1, 701, 702 and
714 with one DC port (PV); each PCC meter carries models 1 and 211 (single-phase float meter, W
positive = import). The scale
factors below are chosen so every value of a 3-10 kW lab device fits its integer type with room
for the out-of-range fault's values (W_SF 0 -> +-32.7 kW, Pct_SF -1 -> up to 6553.4 %).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hil_sim.plant import InverterState, MeterState, Plant
from hil_sim.servers.modbus import WriteRefused
from hil_sim.servers.sunspec_image import SunSpecImage
from labspec.sunspec_layout import (
    BATTERY_INVERTER_MODELS,
    COMMON_MODEL,
    DC_PORT_TYPE_ESS,
    DC_PORT_TYPE_PV,
    INVERTER_MODELS,
    METER_MODELS,
    PV_INVERTER_MODELS,
    WSET_ENA_DISABLED,
    WSET_ENA_ENABLED,
    WSET_MOD_WATTS,
)

MANUFACTURER = "P2P-Testbed"
VERSION = "hil_sim 0.1"

# Nominal DC voltages of the emulated ports (the physics works in power; current = power / voltage).
PV_DC_VOLTAGE_V = 360.0
BATTERY_DC_VOLTAGE_V = 51.2

# Model 701 / 713 / 714 enum values used below (symbols from the model definitions).
_AC_TYPE_SINGLE_PHASE = 0
_ST_ON = 1
_INV_ST_RUNNING = 3
_INV_ST_THROTTLED = 4
_CONN_ST_CONNECTED = 1
_STORAGE_STA_OK = 0
_DC_STA_OFF = 0
_DC_STA_ON = 1

# What the out-of-range fault reports: impossible for any of the lab's devices.
OUT_OF_RANGE_SOC_PCT = 250.0
OUT_OF_RANGE_VOLTAGE_V = 0.0
OUT_OF_RANGE_POWER_FACTOR = 9.0  # times the device's rating


def _common(model: str, serial: str, unit_id: int) -> dict[str, Any]:
    return {"Mn": MANUFACTURER, "Md": model, "Vr": VERSION, "SN": serial, "DA": unit_id}


# -- hybrid inverter ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class InverterRatings:
    """What model 702 declares; taken from the plant's inverter state at start."""

    rated_power_kw: float
    battery_capacity_kwh: float
    battery_max_charge_kw: float
    battery_max_discharge_kw: float
    nominal_voltage_v: float = 230.0

    @classmethod
    def from_state(cls, state: InverterState) -> InverterRatings:
        return cls(
            rated_power_kw=state.rated_power_kw,
            battery_capacity_kwh=state.battery_capacity_kwh,
            battery_max_charge_kw=state.battery_max_charge_kw,
            battery_max_discharge_kw=state.battery_max_discharge_kw,
            nominal_voltage_v=state.voltage_v or 230.0,
        )


# The DC ports of each kind of inverter, in model 714's order.
INVERTER_PORTS: dict[str, tuple[str, ...]] = {
    "hybrid_inverter": ("PV", "ESS"),
    "battery_inverter": ("ESS",),
    "pv_inverter": ("PV",),
}
_KIND_MODELS = {
    "hybrid_inverter": INVERTER_MODELS,
    "battery_inverter": BATTERY_INVERTER_MODELS,
    "pv_inverter": PV_INVERTER_MODELS,
}
_KIND_MODEL_NAME = {
    "hybrid_inverter": "HybridInverter",
    "battery_inverter": "BatteryInverter",
    "pv_inverter": "PVInverter",
}


def inverter_image(
    ratings: InverterRatings,
    base_address: int,
    unit_id: int,
    kind: str = "hybrid_inverter",
    serial: str = "A",
) -> SunSpecImage:
    """The inverter's register image with its static points and scale factors set."""
    ports = INVERTER_PORTS[kind]
    w_max = round(ratings.rated_power_kw * 1000)
    sf = {
        "A_SF": -2,
        "V_SF": -1,
        "Hz_SF": -2,
        "W_SF": 0,
        "PF_SF": -3,
        "VA_SF": 0,
        "Var_SF": 0,
        "TotWh_SF": 0,
        "TotVarh_SF": 0,
        "Tmp_SF": -1,
    }
    models: dict[int, dict[str, Any]] = {
        COMMON_MODEL: _common(
            f"{_KIND_MODEL_NAME[kind]}-{serial}", f"HIL-INV-{serial}-0001", unit_id
        ),
        701: {"ACType": _AC_TYPE_SINGLE_PHASE, "St": _ST_ON, "InvSt": _INV_ST_RUNNING,
              "ConnSt": _CONN_ST_CONNECTED, "Alrm": 0, "DERMode": 0, **sf},
        702: {
            "WMaxRtg": w_max, "VAMaxRtg": w_max,
            "WChaRteMaxRtg": round(ratings.battery_max_charge_kw * 1000),
            "WDisChaRteMaxRtg": round(ratings.battery_max_discharge_kw * 1000),
            "VNomRtg": round(ratings.nominal_voltage_v * 10),
            "VMaxRtg": round(ratings.nominal_voltage_v * 11),
            "VMinRtg": round(ratings.nominal_voltage_v * 9),
            "AMaxRtg": round(w_max / ratings.nominal_voltage_v * 100),
            "CtrlModes": 1 << 1,  # FIXED_W
            "WMax": w_max, "VAMax": w_max,
            "WChaRteMax": round(ratings.battery_max_charge_kw * 1000),
            "WDisChaRteMax": round(ratings.battery_max_discharge_kw * 1000),
            "VNom": round(ratings.nominal_voltage_v * 10),
            "W_SF": 0, "PF_SF": -3, "VA_SF": 0, "Var_SF": 0, "V_SF": -1, "A_SF": -2, "S_SF": 0,
        },
        704: {"WSetEna": WSET_ENA_DISABLED, "WSetMod": WSET_MOD_WATTS, "WSet": 0,
              "WSetRvrtTms": 0, "WSetRvrtRem": 0,
              "PF_SF": -3, "WMaxLimPct_SF": 0, "WSet_SF": 0, "WSetPct_SF": -1, "VarSet_SF": 0,
              "VarSetPct_SF": -1},
        713: {"WHRtg": round(ratings.battery_capacity_kwh * 1000), "SoH": 1000,
              "Sta": _STORAGE_STA_OK, "WH_SF": 0, "Pct_SF": -1},
        714: {"NPrt": len(ports), "DCA_SF": -2, "DCV_SF": -1, "DCW_SF": 0, "DCWH_SF": 0,
              "Tmp_SF": -1, "PrtAlrms": 0,
              "Prt": [_PORT_GROUPS[port] | {"ID": i} for i, port in enumerate(ports)]},
    }  # fmt: skip
    return SunSpecImage(base_address, [(mid, models[mid]) for mid in _KIND_MODELS[kind]])


_PORT_GROUPS: dict[str, dict[str, Any]] = {
    "PV": {"PrtTyp": DC_PORT_TYPE_PV, "IDStr": "PV", "DCAlrm": 0},
    "ESS": {"PrtTyp": DC_PORT_TYPE_ESS, "IDStr": "BAT", "DCAlrm": 0},
}


# Points a client may write on the inverter (model 704 active-power control).
INVERTER_WRITABLE = ("704.WSetEna", "704.WSetMod", "704.WSet", "704.WSetRvrtTms")


def inverter_write_handler(
    get_plant: Callable[[], Plant], device: str | None = None
) -> Callable[[dict[str, Any]], None]:
    """Apply a client's model-704 write to the plant `get_plant()`, all or nothing.

    Checks that need no plant come first (enum values, "not implemented" patterns); then WSet, the
    one the plant may refuse, before the revert time and the enable flag.
    """

    def on_write(changes: dict[str, Any]) -> None:
        for path, value in changes.items():
            if value is None:
                raise WriteRefused(f"{path}: the 'not implemented' pattern cannot be written")
        if "704.WSetMod" in changes and changes["704.WSetMod"] != WSET_MOD_WATTS:
            raise WriteRefused(
                f"704.WSetMod = {changes['704.WSetMod']}: "
                f"only WATTS ({WSET_MOD_WATTS}) is supported"
            )
        enable = changes.get("704.WSetEna")
        if enable is not None and enable not in (WSET_ENA_DISABLED, WSET_ENA_ENABLED):
            raise WriteRefused(f"704.WSetEna = {enable}: must be 0 (DISABLED) or 1 (ENABLED)")
        plant = get_plant()
        if "704.WSet" in changes:
            plant.write_inverter_wset(float(changes["704.WSet"]) / 1000.0, device)
        if "704.WSetRvrtTms" in changes:
            plant.write_inverter_revert_timeout(float(changes["704.WSetRvrtTms"]), device)
        if enable is not None:
            plant.write_inverter_wset_enabled(enable == WSET_ENA_ENABLED, device)

    return on_write


_PORT_POINTS = ("DCW", "DCV", "DCA", "DCWhInj", "DCWhAbs", "DCSta")
_AC_POINTS = ("701.InvSt", "701.W", "701.VA", "701.Var", "701.PF", "701.A", "701.LNV", "701.Hz",
              "701.TotWhInj", "701.TotWhAbs", "701.WL1", "701.AL1", "701.VL1")  # fmt: skip
_CONTROL_POINTS = ("704.WSetEna", "704.WSet", "704.WSetRvrtTms", "704.WSetRvrtRem")
_STORAGE_POINTS = ("713.WHAvail", "713.SoC")
_DC_POINTS = ("714.DCW", "714.DCWhInj", "714.DCWhAbs")


def inverter_points(kind: str = "hybrid_inverter") -> tuple[str, ...]:
    """Points refreshed after every plant step, in the order inverter_values gives them."""
    storage = kind != "pv_inverter"
    points = _AC_POINTS + (_CONTROL_POINTS + _STORAGE_POINTS if storage else ()) + _DC_POINTS
    for i, _ in enumerate(INVERTER_PORTS[kind]):
        points += tuple(f"714.Prt[{i}].{name}" for name in _PORT_POINTS)
    return points


INVERTER_POINTS = inverter_points()


def inverter_values(
    state: InverterState, out_of_range: bool = False, kind: str = "hybrid_inverter"
) -> tuple[Any, ...]:
    """Values of `inverter_points(kind)` (engineering units, SunSpec signs) for the state."""
    ac_w = state.ac_power_kw * 1000.0
    voltage_v = state.voltage_v
    soc_pct = state.soc_pct
    pv_w = state.pv_power_kw * 1000.0
    battery_w = state.battery_power_kw * 1000.0
    if out_of_range:
        ac_w = OUT_OF_RANGE_POWER_FACTOR * state.rated_power_kw * 1000.0
        voltage_v = OUT_OF_RANGE_VOLTAGE_V
        soc_pct = OUT_OF_RANGE_SOC_PCT
        pv_w = OUT_OF_RANGE_POWER_FACTOR * state.rated_power_kw * 1000.0
    current_a = abs(ac_w) / voltage_v if voltage_v > 0 else 0.0
    curtailed = state.pv_power_kw < state.pv_available_kw - 1e-6
    available_wh = (
        max(0.0, (soc_pct - state.soc_min_pct) / 100.0) * state.battery_capacity_kwh * 1000
    )
    values: tuple[Any, ...] = (
        _INV_ST_THROTTLED if curtailed else _INV_ST_RUNNING,
        ac_w,
        abs(ac_w),
        0,
        1.0,
        current_a,
        voltage_v,
        state.frequency_hz,
        state.ac_injected_kwh * 1000.0,
        state.ac_absorbed_kwh * 1000.0,
        ac_w,
        current_a,
        voltage_v,
    )
    if kind != "pv_inverter":
        values += (
            WSET_ENA_ENABLED if state.wset_enabled else WSET_ENA_DISABLED,
            state.wset_kw * 1000.0,
            state.wset_revert_timeout_s,
            state.wset_revert_remaining_s,
            available_wh,
            soc_pct,
        )
    values += (
        pv_w + battery_w,
        (state.pv_energy_kwh + state.battery_discharged_kwh) * 1000.0,
        state.battery_charged_kwh * 1000.0,
    )
    for port in INVERTER_PORTS[kind]:
        if port == "PV":
            values += (
                pv_w,
                PV_DC_VOLTAGE_V if pv_w > 0 else 0.0,
                pv_w / PV_DC_VOLTAGE_V,
                state.pv_energy_kwh * 1000.0,
                0,
                _DC_STA_ON if pv_w > 0 else _DC_STA_OFF,
            )
        else:
            values += (
                battery_w,
                BATTERY_DC_VOLTAGE_V,
                battery_w / BATTERY_DC_VOLTAGE_V,
                state.battery_discharged_kwh * 1000.0,
                state.battery_charged_kwh * 1000.0,
                _DC_STA_ON,
            )
    return values


# -- PCC meters ---------------------------------------------------------------------------------
def meter_image(peer: str, base_address: int, unit_id: int) -> SunSpecImage:
    """A single-phase SunSpec meter (models 1 and 211)."""
    models: dict[int, dict[str, Any]] = {
        COMMON_MODEL: _common(f"PCC-Meter-{peer}", f"HIL-MTR-{peer}-0001", unit_id),
        211: {"Evt": 0},
    }
    return SunSpecImage(base_address, [(mid, models[mid]) for mid in METER_MODELS])


# Model 211 points refreshed after every plant step, in the order meter_values gives them.
METER_POINTS = (
    "211.A",
    "211.AphA",
    "211.PhV",
    "211.PhVphA",
    "211.Hz",
    "211.W",
    "211.WphA",
    "211.VA",
    "211.VAphA",
    "211.VAR",
    "211.VARphA",
    "211.PF",
    "211.PFphA",
    "211.TotWhExp",
    "211.TotWhImp",
)


GARBAGE_ENERGY_OFFSET_WH = 1.0e9  # "huge": the import register a million kWh ahead


def meter_values(
    state: MeterState, out_of_range: bool = False, garbage: str | None = None
) -> tuple[Any, ...]:
    """Values of METER_POINTS; model 211 W is positive when importing (plant: + = export).
    `garbage` (hil_sim.faults): "nan" or "inf" in every float register, or "huge": the import
    register a million kWh ahead."""
    import_w = -state.power_kw * 1000.0
    voltage_v = state.voltage_v
    current_a = state.current_a
    frequency_hz = state.frequency_hz
    export_wh, import_wh = state.export_kwh * 1000.0, state.import_kwh * 1000.0
    if out_of_range:
        import_w = 1.0e6  # 1 MW through a house connection
        voltage_v = OUT_OF_RANGE_VOLTAGE_V
    if garbage in ("nan", "inf"):
        junk = math.nan if garbage == "nan" else math.inf
        import_w = voltage_v = current_a = frequency_hz = export_wh = import_wh = junk
    elif garbage == "huge":
        import_wh += GARBAGE_ENERGY_OFFSET_WH
    return (
        current_a,
        current_a,
        voltage_v,
        voltage_v,
        frequency_hz,
        import_w,
        import_w,
        abs(import_w),
        abs(import_w),
        0.0,
        0.0,
        1.0,
        1.0,
        export_wh,
        import_wh,
    )
