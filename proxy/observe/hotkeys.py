"""Hot keys: a bounded, sampled top-k of the keys clients ask for, per time window (no I/O).

The request path pays one integer decrement and one test per request: it counts `countdown`
down and, when it reaches zero, hands the request's first key to `HotKeys.sample`, which
returns the next countdown (see the two marked lines in `client/connection.py`'s fast path and
`dispatch.keyed`). The next countdown is drawn uniformly from 1..2N-1 (mean N, the configured
1-in-N sample rate) rather than fixed at N, so a client whose pipeline repeats with a period of
N requests cannot always put the same key under the sampler.

The sampled keys feed a Space-Saving summary (Metwally, Agrawal, El Abbadi, "Efficient
computation of frequent and top-k elements in data streams", 2005) of at most `capacity`
counters kept in a stream-summary (counters bucketed by count), so every update is O(1) and
memory is constant whatever the key space. Its guarantees, for the n samples of a window:

* every listed key has `count - error <= true sampled count <= count`;
* the smallest listed count is at most n / capacity, and any key sampled more often than the
  smallest count is listed (so every key above n / capacity is listed).

Counts are of samples; `report()` scales them by the sample rate to estimated requests. Windows
are aligned to wall-clock multiples of `window` seconds, so every proxy's window covers the same
interval and the dashboard can add them up; the current window and the last completed one are
kept. Keys longer than `max_key_bytes` are kept truncated (distinct keys sharing that prefix
count together), which bounds the memory to about capacity x max_key_bytes per window.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from typing import Any

from ..config import HotKeysConfig

# The countdown of a disabled sampler: decremented once a request, it never reaches zero.
NEVER = 1 << 62


class SpaceSaving:
    """The Space-Saving top-k summary with O(1) updates (stream-summary buckets by count)."""

    __slots__ = ("buckets", "capacity", "counts", "errors", "min_count", "slots", "total")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.counts: dict[bytes, int] = {}
        self.errors: dict[bytes, int] = {}  # over-estimate inherited from an evicted key
        self.slots: dict[bytes, int] = {}
        # count -> the keys with that count (a dict as an ordered set: the oldest is evicted)
        self.buckets: dict[int, dict[bytes, None]] = {}
        self.min_count = 0
        self.total = 0  # items offered

    def offer(self, key: bytes, slot: int = -1) -> None:
        self.total += 1
        counts = self.counts
        buckets = self.buckets
        c = counts.get(key)
        if c is not None:
            bucket = buckets[c]
            del bucket[key]
            if not bucket:
                del buckets[c]
                if c == self.min_count:
                    self.min_count = c + 1  # the key itself is there now
            counts[key] = c + 1
            buckets.setdefault(c + 1, {})[key] = None
            return
        if len(counts) < self.capacity:
            counts[key] = 1
            self.errors[key] = 0
            self.slots[key] = slot
            buckets.setdefault(1, {})[key] = None
            self.min_count = 1
            return
        # Full: the new key takes the place of one with the smallest count, inheriting that
        # count as its possible over-estimate.
        m = self.min_count
        bucket = buckets[m]
        victim = next(iter(bucket))
        del bucket[victim]
        del counts[victim], self.errors[victim], self.slots[victim]
        if not bucket:
            del buckets[m]
            self.min_count = m + 1
        counts[key] = m + 1
        self.errors[key] = m
        self.slots[key] = slot
        buckets.setdefault(m + 1, {})[key] = None

    @property
    def full(self) -> bool:
        return len(self.counts) >= self.capacity

    def floor(self) -> int:
        """An upper bound of the count of any key NOT listed: the smallest count once full."""
        return self.min_count if self.full else 0

    def top(self, n: int | None = None) -> list[tuple[bytes, int, int, int]]:
        """(key, count, error, slot), highest count first (ties: smaller error first)."""
        items = sorted(self.counts.items(), key=lambda kv: (-kv[1], self.errors[kv[0]], kv[0]))
        if n is not None:
            items = items[:n]
        return [(k, c, self.errors[k], self.slots[k]) for k, c in items]


class Window:
    """One window's summary."""

    __slots__ = ("start", "summary")

    def __init__(self, start: float, capacity: int) -> None:
        self.start = start
        self.summary = SpaceSaving(capacity)


