"""Requests to slots that are moving between groups (docs/migration.md has the protocol).

A slot in transit is absent from `Router.by_slot` (its entry is None), so the request hot path
pays nothing for migrations: only a request that finds None comes here.

* LOCKED slot, or a fenced key: the request is *held* — not sent anywhere — until the next slot
  map releases it (or `lock_timeout` answers `-TRYAGAIN`). Its reply slot is already in the
  client's FIFO, so reply order is kept.
* MIGRATING slot: the request's keys are first pulled from the source group with
  `MIGRATE target "" 0 timeout REPLACE KEYS k...` (atomic on the single-threaded source; `NOKEY`
  means they are already gone or never existed), then the request goes to the target. Every
  proxy does this before touching a key of the slot, and none writes the slot to the source any
  more, so every client sees the latest value and no acknowledged write is lost.
* Fencing: with a dashboard, slots in transit are served only while the dashboard was heard
  from within `fence_timeout`; a proxy cut off from it answers `-TRYAGAIN` for them instead.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Protocol

from slotcore.addr import split_addr
from slotcore.resp import pack_command
from slotcore.slotmap import LOCKED

from ..backend.conn import BackendConn, Waiter
from ..config import MigrationConfig
from ..errors import CLUSTERDOWN, tryagain
from .groups import RoutedGroup

log = logging.getLogger("slotproxy.transit")


class Owner(Protocol):
    """Whoever is waiting for a held request's reply (a client connection)."""

    closed: bool


class TransitSlot:
    __slots__ = ("dst", "dst_host", "dst_port", "slot", "src", "state")

    def __init__(self, slot: int, state: str, src: RoutedGroup, dst: RoutedGroup) -> None:
        self.slot = slot
        self.state = state
        self.src = src
        self.dst = dst
        host, port = split_addr(dst.master)
        self.dst_host = host.encode()
        self.dst_port = str(port).encode()


class Held:
    """A request waiting for its slot (or key) to be released."""

    __slots__ = ("keys", "lane", "owner", "packed", "since", "slot", "waiter")

    def __init__(self, owner: Owner, lane: int, slot: int, keys: list[bytes], packed: bytes,
                 waiter: Waiter, since: float) -> None:
        self.owner = owner
        self.lane = lane
        self.slot = slot
        self.keys = keys
        self.packed = packed
        self.waiter = waiter
        self.since = since


class HeldCall(Held):
    """A held action (a transaction's EXEC, a WATCH): `retry` routes it again on release."""

    __slots__ = ("retry",)

    def __init__(self, owner: Owner, slot: int, keys: list[bytes], waiter: Waiter,
                 since: float, retry: Callable[[], None]) -> None:
        super().__init__(owner, 0, slot, keys, b"", waiter, since)
        self.retry = retry


class PullThenRun:
    """Waiter for the on-access MIGRATE of a transaction's keys: then run on the target."""

    __slots__ = ("run", "slot", "transit", "waiter")

    def __init__(self, run: Callable[[], None], waiter: Waiter, slot: int,
                 transit: Transit) -> None:
        self.run = run
        self.waiter = waiter
        self.slot = slot
        self.transit = transit

    def resolve(self, raw: bytes) -> None:
        if raw[:1] == b"+":
            self.run()
        else:
            self.transit.pull_failed()
            why = raw[1:].strip().decode(errors="replace")
            self.waiter.resolve(tryagain(self.slot, f"could not move its keys ({why})"))


class PullThenForward:
    """Waiter for the on-access MIGRATE: once the keys are on the target, send the request."""

    __slots__ = ("conn", "packed", "slot", "transit", "waiter")

    def __init__(self, conn: BackendConn, packed: bytes, waiter: Waiter, slot: int,
                 transit: Transit) -> None:
        self.conn = conn
        self.packed = packed
        self.waiter = waiter
        self.slot = slot
        self.transit = transit

    def resolve(self, raw: bytes) -> None:
        if raw[:1] == b"+":  # +OK (moved) or +NOKEY (nothing to move)
            self.conn.send(self.packed, self.waiter)
        else:
            # IOERR/timeout: the key may be on the source, the target or both (never lost);
            # executing now could act on a stale copy, so the client retries instead.
            self.transit.pull_failed()
            why = raw[1:].strip().decode(errors="replace")
            self.waiter.resolve(tryagain(self.slot, f"could not move its keys ({why})"))


# Re-routes one held request under the map in force (Router.forward).
Forward = Callable[[Owner, int, int, list[bytes], bytes, Waiter], None]


