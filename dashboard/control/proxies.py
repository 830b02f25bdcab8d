"""The proxies as the control plane knows them: the HTTP client of their admin API, and the
registry of which proxies exist, what they acknowledged and when they were last heard from.

Pushes go to every proxy in parallel, each with its own timeout, and the outcome is reported
per proxy (never "the first error wins"), so the operator is told exactly which proxies failed.

The registry never decides anything about the topology: the control plane (`plane.py`) calls it
to load, push, remember and forget proxies, under its own lock. It needs nothing of the plane.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, replace
from typing import Any

import aiohttp

from slotcore.contract import (
    PROXY_HOTKEYS,
    PROXY_INFO,
    PROXY_LATENCY,
    PROXY_SLOTS,
    PROXY_SLOWLOG,
    PROXY_STATS,
)
from slotcore.members import ProxyAddr

from ..errors import StandbyError, StoreFailure
from ..model.records import ProxyRecord
from ..store.base import NotLeader, Store, StoreError
from ..store.keys import Keys


@dataclass(frozen=True, slots=True)
class PushResult:
    proxy_id: str
    ok: bool
    epoch: int | None = None
    error: str | None = None
    stale: bool = False  # the proxy refused because it already has a newer epoch


class ProxyClient:
    """The proxies' admin API, as the dashboard calls it (one shared HTTP session)."""

    def __init__(self, token: str | None, timeout: float = 3.0) -> None:
        self.token = token
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
            self._session = aiohttp.ClientSession(
                headers=headers, timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def push(self, proxy: ProxyRecord, slotmap: dict[str, Any]) -> PushResult:
        url = f"http://{proxy.admin}{PROXY_SLOTS}"
        try:
            async with self._http().put(url, json=slotmap) as resp:
                text = await resp.text()
                try:
                    body = json.loads(text) if text else {}
                except json.JSONDecodeError:
                    body = {"error": text[:200]}
                if resp.status == 200:
                    epoch = body.get("epoch") if isinstance(body, dict) else None
                    return PushResult(proxy.id, True, epoch=int(
                        epoch if isinstance(epoch, int) else slotmap["epoch"]))
                error = (body.get("error") if isinstance(body, dict) else None) or text[:200]
                return PushResult(proxy.id, False, error=f"HTTP {resp.status}: {error}",
                                  stale=resp.status == 409)
        except TimeoutError:
            return PushResult(proxy.id, False,
                              error=f"no answer from {proxy.admin} within {self.timeout:g}s")
        except aiohttp.ClientError as e:
            return PushResult(proxy.id, False, error=f"cannot reach {proxy.admin}: {e}")

    async def push_all(self, proxies: list[ProxyRecord],
                       slotmap: dict[str, Any]) -> dict[str, PushResult]:
        results = await asyncio.gather(*(self.push(p, slotmap) for p in proxies))
        return {r.proxy_id: r for r in results}

    async def info(self, proxy: ProxyRecord) -> dict[str, Any] | None:
        """GET the proxy's info, or None when the proxy does not answer properly."""
        return await self._get(proxy, PROXY_INFO)

    async def stats(self, proxy: ProxyRecord) -> dict[str, Any] | None:
        """GET the proxy's stats (clients, commands, ops/s), or None."""
        return await self._get(proxy, PROXY_STATS)

    async def slot_ops(self, proxy: ProxyRecord) -> dict[str, Any] | None:
        """The stats with the per-slot request counters (`slot_ops`), or None."""
        return await self._get(proxy, f"{PROXY_STATS}?slots=1")

    async def slowlog(self, proxy: ProxyRecord, count: int) -> dict[str, Any] | None:
        """The proxy's slow log, newest first (count -1: all), or None."""
        return await self._get(proxy, f"{PROXY_SLOWLOG}?count={count}")

    async def latency(self, proxy: ProxyRecord) -> dict[str, Any] | None:
        """The proxy's latency histograms by command and group, or None."""
        return await self._get(proxy, PROXY_LATENCY)
    async def hotkeys(self, proxy: ProxyRecord) -> dict[str, Any] | None:
        """The proxy's sampled top-k keys (current and last window), or None."""
        return await self._get(proxy, PROXY_HOTKEYS)

    async def _get(self, proxy: ProxyRecord, path: str) -> dict[str, Any] | None:
        try:
            async with self._http().get(f"http://{proxy.admin}{path}") as resp:
                if resp.status != 200:
                    return None
                data = await resp.json(content_type=None)
                return data if isinstance(data, dict) else None
        except (TimeoutError, aiohttp.ClientError, json.JSONDecodeError):
            return None


class ProxyRegistry:
    """Registered proxies: their stored records, when each was last heard from, their stats."""

    def __init__(self, store: Store, keys: Keys, client: ProxyClient, *,
                 stale_after: float, fence_timeout: float, stats_interval: float) -> None:
        self.store = store
        self.keys = keys
        self.client = client
        self.stale_after = stale_after
        self.fence_timeout = fence_timeout
        self.stats_interval = stats_interval
        self.stats: dict[str, dict[str, Any]] = {}  # proxy id -> clients, ops/s, commands
        self._records: dict[str, ProxyRecord] = {}
        self._last_seen: dict[str, float] = {}
        self._forced: dict[str, float] = {}  # proxy id -> when it was removed unreachable
        self._syncing: set[str] = set()

    # -- the records -------------------------------------------------------------------------

    async def load(self) -> None:
        """Replace what is known with the store's records (a new leader's take-over)."""
        self._records = {}
        for e in await self.store.list(self.keys.proxies):
            rec = ProxyRecord.from_json(e.value)
            self._records[rec.id] = rec

    def records(self) -> list[ProxyRecord]:
        return list(self._records.values())

    def by_id(self) -> dict[str, ProxyRecord]:
        return dict(self._records)

    def get(self, proxy_id: str) -> ProxyRecord | None:
        return self._records.get(proxy_id)

    async def _save(self, rec: ProxyRecord) -> None:
        rec = replace(rec, last_seen=max(rec.last_seen, self._last_seen.get(rec.id, 0.0)))
        with contextlib.suppress(StoreError):  # proxy records are advisory: never fail on them
            await self.store.put(self.keys.proxy(rec.id), rec.to_json())

    def members(self) -> list[ProxyAddr]:
        """The live proxies, as pushed to every proxy for CLUSTER SLOTS and friends: those
        online (their last push succeeded) and heard from within stale_after."""
        now = time.time()
        return [ProxyAddr(r.id, r.addr) for r in sorted(self._records.values(), key=lambda r: r.id)
                if r.state == "online" and now - self._seen(r) <= self.stale_after]

    # -- heartbeats ----------------------------------------------------------------------------

    def heard(self, proxy_id: str, addr: str, admin: str, epoch: int) -> bool:
        """A registration or heartbeat at `epoch`; True if the proxy needs a push (new,
        changed, not online or lagging) and no push to it is under way yet."""
        self._last_seen[proxy_id] = time.time()
        rec = self._records.get(proxy_id)
        lagging = (rec is None or (rec.addr, rec.admin) != (addr, admin)
                   or rec.state != "online" or rec.epoch < epoch)
        if lagging and proxy_id not in self._syncing:
            self._syncing.add(proxy_id)
            return True
        return False

    def synced(self, proxy_id: str) -> None:
        """The push that `heard` asked for is over (done or failed)."""
        self._syncing.discard(proxy_id)

    async def enroll(self, proxy_id: str, addr: str, admin: str) -> ProxyRecord:
        """The record of a registering proxy: new or moved ones start "pending" (and are saved)."""
        now = time.time()
        rec = self._records.get(proxy_id) or ProxyRecord(
            id=proxy_id, addr=addr, admin=admin, registered=now)
        if (rec.addr, rec.admin) != (addr, admin):
            rec = replace(rec, addr=addr, admin=admin, state="pending", registered=now)
        self._records[proxy_id] = rec
        if rec.state == "pending":
            await self._save(rec)
        return rec

    # -- pushes --------------------------------------------------------------------------------

    async def push(self, proxies: list[ProxyRecord],
                   slotmap: dict[str, Any]) -> dict[str, PushResult]:
        """Push a slot map to `proxies` and record each one's outcome."""
        results = await self.client.push_all(proxies, slotmap)
        for pid, r in results.items():
            rec = self._records.get(pid)
            if rec is None:
                continue
            new = (replace(rec, state="online", epoch=r.epoch or 0, error=None) if r.ok
                   else replace(rec, state="unreachable", error=r.error))
            self._records[pid] = new
            if (new.state, new.error) != (rec.state, rec.error):
                await self._save(new)
        return results

    async def ahead_epoch(self, results: dict[str, PushResult]) -> int | None:
        """The highest epoch among proxies that refused a push as stale (None: none did)."""
        stale = [self._records[pid] for pid, r in results.items() if r.stale]
        if not stale:
            return None
        infos = await asyncio.gather(*(self.client.info(p) for p in stale))
        return max((int(i.get("epoch", 0)) for i in infos if i), default=0)

    # -- removal -------------------------------------------------------------------------------

    async def reachable(self, rec: ProxyRecord) -> bool:
        return await self.client.info(rec) is not None

    def mark_forced(self, proxy_id: str) -> None:
        """A proxy is being removed although it cannot be reached (see `batch_blockers`)."""
        self._forced[proxy_id] = time.time()

    async def remove(self, proxy_id: str) -> None:
        try:
            await self.store.delete(self.keys.proxy(proxy_id))
        except NotLeader as e:
            raise StandbyError(str(e)) from None
        except StoreError as e:
            raise StoreFailure(f"store write failed: {e}") from None
        del self._records[proxy_id]
        self._last_seen.pop(proxy_id, None)

    # -- what blocks migration -----------------------------------------------------------------

    def _seen(self, rec: ProxyRecord) -> float:
        return max(rec.last_seen, self._last_seen.get(rec.id, 0.0))

    def stale(self) -> list[str]:
        """Registered proxies not heard from within fence_timeout (they block new batches)."""
        now = time.time()
        out = []
        for rec in sorted(self._records.values(), key=lambda r: r.id):
            seen = self._seen(rec)
            if now - seen > self.fence_timeout:
                age = f"{now - seen:.0f}s ago" if seen else "never"
                out.append(f"proxy {rec.id} (admin {rec.admin}) last seen {age}, more than "
                           f"fence_timeout {self.fence_timeout:g}s")
        return out

    def batch_blockers(self) -> list[str]:
        """Why no migration batch may start now: stale proxies, and a proxy force-removed less
        than fence_timeout ago (if it is in fact still running, cut off from us, it stops
        serving slots in transit only after fence_timeout without contact)."""
        out = self.stale()
        now = time.time()
        for pid, at in sorted(self._forced.items()):
            if now - at < self.fence_timeout:
                out.append(f"proxy {pid} was force-removed {now - at:.0f}s ago: waiting "
                           f"fence_timeout {self.fence_timeout:g}s")
        return out

    # -- views ---------------------------------------------------------------------------------

    async def views(self, from_store: bool) -> list[dict[str, Any]]:
        """Every proxy as the API shows it. A standby reads the records `from_store` (it
        keeps none of its own); heartbeat ages and stats are what this dashboard saw."""
        if from_store:
            try:
                records = [ProxyRecord.from_json(e.value)
                           for e in await self.store.list(self.keys.proxies)]
            except StoreError as e:
                raise StoreFailure(f"store unreachable: {e}") from None
        else:
            records = list(self._records.values())
        now = time.time()
        out = []
        for rec in sorted(records, key=lambda r: r.id):
            seen = self._seen(rec)
            view = rec.to_json()
            view["last_seen"] = seen
            view["stale"] = now - seen > self.stale_after
            view["stats"] = self.stats.get(rec.id)
            out.append(view)
        return out

    async def poll_stats(self, leading: asyncio.Event) -> None:
        """Every stats interval: each proxy's clients and ops/s, for `status` (leader only)."""
        while True:
            await asyncio.sleep(self.stats_interval)
            if not leading.is_set():
                continue
            proxies = list(self._records.values())
            stats = await asyncio.gather(*(self.client.stats(p) for p in proxies))
            self.stats = {p.id: {"clients": s.get("clients"),
                                 "ops_per_sec": s.get("ops_per_sec"),
                                 "commands": s.get("commands")}
                          for p, s in zip(proxies, stats, strict=True) if s}

    async def close(self) -> None:
        await self.client.close()
