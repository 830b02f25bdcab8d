"""Real processes for the integration tests: `python -m dashboard` and `python -m proxy`."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from dashboard.cli.procs import Process, free_port, python_module, wait_port

from .helpers import TOKEN

REPO = Path(__file__).resolve().parents[3]


def env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    clean = {k: v for k, v in os.environ.items() if k != "SLOTPROXY_ADMIN_TOKEN"}
    return {**clean, "PYTHONPATH": f"{REPO}{os.pathsep}{path}" if path else str(REPO)}


def http(method: str, url: str, body: Any = None, token: str | None = TOKEN,
         timeout: float = 10) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def until(cond, timeout: float = 10.0, what: str = "condition") -> Any:
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


class DashboardProc:
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

    def start(self, wait_leader: bool = True) -> DashboardProc:
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
        status, body = http("GET", self.url + path)
        assert status == 200, body
        return body

    def call(self, method: str, path: str, body: Any = None, token: str | None = TOKEN):
        return http(method, self.url + path, body, token)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()


class ProxyProc:
    def __init__(self, workdir: Path, name: str, dashboard: str) -> None:
        self.port = free_port()
        self.admin_port = free_port()
        self.dir = workdir
        self.name = name
        self.cfg = {"listen": f"127.0.0.1:{self.port}",
                    "admin_listen": f"127.0.0.1:{self.admin_port}", "admin_token": TOKEN,
                    "dashboard": dashboard, "proxy_id": name, "slots": 16384,
                    "log_level": "info"}
        self.process: Process | None = None

    def start(self) -> ProxyProc:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"{self.name}.yaml"
        path.write_text(yaml.safe_dump(self.cfg))
        self.process = Process(python_module("proxy", "-c", str(path)),
                               self.dir / f"{self.name}.log", env=env(), cwd=str(REPO))
        # A dashboard-managed proxy listens only once the dashboard gave it a slot map.
        wait_port("127.0.0.1", self.port, 20, self.process.proc)
        return self

    def info(self) -> dict[str, Any]:
        status, body = http("GET", f"http://127.0.0.1:{self.admin_port}/api/info")
        assert status == 200
        return body

    def slotmap(self) -> dict[str, Any]:
        status, body = http("GET", f"http://127.0.0.1:{self.admin_port}/api/slots")
        assert status == 200, body
        return body

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
