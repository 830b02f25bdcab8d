"""`proxyctl up`: a complete local cluster on embedded defaults, in the foreground.

N redis-server groups and the dashboard (file store in the work dir) are started with
`dashboard.cli.procs`, the groups are created and the slots spread evenly through the dashboard's
REST API (the same calls an operator makes), then the proxies start and register themselves.
With `--replicas N` each group also gets N replicas, created with the group (the dashboard
issues REPLICAOF) and waited for until they are in sync.
Ctrl-C (SIGINT) or SIGTERM stops everything this command started, by PID, in reverse order.

Every run starts a fresh cluster: the redis servers get new free ports and empty data, so the
store from a previous run (which names the old ports) is cleared.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from slotcore.addr import join_addr
from slotcore.contract import resolve_token

from ..model.changes import even_assignment
from .client import ApiClient, CliError
from .procs import Process, RedisServer, free_port, port_free, python_module, wait_port
from .render import render_cluster

REPO_ROOT = Path(__file__).resolve().parent.parent.parent


class LocalCluster:
    def __init__(self, workdir: Path, groups: int = 3, proxies: int = 1, nslots: int = 16384,
                 token: str | None = None, proxy_port: int = 0, dashboard_port: int = 0,
                 replicas: int = 0) -> None:
        if groups < 1 or proxies < 0:
            raise CliError("need at least one group and zero or more proxies", 2)
        if not 0 <= replicas <= 5:
            raise CliError("--replicas: 0 to 5 per group", 2)
        self.nreplicas = replicas
        self.replicas: dict[int, list[RedisServer]] = {}
        self.dir = workdir.resolve()
        self.ngroups = groups
        self.nproxies = proxies
        self.nslots = nslots
        self.token = token or secrets.token_urlsafe(16)
        # The usual ports when they are free (so `redis-cli -p 19000` just works), else any.
        if not proxy_port and all(port_free(19000 + i) for i in range(proxies)):
            proxy_port = 19000
        self.proxy_port = proxy_port
        self.dashboard_port = dashboard_port or (18080 if port_free(18080) else free_port())
        self.redis: list[RedisServer] = []
        self.processes: list[tuple[str, Process]] = []
        self.proxy_addrs: list[str] = []
        self.url = f"http://127.0.0.1:{self.dashboard_port}"

    def _env(self) -> dict[str, str]:
        # Children run `python -m dashboard` / `python -m proxy` from this checkout.
        path = os.environ.get("PYTHONPATH")
        return {**os.environ, "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{path}" if path
                else str(REPO_ROOT)}

    def _spawn(self, name: str, argv: list[str]) -> Process:
        proc = Process(argv, self.dir / "logs" / f"{name}.log", env=self._env())
        self.processes.append((name, proc))
        return proc

    def start(self, stopping: threading.Event | None = None) -> None:
        def check() -> None:
            if stopping is not None and stopping.is_set():
                raise KeyboardInterrupt

        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "logs").mkdir(exist_ok=True)
        shutil.rmtree(self.dir / "store", ignore_errors=True)
        for i in range(1, self.ngroups + 1):
            shutil.rmtree(self.dir / f"redis-{i}", ignore_errors=True)
            self.redis.append(RedisServer(self.dir / f"redis-{i}").start())
            for j in range(1, self.nreplicas + 1):
                shutil.rmtree(self.dir / f"redis-{i}-r{j}", ignore_errors=True)
                self.replicas.setdefault(i, []).append(
                    RedisServer(self.dir / f"redis-{i}-r{j}").start())
            check()

        cfg = {"listen": join_addr("127.0.0.1", self.dashboard_port), "admin_token": self.token,
               "slots": self.nslots, "store": {"kind": "file", "path": str(self.dir / "store")}}
        (self.dir / "dashboard.yaml").write_text(yaml.safe_dump(cfg))
        dash = self._spawn("dashboard",
                           python_module("dashboard", "-c", str(self.dir / "dashboard.yaml")))
        wait_port("127.0.0.1", self.dashboard_port, 20, dash.proc)
        check()

        api = ApiClient(self.url, self.token)
        self._wait(lambda: api.get("/api/v1/topology")["dashboard"]["role"] == "leader",
                   "the dashboard to lead", dash)
        syncing = []
        for i, srv in enumerate(self.redis, start=1):
            reps = [r.addr for r in self.replicas.get(i, [])]
            made = api.call("POST", "/api/v1/groups", {"id": i, "master": srv.addr,
                                                       "replicas": reps})
            syncing += [(i, addr, s) for addr, s in (made.get("sync") or {}).items()]
        for gid, addr, s in syncing:
            path = (f"/api/v1/groups/{gid}/servers/{addr}/sync"
                    f"?offset={s.get('target_offset') or 0}")
            self._wait(lambda p=path: api.get(p).get("in_sync"),
                       f"replica {addr} of group {gid} to sync", dash)
        api.call("POST", "/api/v1/slots/assign",
                 {"assign": even_assignment(self.nslots, list(range(1, self.ngroups + 1)))})
        check()

        for i in range(1, self.nproxies + 1):
            port = self.proxy_port + i - 1 if self.proxy_port else free_port()
            pcfg = {"listen": join_addr("127.0.0.1", port),
                    "admin_listen": join_addr("127.0.0.1", free_port()),
                    "admin_token": self.token, "dashboard": self.url, "proxy_id": f"proxy-{i}",
                    "slots": self.nslots}
            path = self.dir / f"proxy-{i}.yaml"
            path.write_text(yaml.safe_dump(pcfg))
            proc = self._spawn(f"proxy-{i}", python_module("proxy", "-c", str(path)))
            wait_port("127.0.0.1", port, 30, proc.proc)
            self.proxy_addrs.append(join_addr("127.0.0.1", port))
            check()

        def all_online() -> bool:
            listed = api.get("/api/v1/proxies")["proxies"]
            return sum(p["state"] == "online" for p in listed) >= self.nproxies
        self._wait(all_online, "the proxies to come online", dash)
        (self.dir / "pids.json").write_text(json.dumps(self.pids()))

    @staticmethod
    def _wait(cond: Any, what: str, proc: Process, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if cond():
                    return
            except CliError:
                pass
            if not proc.alive():
                raise CliError(f"dashboard exited while waiting for {what}: see "
                               f"{proc.log_path}")
            if time.monotonic() > deadline:
                raise CliError(f"timed out waiting for {what}")
            time.sleep(0.1)

    def pids(self) -> dict[str, int]:
        out = {f"redis-{i}": s.process.pid for i, s in enumerate(self.redis, start=1)
               if s.process is not None}
        out.update({f"redis-{i}-r{j}": r.process.pid for i, rs in self.replicas.items()
                    for j, r in enumerate(rs, start=1) if r.process is not None})
        out.update({name: p.pid for name, p in self.processes})
        return out

    def summary(self) -> dict[str, Any]:
        return {
            "dashboard": self.url,
            "token": self.token,
            "proxies": self.proxy_addrs,
            "groups": {str(i): s.addr for i, s in enumerate(self.redis, start=1)},
            "replicas": {str(i): [r.addr for r in rs] for i, rs in self.replicas.items()},
            "dir": str(self.dir),
            "pids": self.pids(),
        }

    def dead(self) -> list[str]:
        return [name for name, p in self.processes if not p.alive()] + [
            s.addr for s in self._servers() if not s.alive()]

    def _servers(self) -> list[RedisServer]:
        return self.redis + [r for rs in self.replicas.values() for r in rs]

    def stop(self) -> None:
        """Everything we started, newest first (proxies, dashboard, then redis), by PID."""
        for _, proc in reversed(self.processes):
            proc.stop()
        for srv in reversed(self._servers()):
            srv.stop()


def run_up(args: argparse.Namespace) -> int:
    stopping = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stopping.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    cluster = LocalCluster(Path(args.dir), args.groups, args.proxies, args.slots,
                           token=resolve_token(explicit=getattr(args, "token", None)),
                           proxy_port=args.port, dashboard_port=args.dashboard_port,
                           replicas=getattr(args, "replicas", 0))
    try:
        try:
            cluster.start(stopping)
        except KeyboardInterrupt:
            return 130
        except (RuntimeError, TimeoutError, OSError, CliError) as e:
            print(f"proxyctl up: {e} (logs in {cluster.dir / 'logs'})", file=sys.stderr)
            return 1
        info = cluster.summary()
        if getattr(args, "json", False):
            print(json.dumps(info), flush=True)
        else:
            print(render_cluster(info), flush=True)
        reported: set[str] = set()
        while not stopping.wait(1.0):
            for name in set(cluster.dead()) - reported:
                print(f"proxyctl up: {name} exited (see {cluster.dir / 'logs'})",
                      file=sys.stderr, flush=True)
                reported.add(name)
        return 0
    finally:
        cluster.stop()
        for s, handler in old.items():
            signal.signal(s, handler)
