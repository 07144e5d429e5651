"""InfluxDB sink: what it costs the control loop, and how many points per second reach InfluxDB.

Starts its own influxd 1.6 on a free loopback port (stopped by its pid at the end) and prints a
Markdown report. Run from the repository root:

    python3 benchmarks/telemetry_bench.py            # about a minute
    python3 benchmarks/telemetry_bench.py --quick    # a few seconds, smaller numbers

Figures:
- emit(): the time the control loop spends in `emit()` per document and per step (6 Samples).
- step overhead: a simulated 1 ms control step (CPU-bound Python work, then 6 emits), with the
  sink running and data flowing to influxd, against the same loop with a sink that does nothing.
  Wall time per step, and CPU time of the whole process per step: the sink threads' extra CPU is
  what they can take from the loop through the GIL (their SQLite and socket calls release it).
  On a shared, overloaded machine the wall times are noisy; the CPU figures are not.
- paced loop: a 1 ms loop that works 0.3 ms and sleeps to its next deadline (as an I/O-bound loop
  does); how late the steps start, with and without the sink.
- throughput: points per second from the first emit() until influxd acknowledged the last point;
  and replay: how fast a backlog left by an outage drains once the server is back.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from testbed.documents import Document, Sample
from testbed.telemetry import InfluxConfig, InfluxSink
from tests.fixtures.influx import InfluxServer
from tests.telemetry.stream import DEVICES, synthetic_run

STEP_S = 0.001


class NullSink:
    def emit(self, doc: Document) -> None:
        pass

    def close(self) -> None:
        pass


def step_samples(step: int, start: datetime) -> list[Sample]:
    """The 6 Samples (~5 fields each) a control step emits."""
    now = start + timedelta(seconds=step)
    return [
        Sample(now, peer, device, {field: step * 0.001 + i for i, field in enumerate(fields)})
        for (peer, device), fields in DEVICES.items()
    ]


def calibrate_work(target_s: float) -> int:
    """Loop count of `busy_work` that takes `target_s` of CPU on this machine now."""
    rounds = 1000
    while True:
        begin = time.thread_time()
        busy_work(rounds)
        spent = time.thread_time() - begin
        if spent > 0.05:
            return max(1, int(rounds * target_s / spent))
        rounds *= 2


def busy_work(rounds: int) -> float:
    total = 0.0
    for i in range(rounds):
        total += i * 0.5
    return total


def run_cpu_bound(
    emit: Callable[[Document], None], steps: int, rounds: int
) -> tuple[float, float, float]:
    """Seconds per step of: busy work, build 6 Samples, emit them: (wall, process CPU, loop CPU)."""
    start = datetime.now(UTC)
    begin, cpu_begin, thread_begin = time.perf_counter(), time.process_time(), time.thread_time()
    for step in range(steps):
        busy_work(rounds)
        for sample in step_samples(step, start):
            emit(sample)
    return (
        (time.perf_counter() - begin) / steps,
        (time.process_time() - cpu_begin) / steps,
        (time.thread_time() - thread_begin) / steps,
    )


def run_paced(emit: Callable[[Document], None], steps: int, rounds: int) -> list[float]:
    """Start lateness (s) of each step of a 1 ms loop that works 0.3 ms then sleeps."""
    start = datetime.now(UTC)
    lateness = []
    deadline = time.perf_counter()
    for step in range(steps):
        now = time.perf_counter()
        lateness.append(max(0.0, now - deadline))
        busy_work(rounds)
        for sample in step_samples(step, start):
            emit(sample)
        deadline += STEP_S
        pause = deadline - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        else:
            deadline = time.perf_counter()
    return lateness


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small runs (a few seconds)")
    options = parser.parse_args()
    scale = 0.2 if options.quick else 1.0
    workdir = Path(tempfile.mkdtemp(prefix="telemetry-bench-"))
    (workdir / "influxd").mkdir()
    server = InfluxServer(workdir / "influxd")
    server.start()
    server.create_database("bench")
    config = InfluxConfig(url=server.url, database="bench")
    load_before = os.getloadavg()[0]
    report: list[str] = []
    try:
        # -- emit() alone ------------------------------------------------------------------------
        sink = InfluxSink(config, workdir / "emit.sqlite", run_id="emit")
        start = datetime.now(UTC)
        batches = [step_samples(step, start) for step in range(int(5000 * scale))]
        per_doc = []
        for samples_of_steps in (batches[i : i + 500] for i in range(0, len(batches), 500)):
            begin = time.perf_counter_ns()
            for samples in samples_of_steps:
                for sample in samples:
                    sink.emit(sample)
            per_doc.append((time.perf_counter_ns() - begin) / (6 * len(samples_of_steps)))
            time.sleep(0.02)  # let the spooler run, as between real steps
        sink.close(timeout_s=30)
        emit_ns = statistics.median(per_doc)
        report.append(
            f"| `emit()` per document (median of {len(per_doc)} runs) | {emit_ns:.0f} ns |"
        )
        report.append(f"| `emit()` per control step (6 Samples) | {6 * emit_ns / 1000:.2f} µs |")

        # -- 1 ms CPU-bound step, ABAB -----------------------------------------------------------
        rounds = calibrate_work(STEP_S)
        steps = int(3000 * scale)
        base_runs, sink_runs = [], []
        for index in range(3):
            base_runs.append(run_cpu_bound(NullSink().emit, steps, rounds))
            sink = InfluxSink(config, workdir / f"cpu{index}.sqlite", run_id=f"cpu{index}")
            sink_runs.append(run_cpu_bound(sink.emit, steps, rounds))
            sink.close(timeout_s=30)
        base = [statistics.median(run[i] for run in base_runs) for i in range(3)]
        with_sink = [statistics.median(run[i] for run in sink_runs) for i in range(3)]
        report.append(
            "| 1 ms CPU-bound step, wall time without / with sink (median of 3) | "
            f"{base[0] * 1e3:.3f} ms / {with_sink[0] * 1e3:.3f} ms |"
        )
        extra_cpu = with_sink[1] - base[1]
        report.append(
            "| same, process CPU per step without / with sink | "
            f"{base[1] * 1e6:.0f} µs / {with_sink[1] * 1e6:.0f} µs: sink threads "
            f"+{extra_cpu * 1e6:.0f} µs ({extra_cpu / base[1] * 100:.1f} %) |"
        )
        report.append(
            "| same, control thread's own CPU per step without / with sink | "
            f"{base[2] * 1e6:.0f} µs / {with_sink[2] * 1e6:.0f} µs |"
        )

        # -- paced 1 ms loop ---------------------------------------------------------------------
        light = max(1, int(rounds * 0.3))
        base_late = run_paced(NullSink().emit, steps, light)
        sink = InfluxSink(config, workdir / "paced.sqlite", run_id="paced")
        sink_late = run_paced(sink.emit, steps, light)
        sink.close(timeout_s=30)
        for name, values in (("without sink", base_late), ("with sink", sink_late)):
            report.append(
                f"| paced 1 ms loop (0.3 ms work), step start lateness {name}: p50 / p99 / max | "
                f"{percentile(values, 0.5) * 1e6:.0f} / {percentile(values, 0.99) * 1e6:.0f} / "
                f"{max(values) * 1e6:.0f} µs |"
            )

        # -- throughput --------------------------------------------------------------------------
        throughput_steps = int(40_000 * scale)
        documents = list(synthetic_run("throughput", throughput_steps, interlock_every=0))
        for batch_size in (5000, 20000):
            sized = config.model_copy(update={"batch_size": batch_size, "flush_interval_s": 0.2})
            sink = InfluxSink(sized, workdir / f"tp{batch_size}.sqlite", run_id="tp")
            server_cpu = process_cpu_s(server.pid)  # type: ignore[arg-type]
            cpu_begin, begin = time.process_time(), time.perf_counter()
            for doc in documents:
                sink.emit(doc)
            assert sink.flush(timeout_s=600), "throughput run did not drain"
            elapsed, cpu = time.perf_counter() - begin, time.process_time() - cpu_begin
            server_cpu = process_cpu_s(server.pid) - server_cpu  # type: ignore[arg-type]
            sink.close()
            points = sink.backlog().sent_points
            report.append(
                f"| sustained emit → influxd, batch {batch_size} ({points:,} points) | "
                f"{points / elapsed:,.0f} points/s; CPU per point: controller "
                f"{cpu / points * 1e6:.1f} µs, influxd {server_cpu / points * 1e6:.1f} µs |"
            )

        # -- replay after an outage --------------------------------------------------------------
        server.stop()
        sink = InfluxSink(config, workdir / "replay.sqlite", run_id="replay")
        for doc in documents:
            sink.emit(doc)
        sink.close(timeout_s=0.5)
        left = sink.backlog().pending_points
        server.start()
        begin = time.perf_counter()
        sink = InfluxSink(config, workdir / "replay.sqlite")
        assert sink.flush(timeout_s=600), "replay did not drain"
        elapsed = time.perf_counter() - begin
        sink.close()
        report.append(
            f"| replay of a {left:,}-point backlog after an outage | "
            f"{left / elapsed:,.0f} points/s |"
        )
    finally:
        server.stop()
    load_after = os.getloadavg()[0]
    print(f"# InfluxDB sink benchmark ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)\n")
    print(
        f"{os.cpu_count()} CPUs, load average {load_before:.1f} before / {load_after:.1f} after, "
        f"Python {sys.version.split()[0]}, influxd 1.6.7 on loopback, scale {scale}\n"
    )
    print("| measure | result |\n|---|---|")
    print("\n".join(report))


if __name__ == "__main__":
    main()
