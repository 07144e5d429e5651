"""Driver speed against the emulated plant on loopback: apply-to-confirmed latency and full reads.

    python3 benchmarks/drivers_bench.py [--n 1000] [--endpoints-json FILE] [--step-only]

Without --endpoints-json it starts `python -m hil_sim` (lockstep) and stops it at the end. For each
device it times `apply()` (write, then the read-back that confirms it) and `read()`; then whole
dispatches: inverter WSet, EV setpoint + enable, load power + input applied concurrently
(asyncio.gather; the SCPI session runs in its own thread). Setpoints alternate between two values
so every write changes something. Prints p50 / p99 / max in ms, the protocol requests per call and
the machine's load average (the machine is shared: note it with the figures).

"control step": what the demo's engine does every step on the device side: read the three PCC
meters, the inverter, the EV charger and the load concurrently, then advance the plant by 1 s;
the client's CPU per step is split into user and system time (`--step-only`: just this line,
`--loop uvloop|asyncio` picks the client's event loop, default auto = uvloop when installed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from instruments.config import (  # noqa: E402
    EvChargerConfig,
    ProgrammableLoadConfig,
    SunSpecInverterConfig,
    SunSpecMeterConfig,
)
from instruments.ev_charger import EvCharger, EvSetpoint  # noqa: E402
from instruments.event_loop import loop_factory  # noqa: E402
from instruments.inverter import InverterSetpoint, SunSpecInverter  # noqa: E402
from instruments.meter import SunSpecMeter  # noqa: E402
from instruments.programmable_load import LoadSetpoint, ProgrammableLoad  # noqa: E402
from labspec.endpoints import PlantEndpoints  # noqa: E402
from labspec.plant_control import PlantControl, SyncPlantControl  # noqa: E402  (the harness only)


def start_plant(workdir: Path) -> tuple[subprocess.Popen, PlantEndpoints]:
    endpoints_file = workdir / "endpoints.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hil_sim", "--endpoints-json", str(endpoints_file)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"hil_sim exited with {proc.returncode}")
        if endpoints_file.is_file():
            endpoints = PlantEndpoints.read(endpoints_file)
            try:
                with SyncPlantControl.from_endpoints(endpoints, timeout_s=5) as control:
                    control.ping()
                return proc, endpoints
            except Exception:
                pass
        time.sleep(0.1)
    proc.terminate()
    raise TimeoutError("hil_sim did not start")


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def report(label: str, timing: tuple[list[float], float], requests: float | None = None) -> str:
    samples_s, cpu_s = timing
    ms = [s * 1000 for s in samples_s]
    per_call = f"  {requests:4.1f} req/call" if requests is not None else ""
    return (
        f"{label:<34} n={len(ms):5d}  p50 {statistics.median(ms):6.3f}  "
        f"p99 {percentile(ms, 99):6.3f}  max {max(ms):7.3f} ms  "
        f"client CPU {cpu_s / len(ms) * 1000:5.3f} ms/call{per_call}"
    )


async def timed(
    n: int, call: Callable[[int], Awaitable], warmup: int = 50
) -> tuple[list[float], float]:
    """Wall-clock duration of each call, and the client process's CPU time over all of them."""
    for i in range(warmup):
        await call(i)
    samples = []
    clock = time.perf_counter
    cpu_start = time.process_time()
    for i in range(n):
        start = clock()
        await call(i)
        samples.append(clock() - start)
    return samples, time.process_time() - cpu_start


