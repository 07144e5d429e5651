"""A peer's devices as the engine sees them: channels, a process image, and its dispatcher.

Each device is built by its driver kind (`testbed.driver_registry`), which puts it in the peer's
slot of its role: the PCC meter, a PV inverter, the storage inverter or EV charger (the one
flexible device), a programmable load. This module knows which reading means what for the
controller (PCC power, energy registers, PV and storage power, state of charge) and turns a peer's
target at the PCC (its contract plus its plan's grid import, `testbed.dispatch.pcc_target_kw`)
into its flexible device's setpoint each step. It also puts the devices into
their known operating state at the start of a run (`prepare`), checks every reading against what
drives it (`watch_freezes`, see `testbed.frozen`) and brings a device back from its safe state
when the cause has cleared (`recover`; the flexible device ramps from what it measures).
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Never, Protocol

from instruments.ev_charger import EvChargerSnapshot, EvSetpoint
from instruments.inverter import InverterSetpoint, InverterSnapshot
from instruments.programmable_load import LoadSetpoint, LoadSnapshot
from peers.assets import PeerAssets
from peers.interface import DeviceState
from testbed.channels import Channel, ReadingT, SetpointT
from testbed.config import ControlConfig, PeerConfig
from testbed.dispatch import MobilityNeed, StorageCommand, battery_command, ev_command
from testbed.driver_registry import (
    ROLE_CHANNEL,
    EvDriver,
    LoadDriver,
    MeterDriver,
    MeterReading,
    PvDriver,
    PvReading,
    Role,
    StorageDriver,
    driver_kind,
)
from testbed.drivers import DeviceDriver, DeviceReading, field_names
from testbed.safety import StorageLimits


@dataclass(frozen=True, slots=True)
class PeerImage:
    """One peer's process image at one step (None = not measured or stale)."""

    pcc_kw: float | None
    import_kwh: float | None
    export_kwh: float | None
    device_kw: float | None  # sum of the metered devices' AC power behind the PCC
    house_load_kw: float | None  # unmetered house load, >= 0
    pv_kw: float | None
    battery_soc_pct: float | None
    ev_soc_pct: float | None
    ev_plugged: bool | None


_NUMERIC_FIELDS: dict[type, tuple[str, ...]] = {}
_NUMBER_TYPES = {float, int, bool, type(None)}


MeterChannel = Channel[MeterReading, Never]
PvChannel = Channel[PvReading, Never]
InverterChannel = Channel[InverterSnapshot, InverterSetpoint]
EvChannel = Channel[EvChargerSnapshot, EvSetpoint]
LoadChannel = Channel[LoadSnapshot, LoadSetpoint]
AnyChannel = MeterChannel | PvChannel | InverterChannel | EvChannel | LoadChannel
# the devices behind the PCC meter
DeviceChannel = PvChannel | InverterChannel | EvChannel | LoadChannel


class _ChannelFactory(Protocol):
    def __call__(
        self, device: str, driver: DeviceDriver[ReadingT, SetpointT]
    ) -> Channel[ReadingT, SetpointT]: ...


class _Slots:
    """A peer's channels by role, filled by the registry's driver kinds (`DeviceSlots`); a role
    taken twice is refused. Each channel is named after its role (`ROLE_CHANNEL`)."""

    def __init__(self, channel: _ChannelFactory) -> None:
        self._channel = channel
        self.meter: MeterChannel | None = None
        self.pv: PvChannel | None = None
        self.inverter: InverterChannel | None = None
        self.ev_charger: EvChannel | None = None
        self.load: LoadChannel | None = None

    @staticmethod
    def _free(taken: object, device_id: str, role: Role) -> str:
        if taken is not None:
            raise ValueError(f"{device_id}: the peer has a {ROLE_CHANNEL[role]} already")
        return ROLE_CHANNEL[role]

    def add_meter(self, device_id: str, driver: MeterDriver) -> None:
        self.meter = self._channel(self._free(self.meter, device_id, "meter"), driver)

    def add_pv(self, device_id: str, driver: PvDriver) -> None:
        self.pv = self._channel(self._free(self.pv, device_id, "pv"), driver)

    def add_storage(self, device_id: str, driver: StorageDriver) -> None:
        self.inverter = self._channel(self._free(self.inverter, device_id, "storage"), driver)

    def add_ev(self, device_id: str, driver: EvDriver) -> None:
        self.ev_charger = self._channel(self._free(self.ev_charger, device_id, "ev"), driver)

    def add_load(self, device_id: str, driver: LoadDriver) -> None:
        self.load = self._channel(self._free(self.load, device_id, "load"), driver)


