"""A real cluster for the end-to-end tests (migration, UI, benchmarks): a dashboard process,
proxy processes and redis-servers, plus a load generator that records every acknowledged write."""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from slotcore.keyslot import key_slot
from slotcore.slotmap import SlotMap

from .procs import DashboardProcess, ProxyProcess, RedisServer, until

NSLOTS = 1024


class Cluster:
    def __init__(self, tmp: Path, ngroups: int = 2, nproxies: int = 2,
                 proxy_cfg: dict[str, Any] | None = None, **dash_cfg: Any) -> None:
        self.tmp = tmp
        # extra proxy config (e.g. {"workers": 2}); SLOTPROXY_TEST_WORKERS=N runs every
        # cluster test's proxies as N worker processes
        workers = int(os.environ.get("SLOTPROXY_TEST_WORKERS", "1"))
        self.proxy_cfg = {**({"workers": workers} if workers > 1 else {}), **(proxy_cfg or {})}
        self.redis = [RedisServer(tmp / f"redis{i}").start() for i in range(ngroups)]
        cfg = {"slots": NSLOTS, "store": {"kind": "file", "path": str(tmp / "store")},
               "fence_timeout": 10.0, **dash_cfg}
        self.dash = DashboardProcess(tmp, **cfg).start()
        for gid, srv in enumerate(self.redis, start=1):
            status, body = self.dash.call("POST", "/api/v1/groups", {"id": gid,
                                                                      "master": srv.addr})
            assert status == 201, body
        n = NSLOTS // ngroups
        assign = [{"slots": f"{i * n}-{(i + 1) * n - 1}", "group": i + 1}
                  for i in range(ngroups)]
        status, body = self.dash.call("POST", "/api/v1/slots/assign", {"assign": assign})
        assert status == 200, body
        self.proxies = [self.make_proxy(f"proxy-{i}") for i in range(nproxies)]
        until(lambda: [p["state"] for p in self.dash.get("/api/v1/proxies")["proxies"]]
              == ["online"] * nproxies, 20, "proxies online")

    def make_proxy(self, name: str, ports: tuple[int, int] | None = None) -> ProxyProcess:
        return ProxyProcess.managed(self.tmp, name, self.dash.url, ports, slots=NSLOTS,
                                    migration={"lock_timeout": 10.0,
                                               "fence_timeout": 10.0},
                                    **self.proxy_cfg).start()

    def restart_dashboard(self) -> None:
        self.dash.kill()
        self.dash.start()

    def migrations(self) -> dict[str, Any]:
        return self.dash.get("/api/v1/migrations")

    def migrate(self, slots: str, to: int) -> dict[str, Any]:
        status, body = self.dash.call("POST", "/api/v1/migrations", {"slots": slots, "to": to})
        assert status == 201, body
        return body

    def wait_idle(self, timeout: float = 60) -> dict[str, Any]:
        return until(lambda: (m := self.migrations()) and not m["slots"] and m, timeout,
                     "migration to finish")

    def slotmap(self) -> SlotMap:
        return SlotMap.from_json(self.dash.get("/api/v1/slotmap"))

    def backend_keys(self) -> dict[int, set[bytes]]:
        out = {}
        for gid, srv in enumerate(self.redis, start=1):
            r = redis.Redis(port=srv.port)
            out[gid] = set(r.scan_iter(count=1000))
            r.close()
        return out

    def check_placement(self) -> None:
        """No key on two groups; every backend holds exactly the keys its slots say."""
        sm = self.slotmap()
        assert not sm.transit
        keys = self.backend_keys()
        gids = sorted(keys)
        for i, a in enumerate(gids):
            for b in gids[i + 1:]:
                both = keys[a] & keys[b]
                assert not both, f"{len(both)} keys on groups {a} and {b}: {sorted(both)[:5]}"
        for gid, ks in keys.items():
            wrong = [k for k in ks if sm.owner[key_slot(k, NSLOTS)] != gid]
            assert not wrong, f"group {gid} holds keys of other groups' slots: {wrong[:5]}"

    def close(self) -> None:
        for p in self.proxies:
            p.stop()
        self.dash.stop()
        for r in self.redis:
            r.stop()


RETRY = ("TRYAGAIN", "LOADING", "MOVED")


