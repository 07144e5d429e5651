"""Round trips to the emulated plant with stock clients: control `advance`, Modbus, OPC UA, SCPI.

    python3 benchmarks/plant_protocols.py [--n 2000] [--loop auto|asyncio|uvloop]

Starts `python -m hil_sim` in a subprocess (lockstep, loopback; `--loop` is passed on), takes it to
late morning (PV and battery values change at every step, so every advance re-encodes them), then
times each exchange from this process and prints p50 / p99 in milliseconds and the plant process's
CPU per exchange (user + system, from /proc; 10 ms clock ticks, so take it to two digits). The
exchanges include one of each kind the demo's controller makes per step (advance, inverter and
meter reads, the charger's Read, the load's measurement message). Compare with the bare-library
figures in FACTS.md (pymodbus write + read 0.30 ms, asyncua write + read 0.53 ms, pyvisa-py query
0.06 ms).
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

from labspec.endpoints import PlantEndpoints  # noqa: E402
from labspec.ev_charger import NAMESPACE_URI, Var, node_id  # noqa: E402
from labspec.plant_control import PlantControl, SyncPlantControl  # noqa: E402

# What the demo's controller reads every step besides the inverter and the meters.
CHARGER_LIMITS = {
    Var.MAX_CHARGE_POWER_KW, Var.MAX_DISCHARGE_POWER_KW, Var.MIN_POWER_KW,
    Var.RAMP_RATE_KW_PER_S, Var.RESERVE_SOC_PCT, Var.MIN_SOC_PCT, Var.MAX_SOC_PCT,
    Var.WATCHDOG_TIMEOUT_S, Var.CAPACITY_KWH,
}  # fmt: skip
LOAD_MESSAGE = ":MEAS:POW?;:MEAS:VOLT?;:MEAS:CURR?;:MEAS:ENER?;:INP?;:FUNC?;:POW?"


def percentiles(samples_s: list[float]) -> tuple[float, float]:
    ordered = sorted(samples_s)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p99 * 1000


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Row:
    """One measurement: round-trip samples and the plant's CPU per exchange (None: in process)."""

    plant_pid: int | None = None  # set once the plant runs

    def __init__(self, name: str):
        self.name = name
        self.samples: list[float] = []
        self.plant_cpu_ms: float | None = None
        self._cpu_before = 0.0

    def __enter__(self) -> Row:
        if self.plant_pid is not None:
            self._cpu_before = process_cpu_s(self.plant_pid)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.plant_pid is not None and self.samples:
            used = process_cpu_s(self.plant_pid) - self._cpu_before
            self.plant_cpu_ms = 1000 * used / len(self.samples)


def timed(call: Callable[[], object], n: int, name: str) -> Row:
    for _ in range(min(50, n)):  # warm-up
        call()
    with Row(name) as row:
        for _ in range(n):
            started = time.perf_counter()
            call()
            row.samples.append(time.perf_counter() - started)
    return row


async def timed_async(call, n: int, name: str) -> Row:
    for _ in range(min(50, n)):
        await call()
    with Row(name) as row:
        for _ in range(n):
            started = time.perf_counter()
            await call()
            row.samples.append(time.perf_counter() - started)
    return row


def start_plant(folder: Path, loop: str) -> tuple[subprocess.Popen, PlantEndpoints]:
    endpoints_file = folder / "endpoints.json"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hil_sim", "--endpoints-json", str(endpoints_file), "--loop", loop],
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


