"""The clients' latency per group as the proxies measure it, for the migration's pace.

Every proxy keeps cumulative fixed-bucket histograms of the requests it timed, per group
(`GET /api/latency`, see dashboard/observe/latency.py). `GroupLatency` (sans-IO) keeps the
reports of the last few seconds and answers, per group, the p99 over a sliding window: the
buckets now minus the buckets one window ago, added over every proxy. A figure needs
`min_count` timed requests in the window (a p99 of a handful is noise); a proxy whose counts
went down (restarted, CONFIG RESETSTAT) counts from zero.

`ProxyLatencyWatch` reads every registered proxy's report (concurrently, each bounded by the
proxy client's own timeout) into a `GroupLatency`, and keeps the last figures taken while no
migration ran, per group: the baseline the pace compares with.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..control.proxies import ProxyRegistry
from ..observe.latency import percentile


class GroupLatency:
    """Per-group p99 (seconds) of the proxies' timed requests over the last `window` seconds."""

    def __init__(self, window: float = 1.0, min_count: int = 100, q: float = 99.0) -> None:
        if window <= 0 or min_count < 1 or not 0 < q < 100:
            raise ValueError("need window > 0, min_count >= 1, 0 < q < 100")
        self.window = window
        self.min_count = min_count
        self.q = q
        # (time, bounds, {(proxy, group): cumulative buckets})
        self.snaps: deque[tuple[float, tuple[int, ...], dict[tuple[str, str], list[int]]]] = \
            deque()

    def add(self, now: float, reports: Mapping[str, Mapping[str, Any] | None]) -> None:
        """The proxies' `/api/latency` documents (proxy id -> report; None: unreachable)."""
        bounds: tuple[int, ...] = ()
        counts: dict[tuple[str, str], list[int]] = {}
        for pid, rep in reports.items():
            if not rep or "bounds_us" not in rep:
                continue
            b = tuple(rep["bounds_us"])
            if bounds and b != bounds:
                continue  # another build's buckets do not add up with these
            bounds = b
            for gid, t in (rep.get("groups") or {}).items():
                counts[(pid, str(gid))] = list(t.get("buckets") or ())
        if self.snaps and bounds != self.snaps[-1][1]:
            self.snaps.clear()
        self.snaps.append((now, bounds, counts))
        # keep the newest snapshot at least one window old, and nothing older
        while len(self.snaps) > 2 and self.snaps[1][0] <= now - self.window:
            self.snaps.popleft()

    def p99(self, groups: Iterable[str] | None = None) -> dict[str, float]:
        """group -> the q-th percentile in seconds over the window (groups with at least
        `min_count` timed requests in it; all groups when `groups` is None)."""
        if len(self.snaps) < 2:
            return {}
        t_new, bounds, new = self.snaps[-1]
        old = self.snaps[0][2]
        if t_new - self.snaps[0][0] < self.window / 2 or not bounds:
            return {}  # not enough history yet
        want = None if groups is None else set(groups)
        width = len(bounds) + 1
        delta: dict[str, list[int]] = {}
        for (pid, gid), counts in new.items():
            if want is not None and gid not in want:
                continue
            before = old.get((pid, gid))
            if before is None or any(n < b for n, b in zip(counts, before, strict=False)):
                before = []  # a new or restarted proxy: all it has counted is in the window
            acc = delta.setdefault(gid, [0] * width)
            for i, n in enumerate(counts[:width]):
                acc[i] += n - (before[i] if i < len(before) else 0)
        return {gid: percentile(bounds, acc, self.q) / 1e6 for gid, acc in delta.items()
                if sum(acc) >= self.min_count}


class ProxyLatencyWatch:
    """Reads the proxies' latency reports; remembers the last figures of a quiet period."""

    def __init__(self, proxies: ProxyRegistry, window: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.proxies = proxies
        self.clock = clock
        self.groups = GroupLatency(window)
        self.quiet: dict[str, tuple[float, float]] = {}  # group -> (when, p99 s)
        self._quiet_since: float | None = None

    async def poll(self, quiet: bool) -> dict[str, float]:
        """Read every proxy's report; the window's p99 per group. `quiet`: no migration is
        running (a baseline once it has been so for a whole window)."""
        records = self.proxies.records()
        reports = await asyncio.gather(*(self.proxies.client.latency(r) for r in records),
                                       return_exceptions=True)
        now = self.clock()
        self.groups.add(now, {r.id: rep if isinstance(rep, dict) else None
                              for r, rep in zip(records, reports, strict=True)})
        figures = self.groups.p99()
        if not quiet:
            self._quiet_since = None
        elif self._quiet_since is None:
            self._quiet_since = now
        elif now - self._quiet_since >= self.groups.window:  # quiet for the whole window
            self.quiet.update({g: (now, v) for g, v in figures.items()})
        return figures

    def baseline(self, max_age: float) -> dict[str, float]:
        """Each group's last quiet figure taken within `max_age` seconds (a group without
        enough traffic in the last windows has none)."""
        now = self.clock()
        return {g: v for g, (t, v) in self.quiet.items() if now - t <= max_age}