def snapshot_values(snapshot: DeviceReading) -> dict[str, float]:
    """The numeric and boolean fields of a driver snapshot, as Sample values (booleans as 0/1)."""
    kind = type(snapshot)
    names = _NUMERIC_FIELDS.get(kind)
    if names is None:
        hints = typing.get_type_hints(kind)
        names = tuple(
            name
            for name in field_names(snapshot)
            if set(typing.get_args(hints[name]) or (hints[name],)) <= _NUMBER_TYPES
        )
        _NUMERIC_FIELDS[kind] = names
    values = {}
    for name in names:
        value = getattr(snapshot, name)
        if value is not None:
            values[name] = float(value)
    return values


def _sum_or_none(values: list[float | None]) -> float | None:
    """The sum of `values`, or None when any is missing."""
    total = 0.0
    for value in values:
        if value is None:
            return None
        total += value
    return total


class PeerDevices:
    """The channels of one peer and the dispatcher of its flexible device."""

    def __init__(
        self,
        peer: str,
        config: PeerConfig,
        assets: PeerAssets,
        control: ControlConfig,
        clock: Callable[[], datetime],
    ) -> None:
        self.peer = peer
        self.assets = assets
        self.control = control
        self.dt_s = control.step_s

        def channel(
            device: str, driver: DeviceDriver[ReadingT, SetpointT]
        ) -> Channel[ReadingT, SetpointT]:
            driver.link.seconds = lambda: clock().timestamp()  # reconnect backoff: run's clock
            return Channel(
                peer=peer,
                device=device,
                driver=driver,
                lost_after_failures=control.lost_after_failures,
                stale_after_steps=control.stale_after_steps,
                io_timeout_s=control.io_timeout_s,
            )

        slots = _Slots(channel)
        for entry in config.devices.values():  # every device built by its registered kind
            driver_kind(entry.driver).install(slots, entry.name, entry.config, clock)
        if slots.meter is None:
            raise ValueError(f"peer {peer}: no PCC meter")
        self.meter: MeterChannel = slots.meter
        self.meter.watch.sensor = True
        self.pv: PvChannel | None = slots.pv
        self.inverter: InverterChannel | None = slots.inverter
        self.ev_charger: EvChannel | None = slots.ev_charger
        self.load: LoadChannel | None = slots.load
        if self.load is not None:
            self.load.watch.sensor = True
        for flexible in (self.inverter, self.ev_charger):
            if flexible is not None:
                flexible.watch.follows_setpoint = True
        self.channels: list[AnyChannel] = [
            c
            for c in (self.meter, self.pv, self.inverter, self.ev_charger, self.load)
            if c is not None
        ]
        self._devices: list[DeviceChannel] = [
            c for c in (self.pv, self.inverter, self.ev_charger, self.load) if c is not None
        ]
        self._ramp_kw_per_s = config.ramp_kw_per_s
        self._last_command_kw = 0.0
        self._last_sent: float | None = None
        self._last_sent_time: datetime | None = None
        self._holding = False
        self._resume = False  # take the device's measured power as the ramp's start
        self._charging_for_departure = False
        self._events: list[tuple[str, str, str, str]] = []
        self._image_step: int | None = None
        self._image: PeerImage | None = None

    # -- what the engine records ---------------------------------------------------------------

    def values(self, channel: AnyChannel) -> dict[str, float]:
        if channel.snapshot is None:
            return {}
        values = snapshot_values(channel.snapshot)
        if channel is self.meter:
            values["contract_kw"] = self.contract_kw
            values["target_kw"] = self.target_kw
        return values

    contract_kw: float = 0.0  # the interval's P2P contract at the PCC
    target_kw: float = 0.0  # the PCC power the dispatcher holds (`dispatch.pcc_target_kw`)

    def image(self, step: int | None) -> PeerImage:
        """The process image of `step` (None = the latest one built)."""
        if step is None:
            assert self._image is not None
            return self._image
        if self._image_step == step and self._image is not None:
            return self._image
        meter = self.meter.fresh(step)
        device_snaps = [c.fresh(step) for c in self._devices]
        complete = all(s is not None for s in device_snaps)
        device_kw = sum(s.ac_power_kw for s in device_snaps if s is not None) if complete else None
        house = None
        if meter is not None and device_kw is not None:
            load_device = self.load.fresh(step) if self.load else None
            house = -(meter.power_kw - device_kw)
            if load_device is not None:
                house = -meter.power_kw
        inverter = self.inverter.fresh(step) if self.inverter else None
        pv = self.pv.fresh(step) if self.pv else None
        pv_sources: list[float | None] = []  # a hybrid inverter's PV port, a PV inverter
        if self.inverter is not None:
            pv_sources.append(inverter.pv_power_kw if inverter else None)
        if self.pv is not None:
            pv_sources.append(pv.pv_power_kw if pv else None)
        ev = self.ev_charger.fresh(step) if self.ev_charger else None
        self._image = PeerImage(
            pcc_kw=meter.power_kw if meter else None,
            import_kwh=meter.import_kwh if meter else None,
            export_kwh=meter.export_kwh if meter else None,
            device_kw=device_kw,
            house_load_kw=house,
            pv_kw=_sum_or_none(pv_sources),
            battery_soc_pct=inverter.soc_pct if inverter else None,
            ev_soc_pct=ev.soc_pct if ev else None,
            ev_plugged=ev.plugged if ev else None,
        )
        self._image_step = step
        return self._image

    def device_state(self, step: int, now: datetime) -> DeviceState:
        image = self.image(step)
        ev = self.ev_charger.fresh(step) if self.ev_charger else None
        return DeviceState(
            time=now,
            battery_soc_pct=image.battery_soc_pct,
            ev_soc_pct=image.ev_soc_pct,
            ev_plugged=image.ev_plugged,
            ev_departure_time=ev.departure_time if ev else None,
        )

    def take_events(self) -> list[tuple[str, str, str, str]]:
        events, self._events = self._events, []
        return events

    # -- operating state, freezes, recovery -----------------------------------------------------

    async def prepare(self) -> list[str]:
        """Put every device into its known operating state, whatever an earlier run left behind:
        the inverter's battery idle (WSetEna off, WSet 0; the dispatcher ramps it from there), the
        charger enabled at 0 kW, the load's input on playing its programmed profile. Returns
        the devices that refused."""
        steps: list[tuple[DeviceChannel, str]] = []
        if self.inverter is not None:
            steps.append((self.inverter, "WSetEna off, WSet 0"))
        if self.ev_charger is not None:
            steps.append((self.ev_charger, "enabled at 0 kW"))
        if self.load is not None:
            steps.append((self.load, "FUNC LIST, INP ON"))
        refused = []
        for channel, what in steps:
            if await channel.command(channel.driver.operating_state, f"run start: {what}"):
                event = (channel.device, "operating_state", f"run start: {what}", "set")
                self._events.append(event)
            else:
                refused.append(f"{channel.device} ({what})")
        return refused

    def watch_freezes(self, step: int) -> None:
        """Check this step's readings against what drives them (`testbed.frozen`): the meter
        against the devices behind it, a device against its setpoint, the load against its meter."""
        devices_kw: float | None = None
        total_kw = 0.0
        for channel in self._devices:
            if channel.snapshot_step != step or channel.frozen or channel.lost:
                break
            if channel.snapshot is None:
                break
            total_kw += channel.snapshot.ac_power_kw
        else:
            devices_kw = total_kw
        meter = self.meter
        meter.watch_freeze(step, devices_kw if self._devices else None, self.dt_s)
        meter_kw = (
            meter.snapshot.power_kw
            if meter.snapshot is not None
            and meter.snapshot_step == step
            and not meter.frozen
            and not meter.lost
            else None
        )
        flexible = self.inverter or self.ev_charger
        if flexible is not None:
            flexible.watch_freeze(step, self._last_sent, self.dt_s)
        if self.load is not None:
            neighbour = None if meter_kw is None or len(self._devices) != 1 else meter_kw
            self.load.watch_freeze(step, neighbour, self.dt_s)

    async def recover(self, step: int) -> None:
        """Bring the load back from its safe state once it answers plausibly again: input on at
        its programmed profile. (The flexible device comes back through the dispatcher.)"""
        load = self.load
        if load is None or not load.in_safe_state or load.fresh(step) is None:
            return
        if await load.command(load.driver.operating_state, "FUNC LIST; INP ON"):
            load.in_safe_state = False
            self._events.append(
                (load.device, "safe_state", "input back on at its programmed profile", "cleared")
            )

    # -- delivery -------------------------------------------------------------------------------

    async def dispatch(
        self, step: int, contract_kw: float, now: datetime, target_kw: float | None = None
    ) -> tuple[str, StorageCommand] | None:
        """Move the flexible device so the PCC follows `target_kw` (None = the contract); None when
        the peer has none."""
        self.contract_kw = contract_kw
        self.target_kw = contract_kw if target_kw is None else target_kw
        tracked_kw = self.target_kw
        flexible = self.inverter or self.ev_charger
        if flexible is None:
            return None
        meter = self.meter.fresh(step)
        device = flexible.fresh(step)
        if flexible.lost:
            self._forget_command()  # its safe state (or its watchdog) takes it to 0 kW
            return None
        if meter is None or device is None:
            await self._hold(flexible, step, meter is None)
            return None
        if self._holding:
            self._holding = False
            self._events.append((flexible.device, "stale_measurement", "fresh again", "cleared"))
        if self._resume or flexible.in_safe_state:
            self._resume_from(flexible, device)
        sent: bool
        if self.inverter is not None and isinstance(device, InverterSnapshot):
            setpoint_kw, command = battery_command(
                tracked_kw,
                meter.power_kw,
                device.ac_power_kw,
                device.pv_power_kw,
                device.soc_pct,
                self._last_command_kw,
                self._battery_limits(device),
                self.dt_s,
            )
            setpoint = InverterSetpoint(power_kw=_clamp(setpoint_kw, device.rated_power_kw))
            self._last_command_kw = command.storage_kw
            written = self._should_send(setpoint_kw, now)
            sent = written and await self.inverter.apply(setpoint, step)
        elif self.ev_charger is not None and isinstance(device, EvChargerSnapshot):
            if not device.plugged:
                self._charging_for_departure = False
                command = StorageCommand(0.0, ())
            else:
                mobility = self._mobility()
                departure = device.departure_time
                # Hysteresis: once charging for the departure, keep on until the SoC is reached.
                self._charging_for_departure = mobility is not None and (
                    mobility.must_charge(device.soc_pct, now, departure)
                    or (
                        self._charging_for_departure and device.soc_pct < mobility.departure_soc_pct
                    )
                )
                command = ev_command(
                    tracked_kw,
                    meter.power_kw,
                    device.power_kw,
                    device.soc_pct,
                    self._last_command_kw,
                    self._ev_limits(device),
                    self.dt_s,
                    must_charge=self._charging_for_departure,
                    mobility=mobility,
                    departure=departure,
                )
            setpoint_kw = command.storage_kw
            self._last_command_kw = command.storage_kw
            wanted = device.plugged or self._last_sent != 0.0
            written = wanted and self._should_send(setpoint_kw, now)
            sent = written and await self.ev_charger.apply(EvSetpoint(power_kw=setpoint_kw), step)
        else:
            raise TypeError(f"{flexible.device}: a {type(device).__name__} is not its reading")
        if sent:
            self._last_sent = setpoint_kw
            self._last_sent_time = now
        elif not written and self._last_sent is not None:
            # Not sent (within the deadband): the device holds the last setpoint, so the next
            # step's ramp starts there, not at a command it never received. (A write that failed
            # may still have landed: the ramp goes on from the command, as before.)
            held_kw = self._last_sent
            if isinstance(device, InverterSnapshot):
                held_kw -= device.pv_power_kw  # WSet is AC: the battery gives the rest
            self._last_command_kw = held_kw
        return flexible.device, command

    def _should_send(self, setpoint_kw: float, now: datetime) -> bool:
        if self._last_sent is None or self._last_sent_time is None:
            return True
        if abs(setpoint_kw - self._last_sent) > self.control.setpoint_deadband_kw:
            return True
        if setpoint_kw == 0.0 and self._last_sent != 0.0:
            return True
        return (now - self._last_sent_time).total_seconds() >= self.control.refresh_s

    async def _hold(
        self, flexible: InverterChannel | EvChannel, step: int, meter_missing: bool
    ) -> None:
        """Without a fresh PCC or device measurement, the flexible device goes to its safe state."""
        if self._holding:
            return
        self._holding = True
        what = "PCC meter" if meter_missing else flexible.device
        self._events.append(
            (
                flexible.device,
                "stale_measurement",
                f"no fresh {what} reading for {self.control.stale_after_steps} steps",
                "safe_state",
            )
        )
        self._forget_command()
        await flexible.safe_state(f"stale {what} measurement")

    def _forget_command(self) -> None:
        """The device left our control: the next command ramps from what it measures then."""
        self._last_command_kw = 0.0
        self._last_sent = None
        self._resume = True

    def _resume_from(
        self, flexible: InverterChannel | EvChannel, device: InverterSnapshot | EvChargerSnapshot
    ) -> None:
        """Back in operation after a safe state: the ramp starts where the device is (the
        battery's measured power; the charger's setpoint as it holds it, 0 when disabled)."""
        if isinstance(device, InverterSnapshot):
            measured_kw = device.battery_power_kw
        else:
            measured_kw = device.setpoint_kw if device.enabled else 0.0
        self._last_command_kw = measured_kw
        self._last_sent = None
        self._resume = False
        if flexible.in_safe_state:
            flexible.in_safe_state = False
            self._events.append(
                (
                    flexible.device,
                    "safe_state",
                    f"back in operation, ramping from {measured_kw:.3f} kW",
                    "cleared",
                )
            )

    def _battery_limits(self, snapshot: InverterSnapshot) -> StorageLimits:
        battery = self.assets.battery
        max_charge = battery.max_charge_kw if battery else snapshot.rated_power_kw
        max_discharge = battery.max_discharge_kw if battery else snapshot.rated_power_kw
        if snapshot.battery_max_charge_kw:
            max_charge = min(max_charge, snapshot.battery_max_charge_kw)
        if snapshot.battery_max_discharge_kw:
            max_discharge = min(max_discharge, snapshot.battery_max_discharge_kw)
        return StorageLimits(
            max_charge_kw=max_charge,
            max_discharge_kw=max_discharge,
            soc_min_pct=battery.soc_min_pct if battery else 10.0,
            soc_max_pct=battery.soc_max_pct if battery else 95.0,
            ramp_kw_per_s=self._ramp_kw_per_s,
        )

    def _ev_limits(self, snapshot: EvChargerSnapshot) -> StorageLimits:
        """The stricter of the EV's assets and what the charger reports about itself."""
        ev = self.assets.ev
        assert ev is not None, f"peer {self.peer} has an EV charger but no EV in its assets"
        return StorageLimits(
            max_charge_kw=min(ev.max_charge_kw, snapshot.max_charge_kw),
            max_discharge_kw=min(ev.max_discharge_kw, snapshot.max_discharge_kw),
            soc_min_pct=max(ev.reserve_soc_pct, snapshot.reserve_soc_pct, snapshot.soc_min_pct),
            soc_max_pct=min(ev.soc_max_pct, snapshot.soc_max_pct),
            ramp_kw_per_s=min(self._ramp_kw_per_s, snapshot.ramp_kw_per_s),
            min_power_kw=max(ev.min_power_kw, snapshot.min_power_kw),
        )

    def _mobility(self) -> MobilityNeed | None:
        ev = self.assets.ev
        if ev is None:
            return None
        return MobilityNeed(
            capacity_kwh=ev.capacity_kwh,
            departure_soc_pct=ev.departure_soc_pct,
            charge_efficiency=ev.charge_efficiency,
            max_charge_kw=ev.max_charge_kw,
        )


def _clamp(value: float, limit: float) -> float:
    return max(-limit, min(limit, value))
