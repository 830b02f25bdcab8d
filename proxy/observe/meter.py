"""Per-command and per-group request figures: calls, rejections, errors, latency histograms
and the slow log, as plain counters and arrays (the exposition is built at scrape time).

What the request path pays (see `client.timed` and the marked hooks in client.connection):
* every read: the call count of every request in it, by its name as sent, in C: the compiled
  parser counts into `raw_calls` itself (a `CallCounts` table), the Python path in one call of
  `collections._count_elements`; no Python bytecode per request (dispatch moves a count to the
  table's name, "config|get");
* every request: a countdown (small ints: no allocation);
* one request in `every` (a counter, not a random draw): a `TimedSlot` that reads a monotonic
  nanosecond clock when the request is parsed and again when its reply is queued, then
  `record` below puts the latency in its command's and its group's histograms, counts an
  error reply, and feeds the slow log. With `every == 1` every request is timed, so latency
  sums, error counts and the slow log are exact; otherwise they describe the sampled requests
  (calls and rejections stay exact). Timing costs ~10k CPU instructions a request in CPython
  (bench/README.md), hence the proxy's default of 1 in 61; on the compiled fast path the
  `TimedSlot` and its record are C (`proxy._accel`), Python only for a slow-log entry.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

from .. import _accel
from . import histogram
from .slowlog import SlowLog

clock_ns = time.perf_counter_ns  # CLOCK_MONOTONIC on Linux, ~50 ns, no allocation


@dataclass(slots=True)
class Timings:
    """The timed requests of one command (or one group): a fixed-bucket histogram."""

    count: int = 0
    failed: int = 0  # error replies among them
    sum_ns: int = 0
    buckets: list[int] = field(default_factory=histogram.new)
    label: str = ""  # the command's or the group's name (the slow log's group field)

    def add(self, other: Timings) -> None:
        self.count += other.count
        self.failed += other.failed
        self.sum_ns += other.sum_ns
        histogram.merge_into(self.buckets, other.buckets)


@dataclass(slots=True)
class CommandRow:
    """One command's figures for INFO commandstats / latencystats and the metrics."""

    name: str
    calls: int
    rejected: int
    timings: Timings


