"""Helpers of the HA integration tests: replicas that replicate (REPLICAOF on the test's own
redis-servers), per-server command counts, and the proxy's view of its replicas."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import redis

from tests.harness import Process, ProxyProcess, RedisServer, free_port, until, wait_port


def rc(server: RedisServer) -> redis.Redis:
    return redis.Redis(host=server.host, port=server.port, socket_timeout=10,
                       password=server.password)


def replicate(replica: RedisServer, master: RedisServer) -> None:
    """REPLICAOF `master` on `replica`, and wait until it is in sync."""
    rc(replica).execute_command("REPLICAOF", master.host, str(master.port))
    wait_in_sync(replica, master)


def wait_in_sync(replica: RedisServer, master: RedisServer, timeout: float = 30.0) -> None:
    def synced() -> bool:
        r = rc(replica).info("replication")
        m = rc(master).info("replication")
        return (r.get("master_link_status") == "up" and r.get("master_port") == master.port
                and r.get("slave_repl_offset") == m.get("master_repl_offset"))
    until(synced, timeout, f"{replica.addr} in sync with {master.addr}")


def calls(server: RedisServer, command: str) -> int:
    """How many times `server` executed `command` (INFO commandstats)."""
    stats = rc(server).info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def readonly_errors(server: RedisServer) -> int:
    """Writes `server` refused as a replica (-READONLY): a write the proxy sent it."""
    stats = rc(server).info("errorstats")
    return int(stats.get("errorstat_READONLY", {}).get("count", 0))


def proxy_replicas(proxy: ProxyProcess, gid: int = 1) -> dict[str, dict[str, str]]:
    """The proxy's INFO lines `group_<gid>_replicaN:addr=...,status=...`, by address."""
    info = proxy_info(proxy)
    return {str(v["addr"]): {k: str(x) for k, x in v.items()}
            for k, v in info.items() if k.startswith(f"group_{gid}_replica")}


def proxy_info(proxy: ProxyProcess) -> dict:
    """INFO proxy, as redis-py parses it."""
    return proxy.client().info("proxy")


def wait_replica_status(proxy: ProxyProcess, addr: str, status: str,
                        timeout: float = 30.0) -> dict[str, str]:
    return until(lambda: (r := proxy_replicas(proxy).get(addr)) and r["status"] == status and r,
                 timeout, f"replica {addr} {status} in the proxy's view")


def servers(base: Path, n: int) -> list[RedisServer]:
    return [RedisServer(base / f"s{i}").start() for i in range(n)]


class Writer:
    """A writer thread through a proxy: SET w:<n> <n> for n = 0, 1, ..., recording which
    writes were acknowledged (and when, in order) and which failed."""

    def __init__(self, proxy: ProxyProcess, prefix: str = "w") -> None:
        self.proxy = proxy
        self.prefix = prefix
        self.acked: list[int] = []
        self.acked_at: list[float] = []  # monotonic time of each acknowledgement
        self.failed: list[tuple[int, str]] = []
        self.failed_at: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def key(self, n: int) -> str:
        return f"{self.prefix}:{n}"

    def _run(self) -> None:
        c = self.proxy.client(socket_timeout=5)
        n = 0
        while not self._stop.is_set():
            try:
                c.set(self.key(n), n)
                self.acked.append(n)
                self.acked_at.append(time.monotonic())
            except redis.RedisError as e:
                self.failed.append((n, str(e)))
                self.failed_at.append(time.monotonic())
                time.sleep(0.01)  # a failed write: the master is gone, don't spin
            n += 1

    def unavailable(self) -> float:
        """Seconds from the first failed write to the first acknowledged one after the last
        failure (0 if nothing failed)."""
        if not self.failed_at:
            return 0.0
        last = self.failed_at[-1]
        resumed = next((t for t in self.acked_at if t > last), last)
        return resumed - self.failed_at[0]

    def wait_acked(self, more: int, timeout: float = 30.0) -> int:
        """Wait until `more` writes past the current count are acknowledged."""
        target = len(self.acked) + more
        until(lambda: len(self.acked) >= target, timeout, f"{more} more acknowledged writes")
        return len(self.acked)


def push_master(proxy: ProxyProcess, gid: int, master: str, replicas: list[str]) -> int:
    """Push (admin API) the proxy's map with group `gid` served by `master`; returns once the
    proxy acknowledged it (every request sent under the old map answered)."""
    sm = proxy.slotmap()
    sm["epoch"] += 1
    sm["groups"][str(gid)] = {"master": master, "replicas": replicas}
    return proxy.admin.ok("PUT", "/api/slots", sm)["epoch"]


def blocked_clients(server: RedisServer) -> int:
    return int(rc(server).info("clients")["blocked_clients"])


class Sentinel:
    """Debian's redis-sentinel on a free port, monitoring one master as `name`."""

    def __init__(self, workdir: Path, name: str, master: RedisServer, quorum: int = 2,
                 down_after_ms: int = 1000) -> None:
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / f"sentinel-{self.port}.conf"
        self.conf.write_text("\n".join([
            f"port {self.port}", "bind 127.0.0.1", "protected-mode no", f"dir {workdir}",
            f"sentinel monitor {name} {master.host} {master.port} {quorum}",
            f"sentinel down-after-milliseconds {name} {down_after_ms}",
            f"sentinel failover-timeout {name} 10000",
            f"sentinel parallel-syncs {name} 1", "",
        ]))
        self.process: Process | None = None

    def start(self) -> Sentinel:
        binary = shutil.which("redis-sentinel") or "/usr/bin/redis-sentinel"
        self.process = Process([binary, str(self.conf)], self.workdir / f"s-{self.port}.log")
        wait_port("127.0.0.1", self.port, 10, self.process.proc)
        return self

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5, decode_responses=True)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None
