"""SunSpec PV inverter (a PV array behind its own inverter, no battery) over Modbus TCP; read only.

Models: 701 AC measurement, 702 ratings, 714 DC ports (one PV port). Offsets come from
pysunspec2's definitions, laid out at every (re)connect; the rating (702 WMaxRtg) is read then too.
One `read()` is one Modbus request when 701 and 714 fit in one block, else one per model.

It takes no setpoint: the emulated plant's PV inverters serve no control model (704), so the
controller only reads their production; a sensor's safe state is a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from instruments.config import SunSpecPvInverterConfig
from instruments.device import Clock, FreezeGuard, Instrument, plausible, utc_now
from instruments.errors import ProtocolMismatch
from instruments.link import StatusListener
from instruments.modbus_session import require_model
from instruments.sunspec_codec import PointReader, RegisterImage
from instruments.sunspec_driver import (
    AcEnergyCounters,
    SunSpecDriver,
    energy_kwh,
    point_readers,
    point_spans,
)
from instruments.sunspec_models import plan_reads
from labspec.sunspec_layout import DC_PORT_TYPE_PV

_MODELS = (701, 702, 714)
_AC_POINTS = ("W", "Hz", "LNV", "LLV", "TotWhInj", "TotWhAbs")
_AC_SFS = ("W_SF", "Hz_SF", "V_SF", "TotWh_SF")
_DC_SFS = ("DCW_SF",)
_PORT_POINTS = ("PrtTyp", "DCW")


@dataclass(frozen=True, slots=True)
class PvInverterSnapshot(AcEnergyCounters):
    """One reading of a PV inverter; power in kW, + = toward the grid."""

    time: datetime
    ac_power_kw: float  # 701 W
    pv_power_kw: float  # 714 PV port DCW (>= 0)
    voltage_v: float
    frequency_hz: float
    ac_injected_kwh: float  # 701 TotWhInj
    ac_absorbed_kwh: float  # 701 TotWhAbs
    rated_power_kw: float  # 702 WMaxRtg


class SunSpecPvInverter(SunSpecDriver[SunSpecPvInverterConfig], Instrument[PvInverterSnapshot]):
    """Driver of a SunSpec PV inverter; see the module docstring."""

    def __init__(
        self,
        config: SunSpecPvInverterConfig,
        *,
        clock: Clock = utc_now,
        on_status: StatusListener | None = None,
    ) -> None:
        super().__init__(config, clock=clock, on_status=on_status)
        self.rated_power_kw: float | None = None
        self._readers: dict[str, PointReader] = {}
        self._port_readers: list[dict[str, PointReader]] = []  # per 714 DC port
        self._freeze = FreezeGuard(
            config.name, "ac_energy_kwh", config.plausibility.frozen_after_kwh
        )

    async def connect(self) -> None:
        """Open the session (which discovers the models) and take a first reading."""
        await self.link.connect()
        await self.read()

    async def _discover(self) -> None:
        """After every (re)connect: find 701, 702 and 714, read the rating, plan the step read."""
        found = await self.session.scan(self.config.base_addresses)
        models = {m: require_model(self.name, found, m) for m in _MODELS}
        ports = models[714].layout.repeats.get("Prt", ())
        if not ports:
            raise ProtocolMismatch(self.name, "model 714 has no DC port; need a PV port")
        rating = models[702]
        w_max, w_sf = (rating.layout.point(n) for n in ("WMaxRtg", "W_SF"))
        image = await self.session.read_image(
            plan_reads([(rating.address + p.offset, p.size) for p in (w_max, w_sf)]),
            raw=True,
        )
        rated_w = image.scaled(rating.address, rating.layout, w_max)
        if rated_w is None or rated_w <= 0:
            raise ProtocolMismatch(self.name, f"702 WMaxRtg is {rated_w!r}; need a positive rating")
        self.rated_power_kw = rated_w / 1000.0
        ac, dc = models[701], models[714]
        spans = point_spans(ac, _AC_POINTS + _AC_SFS) + point_spans(dc, _DC_SFS)
        spans += [
            (dc.address + port[n].offset, port[n].size) for port in ports for n in _PORT_POINTS
        ]
        plan = plan_reads(spans)
        self._readers = point_readers(plan, ac, _AC_POINTS)
        self._port_readers = [
            {n: PointReader(plan, dc.address, dc.layout, port[n]) for n in _PORT_POINTS}
            for port in ports
        ]
        self._read_plan = plan

    def _pv_port(self, image: RegisterImage) -> PointReader:
        """DCW of the PV port (by PrtTyp; the only port when PrtTyp is unset)."""
        for port in self._port_readers:
            if port["PrtTyp"].raw(image) == DC_PORT_TYPE_PV:
                return port["DCW"]
        return self._port_readers[0]["DCW"]

    async def read(self) -> PvInverterSnapshot:
        image = await self._read_step()
        snapshot = self._decode(image)
        self._freeze.check(snapshot.time, snapshot.ac_power_kw, snapshot.throughput_kwh)
        return snapshot

    def _decode(self, image: RegisterImage) -> PvInverterSnapshot:
        assert self.rated_power_kw is not None, "connect() first"
        name, ranges = self.name, self.config.plausibility
        readers = self._readers

        def value(point: str) -> float | None:
            reader = readers.get(point)
            return None if reader is None else reader.scaled(image)

        limit_kw = ranges.power_rating_multiple * self.rated_power_kw

        def kw(quantity: str, watts: float | None, low_kw: float) -> float:
            return plausible(
                name, quantity, None if watts is None else watts / 1000, low_kw, limit_kw
            )

        voltage = value("LNV")
        if voltage is None:
            voltage = value("LLV")
        return PvInverterSnapshot(
            time=self.clock(),
            ac_power_kw=kw("ac_power_kw", value("W"), -0.05 * limit_kw),
            pv_power_kw=kw("pv_power_kw", self._pv_port(image).scaled(image), -0.01 * limit_kw),
            voltage_v=plausible(name, "voltage_v", voltage, *ranges.voltage_v),
            frequency_hz=plausible(name, "frequency_hz", value("Hz"), *ranges.frequency_hz),
            ac_injected_kwh=energy_kwh(name, "ac_injected_kwh", value("TotWhInj")),
            ac_absorbed_kwh=energy_kwh(name, "ac_absorbed_kwh", value("TotWhAbs")),
            rated_power_kw=self.rated_power_kw,
        )