class Meter:
    # Slots: the compiled fast path reads and writes the countdowns once per run.
    __slots__ = ("_by_gid", "_by_raw", "_names", "calls", "commands", "countdown", "enabled",
                 "every", "groups", "raw_calls", "rejected", "slow_countdown", "slowlog")

    def __init__(self, enabled: bool = True, every: int = 1, slowlog: SlowLog | None = None,
                 ) -> None:
        self.enabled = enabled
        self.every = max(1, every)
        # Requests until the next timed one: the fast path's (its hook keeps it in a local
        # while it runs) and the dispatch path's.
        self.countdown = self.every
        self.slow_countdown = self.every
        # Exact call counts: by the raw name as sent on the fast path (GET, get, Get ...),
        # by the table's name elsewhere; merged by `rows`.
        # Counted per read, by C code: every parsed request under its name as sent. On the
        # compiled hot path a C table (CallCounts: a probe and an add, no bytes hash or new
        # int per read), else a dict; both are the same mapping to the code here.
        sp = _accel.speedups
        self.raw_calls: MutableMapping[bytes, int] = sp.CallCounts() if sp is not None else {}
        self.calls: defaultdict[str, int] = defaultdict(int)
        self.rejected: defaultdict[str, int] = defaultdict(int)
        self.commands: dict[str, Timings] = {}
        self.groups: dict[str, Timings] = {}
        self.slowlog = slowlog if slowlog is not None else SlowLog()
        self._names: dict[bytes, str] = {}
        self._by_raw: dict[bytes, Timings] = {}
        self._by_gid: dict[int, Timings] = {}

    def set_every(self, every: int) -> None:
        """At run time (CONFIG SET proxy-latency-sample-every): the next timed request comes
        at most `every` requests from now."""
        self.every = max(1, every)
        self.countdown = min(self.countdown, self.every)
        self.slow_countdown = min(self.slow_countdown, self.every)

    def tick(self) -> bool:
        """Whether the request being dispatched is timed (the dispatch path's sampler; the
        fast path keeps its own countdown, inline)."""
        self.slow_countdown -= 1
        if self.slow_countdown > 0:
            return False
        self.slow_countdown = self.every
        return True

    def dispatched(self, raw: bytes, name: str | None) -> None:
        """A request read (and counted by its raw name) goes through dispatch: its call is
        the table's name's (a container's subcommand: "config|get"), or none (unknown)."""
        raw_calls = self.raw_calls
        raw_calls[raw] = raw_calls.get(raw, 0) - 1
        if name is not None:
            self.calls[name] += 1

    def redispatched(self, raw: bytes, name: str | bytes) -> None:
        """A dispatched request goes back to the backlog to run again (WATCH/EXEC deferred,
        WAIT): undo `dispatched`, so it counts once."""
        self.raw_calls[raw] = self.raw_calls.get(raw, 0) + 1
        if isinstance(name, str) and self.calls.get(name):
            self.calls[name] -= 1

    def reject(self, name: str) -> None:
        """`name` was counted as a call, then refused before running (arity, unknown
        subcommand, unsupported): Redis counts that as rejected_calls, not calls."""
        if self.enabled:
            self.calls[name] -= 1
            self.rejected[name] += 1

    def name_of(self, raw: bytes) -> str:
        name = self._names.get(raw)
        if name is None:
            if len(self._names) > 4096:  # bounded: names come from clients
                self._names.clear()
            name = self._names[raw] = raw.decode(errors="replace").lower()
        return name

    # -- the Timings a timed request records into (looked up once, when it is timed) -----------
    def named(self, name: str) -> Timings:
        t = self.commands.get(name)
        if t is None:
            t = self.commands[name] = Timings(label=name)
        return t

    def raw_named(self, raw: bytes) -> Timings:
        """By the command name as a client sent it (GET, get ...): bounded by the table's
        fast-path spellings, which are the only raw names the fast path times."""
        t = self._by_raw.get(raw)
        if t is None:
            t = self._by_raw[raw] = self.named(self.name_of(raw))
        return t

    def group(self, label: str) -> Timings | None:
        """A group's Timings by its label ("2", "*" for several); None for "" (answered by
        the proxy: no group)."""
        if not label:
            return None
        t = self.groups.get(label)
        if t is None:
            t = self.groups[label] = Timings(label=label)
        return t

    def gid(self, gid: int) -> Timings:
        t = self._by_gid.get(gid)
        if t is None:
            t = self._by_gid[gid] = self.group(str(gid))  # type: ignore[assignment]
        return t  # type: ignore[return-value]

    def slow_entry(self, argv: list[bytes], usec: int, client: Any, g: Timings | None) -> None:
        """A timed request at or over the slow log's threshold (record's, and the compiled
        TimedSlot's, only call into this)."""
        self.slowlog.add(argv, usec, client.addr, client.name.decode(errors="replace"),
                         g.label if g is not None else "")

    def finish(self, name: str, group: str, t0: int, raw: bytes, argv: list[bytes],
               client: Any) -> None:
        """A timed request answered at once (a local reply): record it."""
        record(self, self.named(name), self.group(group), t0, raw, argv, client)

    def rows(self) -> list[CommandRow]:
        """Every command seen, by name: calls merged over the names it was sent as."""
        calls: defaultdict[str, int] = defaultdict(int, self.calls)
        for raw, n in list(self.raw_calls.items()):
            # Never below 0: a CONFIG RESETSTAT between a request's read and its dispatch.
            if n > 0:
                calls[self.name_of(raw)] += n
        names = sorted(set(calls) | set(self.rejected) | set(self.commands))
        return [CommandRow(n, calls.get(n, 0), self.rejected.get(n, 0),
                           self.commands.get(n) or Timings()) for n in names]

    def reset(self) -> None:
        """CONFIG RESETSTAT: every figure, not the slow log (Redis keeps it too)."""
        self.raw_calls.clear()
        self.calls.clear()
        self.rejected.clear()
        self.commands.clear()
        self.groups.clear()
        self._by_raw.clear()
        self._by_gid.clear()


_LAST = histogram.NBUCKETS - 1
_FIRST = histogram.FIRST_POW


def record(meter: Meter, t: Timings, g: Timings | None, t0: int, raw: bytes,
           argv: list[bytes], client: Any) -> None:
    """A timed request's reply was queued: one clock read, one bucket index (histogram.
    bucket_of, inlined), a few adds into its command's and its group's arrays, and the slow
    log's threshold check. `client` is the connection's ClientState (address, name)."""
    dt = clock_ns() - t0
    usec = dt // 1000
    k = (usec - 1).bit_length() - _FIRST
    if k < 0:
        k = 0
    elif k > _LAST:
        k = _LAST
    failed = raw[:1] in _ERRORS
    t.count += 1
    t.sum_ns += dt
    t.buckets[k] += 1
    if g is not None:
        g.count += 1
        g.sum_ns += dt
        g.buckets[k] += 1
    if failed:
        t.failed += 1
        if g is not None:
            g.failed += 1
    if 0 <= meter.slowlog.slower_than <= usec:
        meter.slow_entry(argv, usec, client, g)


_ERRORS = (b"-", b"!")  # RESP2 error, RESP3 blob error
