"""Driver configurations for the endpoints of a running emulated plant (tests and benchmarks).

The drivers never see hil_sim: they get host, port and limits, as they would for the real lab.
"""

from __future__ import annotations

from typing import Any

from instruments.config import (
    EvChargerConfig,
    ProgrammableLoadConfig,
    SunSpecInverterConfig,
    SunSpecMeterConfig,
)
from labspec.endpoints import PlantEndpoints

FAST_BACKOFF = {"backoff_initial_s": 0.05, "backoff_max_s": 0.4}


def inverter_config(endpoints: PlantEndpoints, **overrides: Any) -> SunSpecInverterConfig:
    ep = endpoints.inverter
    return SunSpecInverterConfig(
        host=ep.host, port=ep.port, device_id=ep.unit, **{**FAST_BACKOFF, **overrides}
    )


def meter_config(endpoints: PlantEndpoints, peer: str, **overrides: Any) -> SunSpecMeterConfig:
    ep = endpoints.meter(peer)
    return SunSpecMeterConfig(
        name=f"meter_{peer}",
        host=ep.host,
        port=ep.port,
        device_id=ep.unit,
        **{**FAST_BACKOFF, **overrides},
    )


def ev_config(endpoints: PlantEndpoints, **overrides: Any) -> EvChargerConfig:
    return EvChargerConfig(url=endpoints.ev_charger.url, **{**FAST_BACKOFF, **overrides})


def load_config(endpoints: PlantEndpoints, **overrides: Any) -> ProgrammableLoadConfig:
    ep = endpoints.load
    return ProgrammableLoadConfig(host=ep.host, port=ep.port, **{**FAST_BACKOFF, **overrides})
