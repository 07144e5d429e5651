"""Benchmark: CPU per control step with the fast paths on and off, interleaved.

    python benchmarks/fast_paths_bench.py [--rounds 8] [--steps 300]

Starts two lockstep plants (`python -m hil_sim`), one with the fast paths on and one with
TESTBED_FAST_PATHS=0, and connects the six drivers of the demo to each (with the switch set the
same way). Then, in alternating rounds of `--steps` control steps each, it reads the six devices
one after another and advances the plant, measuring the CPU time (not wall time: the machine is
shared) of the client process (all its threads, pyvisa's worker too) per device and per advance,
and the plant process's CPU per step.
Prints the median over the rounds of each figure, in microseconds per step, for both modes: the
rounds interleave so that both modes see the same machine load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from instruments.config import (  # noqa: E402
    EvChargerConfig,
    ProgrammableLoadConfig,
    SunSpecInverterConfig,
    SunSpecMeterConfig,
)
from instruments.ev_charger import EvCharger  # noqa: E402
from instruments.event_loop import loop_factory  # noqa: E402
from instruments.inverter import SunSpecInverter  # noqa: E402
from instruments.meter import SunSpecMeter  # noqa: E402
from instruments.programmable_load import ProgrammableLoad  # noqa: E402
from labspec.endpoints import PlantEndpoints  # noqa: E402
from labspec.fast_paths import ENV_VAR  # noqa: E402
from labspec.plant_control import PlantControl  # noqa: E402  (the harness only)
from testbed.plant_process import emulated_plant  # noqa: E402


def process_cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def switch(on: bool) -> Iterator[None]:
    """TESTBED_FAST_PATHS set for what starts or connects inside."""
    before = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = "1" if on else "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = before


class Side:
    """One plant and the drivers connected to it."""

    def __init__(self, endpoints: PlantEndpoints) -> None:
        self.endpoints = endpoints
        self.now: Any = None
        self.drivers: dict[str, Any] = {}
        self.control: PlantControl | None = None

    async def connect(self) -> None:
        ep = self.endpoints
        self.control = await PlantControl.from_endpoints(ep)
        self.now = (await self.control.time()).time

        def clock() -> Any:
            return self.now

        for peer in ("A", "B", "C"):
            meter = ep.meter(peer)
            self.drivers[f"meter {peer}"] = SunSpecMeter(
                SunSpecMeterConfig(host=meter.host, port=meter.port, device_id=meter.unit),
                clock=clock,
            )
        self.drivers["inverter"] = SunSpecInverter(
            SunSpecInverterConfig(
                host=ep.inverter.host, port=ep.inverter.port, device_id=ep.inverter.unit
            ),
            clock=clock,
        )
        self.drivers["ev charger"] = EvCharger(EvChargerConfig(url=ep.ev_charger.url), clock=clock)
        self.drivers["load"] = ProgrammableLoad(
            ProgrammableLoadConfig(host=ep.load.host, port=ep.load.port), clock=clock
        )
        for driver in self.drivers.values():
            await driver.connect()

    async def round(self, steps: int) -> dict[str, float]:
        """CPU in us per step: per device, the advance, the client's sum and the plant."""
        assert self.control is not None
        cpu = dict.fromkeys([*self.drivers, "advance"], 0.0)
        cpu_time = time.process_time  # all threads: pyvisa's worker too
        plant_before = process_cpu_s(self.endpoints.pid)
        for _ in range(steps):
            for name, driver in self.drivers.items():
                start = cpu_time()
                await driver.read()
                cpu[name] += cpu_time() - start
            start = cpu_time()
            self.now = (await self.control.advance(1.0)).time
            cpu["advance"] += cpu_time() - start
        plant = process_cpu_s(self.endpoints.pid) - plant_before
        figures = {name: 1e6 * value / steps for name, value in cpu.items()}
        figures["controller, all six reads + advance"] = sum(figures.values())
        figures["plant process (all requests + advance)"] = 1e6 * plant / steps
        return figures

    async def close(self) -> None:
        for driver in self.drivers.values():
            await driver.close()
        if self.control is not None:
            await self.control.close()


async def compare(on: PlantEndpoints, off: PlantEndpoints, rounds: int, steps: int) -> None:
    sides = {}
    for mode, endpoints in (("on", on), ("off", off)):
        with switch(mode == "on"):
            side = Side(endpoints)
            await side.connect()
            sides[mode] = side
    for side in sides.values():
        await side.round(50)  # warm up
    results: dict[str, list[dict[str, float]]] = {"on": [], "off": []}
    load_before = os.getloadavg()[0]
    for _ in range(rounds):
        for mode in ("on", "off"):
            results[mode].append(await sides[mode].round(steps))
    load_after = os.getloadavg()[0]
    for side in sides.values():
        await side.close()
    print(f"{rounds} rounds of {steps} steps per mode, interleaved; CPU time per step, median "
          f"over rounds (load average {load_before:.2f} before, {load_after:.2f} after, "
          f"{os.cpu_count()} cores)")  # fmt: skip
    print(f"{'':<42} {'fast paths on':>14} {'off':>10} {'saved':>8}")
    for name in results["on"][0]:
        fast = statistics.median(r[name] for r in results["on"])
        slow = statistics.median(r[name] for r in results["off"])
        print(f"{name:<42} {fast:11.0f} us {slow:7.0f} us {1 - fast / slow:7.0%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    _, new_loop = loop_factory("auto")
    with (
        switch(True),
        emulated_plant(1) as on,
        switch(False),
        emulated_plant(1) as off,
        asyncio.Runner(loop_factory=new_loop) as runner,
    ):
        runner.run(compare(on, off, args.rounds, args.steps))


if __name__ == "__main__":
    main()
