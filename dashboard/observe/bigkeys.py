"""Big keys: a throttled background scan of every group's master (`POST /api/v1/bigkeys/scan`,
`proxyctl bigkeys`, the page's Big keys panel).

Each group is scanned by `observe.keyscan.scan_keys` (the same scanner as the migration's
pre-scan) with type and element count: SCAN with a bounded COUNT, MEMORY USAGE and the type's
O(1) length pipelined per page, a pause between pages. Groups are scanned concurrently, each on
its own connection, so the cluster-wide scan takes as long as the biggest group. The result of
the last completed scan is kept until the next one completes:

* `top`: the `top` biggest keys (by MEMORY USAGE) of each type, with key, type, elements,
  bytes, group and slot;
* `summary`: per type, the number of keys, their total bytes, the biggest by bytes and by
  elements (what `redis-cli --bigkeys/--memkeys` print, for the whole cluster);
* `slot_keys` / `slot_bytes`: keys and bytes per slot (lists of `nslots` ints) -- the slot
  heat map's "keys" and "memory", and what other dashboard code reads through `slot_usage()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import Conflict, InvalidRequest
from ..model.records import Topology
from .keyscan import KeyInfo, RedisPipeline, ScanProgress, scan_keys
from .redisconn import connect

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BigKeySettings:
    count: int = 100        # SCAN COUNT, and so the keys sized per pipeline
    pause_ms: float = 10.0  # between two pages of one group
    top: int = 20           # biggest keys kept per type
    samples: int = 5        # MEMORY USAGE ... SAMPLES (Redis's default)

    LIMITS = {"count": (1, 10_000), "pause_ms": (0, 10_000), "top": (1, 1000),
              "samples": (1, 100)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BigKeySettings:
        unknown = sorted(set(data) - set(cls.LIMITS))
        if unknown:
            raise InvalidRequest(f"unknown big-key scan option(s): {', '.join(unknown)} "
                                 f"(known: {', '.join(cls.LIMITS)})")
        kw: dict[str, Any] = {}
        for name, value in data.items():
            lo, hi = cls.LIMITS[name]
            if isinstance(value, bool) or not isinstance(value, int | float) or \
                    not lo <= value <= hi:
                raise InvalidRequest(f"'{name}' must be a number from {lo} to {hi}")
            kw[name] = float(value) if name == "pause_ms" else int(value)
        return cls(**kw)

    def to_json(self) -> dict[str, Any]:
        return {n: getattr(self, n) for n in self.LIMITS}


@dataclass
class GroupProgress:
    gid: int
    addr: str
    dbsize: int = 0
    progress: ScanProgress = field(default_factory=ScanProgress)
    done: bool = False
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"group": self.gid, "addr": self.addr, "dbsize": self.dbsize,
                "scanned": self.progress.scanned, "done": self.done, "error": self.error}


class Tally:
    """What one scan found, built as pages arrive (bounded: `top` keys per type)."""

    def __init__(self, nslots: int, top: int) -> None:
        self.top = top
        # per type, a min-heap of (bytes, key, seq, row); seq keeps the rows out of the
        # comparison (SCAN may return a key twice)
        self.heaps: dict[str, list[tuple[int, bytes, int, dict[str, Any]]]] = {}
        self.summary: dict[str, dict[str, Any]] = {}
        self.slot_keys = [0] * nslots
        self.slot_bytes = [0] * nslots
        self.keys = 0

    def add(self, gid: int, batch: list[KeyInfo]) -> None:
        for info in batch:
            kind = info.type or "unknown"
            row = {"key": info.key.decode("utf-8", "backslashreplace"), "type": kind,
                   "elements": info.elements, "bytes": info.bytes, "group": gid,
                   "slot": info.slot}
            self.keys += 1
            self.slot_keys[info.slot] += 1
            self.slot_bytes[info.slot] += info.bytes
            heap = self.heaps.setdefault(kind, [])
            item = (info.bytes, info.key, self.keys, row)
            if len(heap) < self.top:
                heapq.heappush(heap, item)
            elif item[:2] > heap[0][:2]:
                heapq.heapreplace(heap, item)
            s = self.summary.get(kind)
            if s is None:
                s = self.summary[kind] = {"keys": 0, "bytes": 0, "elements": 0,
                                          "biggest": row, "most_elements": row}
            s["keys"] += 1
            s["bytes"] += info.bytes
            s["elements"] += info.elements or 0
            if info.bytes > s["biggest"]["bytes"]:
                s["biggest"] = row
            if (info.elements or 0) > (s["most_elements"]["elements"] or 0):
                s["most_elements"] = row

    def result(self) -> dict[str, Any]:
        top = {kind: [r for _, _, _, r in sorted(heap, key=lambda x: (-x[0], x[1]))]
               for kind, heap in sorted(self.heaps.items())}
        rows = sorted((r for rs in top.values() for r in rs),
                      key=lambda r: (-r["bytes"], r["key"]))
        return {"keys": self.keys, "top": top, "rows": rows,
                "summary": dict(sorted(self.summary.items()))}


class BigKeyScan:
    """The one big-key scan of this dashboard: at most one runs at a time."""

    def __init__(self) -> None:
        self.state = "idle"  # idle | running | done | failed | cancelled
        self.started: float | None = None
        self.finished: float | None = None
        self.settings = BigKeySettings()
        self.groups: dict[int, GroupProgress] = {}
        self.error: str | None = None
        self.result: dict[str, Any] | None = None  # the last completed scan's
        self.result_time: float | None = None
        self.epoch: int | None = None
        # Keys and bytes per slot from the last completed scan (None before the first).
        self.slot_keys: list[int] | None = None
        self.slot_bytes: list[int] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def slot_usage(self) -> tuple[list[int], list[int]] | None:
        """(keys per slot, bytes per slot) from the last completed scan, or None: for the
        heat map and any other dashboard code that weighs slots (e.g. rebalancing)."""
        if self.slot_keys is None or self.slot_bytes is None:
            return None
        return self.slot_keys, self.slot_bytes

    def start(self, topo: Topology, settings: BigKeySettings) -> dict[str, Any]:
        if self.running:
            raise Conflict("a big-key scan is already running (cancel it first)")
        masters = {g.id: g.master for g in topo.groups.values() if g.master}
        if not masters:
            raise InvalidRequest("no group has a master to scan")
        self.state = "running"
        self.started, self.finished, self.error = time.time(), None, None
        self.settings = settings
        self.epoch = topo.epoch
        self.groups = {gid: GroupProgress(gid, addr) for gid, addr in sorted(masters.items())}
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run(topo.nslots), name="bigkeys")
        return self.view()

    async def cancel(self) -> dict[str, Any]:
        task = self._task
        if task is None or task.done():
            raise Conflict("no big-key scan is running")
        # The event ends the scan between two pages (or in a pause) even where a client
        # library swallows a cancellation (redis-py does while it connects); cancel() ends it
        # in the middle of a command.
        self._stop.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return self.view()

    async def close(self) -> None:
        if self.running:
            with contextlib.suppress(Conflict):
                await self.cancel()

    async def _run(self, nslots: int) -> None:
        tally = Tally(nslots, self.settings.top)
        try:
            results = await asyncio.gather(*(self._group(g, tally, nslots)
                                             for g in self.groups.values()),
                                           return_exceptions=True)
        except asyncio.CancelledError:
            self.state, self.finished = "cancelled", time.time()
            raise
        failed = [r for r in results if isinstance(r, BaseException)]
        self.finished = time.time()
        if self._stop.is_set():
            self.state = "cancelled"
            return
        if failed:
            self.state = "failed"
            self.error = "; ".join(f"group {g.gid}: {g.error}" for g in self.groups.values()
                                   if g.error)
            return
        # Complete: it replaces the previous scan's results (kept until now).
        self.result = tally.result()
        self.result_time = self.finished
        self.slot_keys, self.slot_bytes = tally.slot_keys, tally.slot_bytes
        self.state = "done"
        log.info("big-key scan done: %d keys in %d groups in %.1f s", tally.keys,
                 len(self.groups), self.finished - (self.started or self.finished))

    async def _group(self, g: GroupProgress, tally: Tally, nslots: int) -> None:
        s = self.settings
        conn = connect(g.addr)
        try:
            g.dbsize = int(await conn.dbsize())
            async for batch in scan_keys(RedisPipeline(conn), nslots, count=s.count,
                                         samples=s.samples, details=True,
                                         pause=s.pause_ms / 1000, progress=g.progress,
                                         stop=self._stop):
                tally.add(g.gid, batch)
            g.done = not self._stop.is_set()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            g.error = str(e) or type(e).__name__
            raise
        finally:
            await conn.aclose()

    def view(self, rows: int | None = None) -> dict[str, Any]:
        groups = [g.to_json() for g in self.groups.values()]
        scanned = sum(g["scanned"] for g in groups)
        total = sum(g["dbsize"] for g in groups)
        out: dict[str, Any] = {
            "state": self.state, "started": self.started, "finished": self.finished,
            "error": self.error, "epoch": self.epoch, "settings": self.settings.to_json(),
            "progress": {"scanned": scanned, "dbsize": total, "groups": groups},
            "result": None,
        }
        if self.result is not None:
            res = dict(self.result)
            if rows is not None:
                res["rows"] = res["rows"][:rows]
            out["result"] = {"finished": self.result_time, **res}
        return out
