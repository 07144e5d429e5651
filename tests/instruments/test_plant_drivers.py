"""Every driver against the emulated plant over real sockets: reads, writes confirmed by read-back,
setpoints that take effect, safe states, and setpoints refused before they are sent."""

from __future__ import annotations

import pytest

from instruments.errors import SetpointRefused
from instruments.ev_charger import EvSetpoint
from instruments.inverter import InverterSetpoint
from instruments.programmable_load import LoadSetpoint, ProgrammableLoad
from tests.instruments.plant_drivers import load_config


async def test_every_device_reads_plausible_values_at_plant_time(
    inverter, meters, ev_charger, load, clock
):
    snapshots = [
        await inverter.read(),
        *[await meter.read() for meter in meters.values()],
        await ev_charger.read(),
        await load.read(),
    ]
    assert all(s.time == clock.now for s in snapshots)
    inv, meter_a, meter_b, meter_c, ev, c = snapshots
    assert inv.rated_power_kw == 5.0 and inv.battery_capacity_kwh == 7.5
    assert 0 < inv.soc_pct < 100 and 200 < inv.voltage_v < 260
    assert 49 < meter_a.frequency_hz < 51
    assert meter_b.power_kw < 0  # peer B's house load draws from the grid
    assert ev.plugged and ev.max_charge_kw > 0 and ev.departure_time.tzinfo is not None
    assert c.power_kw <= 0 and c.function in ("POW", "LIST")
    assert meter_c.power_kw == pytest.approx(c.power_kw, abs=0.01)  # load C is all of peer C


async def test_an_inverter_setpoint_is_confirmed_and_moves_the_pcc(inverter, meters, clock):
    before = await meters["A"].read()
    confirmation = await inverter.apply(InverterSetpoint(-2.0))  # charge the battery from the grid
    assert confirmation.read_back == InverterSetpoint(-2.0, enabled=True)
    await clock.advance(10)
    snapshot = await inverter.read()
    after = await meters["A"].read()
    assert snapshot.wset_kw == -2.0 and snapshot.wset_enabled
    assert snapshot.ac_power_kw == pytest.approx(-2.0, abs=0.05)
    assert snapshot.battery_power_kw < -1.5  # charging
    assert after.power_kw - before.power_kw == pytest.approx(-2.0, abs=0.3)


async def test_the_inverter_safe_state_idles_the_battery(inverter, clock):
    await inverter.apply(InverterSetpoint(-2.0))
    await clock.advance(5)
    confirmation = await inverter.safe_state()
    assert confirmation.read_back == InverterSetpoint(0.0, enabled=False)
    await clock.advance(5)
    snapshot = await inverter.read()
    assert not snapshot.wset_enabled
    assert snapshot.battery_power_kw == pytest.approx(0.0, abs=0.01)


async def test_the_inverter_reverts_by_itself_when_the_controller_goes_quiet(fresh_plant, clock):
    from instruments.inverter import SunSpecInverter
    from tests.instruments.plant_drivers import inverter_config

    inverter = SunSpecInverter(inverter_config(fresh_plant, revert_timeout_s=5), clock=clock)
    await inverter.connect()
    try:
        assert inverter.last_snapshot.wset_revert_timeout_s == 5  # written at connect
        await inverter.apply(InverterSetpoint(-2.0))
        await clock.advance(10)  # no write for longer than WSetRvrtTms
        snapshot = await inverter.read()
    finally:
        await inverter.close()
    # the battery idles and the device says so
    assert not snapshot.wset_enabled
    assert snapshot.battery_power_kw == pytest.approx(0.0, abs=0.01)
    assert snapshot.ac_power_kw == pytest.approx(snapshot.pv_power_kw, abs=0.05)


async def test_an_ev_setpoint_is_confirmed_and_charges_the_cart(ev_charger, clock):
    before = await ev_charger.read()
    confirmation = await ev_charger.apply(EvSetpoint(-1.5))
    assert confirmation.read_back == EvSetpoint(-1.5, enabled=True)
    await clock.advance(10)  # ramps at RampRateKwPerS; within the 30 s watchdog
    snapshot = await ev_charger.read()
    assert snapshot.setpoint_kw == -1.5 and snapshot.enabled
    assert snapshot.power_kw == pytest.approx(-1.5, abs=0.05)
    assert snapshot.soc_pct > before.soc_pct
    assert snapshot.energy_charged_kwh > before.energy_charged_kwh
    safe = await ev_charger.safe_state()
    assert safe.read_back == EvSetpoint(0.0, enabled=False)
    await clock.advance(10)
    assert (await ev_charger.read()).power_kw == pytest.approx(0.0, abs=1e-6)