async def in_process_step(n: int) -> list[Row]:
    """Plant-side cost of one advance: the physics alone, then physics + refreshing every server."""
    from hil_sim.runner import HilSim

    async with HilSim() as sim:
        await sim.advance(10.5 * 3600)
        physics = timed(lambda: sim.plant.advance(1.0), n,
                        "in-process: plant.advance(1 s), physics only")  # fmt: skip
        full = await timed_async(lambda: sim.advance(1.0), n,
                                 "in-process: HilSim.advance(1 s), physics + refresh")  # fmt: skip
    return [physics, full]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="exchanges per measurement")
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto",
                        help="the plant's event loop (python -m hil_sim --loop)")  # fmt: skip
    args = parser.parse_args()
    n = args.n
    rows: list[Row] = asyncio.run(in_process_step(n))
    with tempfile.TemporaryDirectory(prefix="bench-hil_sim-") as folder:
        proc, endpoints = start_plant(Path(folder), args.loop)
        Row.plant_pid = proc.pid
        try:
            with SyncPlantControl.from_endpoints(endpoints) as control:
                control.advance(10.5 * 3600)  # 10:30 local: PV up, values move every step
                rows.append(timed(control.ping, n, "control ping (sync client)"))
                rows.append(timed(lambda: control.advance(1.0), n,
                                  "control advance 1 s (sync client)"))  # fmt: skip

                async def async_advance() -> Row:
                    async with await PlantControl.from_endpoints(endpoints) as plant:
                        label = "control advance 1 s (asyncio client)"
                        return await timed_async(lambda: plant.advance(1.0), n, label)

                rows.append(asyncio.run(async_advance()))

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

            rows.append(timed(read_701_first_125, n, "modbus read 701, 125 registers (1 request)"))
            label = f"modbus read 701 block, {length} registers (2 requests)"
            rows.append(timed(read_701_block, n, label))
            modbus.close()

            meter_ep = endpoints.meter_A
            meter = SunSpecModbusClientDeviceTCP(
                slave_id=meter_ep.unit, ipaddr=meter_ep.host, ipport=meter_ep.port, timeout=5
            )
            meter.scan()
            meter.disconnect()
            model_211 = meter.models[211][0]
            meter_client = ModbusTcpClient(meter_ep.host, port=meter_ep.port, timeout=5)
            meter_client.connect()
            m_start, m_length = model_211.model_addr + 2, model_211.model_len

            def read_211() -> None:
                assert not meter_client.read_holding_registers(m_start, count=m_length).isError()

            rows.append(timed(read_211, n, f"modbus read meter 211, {m_length} registers"))
            meter_client.close()

            async def opcua(names: tuple[Var, ...], label: str) -> Row:
                async with Client(endpoints.ev_charger.url, timeout=10) as client:
                    idx = await client.get_namespace_index(NAMESPACE_URI)
                    nodes = [client.get_node(ua.NodeId(node_id(v), idx)) for v in names]
                    return await timed_async(lambda: client.read_values(nodes), max(n // 2, 1),
                                             label)  # fmt: skip

            four = (Var.SOC_PCT, Var.POWER_KW, Var.POWER_SETPOINT_KW, Var.STATUS)
            rows.append(asyncio.run(opcua(four, "opc ua read of 4 variables (1 request)")))
            measured = tuple(v for v in Var if v not in CHARGER_LIMITS)
            label = f"opc ua read of the {len(measured)} measured variables"
            rows.append(asyncio.run(opcua(measured, label)))

            visa = pyvisa.ResourceManager("@py")
            load = visa.open_resource(endpoints.load.resource, read_termination="\n",
                                      write_termination="\n", timeout=5000)  # fmt: skip
            rows.append(timed(lambda: load.query("MEAS:POW?"), n,
                              "scpi query MEAS:POW? (pyvisa-py)"))  # fmt: skip
            rows.append(timed(lambda: load.query(LOAD_MESSAGE), n,
                              "scpi 7 queries in one message (pyvisa-py)"))  # fmt: skip

            def write_then_query() -> None:
                load.write("POW 1000")
                load.query("POW?")

            rows.append(timed(write_then_query, n, "scpi write POW + query POW? (pyvisa-py)"))
            load.close()
            visa.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    load1, load5, _ = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load1:.1f} (1 min), {load5:.1f} (5 min)")
    print(f"{'exchange':<52} {'p50 ms':>8} {'p99 ms':>8} {'plant CPU ms':>13}")
    for row in rows:
        p50, p99 = percentiles(row.samples)
        cpu = f"{row.plant_cpu_ms:13.3f}" if row.plant_cpu_ms is not None else f"{'':>13}"
        print(f"{row.name:<52} {p50:8.3f} {p99:8.3f} {cpu}")
    advance_p50, _ = percentiles(rows[3].samples)
    print(f"\n24 h in 1 s lockstep steps: 86,400 advances x {advance_p50:.3f} ms = "
          f"{86400 * advance_p50 / 1000:.1f} s of advance round trips")  # fmt: skip


if __name__ == "__main__":
    main()
