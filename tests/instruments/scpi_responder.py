"""PyMeasure-style `expected_protocol` over a real socket: a tiny TCP responder that checks every
line a driver sends against a script and answers from it, so a test pins the exact exchange."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence

# (line the driver must send, answer or None for a command); an answer given as a tuple of
# parts is sent part by part, 50 ms apart (an answer that arrives in pieces)
Exchange = tuple[str, str | tuple[str, ...] | None]


class ExpectedProtocol:
    """Serve one connection; `problems` lists every deviation from the script."""

    def __init__(self, script: Sequence[Exchange]):
        self.script = list(script)
        self.received: list[str] = []
        self.problems: list[str] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(5)
        self.port = self._listener.getsockname()[1]
        self.resource = f"TCPIP0::127.0.0.1::{self.port}::SOCKET"
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> ExpectedProtocol:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._thread.join(timeout=5)
        self._listener.close()

    def check(self) -> None:
        """Fail unless every scripted line arrived, in order, and nothing else did."""
        self._thread.join(timeout=5)
        left = self.script[len(self.received) :]
        assert not self.problems, self.problems
        assert not left, f"never sent: {left}"

    def _serve(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(2)
            buffer = b""
            while len(self.received) < len(self.script):
                try:
                    chunk = conn.recv(4096)
                except OSError:
                    break
                if not chunk:
                    break
                buffer += chunk
                while b"\n" in buffer and len(self.received) < len(self.script):
                    raw, buffer = buffer.split(b"\n", 1)
                    line = raw.decode().strip()
                    expected, answer = self.script[len(self.received)]
                    self.received.append(line)
                    if line != expected:
                        self.problems.append(f"sent {line!r}, expected {expected!r}")
                    if isinstance(answer, tuple):
                        for part in answer[:-1]:
                            conn.sendall(part.encode())
                            time.sleep(0.05)
                        conn.sendall(answer[-1].encode() + b"\n")
                    elif answer is not None:
                        conn.sendall(answer.encode() + b"\n")
            if buffer.strip():
                self.problems.append(f"unexpected extra bytes {buffer!r}")
            # anything sent after the script ends is a deviation too
            conn.settimeout(0.05)
            try:
                extra = conn.recv(4096)
            except OSError:
                extra = b""
            if extra:
                self.problems.append(f"unexpected extra bytes {extra!r}")
