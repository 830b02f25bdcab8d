"""Real processes for the integration tests: redis-server backends and slotproxy itself.

Nothing is mocked: every backend is Debian's redis-server on a free loopback port and the proxy
runs as `python -m proxy -c <yaml>`, exactly as an operator runs it. Everything is stopped by
PID in fixture teardown.
"""

from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path
from typing import Any

import redis
import yaml

from dashboard.cli.procs import Process, RedisServer, free_port, python_module, wait_port

REPO = Path(__file__).resolve().parent.parent


class ProxyProcess:
    def __init__(self, workdir: Path, config: dict[str, Any], *, extra_args: tuple[str, ...] = (),
                 name: str = "proxy") -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config = dict(config)
        self.config.setdefault("listen", f"127.0.0.1:{free_port()}")
        self.host, _, port = self.config["listen"].rpartition(":")
        self.port = int(port)
        self.extra_args = extra_args
        self.name = name
        self.process: Process | None = None
        self.config_path = self.workdir / f"{name}-{self.port}.yaml"

    def start(self, timeout: float = 15.0) -> ProxyProcess:
        self.config_path.write_text(yaml.safe_dump(self.config))
        argv = python_module("proxy", "-c", str(self.config_path), *self.extra_args)
        self.process = Process(argv, self.workdir / f"{self.name}-{self.port}.log", cwd=str(REPO))
        try:
            wait_port(self.host, self.port, timeout, self.process.proc)
        except Exception:
            self.stop()
            raise RuntimeError(f"proxy did not start:\n{self.log()}") from None
        return self

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.process is None:
            return None
        rc = self.process.stop(timeout)
        self.process = None
        return rc

    def log(self) -> str:
        path = self.workdir / f"{self.name}-{self.port}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def client(self, **kw: Any) -> redis.Redis:
        kw.setdefault("socket_timeout", 10)
        return redis.Redis(host=self.host, port=self.port, **kw)

    def raw(self, timeout: float = 5.0) -> RawClient:
        return RawClient(self.host, self.port, timeout)


def group_config(servers: list[RedisServer], **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "groups": {i + 1: {"master": s.addr} for i, s in enumerate(servers)},
        "log_level": "info",
    }
    cfg.update(extra)
    return cfg


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
