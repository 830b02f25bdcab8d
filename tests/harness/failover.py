"""A replicated cluster watched by real redis-sentinels, and a load that measures what a failover
loses (the failover tests and `bench/failover_bench.py` share it).

Every group is a master plus one replica that replicates for real (REPLICAOF issued here with
redis-py, then recorded with the dashboard's `group add-server`); three sentinels on free
loopback ports; the dashboard is configured with them and makes them monitor every master.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import redis

from dashboard.model.changes import even_assignment
from slotcore.keyslot import key_slot

from .procs import DashboardProcess, ProxyProcess, RedisServer, SentinelServer, until

NSLOTS = 1024
# Redis 7 delays a diskless full sync by 5 s by default: a replica is in sync at once here.
REPL = ("--repl-diskless-sync-delay", "0")


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def info(port: int, section: str = "replication") -> dict[str, Any]:
    r = redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=1)
    try:
        return r.info(section)
    finally:
        r.close()


def in_sync(replica: int, master: int) -> bool:
    """The replica's link is up and it has applied everything the master had when asked
    (the master is asked first: under writes its offset keeps moving)."""
    try:
        mi = info(master)
        ri = info(replica)
    except (redis.RedisError, OSError):
        return False
    return (ri.get("role") == "slave" and ri.get("master_port") == master
            and ri.get("master_link_status") == "up"
            and int(ri.get("slave_repl_offset", -1)) >= int(mi.get("master_repl_offset", 0)))


class HACluster:
    def __init__(self, tmp: Path, ngroups: int = 2, nproxies: int = 2, nsentinels: int = 3,
                 down_after_ms: int = 2000, failover_timeout_ms: int = 6000,
                 **dash_cfg: Any) -> None:
        # down_after_ms 2000, not 1000: a sentinel pings each instance once a second, and the
        # new master's first PING after a +switch-master is sent ~1 s after its link is made;
        # at 1000 ms a loaded host lets two sentinels mark it down at once and fail the group
        # over a second time, onto the old master that was just restarted (seen in CI).
        self.tmp = tmp
        self.servers: dict[str, RedisServer] = {}
        self.sentinels: list[SentinelServer] = []
        self.proxies: list[ProxyProcess] = []
        self.dash: DashboardProcess | None = None
        try:
            self._start(ngroups, nproxies, nsentinels, down_after_ms, failover_timeout_ms,
                        dash_cfg)
        except BaseException:
            self.close()
            raise

    def _start(self, ngroups: int, nproxies: int, nsentinels: int, down_after_ms: int,
               failover_timeout_ms: int, dash_cfg: dict[str, Any]) -> None:
        tmp = self.tmp
        self.sentinels = [SentinelServer(tmp / f"sentinel{i}").start()
                          for i in range(nsentinels)]
        pairs = []
        for g in range(1, ngroups + 1):
            m = self._server(tmp / f"g{g}a")
            r = self._server(tmp / f"g{g}b")
            redis.Redis(port=r.port).replicaof(m.host, m.port)
            pairs.append((m, r))
        cfg = {"slots": NSLOTS, "store": {"kind": "file", "path": str(tmp / "store")},
               "push_timeout": 3.0, "sentinels": [s.addr for s in self.sentinels],
               "sentinel": {"quorum": 2, "down_after_ms": down_after_ms,
                            "failover_timeout_ms": failover_timeout_ms,
                            "poll_interval": 0.5, "master_prefix": "t-g"},
               **dash_cfg}
        self.dash = DashboardProcess(tmp, **cfg)
        self.dash.start()
        for gid, (m, r) in enumerate(pairs, start=1):
            status, body = self.dash.call("POST", "/api/v1/groups", {"id": gid,
                                                                      "master": m.addr})
            assert status == 201, body
            until(lambda m=m, r=r: in_sync(r.port, m.port), 20, "replica in sync")
            status, body = self.dash.call("POST", f"/api/v1/groups/{gid}/servers",
                                          {"addr": r.addr, "role": "replica"})
            assert status == 201, body
        assign = even_assignment(NSLOTS, list(range(1, ngroups + 1)))
        status, body = self.dash.call("POST", "/api/v1/slots/assign", {"assign": assign})
        assert status == 200, body
        for i in range(nproxies):
            self.proxies.append(self.make_proxy(f"proxy-{i}"))
        until(lambda: [p["state"] for p in self.dash.get("/api/v1/proxies")["proxies"]]
              == ["online"] * nproxies, 20, "proxies online")
        for gid in range(1, ngroups + 1):
            self.wait_watched(gid)

    def _server(self, workdir: Path) -> RedisServer:
        srv = RedisServer(workdir, extra=REPL).start()
        self.servers[srv.addr] = srv
        return srv

    def make_proxy(self, name: str) -> ProxyProcess:
        # A reply older than 1 s fails the backend connection: a map push waits for requests
        # in flight to a frozen old master no longer than that.
        return ProxyProcess.managed(self.tmp, name, self.dash.url, slots=NSLOTS,
                                    backend={"request_timeout": 1.0},
                                    migration={"lock_timeout": 10.0,
                                               "fence_timeout": 10.0}).start()

    # -- views --------------------------------------------------------------------------------

    def group(self, gid: int) -> dict[str, Any]:
        return self.dash.get(f"/api/v1/groups/{gid}")

    def master(self, gid: int) -> RedisServer:
        return self.servers[self.group(gid)["master"]]

    def replica(self, gid: int) -> RedisServer:
        return self.servers[self.group(gid)["replicas"][0]]

    def sentinel_view(self) -> dict[str, Any]:
        return self.dash.get("/api/v1/sentinels")

    def sentinel_master(self, sentinel: SentinelServer, gid: int) -> str | None:
        r = redis.Redis(port=sentinel.port, socket_timeout=2)
        try:
            got = r.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", f"t-g{gid}")
        finally:
            r.close()
        return f"{got[0].decode()}:{int(got[1])}" if got else None

    def wait_watched(self, gid: int, timeout: float = 30) -> None:
        """Every live sentinel monitors the group's master, sees its replica and the other
        sentinels (without those, no failover can be agreed), and the replica is in sync."""
        def ready() -> bool:
            m, r = self.master(gid), self.replica(gid)
            if not in_sync(r.port, m.port):
                return False
            live = [s for s in self.sentinels if s.alive()]
            for s in live:
                c = redis.Redis(port=s.port, socket_timeout=2)
                try:
                        raw = c.execute_command("SENTINEL", "MASTER", f"t-g{gid}")
                except redis.ResponseError:
                    return False
                finally:
                    c.close()
                d = {_s(k): _s(v) for k, v in raw.items()}
                if (f"{d['ip']}:{d['port']}" != m.addr or int(d["num-slaves"]) < 1
                        or int(d["num-other-sentinels"]) < len(self.sentinels) - 1
                        or d["flags"] != "master"):
                    return False
            return True
        until(ready, timeout, f"the sentinels to watch group {gid}")

    def restart_as_replica(self, srv: RedisServer, gid: int) -> None:
        """Start a killed server of group `gid` as a replica of the group's current master.

        Without persistence it restarts empty; started as a master, it waits for sentinel to
        convert it, and if sentinel meanwhile sees the new master down even briefly (a loaded
        machine), it can promote this empty server and wipe the group (seen here once). An
        operator restarts such a server with --replicaof; so do the tests (docs/failover.md).
        """
        new = self.master(gid)
        srv.extra = [*REPL, "--replicaof", new.host, str(new.port)]
        try:
            srv.start()
        finally:
            srv.extra = list(REPL)

    def heal(self, timeout: float = 90) -> None:
        """Bring back whatever a test left down -- a killed server, a stopped sentinel, a
        dashboard -- and wait until every group is watched again with an in-sync replica, so
        a test that failed half-way does not fail the ones after it."""
        for s in self.sentinels:
            if not s.alive():
                s.start()
        if self.dash is not None and not (self.dash.process and self.dash.process.alive()):
            self.dash.start()
        for g in self.dash.get("/api/v1/groups")["groups"]:
            for addr in g["replicas"]:
                if not self.servers[addr].alive():
                    self.restart_as_replica(self.servers[addr], int(g["id"]))
        for gid in sorted(int(g["id"]) for g in self.dash.get("/api/v1/groups")["groups"]):
            self.wait_watched(gid, timeout)
        # A restarted dashboard knows the proxies' last heartbeats from the store only; until
        # each proxy's agent reconnects and beats again, it refuses migrations (fence).
        until(lambda: all(time.time() - p["last_seen"] < 5 and not p["stale"]
                          for p in self.dash.get("/api/v1/proxies")["proxies"]),
              30, "every proxy to heartbeat the dashboard")

    def wait_master(self, gid: int, addr: str, timeout: float = 60) -> None:
        """The dashboard recorded `addr` as the group's master and every proxy applied it."""
        def done() -> bool:
            if self.group(gid)["master"] != addr:
                return False
            epoch = self.dash.get("/api/v1/topology")["epoch"]
            return all(p.slotmap()["epoch"] >= epoch for p in self.proxies)
        until(done, timeout, f"group {gid}'s master to become {addr}")

    def keys_of(self, gid: int, n: int, prefix: str = "k") -> list[str]:
        """`n` key names whose slots group `gid` owns (slot ranges as assigned above)."""
        owned = set(range(*self._range(gid)))
        out, i = [], 0
        while len(out) < n:
            k = f"{prefix}:{i}"
            if key_slot(k.encode(), NSLOTS) in owned:
                out.append(k)
            i += 1
        return out

    def _range(self, gid: int) -> tuple[int, int]:
        slots = self.group(gid)["slots"]
        lo, _, hi = slots.partition("-")
        return int(lo), int(hi or lo) + 1

    def close(self) -> None:
        for p in self.proxies:
            p.stop()
        if self.dash is not None:
            self.dash.stop()
        for s in self.sentinels:
            s.stop()
        for r in self.servers.values():
            r.stop()


