"""The plant's Modbus servers answer the same bytes with the fast paths on (function-3 reads
answered from the image before pymodbus's framer) as pymodbus's own server does with them off
(TESTBED_FAST_PATHS=0), for reads inside and outside the image, other unit ids, faults, and
frames that arrive split."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from hil_sim.runner import HilSim
from labspec.endpoints import ModbusEndpoint
from labspec.fast_paths import ENV_VAR

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def plants() -> AsyncIterator[dict[str, HilSim]]:
    """Two plants at the same time of day: one with the fast paths, one without."""
    running: dict[str, HilSim] = {}
    with pytest.MonkeyPatch.context() as env:
        for mode in ("1", "0"):
            env.setenv(ENV_VAR, mode)
            sim = HilSim()
            await sim.start()
            await sim.advance(12 * 3600.0)  # noon: every value moves
            running[mode] = sim
    yield running
    for sim in running.values():
        await sim.stop()


async def exchange(endpoint: ModbusEndpoint, *chunks: bytes, answers: int = 1) -> bytes:
    """Send `chunks` (each its own write) and return the bytes of `answers` answers."""
    reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
    try:
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(0.01)
        received = b""
        for _ in range(answers):
            header = await asyncio.wait_for(reader.readexactly(6), 5)
            (length,) = struct.unpack(">H", header[4:])
            received += header + await asyncio.wait_for(reader.readexactly(length), 5)
        return received
    finally:
        writer.close()


def read_frame(tid: int, unit: int, address: int, count: int) -> bytes:
    return struct.pack(">HHHBBHH", tid, 0, 6, unit, 3, address, count)


def endpoints(plants: dict[str, HilSim], device: str) -> tuple[ModbusEndpoint, ModbusEndpoint]:
    on, off = (getattr(plants[mode].endpoints, device) for mode in ("1", "0"))
    return on, off


@pytest.mark.parametrize("device", ["inverter", "meter_A", "meter_C"])
@pytest.mark.parametrize(
    ("address_offset", "count"),
    [(0, 2), (2, 125), (70, 68), (0, 1), (-2, 4), (60_000, 2), (0, 126), (0, 0)],
    ids=["marker", "full", "meter-block", "one", "before-image", "after-image", "126", "none"],
)
async def test_reads_answer_the_same_bytes_either_way(plants, device, address_offset, count):
    on, off = endpoints(plants, device)
    address = min(on.base_address + address_offset, 0xFFFF)
    frame = read_frame(0x1234, on.unit, address, count)
    assert await exchange(on, frame) == await exchange(off, frame)


async def test_another_unit_id_gets_the_same_answer(plants):
    on, off = endpoints(plants, "meter_B")
    for unit in (0, on.unit + 1):
        frame = read_frame(7, unit, on.base_address, 2)
        fast, slow = await exchange(on, frame), await exchange(off, frame)
        assert fast == slow


async def test_a_frame_split_in_two_gets_the_same_answer(plants):
    on, off = endpoints(plants, "inverter")
    frame = read_frame(1, on.unit, on.base_address + 2, 60)
    for cut in (1, 5, 11):
        fast = await exchange(on, frame[:cut], frame[cut:])
        assert fast == await exchange(off, frame[:cut], frame[cut:])
        assert len(fast) == 9 + 120


async def test_an_exception_fault_is_answered_the_same_way(plants):
    on, off = endpoints(plants, "meter_A")
    frame = read_frame(9, on.unit, on.base_address, 2)
    for sim in plants.values():
        await sim.set_fault("meter_A", "exception", code=6)
    try:
        fast, slow = await exchange(on, frame), await exchange(off, frame)
    finally:
        for sim in plants.values():
            await sim.clear_faults("meter_A")
    assert fast == slow
    assert fast[7:] == b"\x83\x06"  # busy
