"""InfluxDB sink: what it costs the control loop, and how many points per second reach InfluxDB.

Starts its own influxd 1.6 on a free loopback port (stopped by its pid at the end) and prints a
Markdown report. Run from the repository root:

    python3 benchmarks/telemetry_bench.py                      # about a minute
    python3 benchmarks/telemetry_bench.py --quick              # a few seconds, smaller runs
    python3 benchmarks/telemetry_bench.py --only throughput    # one part (repeatable option)

Parts:
- emit: the time the control loop spends in `emit()` per document and per step (6 Samples).
- step: a simulated 1 ms control step (CPU-bound Python work, then 6 emits), with the sink running
  and data flowing to influxd, against the same loop with a sink that does nothing (A/B, 3 times).
  Wall time per step, CPU time of the whole process per step (the sink threads' extra CPU is what
  they can take from the loop through the GIL; their SQLite and socket calls release it), and the
  CPU of each sink thread. On a shared, overloaded machine wall times are noisy; CPU is steadier.
- paced: a 1 ms loop that works 0.3 ms and sleeps to its next deadline (as an I/O-bound loop does);
  how late its steps start, with and without the sink (A/B, `--repeat` rounds).
- throughput: points per second from the first emit() until influxd acknowledged the last point,
  with the CPU per point of the controller process and of influxd.
- replay: how fast a backlog left by an outage drains once the server is back.
"""

from __future__ import annotations

import argparse
import os
import shutil
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
PARTS = ("emit", "step", "paced", "throughput", "replay")


class NullSink:
    def emit(self, doc: Document) -> None:
        pass

    def close(self) -> None:
        pass


def step_samples(step: int, start: datetime) -> list[Sample]:
    """The 6 Samples (~5 fields each) a control step emits, with arbitrary doubles as values."""
    now = start + timedelta(seconds=step)
    return [
        Sample(now, peer, device, {field: step * 0.001 + i / 3 for i, field in enumerate(fields)})
        for (peer, device), fields in DEVICES.items()
    ]


def busy_work(rounds: int) -> float:
    total = 0.0
    for i in range(rounds):
        total += i * 0.5
    return total


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


def thread_cpu_s(thread: object) -> float:
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))  # type: ignore[attr-defined]


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run_cpu_bound(
    emit: Callable[[Document], None], steps: int, rounds: int
) -> tuple[float, float, float]:
    """Per step of: busy work, build 6 Samples, emit them: (wall, process CPU, loop CPU) in s."""
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
    """Start lateness (s) of each step of a 1 ms loop that works, emits, then sleeps."""
    start = datetime.now(UTC)
    lateness = []
    deadline = time.perf_counter()
    for step in range(steps):
        lateness.append(max(0.0, time.perf_counter() - deadline))
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


