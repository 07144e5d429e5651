"""A mosquitto broker of the platform's own: a free loopback port, per-user passwords and the ACL,
persistence (sessions and queued QoS 1 messages survive a restart), optional TLS.

`MosquittoBroker` writes `mosquitto.conf`, the hashed password file and the ACL into its folder,
starts `mosquitto -c` as a child process and stops it by its own pid. It touches no system service.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from testbed.platform.credentials import acl_text, write_password_file
from testbed.platform.link import BrokerAddress


class BrokerStartError(RuntimeError):
    """The broker did not come up."""


def mosquitto_binary() -> str:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and Path(candidate).exists():
            return candidate
    raise BrokerStartError(
        "mosquitto not found: install Debian's 'mosquitto' (`sudo apt-get install mosquitto`; "
        "bash scripts/setup.sh --tests does)"
    )


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """The broker's certificate and key, and the CA that signed it (clients trust the CA)."""

    ca_file: Path
    cert_file: Path
    key_file: Path


class MosquittoBroker:
    """One mosquitto process serving `users` on `host:port` (a free loopback port by default)."""

    def __init__(
        self,
        folder: Path,
        users: dict[str, str],
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        tls: TlsFiles | None = None,
        autosave_interval_s: int = 2,
    ) -> None:
        self.folder = Path(folder)
        self.users = dict(users)
        self.host = host
        self.port = port or free_loopback_port()
        self.tls = tls
        self.autosave_interval_s = autosave_interval_s
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> BrokerAddress:
        return BrokerAddress(
            host=self.host,
            port=self.port,
            tls=self.tls is not None,
            ca_file=self.tls.ca_file if self.tls else None,
        )

    @property
    def log_path(self) -> Path:
        return self.folder / "broker.log"

    def config_text(self) -> str:
        folder = self.folder.resolve()
        lines = [
            "# written by testbed.platform.broker",
            "per_listener_settings false",
            # started as root, mosquitto would switch to user 'mosquitto', who cannot read the
            # files of whoever started it: it stays the user that started it
            f"user {pwd.getpwuid(os.getuid()).pw_name}",
            "allow_anonymous false",
            f"password_file {folder / 'passwd'}",
            f"acl_file {folder / 'acl'}",
            "persistence true",
            f"persistence_location {folder / 'data'}/",
            f"autosave_interval {self.autosave_interval_s}",
            "max_queued_messages 100000",
            "max_inflight_messages 100",
            "set_tcp_nodelay true",
            "sys_interval 1",
            f"log_dest file {folder / 'broker.log'}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "connection_messages false",
            f"listener {self.port} {self.host}",
        ]
        if self.tls is not None:
            lines += [
                f"cafile {self.tls.ca_file.resolve()}",
                f"certfile {self.tls.cert_file.resolve()}",
                f"keyfile {self.tls.key_file.resolve()}",
                "require_certificate false",
            ]
        return "\n".join(lines) + "\n"

    def write_files(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "data").mkdir(exist_ok=True)
        write_password_file(self.folder / "passwd", self.users)
        (self.folder / "acl").write_text(acl_text(), encoding="utf-8")
        (self.folder / "mosquitto.conf").write_text(self.config_text(), encoding="utf-8")

    def start(self, timeout_s: float = 20.0) -> BrokerAddress:
        """Write the files (first time) and start mosquitto; return once it accepts connections."""
        if not (self.folder / "mosquitto.conf").exists():
            self.write_files()
        out = (self.folder / "mosquitto.out").open("ab")
        self.process = subprocess.Popen(
            [mosquitto_binary(), "-c", str(self.folder / "mosquitto.conf")],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C at the terminal is the controller's to handle
        )
        out.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerStartError(f"mosquitto exited at start: {self._log_tail()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), timeout=0.5),
            ):
                return self.address
            time.sleep(0.05)
        self.stop()
        raise BrokerStartError(f"mosquitto did not listen on {self.host}:{self.port}")

    def _log_tail(self) -> str:
        texts = []
        for name in ("mosquitto.out", "broker.log"):
            path = self.folder / name
            if path.exists():
                texts.append(path.read_text(encoding="utf-8", errors="replace").strip()[-1500:])
        return " | ".join(t for t in texts if t) or "no output"

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop it gracefully (SIGTERM: mosquitto saves its persistence file first)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout_s)

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> MosquittoBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
