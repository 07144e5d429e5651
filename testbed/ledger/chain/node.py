"""A local Ethereum development node: anvil from the npm package `@foundry-rs/anvil`, on a
loopback port, its chain state optionally kept in a file (loaded at start, written at stop)."""

from __future__ import annotations

import json
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from testbed.ledger.chain.artifact import CHAIN_DIR, ChainSetupError, _hint

HOST = "127.0.0.1"
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def anvil_binary(chain_dir: Path = CHAIN_DIR) -> Path:
    """The anvil executable of the npm package for this platform, else one on PATH."""
    arch = _ARCH.get(platform.machine().lower(), platform.machine().lower())
    system = {"darwin": "darwin", "win32": "win32"}.get(sys.platform, "linux")
    packaged = chain_dir / "node_modules" / "@foundry-rs" / f"anvil-{system}-{arch}" / "bin"
    for name in ("anvil", "anvil.exe"):
        if (packaged / name).is_file():
            return packaged / name
    found = shutil.which("anvil")
    if found is None:
        raise ChainSetupError(f"anvil is not installed in {chain_dir}: " + _hint(chain_dir))
    return Path(found)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def answers(url: str, timeout_s: float = 2.0) -> bool:
    """True when a JSON-RPC node at `url` answers `eth_chainId`."""
    request = urllib.request.Request(
        url,
        data=b'{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}',
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return bool(b'"result"' in response.read())
    except (OSError, urllib.error.URLError):
        return False


def rpc(url: str, method: str, params: list[object], timeout_s: float = 5.0) -> object:
    """One JSON-RPC call; the result (an error answer raises ChainSetupError)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    request = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        answer = json.loads(response.read())
    if "error" in answer:
        raise ChainSetupError(f"{method} at {url}: {answer['error']}")
    return answer.get("result")


@dataclass
class LocalNode:
    """A running anvil; `stop()` writes its state file (when it has one)."""

    url: str
    port: int
    state_path: Path | None
    process: subprocess.Popen[bytes]
    log_path: Path | None = None

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)  # anvil writes --state on a clean stop
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def fund(self, address: str, wei: int = 10**21) -> None:
        """Give an account ether on this development node (`anvil_setBalance`)."""
        rpc(self.url, "anvil_setBalance", [address, hex(wei)])

    def __enter__(self) -> LocalNode:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def start_node(
    port: int | None = None,
    state_path: Path | None = None,
    log_path: Path | None = None,
    chain_dir: Path = CHAIN_DIR,
    timeout_s: float = 60.0,
) -> LocalNode:
    """Start anvil on `HOST:port` (a free port by default) and wait until it answers."""
    port = port or free_port()
    args = [str(anvil_binary(chain_dir)), "--host", HOST, "--port", str(port)]
    if state_path is not None:
        state_path.parent.mkdir(parents=True, exist_ok=True)
        args += ["--state", str(state_path)]
    log = open(log_path, "ab") if log_path is not None else subprocess.DEVNULL  # noqa: SIM115
    try:
        # Its own session: a Ctrl-C at the terminal is the controller's to handle.
        process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    finally:
        if not isinstance(log, int):  # a log file, not DEVNULL
            log.close()
    node = LocalNode(f"http://{HOST}:{port}", port, state_path, process, log_path)
    deadline = time.monotonic() + timeout_s
    while not answers(node.url, 1.0):
        if process.poll() is not None or time.monotonic() > deadline:
            node.stop()
            where = f" (its log: {log_path})" if log_path else ""
            raise ChainSetupError(f"anvil did not start on {node.url}{where}")
        time.sleep(0.1)
    return node
