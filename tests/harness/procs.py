"""Real processes for the integration tests: redis-server, etcd, slotproxy and the dashboard.

Nothing is mocked: every backend is Debian's redis-server on a free loopback port, the proxy
runs as `python -m proxy -c <yaml>` and the dashboard as `python -m dashboard -c <yaml>`,
exactly as an operator runs them. Everything is stopped by PID (its process group) in teardown.

This is the only test module that imports `dashboard.cli.procs` (shared with `proxyctl up`, so
what the tests start is what an operator starts); tests and benchmarks import from here.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import redis
import yaml

from dashboard.cli.procs import (
    Process,
    RedisServer,
    SentinelServer,
    free_port,
    python_module,
    start_etcd,
    wait_port,
)

from .http import TOKEN, Http
from .raw import RawClient

__all__ = ["REPO", "DashboardProcess", "Process", "ProxyProcess", "RedisServer", "SentinelServer",
           "env", "free_port", "group_config", "python_module", "start_etcd", "until", "wait_port"]

REPO = Path(__file__).resolve().parents[2]


def env() -> dict[str, str]:
    """The environment of a child process: our checkout first on PYTHONPATH, and no admin
    token inherited from the developer's shell (each test says which token it means)."""
    path = os.environ.get("PYTHONPATH")
    clean = {k: v for k, v in os.environ.items() if k != "SLOTPROXY_ADMIN_TOKEN"}
    return {**clean, "PYTHONPATH": f"{REPO}{os.pathsep}{path}" if path else str(REPO)}


def until(cond, timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll `cond` until it returns something truthy (and return that); `timeout` only bounds
    the wait. OSError/AssertionError/KeyError count as "not yet"."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = cond()
            if result:
                return result
        except (OSError, AssertionError, KeyError) as e:
            last = e
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what} (last error: {last})")


def group_config(servers: list[RedisServer], **extra: Any) -> dict[str, Any]:
    """A standalone proxy config with one group per server (group ids from 1)."""
    cfg: dict[str, Any] = {
        "groups": {i + 1: {"master": s.addr} for i, s in enumerate(servers)},
        "log_level": "info",
    }
    cfg.update(extra)
    return cfg


class ProxyProcess:
    """`python -m proxy -c <yaml>`: standalone (`ProxyProcess(dir, group_config(...))`) or
    registered with a dashboard (`ProxyProcess.managed(dir, name, dashboard_url)`)."""

    def __init__(self, workdir: Path, config: dict[str, Any], *, extra_args: tuple[str, ...] = (),
                 name: str = "proxy") -> None:
        self.workdir = self.dir = workdir
        self.config = self.cfg = dict(config)
        self.config.setdefault("listen", f"127.0.0.1:{free_port()}")
        self.host, _, port = self.config["listen"].rpartition(":")
        self.port = int(port)
        admin = self.config.get("admin_listen")
        self.admin_port: int | None = int(admin.rpartition(":")[2]) if admin else None
        self.extra_args = extra_args
        self.name = name
        self.process: Process | None = None

    @classmethod
    def managed(cls, workdir: Path, name: str, dashboard: str,
                ports: tuple[int, int] | None = None, **config: Any) -> ProxyProcess:
        """A proxy that takes its slot map from `dashboard`, with an admin API (`ports`: reuse
        a (listen, admin) port pair, e.g. to restart a proxy in place)."""
        port, admin = ports or (free_port(), free_port())
        cfg = {"listen": f"127.0.0.1:{port}", "admin_listen": f"127.0.0.1:{admin}",
               "admin_token": TOKEN, "dashboard": dashboard, "proxy_id": name, "slots": 16384,
               "log_level": "info", **config}
        return cls(workdir, cfg, name=name)

    @property
    def config_path(self) -> Path:
        return self.workdir / f"{self.name}-{self.port}.yaml"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}-{self.port}.log"

    def start(self, timeout: float = 20.0) -> ProxyProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.config))
        argv = python_module("proxy", "-c", str(self.config_path), *self.extra_args)
        self.process = Process(argv, self.log_path, env=env(), cwd=str(REPO))
        try:
            # A dashboard-managed proxy listens only once the dashboard gave it a slot map.
            wait_port(self.host, self.port, timeout, self.process.proc)
        except Exception:
            self.stop()
            raise RuntimeError(f"proxy {self.name} did not start:\n{self.log()}") from None
        return self

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
        return self.process.stop(timeout) if self.process is not None else None

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self, **kw: Any) -> redis.Redis:
        kw.setdefault("socket_timeout", 10)
        return redis.Redis(host=self.host, port=self.port, **kw)

    def raw(self, timeout: float = 5.0) -> RawClient:
        return RawClient(self.host, self.port, timeout)

    @property
    def admin(self) -> Http:
        """The proxy's admin API (a managed proxy's)."""
        assert self.admin_port is not None, "this proxy has no admin_listen"
        return Http(f"http://127.0.0.1:{self.admin_port}", self.config.get("admin_token"))

    def info(self) -> dict[str, Any]:
        return self.admin.get("/api/info")

    def slotmap(self) -> dict[str, Any]:
        return self.admin.get("/api/slots")


class DashboardProcess:
    """`python -m dashboard -c <yaml>` on a free port with the tests' admin token."""

    def __init__(self, workdir: Path, name: str = "dashboard", **cfg: Any) -> None:
        self.port = free_port()
        self.dir = workdir
        self.name = name
        self.cfg = {"listen": f"127.0.0.1:{self.port}", "admin_token": TOKEN,
                    "dashboard_id": name, "health_interval": 0.3, "push_timeout": 1.5, **cfg}
        self.process: Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self) -> Http:
        return Http(self.url, self.cfg.get("admin_token"))

    def start(self, wait_leader: bool = True) -> DashboardProcess:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"{self.name}.yaml"
        path.write_text(yaml.safe_dump(self.cfg))
        self.process = Process(python_module("dashboard", "-c", str(path)),
                               self.dir / f"{self.name}.log", env=env(), cwd=str(REPO))
        wait_port("127.0.0.1", self.port, 15, self.process.proc)
        if wait_leader:
            until(lambda: self.get("/api/v1/topology")["dashboard"]["role"] == "leader",
                  15, f"{self.name} to lead")
        return self

    def get(self, path: str) -> Any:
        return self.api.get(path)

    def call(self, method: str, path: str, body: Any = None, token: str | None = TOKEN):
        return self.api.call(method, path, body, token)

    def stop(self, timeout: float = 5.0) -> int | None:
        return self.process.stop(timeout) if self.process is not None else None

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
