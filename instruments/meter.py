"""SunSpec PCC meter over Modbus TCP: model 211 (single phase, float) or model 201 (integer + SF).

One `read()` is one Modbus request (the needed points of either model fit in 125 registers).
The meter counts power positive when imported (labspec.sunspec_layout); the snapshot turns it into
the generator convention (+ = export). A meter has no setpoint; `safe_state()` does nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from instruments.config import SunSpecMeterConfig
from instruments.device import (
    Clock,
    FreezeGuard,
    Instrument,
    RegisterBreak,
    RegisterGuard,
    plausible,
    utc_now,
)
from instruments.errors import ProtocolMismatch
from instruments.link import StatusListener
from instruments.modbus_session import ModelInstance
from instruments.sunspec_codec import PointReader, RegisterImage
from instruments.sunspec_driver import SunSpecDriver, energy_kwh, point_readers, point_spans
from instruments.sunspec_models import plan_reads
from labspec.sunspec_layout import METER_W_POSITIVE_IS_IMPORT

METER_MODELS_PREFERRED = (211, 201)
_POINTS = ("W", "A", "PhV", "PhVphA", "Hz", "TotWhExp", "TotWhImp")
_SFS = ("W_SF", "A_SF", "V_SF", "Hz_SF", "TotWh_SF")


@dataclass(frozen=True, slots=True)
class MeterSnapshot:
    """One reading of a PCC meter; power in kW, + = export to the grid."""

    time: datetime
    power_kw: float
    voltage_v: float
    current_a: float
    frequency_hz: float
    import_kwh: float
    export_kwh: float
    register_break: RegisterBreak | None = None  # this reading begins a new register series

    @property
    def ac_power_kw(self) -> float:
        return self.power_kw

    @property
    def delivered_kwh(self) -> float:
        return self.export_kwh - self.import_kwh

    @property
    def throughput_kwh(self) -> float:
        return self.import_kwh + self.export_kwh


class SunSpecMeter(SunSpecDriver[SunSpecMeterConfig], Instrument[MeterSnapshot]):
    """Driver of a SunSpec PCC meter; see the module docstring."""

    def __init__(
        self,
        config: SunSpecMeterConfig,
        *,
        clock: Clock = utc_now,
        on_status: StatusListener | None = None,
    ) -> None:
        super().__init__(config, clock=clock, on_status=on_status)
        self.model: ModelInstance | None = None
        self._readers: dict[str, PointReader] = {}  # the points read every step, by name
        self._freeze = FreezeGuard(config.name, "energy_kwh", config.plausibility.frozen_after_kwh)
        ranges = config.plausibility
        self._registers = RegisterGuard(
            config.name,
            ranges.power_rating_multiple * config.rated_power_kw,
            ranges.register_slack_kwh,
            ranges.register_restart_after_readings,
        )

    async def connect(self) -> None:
        """Open the session (which finds the meter model) and check that it reads."""
        await self.link.connect()
        await self.read()

    async def _discover(self) -> None:
        """After every (re)connect: find model 211 (or 201) and plan the one read."""
        found = await self.session.scan(self.config.base_addresses)
        for model_id in METER_MODELS_PREFERRED:
            if found.get(model_id):
                model = found[model_id][0]
                break
        else:
            raise ProtocolMismatch(
                self.name, f"no meter model {METER_MODELS_PREFERRED} (device has {sorted(found)})"
            )
        plan = plan_reads(point_spans(model, _POINTS + _SFS))
        self._readers = point_readers(plan, model, _POINTS)
        self.model, self._read_plan = model, plan

    async def read(self) -> MeterSnapshot:
        image = await self._read_step()
        assert self.model is not None
        snapshot = self._decode(image, self.model)
        restart = self._registers.check(
            snapshot.time, {"import_kwh": snapshot.import_kwh, "export_kwh": snapshot.export_kwh}
        )
        if restart is not None:
            self._freeze.reset()
            snapshot = replace(snapshot, register_break=restart)
        self._freeze.check(
            snapshot.time, snapshot.power_kw, snapshot.import_kwh + snapshot.export_kwh
        )
        return snapshot

    def _decode(self, image: RegisterImage, model: ModelInstance) -> MeterSnapshot:
        name, ranges = self.name, self.config.plausibility

        readers = self._readers

        def value(point: str) -> float | None:
            reader = readers.get(point)
            return None if reader is None else reader.scaled(image)

        limit_kw = ranges.power_rating_multiple * self.config.rated_power_kw
        watts = value("W")
        import_w = plausible(
            name, "power_kw", None if watts is None else watts / 1000, -limit_kw, limit_kw
        )
        voltage = value("PhV")
        if voltage is None:
            voltage = value("PhVphA")
        nominal_a = limit_kw * 1000 / ranges.voltage_v[0]
        return MeterSnapshot(
            time=self.clock(),
            power_kw=-import_w if METER_W_POSITIVE_IS_IMPORT else import_w,
            voltage_v=plausible(name, "voltage_v", voltage, *ranges.voltage_v),
            current_a=plausible(name, "current_a", value("A"), -nominal_a, nominal_a),
            frequency_hz=plausible(name, "frequency_hz", value("Hz"), *ranges.frequency_hz),
            import_kwh=energy_kwh(name, "import_kwh", value("TotWhImp")),
            export_kwh=energy_kwh(name, "export_kwh", value("TotWhExp")),
        )