class HotKeys:
    """The proxy's sampler: the countdown the request path decrements, the current and the
    last completed window."""

    __slots__ = ("_clock", "_end", "_random", "_span", "countdown", "current", "previous",
                 "settings")

    def __init__(self, settings: HotKeysConfig | None = None, *,
                 clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None) -> None:
        self.settings = s = settings or HotKeysConfig()
        if s.sample_rate < 1 or s.capacity < 1 or s.window <= 0 or s.max_key_bytes < 1:
            raise ValueError("hotkeys: sample_rate, capacity, window and max_key_bytes must be "
                             "positive")
        self._clock = clock
        self._random = (rng or random.Random()).random  # C: cheaper than randint
        self._span = 2 * s.sample_rate - 1
        self.current = Window(self._start_of(clock()), s.capacity)
        self._end = self.current.start + s.window
        self.previous: Window | None = None
        self.countdown = self._next() if s.enabled else NEVER

    @classmethod
    def disabled(cls) -> HotKeys:
        return cls(HotKeysConfig(enabled=False))

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    def _start_of(self, now: float) -> float:
        w = self.settings.window
        return math.floor(now / w) * w

    def _next(self) -> int:
        # Uniform on 1 .. 2 * sample_rate - 1: mean sample_rate.
        return 1 + int(self._random() * self._span)

    def sample(self, key: bytes, slot: int) -> int:
        """Count `key` (called for about one request in `sample_rate`); returns the next
        countdown."""
        if self._clock() >= self._end:
            self.rotate()
        limit = self.settings.max_key_bytes
        if len(key) > limit:
            key = bytes(key[:limit])
        self.current.summary.offer(key, slot)
        return 1 + int(self._random() * self._span)

    def rotate(self, now: float | None = None) -> None:
        """Move to the window `now` falls in: the current one becomes the previous one (or,
        after more than a whole idle window, the previous one is that empty window)."""
        now = self._clock() if now is None else now
        start = self._start_of(now)
        cur = self.current
        if start <= cur.start:
            return
        capacity = self.settings.capacity
        if start - cur.start <= self.settings.window * 1.5:
            self.previous = cur
        else:
            self.previous = Window(start - self.settings.window, capacity)
        self.current = Window(start, capacity)
        self._end = start + self.settings.window

    def report(self, limit: int | None = None,
               group_of: Callable[[int], int | None] = lambda s: None) -> dict[str, Any]:
        """Both windows as JSON: counts scaled to estimated requests, with their error bound
        (`GET /api/hotkeys` on the admin API)."""
        self.rotate()
        s = self.settings
        out: dict[str, Any] = {
            "enabled": s.enabled, "sample_rate": s.sample_rate, "capacity": s.capacity,
            "window": s.window, "now": self._clock(),
            "current": window_json(self.current, s, limit, group_of),
            "previous": (window_json(self.previous, s, limit, group_of)
                         if self.previous is not None else None),
        }
        return out


def key_text(key: bytes) -> str:
    """A key for JSON and tables: UTF-8 where it is, \\xNN escapes where not."""
    return key.decode("utf-8", "backslashreplace")


def window_json(w: Window, s: HotKeysConfig, limit: int | None,
                group_of: Callable[[int], int | None]) -> dict[str, Any]:
    summary = w.summary
    rate = s.sample_rate
    return {
        "start": w.start, "end": w.start + s.window,
        "samples": summary.total,
        "requests": summary.total * rate,  # estimated requests with a key in the window
        "floor": summary.floor() * rate,  # any key not listed had at most this many
        "keys": [{"key": key_text(k), "count": c * rate, "error": e * rate, "slot": slot,
                  "group": group_of(slot) if slot >= 0 else None}
                 for k, c, e, slot in summary.top(limit)],
    }