async def control_step(endpoints: PlantEndpoints, n: int) -> str:
    """The demo's device side of a control step: six reads concurrently, then one advance."""
    control = await PlantControl.from_endpoints(endpoints)
    plant_now = (await control.time()).time

    def clock():
        return plant_now

    drivers = [
        SunSpecMeter(SunSpecMeterConfig(host=ep.host, port=ep.port, device_id=ep.unit), clock=clock)
        for ep in (endpoints.meter(peer) for peer in ("A", "B", "C"))
    ]
    inv_ep, load_ep = endpoints.inverter, endpoints.load
    drivers += [
        SunSpecInverter(
            SunSpecInverterConfig(host=inv_ep.host, port=inv_ep.port, device_id=inv_ep.unit),
            clock=clock,
        ),
        EvCharger(EvChargerConfig(url=endpoints.ev_charger.url), clock=clock),
        ProgrammableLoad(ProgrammableLoadConfig(host=load_ep.host, port=load_ep.port), clock=clock),
    ]
    for driver in drivers:
        await driver.connect()

    async def step(i: int) -> None:
        nonlocal plant_now
        await asyncio.gather(*(driver.read() for driver in drivers))
        plant_now = (await control.advance(1.0)).time

    load_before = os.getloadavg()[0]
    usage_before = resource.getrusage(resource.RUSAGE_SELF)
    samples, cpu_s = await timed(n, step)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    for driver in drivers:
        await driver.close()
    await control.close()
    user_ms = (usage.ru_utime - usage_before.ru_utime) / (n + 50) * 1000
    system_ms = (usage.ru_stime - usage_before.ru_stime) / (n + 50) * 1000
    return (
        report("control step (6 reads + advance)", (samples, cpu_s))
        + f"\n{'':<34} user {user_ms:5.3f} ms + system {system_ms:5.3f} ms per step"
        + f" (load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after)"
    )