class Load:
    """Writers INCR counters and SET unique keys; readers check monotonic counter reads.

    Each counter belongs to one writer, so its final value must equal that writer's
    acknowledged INCRs (+ the INCRs whose outcome is unknown because the connection broke).
    """

    def __init__(self, ports: list[int], ncounters: int = 300, writers: int = 2,
                 readers: int = 2) -> None:
        self.ports = ports
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.acked: dict[str, int] = {}
        self.unknown: dict[str, int] = {}
        self.unique: dict[str, str] = {}
        self.ops = 0
        self.retries = 0
        self.lock = threading.Lock()
        self.counters = [f"cnt:{i}" for i in range(ncounters)]
        self.threads = [threading.Thread(target=self.writer, args=(w, writers), daemon=True)
                        for w in range(writers)]
        self.threads += [threading.Thread(target=self.reader, args=(r,), daemon=True)
                         for r in range(readers)]

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def _conn(self, i: int) -> redis.Redis:
        # No hidden retries (redis-py retries a command, a pipeline too, after a dropped
        # connection): an INCR whose reply was lost would be applied twice and counted once;
        # a broken connection must reach the bookkeeping above as "unknown".
        return redis.Redis(port=self.ports[i % len(self.ports)], socket_timeout=15,
                           protocol=2, retry=Retry(NoBackoff(), 0))

    def writer(self, w: int, nwriters: int) -> None:
        rnd = random.Random(w)
        mine = self.counters[w::nwriters]
        conns = [self._conn(i) for i in range(len(self.ports))]
        n = 0
        while not self.stop.is_set():
            c = rnd.randrange(len(conns))
            key = rnd.choice(mine)
            ukey = f"u:{w}:{n}"
            try:
                pipe = conns[c].pipeline(transaction=False)
                pipe.incr(key)
                pipe.set(ukey, n)
                res = pipe.execute(raise_on_error=False)
            except (redis.ConnectionError, redis.TimeoutError):
                with self.lock:
                    self.unknown[key] = self.unknown.get(key, 0) + 1
                conns[c] = self._conn(c)
                time.sleep(0.05)
                n += 1
                continue
            incr, setr = res
            with self.lock:
                self.ops += 2
                if isinstance(incr, Exception):
                    if any(x in str(incr) for x in RETRY):
                        self.retries += 1
                    else:
                        self.errors.append(f"INCR {key}: {incr}")
                else:
                    self.acked[key] = self.acked.get(key, 0) + 1
                if isinstance(setr, Exception):
                    if not any(x in str(setr) for x in RETRY):
                        self.errors.append(f"SET {ukey}: {setr}")
                else:
                    self.unique[ukey] = str(n)
            n += 1

    def reader(self, r: int) -> None:
        rnd = random.Random(100 + r)
        seen: dict[str, int] = {}
        conns = [self._conn(i) for i in range(len(self.ports))]
        while not self.stop.is_set():
            c = rnd.randrange(len(conns))
            keys = rnd.sample(self.counters, 5)
            try:
                values = conns[c].mget(keys)
            except (redis.ConnectionError, redis.TimeoutError):
                conns[c] = self._conn(c)
                time.sleep(0.05)
                continue
            except redis.ResponseError as e:
                if not any(x in str(e) for x in RETRY):
                    with self.lock:
                        self.errors.append(f"MGET: {e}")
                continue
            for k, v in zip(keys, values, strict=True):
                val = int(v) if v is not None else 0
                if val < seen.get(k, 0):
                    with self.lock:
                        self.errors.append(f"non-monotonic read of {k}: {seen[k]} then {val}")
                seen[k] = max(seen.get(k, 0), val)
            with self.lock:
                self.ops += 5

    def verify(self, port: int) -> None:
        assert not self.errors, self.errors[:10]
        r = redis.Redis(port=port, protocol=2)
        values = dict(zip(self.counters, r.mget(self.counters), strict=True))
        for k in self.counters:
            got = int(values[k] or 0)
            acked, unknown = self.acked.get(k, 0), self.unknown.get(k, 0)
            assert acked <= got <= acked + unknown, (k, got, acked, unknown)
        keys = list(self.unique)
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            got = r.mget(chunk)
            for k, v in zip(chunk, got, strict=True):
                assert v is not None and v.decode() == self.unique[k], (k, v)


@contextlib.contextmanager
def cluster(tmp: Path, **kw: Any):
    c = Cluster(tmp, **kw)
    try:
        yield c
    finally:
        c.close()
