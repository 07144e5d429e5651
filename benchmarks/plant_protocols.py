"""Round trips to the emulated plant with stock clients: control `advance`, Modbus, OPC UA, SCPI.

    python3 benchmarks/plant_protocols.py [--n 2000]

Starts `python -m hil_sim` in a subprocess (lockstep, loopback), takes it to late morning (PV and
battery values change at every step, so every advance re-encodes them), then times each exchange
from this process and prints p50 / p99 in milliseconds. Compare with the bare-library figures in
FACTS.md (pymodbus write + read 0.30 ms, asyncua write + read 0.53 ms, pyvisa-py query 0.06 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyvisa
from asyncua import Client, ua
from pymodbus.client import ModbusTcpClient
from sunspec2.modbus.client import SunSpecModbusClientDeviceTCP

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from hil_sim.control import PlantControl, SyncPlantControl  # noqa: E402
from hil_sim.endpoints import PlantEndpoints  # noqa: E402
from labspec.ev_charger import NAMESPACE_URI, Var, node_id  # noqa: E402


def percentiles(samples_s: list[float]) -> tuple[float, float]:
    ordered = sorted(samples_s)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p99 * 1000


def timed(call: Callable[[], object], n: int) -> list[float]:
    for _ in range(min(50, n)):  # warm-up
        call()
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


async def timed_async(call, n: int) -> list[float]:
    for _ in range(min(50, n)):
        await call()
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
    return samples


def start_plant(folder: Path) -> tuple[subprocess.Popen, PlantEndpoints]:
    endpoints_file = folder / "endpoints.json"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hil_sim", "--endpoints-json", str(endpoints_file)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 180
    while not endpoints_file.is_file():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("hil_sim did not start")
        time.sleep(0.05)
    return proc, PlantEndpoints.read(endpoints_file)


async def in_process_step(n: int) -> list[tuple[str, list[float]]]:
    """Plant-side cost of one advance: the physics alone, then physics + refreshing every server."""
    from hil_sim.runner import HilSim

    async with HilSim() as sim:
        await sim.advance(10.5 * 3600)
        physics = timed(lambda: sim.plant.advance(1.0), n)
        full = await timed_async(lambda: sim.advance(1.0), n)
    return [
        ("in-process: plant.advance(1 s), physics only", physics),
        ("in-process: HilSim.advance(1 s), physics + refresh", full),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="exchanges per measurement")
    n = parser.parse_args().n
    rows: list[tuple[str, list[float]]] = asyncio.run(in_process_step(n))
    with tempfile.TemporaryDirectory(prefix="bench-hil_sim-") as folder:
        proc, endpoints = start_plant(Path(folder))
        try:
            with SyncPlantControl.from_endpoints(endpoints) as control:
                control.advance(10.5 * 3600)  # 10:30 local: PV up, values move every step
                rows.append(("control ping (sync client)", timed(control.ping, n)))
                rows.append(
                    ("control advance 1 s (sync client)", timed(lambda: control.advance(1.0), n))
                )

                async def async_advance() -> list[float]:
                    async with await PlantControl.from_endpoints(endpoints) as plant:
                        return await timed_async(lambda: plant.advance(1.0), n)

                rows.append(("control advance 1 s (asyncio client)", asyncio.run(async_advance())))

            inverter = endpoints.inverter
            device = SunSpecModbusClientDeviceTCP(
                slave_id=inverter.unit, ipaddr=inverter.host, ipport=inverter.port, timeout=5
            )
            device.scan()
            device.disconnect()
            model_701 = device.models[701][0]
            start, length = model_701.model_addr, model_701.model_len + 2
            modbus = ModbusTcpClient(inverter.host, port=inverter.port, timeout=5)
            modbus.connect()

            def read_701_first_125() -> None:
                assert not modbus.read_holding_registers(start, count=125).isError()

            def read_701_block() -> None:
                first = modbus.read_holding_registers(start, count=125)
                rest = modbus.read_holding_registers(start + 125, count=length - 125)
                assert not first.isError() and not rest.isError()

            rows.append(
                ("modbus read 701, 125 registers (1 request)", timed(read_701_first_125, n))
            )
            rows.append((f"modbus read 701 block, {length} registers (2 requests)",
                         timed(read_701_block, n)))  # fmt: skip
            modbus.close()

            async def opcua() -> list[float]:
                async with Client(endpoints.ev_charger.url, timeout=10) as client:
                    idx = await client.get_namespace_index(NAMESPACE_URI)
                    names = (Var.SOC_PCT, Var.POWER_KW, Var.POWER_SETPOINT_KW, Var.STATUS)
                    nodes = [client.get_node(ua.NodeId(node_id(v), idx)) for v in names]
                    return await timed_async(lambda: client.read_values(nodes), max(n // 2, 1))

            rows.append(("opc ua read of 4 variables (1 request)", asyncio.run(opcua())))

            visa = pyvisa.ResourceManager("@py")
            load = visa.open_resource(endpoints.load.resource, read_termination="\n",
                                      write_termination="\n", timeout=5000)  # fmt: skip
            rows.append(
                ("scpi query MEAS:POW? (pyvisa-py)", timed(lambda: load.query("MEAS:POW?"), n))
            )

            def write_then_query() -> None:
                load.write("POW 1000")
                load.query("POW?")

            rows.append(("scpi write POW + query POW? (pyvisa-py)", timed(write_then_query, n)))
            load.close()
            visa.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    load1, load5, _ = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load1:.1f} (1 min), {load5:.1f} (5 min)")
    print(f"{'exchange':<52} {'p50 ms':>8} {'p99 ms':>8}")
    for name, samples in rows:
        p50, p99 = percentiles(samples)
        print(f"{name:<52} {p50:8.3f} {p99:8.3f}")
    advance_p50, _ = percentiles(rows[3][1])
    print(f"\n24 h in 1 s lockstep steps: 86,400 advances x {advance_p50:.3f} ms = "
          f"{86400 * advance_p50 / 1000:.1f} s of advance round trips")  # fmt: skip


if __name__ == "__main__":
    main()
