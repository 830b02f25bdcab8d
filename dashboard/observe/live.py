"""What the web page watches: a once-a-second snapshot fanned out to every open event stream,
and a ring buffer of chart points (ops/s and PING latency per group and per proxy).

One sampler task builds ONE snapshot per tick whatever the number of open pages, so ten browser
tabs cost the store and the servers what one does. Latency is a PING round trip timed here:
to each group's master (the backend as the dashboard sees it) and through each proxy's client
port (proxy plus event loop), on connections of our own so the health poller's INFO timing is
not disturbed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ..control.plane import ControlPlane
from ..control.proxies import ProxyRegistry
from ..errors import DashboardError
from ..model.records import Topology
from .health import HealthMonitor
from .load import measure
from .overview import overview
from .redisconn import connect

log = logging.getLogger(__name__)

HISTORY_SECONDS = 600


class MigrationStatus(Protocol):
    """The migrator as the feed sees it (migrate/ sits above observe/, so no import)."""

    def view(self, topo: Topology) -> dict[str, Any]: ...


class Live:
    def __init__(self, plane: ControlPlane, proxies: ProxyRegistry, health: HealthMonitor,
                 migrations: MigrationStatus, interval: float = 1.0,
                 timeout: float = 0.5) -> None:
        self.plane = plane
        self.proxies = proxies
        self.health = health
        self.migrations = migrations
        self.interval = interval
        self.timeout = timeout
        self.points: deque[dict[str, Any]] = deque(maxlen=int(HISTORY_SECONDS / interval))
        self.snapshot: str | None = None  # the last snapshot, already serialized
        self._subscribers: set[asyncio.Queue[str | None]] = set()
        self._conns: dict[str, aioredis.Redis] = {}
        self._slot_stats: tuple[float, dict[str, Any]] | None = None
        self._slot_lock = asyncio.Lock()
        self.closed = False

    # -- subscribers (one per open event stream) -------------------------------------------

    def subscribe(self) -> asyncio.Queue[str | None]:
        # A slow page gets the newest snapshot, not a backlog: the queue holds at most two.
        q: asyncio.Queue[str | None] = asyncio.Queue(maxsize=2)
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[str | None]) -> None:
        self._subscribers.discard(q)

    def _publish(self, message: str | None) -> None:
        for q in self._subscribers:
            if q.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    q.get_nowait()
            q.put_nowait(message)

    def shutdown(self) -> None:
        """End every open stream (on_shutdown: aiohttp waits for handlers before cleanup)."""
        self.closed = True
        self._publish(None)

    # -- sampling --------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.tick()
            except Exception:  # one bad tick must not end the page's live view for good
                log.exception("live snapshot failed")
            await asyncio.sleep(max(0.05, self.interval - (time.monotonic() - started)))

    async def tick(self) -> None:
        point = await self.sample()
        self.points.append(point)
        snap: dict[str, Any] = {"t": point["t"], "point": point}
        try:
            status = await overview(self.plane, self.health)
            topo = await self.plane.topology()
            snap.update(overview=status, migrations=self.migrations.view(topo))
        except DashboardError as e:
            snap["error"] = str(e)
        self.snapshot = json.dumps(snap, separators=(",", ":"))
        if self._subscribers:
            self._publish(self.snapshot)

    async def _ping(self, addr: str) -> float | None:
        conn = self._conns.get(addr)
        if conn is None:
            conn = connect(addr, timeout=self.timeout, connect_timeout=self.timeout)
            self._conns[addr] = conn
        t0 = time.perf_counter()
        try:
            # asyncio.timeout, not wait_for: on 3.11 a wait_for cancelled (dashboard stopping)
            # just as its inner task fails leaves that task's exception never retrieved.
            async with asyncio.timeout(self.timeout * 2):
                await conn.ping()
        except (TimeoutError, RedisError, OSError):
            return None
        return round((time.perf_counter() - t0) * 1000, 3)

    async def sample(self) -> dict[str, Any]:
        topo = self.plane.current()
        groups = {str(g.id): g.master for g in topo.groups.values()} if topo else {}
        proxies = {p["id"]: p for p in await self._proxies()}
        addrs = [a for a in groups.values() if a] + [p["addr"] for p in proxies.values()]
        lat = dict(zip(addrs, await asyncio.gather(*(self._ping(a) for a in addrs)),
                       strict=True))
        for gone in set(self._conns) - set(addrs):
            with contextlib.suppress(Exception):
                await self._conns.pop(gone).aclose()
        servers = self.health.servers
        out_groups = {gid: {"ops": (servers.get(m or "") or {}).get("ops_per_sec"),
                            "latency_ms": lat.get(m) if m else None}
                      for gid, m in groups.items()}
        out_proxies = {}
        for pid, p in proxies.items():
            stats = p.get("stats") or {}
            out_proxies[pid] = {"ops": stats.get("ops_per_sec"), "clients": stats.get("clients"),
                                "latency_ms": lat.get(p["addr"])}
        return {"t": round(time.time(), 3), "groups": out_groups, "proxies": out_proxies}

    async def _proxies(self) -> list[dict[str, Any]]:
        try:
            return await self.plane.proxy_views()
        except DashboardError:
            return []

    def history(self, seconds: float) -> list[dict[str, Any]]:
        since = time.time() - seconds
        return [p for p in self.points if p["t"] >= since]

    # -- per-slot keys and ops/s for the slot map ------------------------------------------

    async def slot_stats(self, sample_seconds: float = 1.0, max_age: float = 5.0
                         ) -> dict[str, Any]:
        """Keys, memory and ops/s per slot (observe/load.py's measurement), shared for `max_age`
        seconds: a SCAN of every group is not something each hover should trigger."""
        async with self._slot_lock:
            if self._slot_stats and time.time() - self._slot_stats[0] < max_age:
                return self._slot_stats[1]
            topo = await self.plane.topology()
            records = self.proxies.records() if self.plane.leading.is_set() else []
            m = await measure(topo, self.proxies.client, records, sample_seconds)
            out = {"epoch": topo.epoch, "slots": topo.nslots, "measured_at": time.time(),
                   "keys": [round(k) for k in m["keys"]],
                   "memory": [round(b) for b in m["memory"]],
                   "ops": [round(o, 1) for o in m["ops"]] if m["ops"] else None,
                   "errors": m["errors"]}
            self._slot_stats = (time.time(), out)
            return out

    async def close(self) -> None:
        for conn in self._conns.values():
            with contextlib.suppress(Exception):
                await conn.aclose()
        self._conns.clear()