class Transit:
    """Slots in transit, fenced keys, held requests and the dashboard-contact fence."""

    def __init__(self, cfg: MigrationConfig, plain_lane: Callable[[int], int],
                 fence_enabled: bool, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self._plain_lane = plain_lane
        self._clock = clock
        self.slots: dict[int, TransitSlot] = {}
        self.fenced: frozenset[bytes] = frozenset()
        self.held: deque[Held] = deque()
        self._migrate_timeout = str(int(cfg.migrate_timeout * 1000)).encode()
        self.fence_enabled = fence_enabled
        self.last_contact = clock()
        self.fenced_out = False
        # Metrics (read at scrape time): requests held, -TRYAGAIN answers, on-access MIGRATE
        # pulls sent and those that failed.
        self.held_total = 0
        self.tryagain_total = 0
        self.pulls = 0
        self.pull_failures = 0

    def install(self, slots: dict[int, TransitSlot], fenced: frozenset[bytes]) -> None:
        """The transit part of a new slot map (the router swaps the rest)."""
        self.slots = slots
        self.fenced = fenced
        self.touch_contact()

    def admit(self, slot: int, keys: Iterable[bytes]) -> TransitSlot | bytes | None:
        """How a request for a slot with no owner in the route table is served: the error
        reply for it (unassigned, or this proxy fenced off), None when it must be held (the
        slot is locked or a key fenced), or the slot's transit entry (migrating: pull the
        keys from `src`, then serve on `dst`). One rule for requests, calls and blocking
        commands alike."""
        ts = self.slots.get(slot)
        if ts is None:
            return CLUSTERDOWN
        if self.fenced_out:
            self.tryagain_total += 1
            return tryagain(slot, "this proxy lost contact with the dashboard")
        if ts.state == LOCKED or (self.fenced and not self.fenced.isdisjoint(keys)):
            return None
        return ts

    def forward(self, owner: Owner, lane: int, slot: int, keys: list[bytes], packed: bytes,
                waiter: Waiter, now: float) -> None:
        """Serve a request for a slot with no owner in the route table."""
        ts = self.admit(slot, keys)
        if ts is None:
            self.held_total += 1
            self.held.append(Held(owner, lane, slot, keys, packed, waiter, now))
            return
        if isinstance(ts, bytes):
            waiter.resolve(ts)
            return
        # The MIGRATE goes on a RESP2 lane: its reply is read by PullThenForward, not a client.
        src = ts.src.lanes[self._plain_lane(lane)]
        self.pulls += 1
        src.send(self.migrate_command(ts, keys),
                 PullThenForward(ts.dst.lanes[lane], packed, waiter, slot, self))

    def call(self, owner: Owner, lane: int, slot: int, keys: list[bytes], waiter: Waiter,
             run: Callable[[RoutedGroup], None], retry: Callable[[], None], now: float) -> None:
        """Like `forward`, for an action run on a group (see `Router.call`): held while the
        slot is locked (`retry` on release), run on the target once `keys` are pulled."""
        ts = self.admit(slot, keys)
        if ts is None:
            self.held_total += 1
            self.held.append(HeldCall(owner, slot, keys, waiter, now, retry))
            return
        if isinstance(ts, bytes):
            waiter.resolve(ts)
            return
        dst = ts.dst
        if not keys:
            run(dst)
            return
        src = ts.src.lanes[self._plain_lane(lane)]
        self.pulls += 1
        src.send(self.migrate_command(ts, keys),
                 PullThenRun(lambda: run(dst), waiter, slot, self))

    def migrate_command(self, ts: TransitSlot, keys: Iterable[bytes]) -> bytes:
        unique = list(dict.fromkeys(keys))
        return pack_command(b"MIGRATE", ts.dst_host, ts.dst_port, b"", b"0",
                            self._migrate_timeout, b"REPLACE", b"KEYS", *unique)

    def release_held(self, forward: Forward) -> None:
        """Re-route held requests under the current map (they may be held again)."""
        held, self.held = self.held, deque()
        for h in held:
            if isinstance(h, HeldCall):
                if h.owner.closed:  # resolved so that what it holds is given back
                    h.waiter.resolve(tryagain(h.slot, "client gone"))
                else:
                    h.retry()
                continue
            if h.owner.closed:
                continue  # nobody is waiting for it
            forward(h.owner, h.lane, h.slot, h.keys, h.packed, h.waiter)

    def expire_held(self, now: float) -> None:
        limit = self.cfg.lock_timeout
        while self.held and (self.fenced_out or now - self.held[0].since > limit):
            h = self.held.popleft()
            self.tryagain_total += 1
            why = "lost contact with the dashboard" if self.fenced_out else "locked too long"
            h.waiter.resolve(tryagain(h.slot, why))

    def pull_failed(self) -> None:
        self.pull_failures += 1
        self.tryagain_total += 1  # the request it was for is answered -TRYAGAIN

    def touch_contact(self) -> None:
        """The dashboard was heard from (a push or a heartbeat reply)."""
        self.last_contact = self._clock()
        if self.fenced_out:
            log.info("dashboard contact restored: serving slots in transit again")
        self.fenced_out = False

    def check_fence(self) -> None:
        now = self._clock()
        if (self.fence_enabled and self.slots and not self.fenced_out
                and now - self.last_contact > self.cfg.fence_timeout):
            self.fenced_out = True
            log.error("no contact with the dashboard for %.0fs: refusing the %d slots in "
                      "transit until it returns", now - self.last_contact, len(self.slots))
