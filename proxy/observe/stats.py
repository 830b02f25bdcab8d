"""Every counter the proxy keeps, in one place, with no I/O.

The data path only increments plain attributes here (one list index per request for the slot
counters, one add per write for the backend counters); INFO, the admin API and the metrics
exposition read them through `ProxyStats`. Per-address backend counters are shared by all the
connections to one redis-server, so a group's figures are one lookup, not a sum over lanes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import _accel
from .meter import Meter


@dataclass(slots=True)
class BackendCounters:
    """Counters of one backend address (every lane to it adds to the same object)."""

    requests: int = 0  # requests written (counted per write, not per request)
    errors: int = 0  # error replies, plus requests refused because the connection was down
    connects: int = 0  # successful connections, reconnects included


def _stats_class(traffic: type, name: str) -> type:
    """ProxyStats over a base holding its traffic counters (commands, bytes_in, bytes_out):
    plain slots for the Python hot path, C fields for the compiled one (its callbacks add to
    them in place; an int attribute is a new object on every read and write)."""

    @dataclass(slots=True)
    class Stats(traffic):  # type: ignore[misc, valid-type]
        """Process-wide counters. `slot_ops` is cumulative ops per slot (load-aware
        rebalancing)."""

        nslots: int
        started: float  # loop time at start
        started_wall: float  # wall-clock time at start
        connections_received: int = 0
        rejected_connections: int = 0
        ops_per_sec: float = 0.0
        # Pub/Sub: dedicated subscriber connections open now, connects made, opens refused over
        # the bound; messages and bytes delivered to clients; subscribers dropped over the
        # output limit.
        pubsub_connections: int = 0
        pubsub_connects: int = 0
        pubsub_refused: int = 0
        pubsub_messages: int = 0
        pubsub_bytes: int = 0
        pubsub_dropped: int = 0
        slot_ops: list[int] = field(default_factory=list)
        backends: dict[str, BackendCounters] = field(default_factory=dict)
        # Transactions (MULTI/EXEC/WATCH); their dedicated connections count in
        # `backend.dedicated.DedicatedPool.watch`.
        txn_multi: int = 0  # MULTI commands that opened a transaction
        txn_exec: int = 0  # EXECs sent to a backend
        txn_aborted: int = 0  # EXECs answered EXECABORT (queue-time errors, proxy or backend)
        txn_watch_failed: int = 0  # EXECs answered nil (a WATCHed key changed or its slot moved)
        txn_discarded: int = 0  # DISCARD, RESET or disconnect inside MULTI
        txn_queued: int = 0  # commands queued inside MULTI
        scan_restarts: int = 0  # SCAN passes restarted because a slot move could hide a key
        # Per-command calls/errors, latency histograms and the slow log (observe.meter).
        meter: Meter = field(default_factory=Meter)

        # From the traffic base (_Traffic), not fields: commands (commands dispatched); bytes_in
        # and bytes_out, client traffic (counted per read and per write, not per request).
        def __post_init__(self) -> None:
            self.commands = self.bytes_in = self.bytes_out = 0
            if not self.slot_ops:
                self.slot_ops = [0] * self.nslots

        def backend(self, addr: str) -> BackendCounters:
            """The counters of backend `addr`, created on first use."""
            c = self.backends.get(addr)
            if c is None:
                c = self.backends[addr] = BackendCounters()
            return c

    Stats.__name__ = Stats.__qualname__ = name
    return Stats


ProxyStats, CompiledProxyStats = _accel.counter_classes(
    _stats_class, "ProxyStats", "TrafficCounters", ("bytes_in", "bytes_out", "commands"))


def new_stats(**fields: Any) -> ProxyStats:  # type: ignore[valid-type]
    """The process's counters, for the hot path selected now (proxy._accel)."""
    return _accel.for_hot_path(ProxyStats, CompiledProxyStats)(**fields)  # type: ignore


class OpsSampler:
    """Turns the cumulative command count into an instantaneous rate (called once a second)."""

    __slots__ = ("_last", "_last_t", "stats")

    def __init__(self, stats: ProxyStats, now: float) -> None:
        self.stats = stats
        self._last = stats.commands
        self._last_t = now

    def sample(self, now: float) -> None:
        s = self.stats
        s.ops_per_sec = (s.commands - self._last) / max(now - self._last_t, 1e-6)
        self._last, self._last_t = s.commands, now