async def test_the_charger_limits_stay_known_between_their_reads(fresh_plant, clock):
    from instruments.ev_charger import EvCharger
    from tests.instruments.plant_drivers import ev_config

    charger = EvCharger(ev_config(fresh_plant, limits_every_reads=3), clock=clock)
    await charger.connect()
    try:
        snapshots = []
        for _ in range(5):
            await clock.advance(1)
            snapshots.append(await charger.read())
    finally:
        await charger.close()
    assert {(s.max_charge_kw, s.max_discharge_kw, s.min_power_kw) for s in snapshots} == {
        (2.0, 1.5, 0.3)
    }
    assert all(s.capacity_kwh > 0 and s.soc_max_pct > s.soc_min_pct for s in snapshots)


async def test_closing_one_load_driver_leaves_another_working(fresh_plant, load, clock):
    """pyvisa hands every driver the same ResourceManager: a closed driver must not take the
    other drivers' sessions with it (a lab with two loads, or a benchmark's second driver)."""
    second = ProgrammableLoad(load_config(fresh_plant), clock=clock)
    await second.connect()
    await second.close()
    confirmation = await load.apply(LoadSetpoint(-1.0))
    assert confirmation.read_back == LoadSetpoint(-1.0, input_on=True)
    assert (await load.read()).power_setpoint_kw == pytest.approx(-1.0)


async def test_a_load_setpoint_is_confirmed_and_drawn(load, meters, clock):
    confirmation = await load.apply(LoadSetpoint(-1.5))
    assert confirmation.read_back == LoadSetpoint(-1.5, input_on=True)
    await clock.advance(5)
    snapshot = await load.read()
    assert snapshot.function == "POW" and snapshot.input_on
    assert snapshot.power_kw == pytest.approx(-1.5, abs=0.01)
    assert (await meters["C"].read()).power_kw == pytest.approx(-1.5, abs=0.02)
    safe = await load.safe_state()
    assert safe.read_back == LoadSetpoint(0.0, input_on=False)
    await clock.advance(5)
    assert (await load.read()).power_kw == 0.0


async def _plant_setpoints(control) -> tuple[float, float, float]:
    state = await control.state()
    return (
        state["inverter"]["wset_kw"],
        state["ev"]["setpoint_kw"],
        state["load_c"]["power_setpoint_w"],
    )


async def test_setpoints_outside_the_limits_are_refused_before_sending(
    inverter, ev_charger, load, control
):
    before = await _plant_setpoints(control)
    with pytest.raises(SetpointRefused, match=r"-3\.75 to 5 kW"):
        await inverter.apply(InverterSetpoint(6.0))
    with pytest.raises(SetpointRefused, match=r"-2 to 1\.5 kW"):
        await ev_charger.apply(EvSetpoint(-2.5))  # beyond MaxChargePowerKw
    with pytest.raises(SetpointRefused, match="deadband"):
        await ev_charger.apply(EvSetpoint(0.1))  # below MinPowerKw
    with pytest.raises(SetpointRefused, match=r"-3 to 0 kW"):
        await load.apply(LoadSetpoint(-3.5))
    with pytest.raises(SetpointRefused):
        await load.apply(LoadSetpoint(0.5))  # a load cannot deliver power
    assert await _plant_setpoints(control) == before


async def test_ev_discharge_below_the_reserve_is_refused(fresh_plant, clock, control):
    from instruments.ev_charger import EvCharger
    from tests.instruments.plant_drivers import ev_config

    # the cart starts above its reserve; a config window above its state of charge stops V2G
    charger = EvCharger(ev_config(fresh_plant, soc_min_pct=90.0), clock=clock)
    await charger.connect()
    try:
        with pytest.raises(SetpointRefused, match="no discharge"):
            await charger.apply(EvSetpoint(1.0))
        await charger.apply(EvSetpoint(-1.0))  # charging is still fine
    finally:
        await charger.close()
