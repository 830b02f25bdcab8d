"""A plain socket for sending exact bytes (malformed input, inline commands) and reading back."""

from __future__ import annotations

import contextlib
import socket
import time


class RawClient:
    """A plain socket for sending exact bytes (malformed input, inline commands)."""

    def __init__(self, host: str, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_until(self, predicate, timeout: float = 5.0) -> bytes:
        deadline = time.monotonic() + timeout
        while not predicate(self.buf):
            if time.monotonic() > deadline:
                raise TimeoutError(f"got only {self.buf[:200]!r}")
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                break
            self.buf += chunk
        return self.buf

    def read_lines(self, n: int, timeout: float = 5.0) -> list[bytes]:
        self.recv_until(lambda b: b.count(b"\r\n") >= n, timeout)
        lines = self.buf.split(b"\r\n")
        out, rest = lines[:n], lines[n:]
        self.buf = b"\r\n".join(rest)
        return out

    def closed_by_peer(self, timeout: float = 5.0) -> bool:
        """True once the proxy has closed the connection (reads EOF)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                return True
            if not chunk:
                return True
            self.buf += chunk
        return False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
