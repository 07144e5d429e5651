"""`testbed demo`'s platform: its own mosquitto on a free loopback port, the operator and the
agents as child processes (`python -m testbed operator|agent`), all stopped by their own pids."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w

from testbed.config import TestbedConfig
from testbed.platform.broker import MosquittoBroker, TlsFiles
from testbed.platform.deployment import PlatformDir
from testbed.platform.link import BrokerAddress
from testbed.platform.settings import gate_wait_for
from testbed.platform.sizing import AgentLayout, agent_groups, agent_layout


@dataclass
class PlatformProcesses:
    """The running platform: where the broker is, and the children to stop."""

    folder: PlatformDir
    broker: MosquittoBroker
    config_path: Path
    operator: subprocess.Popen[bytes] | None = None
    agents: dict[tuple[str, ...], subprocess.Popen[bytes]] = field(default_factory=dict)
    layout: AgentLayout | None = None  # the agent processes started with the platform

    @property
    def address(self) -> BrokerAddress:
        return self.broker.address

    def controller_password(self) -> str:
        return self.folder.password("controller")

    def _spawn(self, name: str, args: Sequence[str]) -> subprocess.Popen[bytes]:
        logs = self.folder.root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with (logs / f"{name}.log").open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "testbed", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,  # a Ctrl-C at the terminal is the controller's to handle
            )

    def start_operator(self, gate_wait_s: float | None = None) -> None:
        args = ["operator", "--config", str(self.config_path), "--dir", str(self.folder.root)]
        args.append("--exit-with-parent")
        if gate_wait_s is not None:
            args += ["--gate-wait-s", str(gate_wait_s)]
        self.operator = self._spawn("operator", args)

    def start_agents(self, peers: Sequence[str], stats_dir: Path | None = None) -> None:
        """One process for these peers' agents (each its own session)."""
        args = ["agent", "--config", str(self.config_path), "--dir", str(self.folder.root)]
        args.append("--exit-with-parent")
        for peer in peers:
            args += ["--peer", peer]
        name = "agents-" + "-".join(peers) if len(peers) <= 3 else f"agents-{peers[0]}-{len(peers)}"
        if stats_dir is not None:
            args += ["--stats", str(stats_dir / f"{name}.json")]
        self.agents[tuple(peers)] = self._spawn(name, args)

    def kill_agent(self, peers: tuple[str, ...]) -> None:
        """Kill an agent process at once (SIGKILL: no goodbye; the broker sends its last will)."""
        process = self.agents.pop(peers)
        process.kill()
        process.wait(timeout=10)

    def exited(self) -> list[str]:
        """Children that have exited (they should not, while the run goes on)."""
        gone = []
        if self.operator is not None and self.operator.poll() is not None:
            gone.append(f"operator (exit {self.operator.returncode})")
        for peers, process in self.agents.items():
            if process.poll() is not None:
                gone.append(f"agents {','.join(peers)} (exit {process.returncode})")
        return gone

    def stop(self) -> None:
        for process in [*self.agents.values(), self.operator]:
            if process is not None and process.poll() is None:
                process.terminate()
        for process in [*self.agents.values(), self.operator]:
            if process is None:
                continue
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self.agents.clear()
        self.operator = None
        self.broker.stop()


def with_run_keys(config: TestbedConfig, run_dir: Path) -> TestbedConfig:
    """The configuration with `[ledger] keys_dir` set to the folder the run's ledger uses, so the
    platform's agents sign with the identities the ledger registers."""
    from testbed.ledger.run_ledger import keys_dir

    folder = keys_dir(config.ledger.keys_dir, run_dir).resolve()
    return config.model_copy(
        update={"ledger": config.ledger.model_copy(update={"keys_dir": folder})}
    )


def tls_files(config: TestbedConfig) -> TlsFiles | None:
    if not config.platform.tls:
        return None
    folder = config.platform.tls_dir
    files = TlsFiles(folder / "ca.crt", folder / "server.crt", folder / "server.key")
    missing = [str(p) for p in (files.ca_file, files.cert_file, files.key_file) if not p.exists()]
    if missing:
        raise FileNotFoundError(
            f"platform.tls = true but {', '.join(missing)} missing: make them with "
            "`testbed platform certs` or the openssl commands in docs/platform.md"
        )
    return files


def groups(peers: Sequence[str], per_process: int) -> list[list[str]]:
    """The peers `per_process` to a process (see `testbed.platform.sizing`)."""
    return agent_groups(peers, per_process)


@contextlib.contextmanager
def platform_processes(
    config: TestbedConfig,
    folder: Path,
    *,
    start_agents: bool = True,
    gate_wait_s: float | None = None,
) -> Iterator[PlatformProcesses]:
    """Broker, operator and agents for `config`'s peers in `folder`; all stopped on exit."""
    platform_dir = PlatformDir.for_config(folder, config)
    peers = list(config.peers)
    broker = platform_dir.broker(
        peers, port=config.platform.broker_port or None, tls=tls_files(config)
    )
    broker.start()
    platform_dir.write_address(broker.address)
    config_path = folder / "config.toml"
    config_path.write_text(tomli_w.dumps(config.to_toml_dict()), encoding="utf-8")
    running = PlatformProcesses(platform_dir, broker, config_path)
    try:
        running.start_operator(
            gate_wait_s or gate_wait_for(config.platform.gate_wait_s, config.clock.mode)
        )
        if start_agents:
            running.layout = agent_layout(
                peers,
                agents_per_process=config.platform.agents_per_process,
                start_timeout_s=config.platform.start_timeout_s,
            )
            for group in running.layout.groups:
                running.start_agents(group)
        yield running
    finally:
        running.stop()
