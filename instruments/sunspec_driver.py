"""What the SunSpec Modbus drivers (inverter, PV inverter, meter) share.

`SunSpecDriver` opens the Modbus session from the config (name, clock, link; the subclass's
`_discover` runs at every (re)connect); `point_spans` and `point_readers` lay out a model's
points for one read plan; `AcEnergyCounters` gives a snapshot with 701 TotWhInj/TotWhAbs its
delivered and throughput energy.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

from instruments.config import SunSpecModbusConfig
from instruments.device import Clock, plausible, utc_now
from instruments.link import StatusListener
from instruments.modbus_session import ModbusSession, ModelInstance
from instruments.sunspec_codec import PointReader, RegisterImage

ConfigT = TypeVar("ConfigT", bound=SunSpecModbusConfig)


class SunSpecDriver(Generic[ConfigT]):
    """The Modbus session of a SunSpec device and its step read plan (empty until discovered)."""

    def __init__(
        self,
        config: ConfigT,
        *,
        clock: Clock = utc_now,
        on_status: StatusListener | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.clock = clock
        self.session = ModbusSession(
            config.name,
            config.host,
            config.port,
            device_id=config.device_id,
            timeout_s=config.timeout_s,
            backoff=config.backoff(),
            on_status=on_status,
            on_open=self._discover,
        )
        self.link = self.session.link
        self._read_plan: list[tuple[int, int]] = []

    async def _discover(self) -> None:
        """After every (re)connect: find the models and lay out `_read_plan`."""
        raise NotImplementedError

    async def _read_step(self) -> RegisterImage:
        """The registers of one step's read plan (opening and discovering first if need be)."""
        if not self._read_plan:  # never connected: open (and discover) first
            await self.link.ensure()
        return await self.session.read_image(self._read_plan)


def point_spans(model: ModelInstance, names: Iterable[str]) -> list[tuple[int, int]]:
    """(address, size) of each named point the model implements."""
    points = model.layout.points
    return [(model.address + points[n].offset, points[n].size) for n in names if n in points]


def point_readers(
    plan: list[tuple[int, int]], model: ModelInstance, names: Iterable[str]
) -> dict[str, PointReader]:
    """A reader in `plan` of each named point the model implements, by name."""
    points = model.layout.points
    return {
        n: PointReader(plan, model.address, model.layout, points[n]) for n in names if n in points
    }


def energy_kwh(device: str, quantity: str, wh: float | None) -> float:
    """An energy register (Wh) in kWh; a missing or negative value is a bad reading."""
    return plausible(device, quantity, None if wh is None else wh / 1000, 0.0, 1e9)


class AcEnergyCounters:
    """delivered_kwh and throughput_kwh of a snapshot's 701 TotWhInj and TotWhAbs (kWh)."""

    __slots__ = ()
    ac_injected_kwh: float
    ac_absorbed_kwh: float

    @property
    def delivered_kwh(self) -> float:
        return self.ac_injected_kwh - self.ac_absorbed_kwh

    @property
    def throughput_kwh(self) -> float:
        return self.ac_injected_kwh + self.ac_absorbed_kwh
