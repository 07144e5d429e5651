"""The simulation-control endpoint: plant time, advance, state, reset, and its error replies."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from datetime import timedelta

import pytest

from labspec.endpoints import PlantEndpoints
from labspec.plant_control import ControlError, PlantControl, SyncPlantControl


@pytest.fixture
def control(fresh_plant: PlantEndpoints) -> Iterator[SyncPlantControl]:
    with SyncPlantControl.from_endpoints(fresh_plant) as client:
        yield client


def raw_exchange(endpoints: PlantEndpoints, *lines: bytes) -> list[dict]:
    """Send raw lines; return one parsed reply per line."""
    with socket.create_connection((endpoints.control.host, endpoints.control.port), 5) as sock:
        sock.sendall(b"".join(lines))
        reader = sock.makefile("rb")
        return [json.loads(reader.readline()) for _ in lines]


def test_advance_moves_plant_time_and_the_state_follows(control):
    start = control.time()
    assert start.elapsed_s == 0.0
    assert start.time.utcoffset() == timedelta(0)
    after = control.advance(90)
    assert after.elapsed_s == 90.0
    assert after.time == start.time + timedelta(seconds=90)
    state = control.state()
    assert state["elapsed_s"] == 90.0
    assert state["now"] == after.time.isoformat()
    assert set(state) >= {"inverter", "ev", "load_c", "meters", "feeder"}


def test_reset_gives_a_fresh_plant_and_clears_faults(control):
    control.advance(3600)
    control.set_fault("load", kind="freeze")
    reply = control.request("reset")
    assert reply["elapsed_s"] == 0.0
    assert control.faults() == []
    assert control.state()["elapsed_s"] == 0.0


def test_errors_answer_ok_false_and_the_plant_keeps_running(fresh_plant, control):
    replies = raw_exchange(
        fresh_plant,
        b"this is not json\n",
        b"[1, 2, 3]\n",
        b'{"cmd": "warp"}\n',
        b'{"cmd": "advance"}\n',
        b'{"cmd": "advance", "dt_s": "soon"}\n',
        b'{"cmd": "advance", "dt_s": -5}\n',
        b'{"cmd": "fault", "kind": "drop"}\n',
        b'{"cmd": "time", "id": 7}\n',
    )
    assert [r["ok"] for r in replies] == [False] * 7 + [True]
    assert "not a JSON object" in replies[0]["error"]
    assert "JSON object" in replies[1]["error"]
    assert "unknown cmd 'warp'" in replies[2]["error"]
    assert "needs dt_s" in replies[3]["error"]
    assert "dt_s = 'soon'" in replies[4]["error"]
    assert "dt_s = -5" in replies[5]["error"]
    assert "needs device" in replies[6]["error"]
    assert replies[7]["id"] == 7 and replies[7]["elapsed_s"] == 0.0
    assert control.advance(1.0).elapsed_s == 1.0


def test_the_same_request_line_repeated_acts_every_time(fresh_plant, control):
    """A lockstep clock sends identical lines; each one advances, and errors repeat too."""
    advance = b'{"cmd":"advance","dt_s":1.0,"id":"tick"}\n'
    fault = b'{"cmd":"fault","device":"load","kind":"freeze"}\n'
    bad = b'{"cmd":"advance","dt_s":-1}\n'
    replies = raw_exchange(fresh_plant, advance, advance, bad, fault, fault, bad, advance)
    assert [r["elapsed_s"] for r in replies if "elapsed_s" in r] == [1.0, 2.0, 3.0]
    assert [r.get("id") for r in replies if "elapsed_s" in r] == ["tick"] * 3
    assert [r["ok"] for r in replies] == [True, True, False, True, True, False, True]
    assert replies[3]["fault"] == replies[4]["fault"]
    assert [f["kind"] for f in control.faults()] == ["freeze"]


def test_sync_client_raises_control_error_with_the_reason(control):
    with pytest.raises(ControlError, match="dt_s = 0"):
        control.advance(0)


async def test_async_client_serialises_concurrent_requests(fresh_plant):
    async with await PlantControl.from_endpoints(fresh_plant) as control:
        await control.ping()
        times = await asyncio.gather(*(control.advance(1.0) for _ in range(10)))
        assert sorted(t.elapsed_s for t in times) == [float(i) for i in range(1, 11)]
        assert (await control.time()).elapsed_s == 10.0


async def test_async_client_reports_an_unreachable_endpoint():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(ControlError, match="cannot reach"):
            await PlantControl.connect("127.0.0.1", port, timeout_s=2)
