"""What the auto-balancer measures each round (I/O): ops/s per slot, keys and bytes per slot,
and the proxies' hot keys when they report them.

* ops/s: every proxy's cumulative per-slot request counters (`stats?slots=1`), sampled once a
  round; the difference to the previous round's sample over the time between them is the
  window's rate. A proxy seen for the first time, or whose counters went backwards (it was
  restarted), only primes its counters this round.
* keys and bytes: behind `SlotSizes`, so a per-slot measurement (a big-key/keyspace scan
  recording keys and bytes per slot) can replace the estimate without touching the scheduler.
  Until then `InfoSpread` estimates them from each group master's INFO: the keyspace's key
  count and `used_memory_dataset` (not `used_memory`, whose fixed ~1 MB of server overhead
  would make a nearly empty group look full), spread evenly over the slots the group owns.
* hot keys: `GET /api/hotkeys` on each proxy's admin API, when a proxy has it (404 or no answer
  = no view). Accepted shapes: a list, or {"hotkeys": [...]} / {"keys": [...]}, of entries
  {"key": str, "slot": int (optional: computed from the key), and one of "ops_per_sec",
  "ops", "qps" (a rate, compared with the slot's measured ops/s) or "count", "hits", "freq"
  (a count, compared with the other reported keys of the slot)}.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Protocol

import aiohttp

from slotcore.keyslot import key_slot

from ..control.proxies import ProxyClient
from ..model.records import ProxyRecord, Topology
from ..observe.redisconn import connect

HOTKEYS_PATH = "/api/hotkeys"
_RATE_FIELDS = ("ops_per_sec", "ops", "qps")
_COUNT_FIELDS = ("count", "hits", "freq")


class OpsSampler:
    """Per-slot ops/s over the window between two rounds, summed over the proxies."""

    def __init__(self, client: ProxyClient) -> None:
        self.client = client
        self._last: dict[str, tuple[float, list[int]]] = {}

    def reset(self) -> None:
        self._last.clear()

    async def sample(self, proxies: list[ProxyRecord], nslots: int) -> list[float] | None:
        """The rates since the last call; None unless every proxy gave two samples (a window
        without one proxy's share would look like a load drop on the slots its clients use)."""
        async def one(p: ProxyRecord) -> list[int] | None:
            data = await self.client.slot_ops(p)
            ops = (data or {}).get("slot_ops")
            return ops if isinstance(ops, list) and len(ops) == nslots else None

        got = await asyncio.gather(*(one(p) for p in proxies))
        now = time.monotonic()
        out = [0.0] * nslots
        complete = bool(proxies)
        for p, counters in zip(proxies, got, strict=True):
            prev = self._last.get(p.id)
            if counters is None:
                complete = False  # this window misses a proxy's share: not a measurement
                continue
            self._last[p.id] = (now, counters)
            if prev is None or now - prev[0] <= 0 or any(
                    b < a for a, b in zip(prev[1], counters, strict=True)):
                complete = False  # new or restarted (counters start again from 0)
                continue
            t0, before = prev
            dt = now - t0
            for s in range(nslots):
                d = counters[s] - before[s]
                if d:
                    out[s] += d / dt
        for gone in set(self._last) - {p.id for p in proxies}:
            del self._last[gone]
        return out if complete else None


class SlotSizes(Protocol):
    """Keys and bytes per slot. `sizes` returns (keys, memory, errors)."""

    async def sizes(self, topo: Topology) -> tuple[list[float], list[float], list[str]]: ...


class InfoSpread:
    """The estimate from each group master's INFO, spread evenly over its slots."""

    def __init__(self, timeout: float = 2.0, password: str | None = None,
                 username: str | None = None) -> None:
        self.timeout = timeout
        self.password = password   # the dashboard's backend credentials, as the health poller's
        self.username = username

    async def _totals(self, addr: str) -> tuple[float, float]:
        conn = connect(addr, timeout=self.timeout, connect_timeout=self.timeout,
                       password=self.password, username=self.username, retry=False)
        try:
            async with asyncio.timeout(self.timeout * 2):
                mem = await conn.info("memory")
                space = await conn.info("keyspace")
        finally:
            with contextlib.suppress(Exception):
                await conn.aclose()
        keys = sum(v.get("keys", 0) for k, v in space.items()
                   if k.startswith("db") and isinstance(v, dict))
        dataset = mem.get("used_memory_dataset", mem.get("used_memory", 0))
        return float(keys), float(max(0, int(dataset)))

    async def sizes(self, topo: Topology) -> tuple[list[float], list[float], list[str]]:
        n = topo.nslots
        keys, mem = [0.0] * n, [0.0] * n
        owned: dict[int, list[int]] = {}
        for s, g in enumerate(topo.owner):
            if g:
                owned.setdefault(g, []).append(s)
        groups = [g for g in sorted(owned) if g in topo.groups and topo.groups[g].master]
        results = await asyncio.gather(*(self._totals(topo.groups[g].master or "")
                                         for g in groups), return_exceptions=True)
        errors = []
        for g, res in zip(groups, results, strict=True):
            if isinstance(res, BaseException):
                errors.append(f"group {g}: INFO failed: {res or type(res).__name__}")
                continue
            slots = owned[g]
            k, m = res[0] / len(slots), res[1] / len(slots)
            for s in slots:
                keys[s], mem[s] = k, m
        return keys, mem, errors


class HotKeyView:
    """The proxies' hot keys, per slot: (key, share of the slot's ops), hottest key only."""

    def __init__(self, client: ProxyClient) -> None:
        self.client = client
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = {"Authorization": f"Bearer {self.client.token}"} if self.client.token \
                else {}
            self._session = aiohttp.ClientSession(
                headers=headers, timeout=aiohttp.ClientTimeout(total=self.client.timeout))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _get(self, p: ProxyRecord) -> Any:
        try:
            async with self._http().get(f"http://{p.admin}{HOTKEYS_PATH}") as resp:
                if resp.status != 200:
                    return None
                return await resp.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, ValueError):
            return None

    async def hot_keys(self, proxies: list[ProxyRecord], nslots: int,
                       ops: list[float] | None) -> dict[int, tuple[str, float]] | None:
        """None when no proxy has the view."""
        replies = [r for r in await asyncio.gather(*(self._get(p) for p in proxies))
                   if r is not None]
        if not replies:
            return None
        return parse_hot_keys(replies, nslots, ops)