async def run(endpoints: PlantEndpoints, n: int, step_only: bool = False) -> None:
    if step_only:
        print(await control_step(endpoints, n))
        return
    control = await PlantControl.from_endpoints(endpoints)
    plant_now = (await control.time()).time
    clock = lambda: plant_now  # noqa: E731  lockstep: plant time does not move during the bench
    inv_ep, meter_ep, load_ep = endpoints.inverter, endpoints.meter("A"), endpoints.load
    inverter = SunSpecInverter(
        SunSpecInverterConfig(host=inv_ep.host, port=inv_ep.port, device_id=inv_ep.unit),
        clock=clock,
    )
    meter = SunSpecMeter(
        SunSpecMeterConfig(host=meter_ep.host, port=meter_ep.port, device_id=meter_ep.unit),
        clock=clock,
    )
    ev = EvCharger(EvChargerConfig(url=endpoints.ev_charger.url), clock=clock)
    load = ProgrammableLoad(
        ProgrammableLoadConfig(host=load_ep.host, port=load_ep.port), clock=clock
    )
    for driver in (inverter, meter, ev, load):
        await driver.connect()

    print(f"load average before: {os.getloadavg()}  (cores: {os.cpu_count()})")
    lines = []

    def modbus_requests(session, samples_before):  # requests per call over the timed calls
        return (session.requests - samples_before) / (n + 50)

    before = inverter.session.requests
    samples = await timed(n, lambda i: inverter.apply(InverterSetpoint(1.0 + 0.1 * (i % 2))))
    lines.append(
        report("apply inverter (Modbus)", samples, modbus_requests(inverter.session, before))
    )
    samples = await timed(n, lambda i: ev.apply(EvSetpoint(-1.0 - 0.1 * (i % 2))))
    lines.append(report("apply EV charger (OPC UA)", samples, 2))
    samples = await timed(n, lambda i: load.apply(LoadSetpoint(-1.0 - 0.1 * (i % 2))))
    lines.append(report("apply load (SCPI)", samples, 1))

    async def dispatch(i: int) -> None:
        step = 0.1 * (i % 2)
        await asyncio.gather(
            inverter.apply(InverterSetpoint(1.0 + step)),
            ev.apply(EvSetpoint(-1.0 - step)),
            load.apply(LoadSetpoint(-1.0 - step)),
        )

    lines.append(report("whole dispatch (concurrent)", await timed(n, dispatch)))

    async def sequential(i: int) -> None:
        step = 0.1 * (i % 2)
        await inverter.apply(InverterSetpoint(1.0 + step))
        await ev.apply(EvSetpoint(-1.0 - step))
        await load.apply(LoadSetpoint(-1.0 - step))

    lines.append(report("whole dispatch (one after another)", await timed(n, sequential)))

    before = inverter.session.requests
    samples = await timed(n, lambda i: inverter.read())
    lines.append(
        report("read inverter (Modbus)", samples, modbus_requests(inverter.session, before))
    )
    before = meter.session.requests
    samples = await timed(n, lambda i: meter.read())
    lines.append(report("read meter (Modbus)", samples, modbus_requests(meter.session, before)))
    lines.append(report("read EV charger (OPC UA)", await timed(n, lambda i: ev.read()), 1))
    lines.append(report("read load (SCPI)", await timed(n, lambda i: load.read()), 1))

    async def read_all(i: int) -> None:
        await asyncio.gather(inverter.read(), meter.read(), ev.read(), load.read())

    lines.append(report("read all four (concurrent)", await timed(n, read_all)))

    lines += await subscription_versus_read(ev, control, max(50, n // 5))
    lines.append(await control_step(endpoints, n))

    for driver in (inverter, ev, load):
        await driver.safe_state()
    for driver in (inverter, meter, ev, load):
        await driver.close()
    await control.close()
    print("\n".join(lines))
    print(f"load average after: {os.getloadavg()}")


async def subscription_versus_read(ev: EvCharger, control: PlantControl, n: int) -> list[str]:
    """After each lockstep `advance`: how long until the new state of charge is known, by one
    Read, or by a data-change notification of a subscription (publishing interval 20 ms, and
    100 ms, a common minimum of real servers). (An interval of 0 is not usable with asyncua: its
    client's stale-subscription watchdog recreates such a subscription over and over.)"""
    from asyncua import ua

    from labspec.ev_charger import Var, node_id

    client = ev.client
    assert client is not None
    index = await client.get_namespace_index("urn:p2p-testbed:ev-charger")
    soc_node = client.get_node(ua.NodeId(node_id(Var.SOC_PCT), index))
    lines = []
    await ev.apply(EvSetpoint(-1.5))  # charging: the state of charge moves every step

    async def step() -> None:
        await ev.apply(EvSetpoint(-1.5))  # feeds the charger's watchdog
        await control.advance(1.0)

    samples = []
    for _ in range(n):
        await step()
        start = time.perf_counter()
        await ev.read()
        samples.append(time.perf_counter() - start)
    lines.append(report("after advance: one Read", (samples, 0.0)))

    for interval_ms in (20, 100):
        changed = asyncio.Event()

        class Handler:
            def __init__(self, event: asyncio.Event) -> None:
                self.event = event

            def datachange_notification(self, node, value, data) -> None:
                self.event.set()

        subscription = await client.create_subscription(interval_ms, Handler(changed))
        await subscription.subscribe_data_change(soc_node)
        await asyncio.sleep(0.3)
        samples = []
        for _ in range(n):
            await step()
            changed.clear()
            start = time.perf_counter()
            with contextlib.suppress(TimeoutError):  # counted as 2 s
                await asyncio.wait_for(changed.wait(), 2.0)
            samples.append(time.perf_counter() - start)
        await subscription.delete()
        label = f"after advance: notification ({interval_ms} ms)"
        lines.append(report(label, (samples, 0.0)))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="timed calls per figure")
    parser.add_argument("--endpoints-json", type=Path, help="use a running plant")
    parser.add_argument("--step-only", action="store_true", help="only the control-step line")
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    args = parser.parse_args()
    loop_name, new_loop = loop_factory(args.loop)
    print(f"client event loop: {loop_name}")

    def bench(endpoints: PlantEndpoints) -> None:
        with asyncio.Runner(loop_factory=new_loop) as runner:
            runner.run(run(endpoints, args.n, args.step_only))

    if args.endpoints_json:
        bench(PlantEndpoints.read(args.endpoints_json))
        return
    with tempfile.TemporaryDirectory() as workdir:
        proc, endpoints = start_plant(Path(workdir))
        try:
            bench(endpoints)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    main()