# The proxy's error for requests in flight on a backend connection that broke.
IN_FLIGHT_LOST = "connection lost"


class Writer(threading.Thread):
    """INCRs counters (each owned by this writer) through one proxy and records every reply.

    `acked[k]` counts acknowledged INCRs, `unknown[k]` those whose connection broke (applied or
    not); `failed` the error replies; `outage` the first failed and the next successful write
    after it (the unavailability window); `confirmed` (see `checkpoint`) the acked counts that
    the replica was seen to hold, which no failover may lose.
    """

    def __init__(self, port: int, keys: list[str], pause: float = 0.0) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.keys = keys
        self.pause = pause
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked: dict[str, int] = dict.fromkeys(keys, 0)
        self.unknown: dict[str, int] = dict.fromkeys(keys, 0)
        self.errors: list[str] = []
        self.ok = 0
        self.first_fail: float | None = None
        self.windows: list[tuple[float, float]] = []
        self.last_ok = 0.0

    def _conn(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5, socket_connect_timeout=2,
                           protocol=2)

    def run(self) -> None:
        conn = self._conn()
        i = 0
        while not self.stop.is_set():
            k = self.keys[i % len(self.keys)]
            i += 1
            try:
                conn.incr(k)
            except (redis.ConnectionError, redis.TimeoutError) as e:
                self._failed(k, f"{type(e).__name__}: {e}", unknown=True)
                conn = self._conn()
                time.sleep(0.01)
                continue
            except redis.ResponseError as e:
                # A proxy whose backend connection broke with the INCR in flight cannot know
                # whether the server applied it (it may even have replicated it before dying):
                # that is an unknown outcome too, not a failed write.
                self._failed(k, str(e), unknown=IN_FLIGHT_LOST in str(e))
                time.sleep(0.01)
                continue
            now = time.monotonic()
            with self.lock:
                self.acked[k] += 1
                self.ok += 1
                self.last_ok = now
                if self.first_fail is not None:
                    self.windows.append((self.first_fail, now))
                    self.first_fail = None
            if self.pause:
                time.sleep(self.pause)

    def _failed(self, k: str, err: str, unknown: bool) -> None:
        with self.lock:
            if unknown:
                self.unknown[k] += 1
            if len(self.errors) < 1000:
                self.errors.append(err)
            if self.first_fail is None:
                self.first_fail = time.monotonic()

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return dict(self.acked)

    def halt(self) -> None:
        self.stop.set()
        self.join(30)

    def losses(self, values: dict[str, int]) -> tuple[int, list[str]]:
        """Acknowledged INCRs missing from `values` (the counters read back after the test)."""
        lost, report = 0, []
        for k in self.keys:
            got = values.get(k, 0)
            if got < self.acked[k]:
                lost += self.acked[k] - got
                report.append(f"{k}: acked {self.acked[k]}, read {got}")
            assert got <= self.acked[k] + self.unknown[k], (k, got, self.acked[k],
                                                           self.unknown[k])
        return lost, report


def checkpoint(writer: Writer, master: int, replica: int, timeout: float = 5.0
               ) -> dict[str, int] | None:
    """The writer's acked counts, once the replica was seen to hold every write the master had
    applied when they were taken: a lower bound no failover to that replica may go under.
    None if the replica did not catch up within `timeout` (e.g. the master just died)."""
    snap = writer.snapshot()
    try:
        offset = int(info(master)["master_repl_offset"])
    except (redis.RedisError, OSError, KeyError):
        return None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if int(info(replica).get("slave_repl_offset", -1)) >= offset:
                return snap
        except (redis.RedisError, OSError):
            return None
        time.sleep(0.01)
    return None


def read_counters(port: int, keys: list[str]) -> dict[str, int]:
    r = redis.Redis(port=port, socket_timeout=10, protocol=2)
    try:
        return {k: int(v or 0) for k, v in zip(keys, r.mget(keys), strict=True)}
    finally:
        r.close()