def parse_hot_keys(replies: list[Any], nslots: int, ops: list[float] | None
                   ) -> dict[int, tuple[str, float]]:
    """Merge the proxies' replies (see the module doc) into slot -> (hottest key, share)."""
    rate: dict[str, float] = {}
    count: dict[str, float] = {}
    slot_of: dict[str, int] = {}
    for reply in replies:
        entries = reply if isinstance(reply, list) else (
            reply.get("hotkeys") or reply.get("keys") or [] if isinstance(reply, dict) else [])
        for e in entries if isinstance(entries, list) else []:
            if not isinstance(e, dict) or not isinstance(e.get("key"), str):
                continue
            key = e["key"]
            slot = e.get("slot")
            slot_of[key] = (int(slot) if isinstance(slot, int) and 0 <= slot < nslots
                            else key_slot(key.encode("utf-8", "surrogateescape"), nslots))
            for f in _RATE_FIELDS:
                if isinstance(e.get(f), int | float):
                    rate[key] = rate.get(key, 0.0) + float(e[f])
                    break
            else:
                for f in _COUNT_FIELDS:
                    if isinstance(e.get(f), int | float):
                        count[key] = count.get(key, 0.0) + float(e[f])
                        break
    out: dict[int, tuple[str, float]] = {}
    per_slot_count: dict[int, float] = {}
    for key, c in count.items():
        per_slot_count[slot_of[key]] = per_slot_count.get(slot_of[key], 0.0) + c
    for key, slot in slot_of.items():
        if key in rate:
            base = ops[slot] if ops else 0.0
            share = min(1.0, rate[key] / base) if base > 0 else 0.0
        elif key in count and per_slot_count.get(slot):
            share = count[key] / per_slot_count[slot]
        else:
            continue
        if slot not in out or share > out[slot][1]:
            out[slot] = (key, share)
    return out
