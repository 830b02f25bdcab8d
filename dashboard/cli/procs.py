"""Start and stop the real server processes a local cluster (and the test suite) is made of.

Everything here runs real binaries (`redis-server`, `etcd`, our own `python -m proxy`) on free
loopback ports and stops them by PID: `proxyctl up` and the test fixtures share this code, so
what the tests exercise is what an operator runs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the kernel picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if `port` can be bound on `host` right now."""
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def wait_port(host: str, port: int, timeout: float = 10.0,
              proc: subprocess.Popen | None = None) -> None:
    """Block until something accepts TCP connections on host:port, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


def redis_ping(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class Process:
    """A child process started in its own session so that stop() can kill its whole group."""

    def __init__(self, argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None,
                 cwd: str | None = None) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            self.argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, cwd=cwd, start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, sig)

    def stop(self, timeout: float = 5.0, sig: int | None = None) -> int | None:
        """Ask politely (SIGTERM by default), then kill the whole process group.

        Returns the exit code. (The default can't be `signal.SIGTERM`: in the class body that
        name is the `signal` method above.)
        """
        if sig is None:
            sig = signal.SIGTERM
        if self.alive():
            self.signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        self.stop(timeout=0.0, sig=signal.SIGKILL)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def redis_server_binary() -> str:
    path = shutil.which("redis-server") or ("/usr/bin/redis-server"
                                            if os.path.exists("/usr/bin/redis-server") else None)
    if not path:
        raise FileNotFoundError(
            "redis-server not found: install Debian's redis-server package (the README's "
            "commands do this for you)")
    return path


class RedisServer:
    """One stock redis-server on a loopback port, no persistence, in its own directory."""

    def __init__(self, workdir: Path | None = None, port: int | None = None,
                 password: str | None = None, extra: Sequence[str] = ()) -> None:
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.password = password
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="slotproxy-redis-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.extra = list(extra)
        self.process: Process | None = None

    @property
    def addr(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> RedisServer:
        argv = [
            redis_server_binary(), "--port", str(self.port), "--bind", self.host,
            "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--dir", str(self.workdir), "--protected-mode", "no",
            # A new replica's full sync starts at once instead of after Redis' default 5 s
            # wait for more replicas to share it (local clusters add replicas one by one).
            "--repl-diskless-sync-delay", "0",
        ]
        if self.password:
            argv += ["--requirepass", self.password]
        argv += self.extra
        self.process = Process(argv, self.workdir / f"redis-{self.port}.log")
        wait_port(self.host, self.port, timeout, self.process.proc)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process = None

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()


def python_module(module: str, *args: str) -> list[str]:
    """argv that runs `python -m module args` with the interpreter running us (the venv's)."""
    return [sys.executable, "-m", module, *args]


def etcd_binary() -> str:
    path = shutil.which("etcd") or ("/usr/bin/etcd" if os.path.exists("/usr/bin/etcd") else None)
    if not path:
        raise FileNotFoundError("etcd not found: install Debian's etcd-server package")
    return path


def start_etcd(workdir: Path, name: str = "slotproxy", timeout: float = 15.0,
               host: str = "127.0.0.1") -> tuple[Process, str]:
    """One single-member etcd on free loopback ports, data in `workdir`; returns (process, url).

    Stop it with `process.stop()` (by PID, like everything here).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    client, peer = free_port(host), free_port(host)
    client_url, peer_url = f"http://{host}:{client}", f"http://{host}:{peer}"
    argv = [
        etcd_binary(), "--name", name, "--data-dir", str(workdir / "data"),
        "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
        "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
        "--initial-cluster", f"{name}={peer_url}", "--initial-cluster-state", "new",
        "--log-level", "warn",
    ]
    proc = Process(argv, workdir / "etcd.log")
    deadline = time.monotonic() + timeout
    wait_port(host, client, timeout, proc.proc)
    # The port opens before the member is ready to serve: wait for a health answer.
    import urllib.request
    while True:
        try:
            with urllib.request.urlopen(f"{client_url}/health", timeout=1) as resp:
                if b'"true"' in resp.read():
                    return proc, client_url
        except OSError:
            pass
        if time.monotonic() > deadline or not proc.alive():
            proc.stop()
            raise TimeoutError(f"etcd on {client_url} not healthy: {proc.log_text()[-2000:]}")
        time.sleep(0.05)