class Bench:
    def __init__(self, scale: float, workdir: Path, server: InfluxServer) -> None:
        self.scale = scale
        self.workdir = workdir
        self.server = server
        self.config = InfluxConfig(url=server.url, database="bench")
        self.report: list[str] = []
        self.rounds = calibrate_work(STEP_S)
        self.steps = int(3000 * scale)
        self._count = 0

    def sink(self, config: InfluxConfig | None = None) -> InfluxSink:
        self._count += 1
        return InfluxSink(
            config or self.config, self.workdir / f"b{self._count}.sqlite", run_id=f"b{self._count}"
        )

    def row(self, measure: str, result: str) -> None:
        self.report.append(f"| {measure} | {result} |")

    def emit(self) -> None:
        sink = self.sink()
        start = datetime.now(UTC)
        steps = [step_samples(step, start) for step in range(int(5000 * self.scale))]
        per_doc = []
        for group in (steps[i : i + 500] for i in range(0, len(steps), 500)):
            begin = time.perf_counter_ns()
            for samples in group:
                for sample in samples:
                    sink.emit(sample)
            per_doc.append((time.perf_counter_ns() - begin) / (6 * len(group)))
            time.sleep(0.02)  # let the spooler run, as between real steps
        sink.close(timeout_s=30)
        emit_ns = statistics.median(per_doc)
        self.row(f"`emit()` per document (median of {len(per_doc)} runs)", f"{emit_ns:.0f} ns")
        self.row("`emit()` per control step (6 Samples)", f"{6 * emit_ns / 1000:.2f} µs")

    def step(self) -> None:
        base_runs, sink_runs, spooler, forwarder = [], [], [], []
        for _ in range(3):
            base_runs.append(run_cpu_bound(NullSink().emit, self.steps, self.rounds))
            sink = self.sink()
            spool_begin = thread_cpu_s(sink._spooler)
            forward_begin = thread_cpu_s(sink._forwarder)
            sink_runs.append(run_cpu_bound(sink.emit, self.steps, self.rounds))
            spooler.append((thread_cpu_s(sink._spooler) - spool_begin) / self.steps)
            forwarder.append((thread_cpu_s(sink._forwarder) - forward_begin) / self.steps)
            sink.close(timeout_s=30)
        base = [statistics.median(run[i] for run in base_runs) for i in range(3)]
        with_sink = [statistics.median(run[i] for run in sink_runs) for i in range(3)]
        self.row(
            "1 ms CPU-bound step, wall time without / with sink (median of 3)",
            f"{base[0] * 1e3:.3f} ms / {with_sink[0] * 1e3:.3f} ms",
        )
        extra = with_sink[1] - base[1]
        self.row(
            "same, process CPU per step without / with sink",
            f"{base[1] * 1e6:.0f} µs / {with_sink[1] * 1e6:.0f} µs "
            f"(+{extra * 1e6:.0f} µs, {extra / base[1] * 100:.1f} %)",
        )
        self.row(
            "same, CPU per step of the spooler / forwarder thread (median of 3)",
            f"{statistics.median(spooler) * 1e6:.1f} µs / "
            f"{statistics.median(forwarder) * 1e6:.1f} µs",
        )
        self.row(
            "same, control thread's own CPU per step without / with sink",
            f"{base[2] * 1e6:.0f} µs / {with_sink[2] * 1e6:.0f} µs",
        )

    def paced(self, repeat: int) -> None:
        light = max(1, int(self.rounds * 0.3))
        lateness: dict[str, list[float]] = {"without sink": [], "with sink": []}
        for _ in range(repeat):
            lateness["without sink"] += run_paced(NullSink().emit, self.steps, light)
            sink = self.sink()
            lateness["with sink"] += run_paced(sink.emit, self.steps, light)
            sink.close(timeout_s=30)
        for name, values in lateness.items():
            self.row(
                f"paced 1 ms loop (0.3 ms work), step start lateness {name}: "
                f"p50 / p99 / p99.9 / max ({len(values)} steps)",
                f"{percentile(values, 0.5) * 1e6:.0f} / {percentile(values, 0.99) * 1e6:.0f} / "
                f"{percentile(values, 0.999) * 1e6:.0f} / {max(values) * 1e6:.0f} µs",
            )

    def throughput(self, documents: list[Document]) -> None:
        for batch_size in (5000, 20000):
            sink = self.sink(
                self.config.model_copy(update={"batch_size": batch_size, "flush_interval_s": 0.2})
            )
            server_cpu = process_cpu_s(self.server.pid)  # type: ignore[arg-type]
            cpu_begin, begin = time.process_time(), time.perf_counter()
            for doc in documents:
                sink.emit(doc)
            assert sink.flush(timeout_s=600), "throughput run did not drain"
            elapsed, cpu = time.perf_counter() - begin, time.process_time() - cpu_begin
            server_cpu = process_cpu_s(self.server.pid) - server_cpu  # type: ignore[arg-type]
            sink.close()
            points = sink.backlog().sent_points
            self.row(
                f"sustained emit → influxd, batch {batch_size} ({points:,} points)",
                f"{points / elapsed:,.0f} points/s; CPU per point: controller "
                f"{cpu / points * 1e6:.1f} µs, influxd {server_cpu / points * 1e6:.1f} µs",
            )

    def replay(self, documents: list[Document]) -> None:
        self.server.stop()
        sink = self.sink()
        for doc in documents:
            sink.emit(doc)
        sink.close(timeout_s=0.5)
        left = sink.backlog().pending_points
        self.server.start()
        begin = time.perf_counter()
        resumed = InfluxSink(self.config, sink.buffer_path)
        assert resumed.flush(timeout_s=600), "replay did not drain"
        elapsed = time.perf_counter() - begin
        resumed.close()
        self.row(
            f"replay of a {left:,}-point backlog after an outage", f"{left / elapsed:,.0f} points/s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small runs (a few seconds)")
    parser.add_argument("--only", choices=PARTS, action="append", help="run only this part")
    parser.add_argument("--repeat", type=int, default=1, help="A/B rounds of the paced loop")
    options = parser.parse_args()
    parts = options.only or PARTS
    scale = 0.2 if options.quick else 1.0
    workdir = Path(tempfile.mkdtemp(prefix="telemetry-bench-"))
    (workdir / "influxd").mkdir()
    server = InfluxServer(workdir / "influxd")
    server.start()
    server.create_database("bench")
    load_before = os.getloadavg()[0]
    try:
        bench = Bench(scale, workdir, server)
        documents: list[Document] = []
        if "throughput" in parts or "replay" in parts:
            documents = list(synthetic_run("throughput", int(40_000 * scale), interlock_every=0))
        if "emit" in parts:
            bench.emit()
        if "step" in parts:
            bench.step()
        if "paced" in parts:
            bench.paced(options.repeat)
        if "throughput" in parts:
            bench.throughput(documents)
        if "replay" in parts:
            bench.replay(documents)
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    load_after = os.getloadavg()[0]
    print(f"# InfluxDB sink benchmark ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)\n")
    print(
        f"{os.cpu_count()} CPUs, load average {load_before:.1f} before / {load_after:.1f} after, "
        f"Python {sys.version.split()[0]}, influxd 1.6.7 on loopback, scale {scale}\n"
    )
    print("| measure | result |\n|---|---|")
    print("\n".join(bench.report))


if __name__ == "__main__":
    main()
