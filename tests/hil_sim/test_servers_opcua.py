"""The emulated EV charger over OPC UA, read and written by a stock asyncua client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from asyncua import Client, ua
from asyncua.ua.ua_binary import struct_to_binary

from hil_sim.servers.opcua_fastpath import read_response_bytes
from labspec.endpoints import PlantEndpoints
from labspec.ev_charger import NAMESPACE_URI, OBJECT_NODE_ID, VARIABLES, Var, node_id
from labspec.plant_control import PlantControl


@pytest.fixture
async def charger(fresh_plant: PlantEndpoints) -> AsyncIterator[tuple[Client, int]]:
    async with Client(fresh_plant.ev_charger.url, timeout=10) as client:
        yield client, await client.get_namespace_index(NAMESPACE_URI)


@pytest.fixture
async def control(fresh_plant: PlantEndpoints) -> AsyncIterator[PlantControl]:
    async with await PlantControl.from_endpoints(fresh_plant) as client:
        yield client


def var(client: Client, idx: int, name: Var):
    return client.get_node(ua.NodeId(node_id(name), idx))


async def test_node_set_matches_the_shared_table(charger):
    client, idx = charger
    charger_object = client.get_node(ua.NodeId(OBJECT_NODE_ID, idx))
    children = {
        (await child.read_browse_name()).Name: child
        for child in await charger_object.get_children()
    }
    assert set(children) == {spec.name.value for spec in VARIABLES}
    for spec in VARIABLES:
        node = children[spec.name.value]
        assert node.nodeid == ua.NodeId(node_id(spec.name), idx)
        data_value = await node.read_data_value()
        assert data_value.Value.VariantType.name == spec.ua_type
        access = await node.read_attribute(ua.AttributeIds.UserAccessLevel)
        writable = bool(access.Value.Value & ua.AccessLevel.CurrentWrite.mask)
        assert writable == spec.writable, spec.name
    units = await var(client, idx, Var.POWER_KW).get_child("0:EngineeringUnits")
    assert (await units.read_value()).DisplayName.Text == "kW"


async def test_setpoint_written_reads_back_and_charges_the_cart_after_advance(charger, control):
    client, idx = charger
    before = (await control.state())["ev"]
    assert before["plugged"]  # plant time starts at local midnight: the cart is plugged in

    await var(client, idx, Var.POWER_SETPOINT_KW).write_value(-1.5)
    assert await var(client, idx, Var.POWER_SETPOINT_KW).read_value() == -1.5
    assert (await control.state())["ev"]["setpoint_kw"] == -1.5

    await control.advance(10)  # the charger ramps at 0.5 kW/s
    power_kw = await var(client, idx, Var.POWER_KW).read_value()
    soc_pct = await var(client, idx, Var.SOC_PCT).read_value()
    charged_kwh = await var(client, idx, Var.ENERGY_CHARGED_KWH).read_value()
    assert power_kw == pytest.approx(-1.5, abs=1e-6)
    assert soc_pct > before["soc_pct"]
    assert charged_kwh > 0
    assert await var(client, idx, Var.STATUS).read_value() == "charging"
    value = await var(client, idx, Var.POWER_KW).read_data_value()
    plant_time = (await control.time()).time
    assert value.SourceTimestamp.replace(tzinfo=plant_time.tzinfo) == plant_time


async def test_disabling_the_charger_stops_power_transfer(charger, control):
    client, idx = charger
    await var(client, idx, Var.POWER_SETPOINT_KW).write_value(-1.0)
    await var(client, idx, Var.ENABLED).write_value(False)
    assert await var(client, idx, Var.ENABLED).read_value() is False
    await control.advance(10)
    assert await var(client, idx, Var.POWER_KW).read_value() == 0.0


@pytest.mark.parametrize("setpoint_kw", [-10.0, 5.0, 0.1])  # beyond charge, discharge, deadband
async def test_out_of_range_setpoint_is_bad_out_of_range_and_the_plant_keeps_running(
    charger, control, setpoint_kw
):
    client, idx = charger
    setpoint = var(client, idx, Var.POWER_SETPOINT_KW)
    await setpoint.write_value(-1.0)
    with pytest.raises(ua.UaStatusCodeError) as refused:
        await setpoint.write_value(setpoint_kw)
    assert refused.value.code == ua.StatusCodes.BadOutOfRange
    assert await setpoint.read_value() == -1.0
    assert (await control.state())["ev"]["setpoint_kw"] == -1.0
    assert (await control.advance(1.0)).elapsed_s == pytest.approx(1.0)
    assert await var(client, idx, Var.SOC_PCT).read_value() > 0


async def test_read_only_variables_refuse_writes(charger):
    client, idx = charger
    with pytest.raises(ua.UaStatusCodeError) as refused:
        await var(client, idx, Var.SOC_PCT).write_value(99.0)
    assert refused.value.code in (ua.StatusCodes.BadUserAccessDenied, ua.StatusCodes.BadNotWritable)


async def test_a_subscription_sees_values_change_on_advance(charger, control):
    client, idx = charger
    changes: list[float] = []

    class Handler:
        def datachange_notification(self, node, value, data):
            changes.append(value)

    subscription = await client.create_subscription(20, Handler())
    await subscription.subscribe_data_change(var(client, idx, Var.SOC_PCT))
    await var(client, idx, Var.POWER_SETPOINT_KW).write_value(-2.0)
    first = (await control.state())["ev"]["soc_pct"]
    await control.advance(60)
    last = (await control.state())["ev"]["soc_pct"]
    for _ in range(200):  # notifications arrive with the next publish cycle
        if changes and changes[-1] == pytest.approx(last):
            break
        await asyncio.sleep(0.05)
    assert changes[0] == pytest.approx(first)
    assert changes[-1] == pytest.approx(last)
    await subscription.delete()


async def test_one_read_of_many_variables_follows_every_advance_and_reports_bad_nodes(
    charger, control
):
    """The charger's Read takes the server's quicker path (cached request decoding and value
    encodings): repeated identical Reads still see each advance, and unknown nodes or attributes
    answer asyncua's status codes in place."""
    client, idx = charger
    names = (Var.SOC_PCT, Var.POWER_KW, Var.PLUGGED, Var.STATUS, Var.ENERGY_CHARGED_KWH)
    request = [ua.ReadValueId() for _ in range(len(names) + 2)]
    for item, name in zip(request, names, strict=False):
        item.NodeId, item.AttributeId = ua.NodeId(node_id(name), idx), ua.AttributeIds.Value
    request[-2].NodeId, request[-2].AttributeId = ua.NodeId("EVCharger.Nope", idx), 13
    request[-1].NodeId = ua.NodeId(node_id(Var.SOC_PCT), idx)
    request[-1].AttributeId = ua.AttributeIds.Executable  # a variable has none

    async def read() -> list[ua.DataValue]:
        params = ua.ReadParameters()
        params.NodesToRead = request
        return await client.uaclient.read(params)

    await var(client, idx, Var.POWER_SETPOINT_KW).write_value(-1.5)  # charge: SoC and energy move
    seen = []
    for _ in range(3):
        await control.advance(5.0)  # well inside the setpoint watchdog
        truth = (await control.state())["ev"]
        values = await read()
        assert values[0].Value.Value == pytest.approx(truth["soc_pct"])
        assert values[1].Value.Value == pytest.approx(truth["power_kw"])
        assert values[2].Value.Value is truth["plugged"]
        assert values[4].Value.Value == pytest.approx(truth["energy_charged_kwh"])
        assert values[-2].StatusCode.value == ua.StatusCodes.BadNodeIdUnknown
        assert values[-1].StatusCode.value == ua.StatusCodes.BadAttributeIdInvalid
        seen.append(values[4].Value.Value)
    assert seen[0] < seen[1] < seen[2]


def test_read_answer_built_from_encoded_values_is_the_bytes_asyncua_sends():
    when = datetime(2026, 3, 20, 12, 0, 1, 250000, tzinfo=UTC)
    results = [
        ua.DataValue(
            ua.Variant(42.5, ua.VariantType.Double), SourceTimestamp=when, ServerTimestamp=when
        ),
        ua.DataValue(ua.Variant(True, ua.VariantType.Boolean)),
        ua.DataValue(ua.Variant(when, ua.VariantType.DateTime), SourceTimestamp=when),
        ua.DataValue(StatusCode=ua.StatusCode(ua.StatusCodes.BadNodeIdUnknown)),
    ]
    response = ua.ReadResponse()
    response.ResponseHeader.Timestamp = when
    response.ResponseHeader.RequestHandle = 4711
    response.Results = results
    encoded = [struct_to_binary(value) for value in results]
    assert read_response_bytes(4711, encoded, when) == struct_to_binary(response)
    assert read_response_bytes(7, [], when) != struct_to_binary(response)
