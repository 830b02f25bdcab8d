"""Per-server health and stats, polled from the redis servers with redis-py's asyncio client.

`summarize()` is pure (INFO dict in, summary out) so it is tested without a server; the
`HealthMonitor` only does the polling: every server of every group, concurrently, each with a
timeout, so one dead server costs one timeout and never delays the others. It logs in with the
dashboard's backend credentials (`backend.password` / `backend.username`).

Each replica's entry also carries its replication health (`model.replication.replica_link`):
link status, and lag in bytes (the master's offset minus the replica's last acknowledged one,
both from the master's INFO) and seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ..model.records import Topology
from ..model.replication import replica_link
from .redisconn import connect

log = logging.getLogger(__name__)


def summarize(info: dict[str, Any]) -> dict[str, Any]:
    """The fields the dashboard shows, from a parsed INFO reply."""
    keys = sum(v.get("keys", 0) for k, v in info.items()
               if k.startswith("db") and k[2:].isdigit() and isinstance(v, dict))
    out: dict[str, Any] = {
        "reachable": True,
        "role": "replica" if info.get("role") == "slave" else info.get("role"),
        "used_memory": int(info.get("used_memory", 0)),
        "maxmemory": int(info.get("maxmemory", 0)),
        "keys": keys,
        "ops_per_sec": int(info.get("instantaneous_ops_per_sec", 0)),
        "clients": int(info.get("connected_clients", 0)),
        "version": info.get("redis_version"),
        "uptime": int(info.get("uptime_in_seconds", 0)),
    }
    if out["role"] == "replica":
        out["master_link"] = info.get("master_link_status")
        out["replica_of"] = f"{info.get('master_host')}:{info.get('master_port')}"
    # What replication health needs later (group_health), kept out of the API's view.
    out["_repl"] = {k: v for k, v in info.items()
                    if k in _REPL_FIELDS or (k.startswith("slave") and k[5:].isdigit())}
    return out


_REPL_FIELDS = frozenset({
    "role", "master_host", "master_port", "master_link_status", "master_last_io_seconds_ago",
    "master_sync_in_progress", "slave_repl_offset", "master_repl_offset", "connected_slaves",
})


def group_health(topo: Topology, servers: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Health per group: every server's last poll, plus whether the roles match the topology."""
    out: dict[str, Any] = {}
    for gid, group in sorted(topo.groups.items()):
        entries = []
        master = servers.get(group.master or "", {})
        for addr in group.servers:
            expected = "master" if addr == group.master else "replica"
            h = servers.get(addr) or {"reachable": None, "error": "not polled yet"}
            entry = {"addr": addr, "expected_role": expected,
                     **{k: v for k, v in h.items() if k != "_repl"}}
            if expected == "replica":
                entry["replication"] = replica_link(group.master, master.get("_repl"), addr,
                                                    h.get("_repl"))
            entries.append(entry)
        out[str(gid)] = {
            "ok": bool(group.master) and master.get("reachable") is True
            and master.get("role") == "master",
            "servers": entries,
            "keys": master.get("keys", 0),
            "ops_per_sec": master.get("ops_per_sec", 0),
            "used_memory": master.get("used_memory", 0),
        }
    return out


class HealthMonitor:
    def __init__(self, topology: Callable[[], Topology | None], interval: float = 1.0,
                 timeout: float = 1.0, password: str | None = None,
                 username: str | None = None) -> None:
        self._topology = topology
        self.interval = interval
        self.timeout = timeout
        self.password = password
        self.username = username
        self.servers: dict[str, dict[str, Any]] = {}
        self._clients: dict[str, aioredis.Redis] = {}

    def _client(self, addr: str) -> aioredis.Redis:
        client = self._clients.get(addr)
        if client is None:
            client = connect(addr, timeout=self.timeout, connect_timeout=self.timeout,
                             password=self.password, username=self.username)
            self._clients[addr] = client
        return client

    async def poll_one(self, addr: str) -> dict[str, Any]:
        try:
            # asyncio.timeout, not wait_for: on 3.11 a wait_for cancelled (dashboard stopping)
            # just as its inner task fails leaves that task's exception never retrieved.
            async with asyncio.timeout(self.timeout * 2):
                info = await self._client(addr).info()
            result = summarize(info)
        except (TimeoutError, RedisError, OSError) as e:
            result = {"reachable": False, "error": str(e) or type(e).__name__}
        result["polled_at"] = time.time()
        return result

    async def poll(self) -> None:
        topo = self._topology()
        addrs = sorted({a for g in (topo.groups.values() if topo else ()) for a in g.servers})
        results = await asyncio.gather(*(self.poll_one(a) for a in addrs))
        self.servers = dict(zip(addrs, results, strict=True))
        for gone in set(self._clients) - set(addrs):
            await self._clients.pop(gone).aclose()

    async def run(self) -> None:
        while True:
            try:
                await self.poll()
            except Exception:  # a bug in one poll must not end monitoring for good
                log.exception("health poll failed")
            await asyncio.sleep(self.interval)

    async def close(self) -> None:
        for client in self._clients.values():
            with contextlib.suppress(Exception):
                await client.aclose()
        self._clients.clear()
