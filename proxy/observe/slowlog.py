"""The proxy's slow log: Redis's SLOWLOG for the proxy's own view of a request.

An entry's duration is the proxy-side total (request parsed → reply queued), backend included,
so a slow backend shows here as well as in its own SLOWLOG. Entries are Redis's (id, unix time,
µs, argv, client address, client name) plus the group the request went to; argv is truncated
as Redis's slowlogCreateEntry does (32 arguments, 128 bytes per argument).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

MAX_ARGC = 32  # SLOWLOG_ENTRY_MAX_ARGC
MAX_STRING = 128  # SLOWLOG_ENTRY_MAX_STRING


@dataclass(frozen=True, slots=True)
class SlowEntry:
    id: int
    time: int  # unix seconds when the reply was queued
    usec: int
    argv: tuple[bytes, ...]
    addr: str
    name: str
    group: str  # a group id, "*" (every group / several), or "" (answered by the proxy)

    def to_json(self) -> dict:
        return {"id": self.id, "time": self.time, "duration_us": self.usec,
                "argv": [a.decode(errors="replace") for a in self.argv],
                "client_addr": self.addr, "client_name": self.name, "group": self.group}


def truncate_argv(argv: list[bytes]) -> tuple[bytes, ...]:
    """Redis's slowlogCreateEntry: at most 32 arguments, the last saying how many more there
    were; arguments over 128 bytes cut, saying how many more bytes there were."""
    argc = len(argv)
    n = min(argc, MAX_ARGC)
    out = []
    for j in range(n):
        if n != argc and j == n - 1:
            out.append(b"... (%d more arguments)" % (argc - n + 1))
            break
        a = argv[j]
        if len(a) > MAX_STRING:
            a = a[:MAX_STRING] + b"... (%d more bytes)" % (len(a) - MAX_STRING)
        out.append(a)
    return tuple(out)


class SlowLog:
    """The newest `max_len` entries of requests that took at least `slower_than` µs
    (negative: log nothing; 0: log every timed request), as Redis's slowlog-* settings."""

    def __init__(self, slower_than: int = 10_000, max_len: int = 128) -> None:
        self.slower_than = slower_than
        self.entries: deque[SlowEntry] = deque(maxlen=max(max_len, 0))
        self.next_id = 0  # never reset, as Redis's (RESET keeps counting)

    @property
    def max_len(self) -> int:
        return self.entries.maxlen or 0

    def set_max_len(self, n: int) -> None:
        # As Redis: shrinking drops the oldest entries (the right end: newest are at the
        # left); growing keeps every one.
        n = max(n, 0)
        self.entries = deque(list(self.entries)[:n], maxlen=n)

    def add(self, argv: list[bytes], usec: int, addr: str, name: str, group: str) -> None:
        if self.entries.maxlen == 0:
            return
        self.entries.appendleft(SlowEntry(self.next_id, int(time.time()), usec,
                                          truncate_argv(argv), addr, name, group))
        self.next_id += 1

    def get(self, count: int | None = 10) -> list[SlowEntry]:
        """Newest first; Redis's default count is 10, a negative count means all."""
        if count is None or count < 0:
            return list(self.entries)
        return [e for _, e in zip(range(count), self.entries, strict=False)]

    def reset(self) -> None:
        self.entries.clear()

    def __len__(self) -> int:
        return len(self.entries)
