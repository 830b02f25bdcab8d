"""Slot → group, and atomic swaps of the slot map.

The data path reads `router.by_slot[slot]` (a list indexed by slot holding a `RoutedGroup`, or
None for a slot that is unassigned or in transit); a new slot map builds a whole new list and
swaps the reference, so a request sees either the old map or the new one, never a mix. A slot
whose entry is None goes through `forward`, which hands it to `Transit`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from slotcore.resp import encode_error
from slotcore.slotmap import SlotMap, StaleSlotMap

from ..backend.conn import Waiter
from ..backend.pool import BackendPool
from ..config import ReadConfig
from .groups import RoutedGroup
from .replicas import ReplicaReads
from .transit import Owner, Transit, TransitSlot

log = logging.getLogger("slotproxy.router")


def repointed(gid: int, old: str, new: str) -> bytes:
    """The reply of a request queued for a master the map no longer names (it was never
    written): TRYAGAIN, which cluster clients retry and which says it is safe to."""
    return encode_error(f"TRYAGAIN group {gid} master moved from {old} to {new}: "
                        "the request was not sent, retry it")


class Router:
    # Slots: the compiled hot path reads by_slot and mask on every read.
    __slots__ = ("_lock", "_on_drained", "_on_swap", "_route_ids", "by_slot", "groups", "mask",
                 "nslots", "pool", "reads", "repoints", "slot_count", "slot_gen", "slotmap",
                 "transit")

    def __init__(self, nslots: int, pool: BackendPool, transit: Transit,
                 reads: ReplicaReads | None = None) -> None:
        self.nslots = nslots
        self.mask = nslots - 1
        self.pool = pool
        self.transit = transit
        self.by_slot: list[RoutedGroup | None] = [None] * nslots
        self.groups: dict[int, RoutedGroup] = {}
        self.slot_count: dict[int, int] = {}  # gid → slots owned (for INFO), set at each swap
        self.slotmap: SlotMap | None = None
        # Bumped for every slot whose route changes at a swap (owner, master, transit state):
        # a WATCH remembers it, and EXEC treats a change as "the watched keys were modified".
        self.slot_gen: list[int] = [0] * nslots
        self._route_ids: list[object] = [None] * nslots
        self._lock = asyncio.Lock()
        # Replica health and the choice of a replica for a read (reads from replicas).
        self.reads = reads if reads is not None else ReplicaReads(ReadConfig(), pool)
        # Re-pointed groups: (gid, old master, new master) of the last swaps, newest last
        # (INFO, logs); bounded.
        self.repoints: list[tuple[int, str, str]] = []
        # Called at each swap, as soon as the new map is in force (Pub/Sub re-places its
        # subscriptions at once), and after it once requests sent under the old map are
        # answered (blocked clients on a moving slot are re-issued from there). Never on the
        # request path.
        self._on_swap: list[Callable[[], None]] = []
        self._on_drained: list[Callable[[], None]] = []

    @property
    def epoch(self) -> int:
        return self.slotmap.epoch if self.slotmap else 0

    @property
    def online(self) -> bool:
        return self.slotmap is not None

    async def apply(self, slotmap: SlotMap, wait_connect: float = 0.0) -> None:
        """Switch to `slotmap` atomically; returns once requests sent under the old map are
        answered. Raises StaleSlotMap for an older epoch or another slot count."""
        async with self._lock:
            if slotmap.nslots != self.nslots:
                raise StaleSlotMap(
                    f"slot map has {slotmap.nslots} slots, this proxy uses {self.nslots}")
            if self.slotmap is not None and slotmap.epoch < self.slotmap.epoch:
                raise StaleSlotMap(
                    f"stale epoch {slotmap.epoch}: proxy is at epoch {self.slotmap.epoch}")
            pool = self.pool
            old_masters = {g.gid: g.master for g in self.groups.values()}
            groups = {
                gid: RoutedGroup(spec, pool.lanes(spec.master), pool.per_protocol)
                for gid, spec in slotmap.groups.items()
            }
            if wait_connect:
                await asyncio.gather(*(
                    c.wait_up(wait_connect) for g in groups.values() for c in g.lanes))
            by_slot: list[RoutedGroup | None] = [groups.get(gid) if gid else None
                                                 for gid in slotmap.owner]
            transit: dict[int, TransitSlot] = {}
            for start, end, src, dst, state in slotmap.transit:
                for s in range(start, end + 1):
                    transit[s] = TransitSlot(s, state, groups[src], groups[dst])
                    by_slot[s] = None  # the hot path falls through to forward() for these
            route_ids: list[object] = [g.master if g is not None else None for g in by_slot]
            for s, ts in transit.items():
                route_ids[s] = (ts.state, ts.src.master, ts.dst.master)
            gen, old_ids = self.slot_gen, self._route_ids
            for s in range(self.nslots):
                if route_ids[s] != old_ids[s]:
                    gen[s] += 1
            self._route_ids = route_ids
            counts = dict.fromkeys(groups, 0)
            for g in by_slot:
                if g is not None:
                    counts[g.gid] += 1
            self.by_slot = by_slot
            self.groups = groups
            self.slot_count = counts
            self.slotmap = slotmap
            self.transit.install(transit, slotmap.fenced)
            demoted = self._fence_demoted(old_masters, groups)
            self._notify(self._on_swap)
            log.info("slot map epoch %d applied: %d groups, %d slots in transit, %d fenced keys",
                     slotmap.epoch, len(groups), len(transit), len(slotmap.fenced))
            # Acknowledge only once every request dispatched under the previous map is
            # answered, so no proxy still writes a slot where the new map says it is not.
            await pool.drain()
            self.transit.release_held(self.forward)
            self._notify(self._on_drained)
            for addr in demoted:
                pool.end_watches(addr)
            live = {g.master for g in groups.values()}
            replicas = {r for g in groups.values() for r in g.replicas}
            self.reads.forget_except(replicas - live)
            # A replica's lanes (reads) stay open while a map lists it.
            pool.retire_unused(live | replicas)

    def _fence_demoted(self, old: dict[int, str], groups: dict[int, RoutedGroup]) -> set[str]:
        """Addresses that were a master under the previous map and are none under the new one
        (failover, promotion, a group removed): nothing queued for them is ever written."""
        masters = {g.master for g in groups.values()}
        demoted = set(old.values()) - masters
        for gid, addr in old.items():
            g = groups.get(gid)
            if addr not in demoted:
                continue
            new = g.master if g is not None else "nowhere (group removed)"
            n = self.pool.fence(addr, repointed(gid, addr, new))
            if g is not None:
                self.repoints = [*self.repoints[-15:], (gid, addr, new)]
                log.warning("group %d re-pointed from %s to %s%s", gid, addr, new,
                            f": {n} queued requests answered TRYAGAIN" if n else "")
        return demoted

    def on_swap(self, listener: Callable[[], None]) -> None:
        """Call `listener` at every swap, as soon as the new map is in force."""
        self._on_swap.append(listener)

    def on_drained(self, listener: Callable[[], None]) -> None:
        """Call `listener` after every swap, once requests sent under the old map are in."""
        self._on_drained.append(listener)

    @staticmethod
    def _notify(listeners: list[Callable[[], None]]) -> None:
        for listener in listeners:
            try:
                listener()
            except Exception:  # a listener's bug must not fail the map push
                log.exception("slot map swap listener failed")

    def forward(self, owner: Owner, lane: int, slot: int, keys: list[bytes], packed: bytes,
                waiter: Waiter) -> None:
        """Send a request whose keys are all in `slot`, whatever state the slot is in."""
        g = self.by_slot[slot]
        if g is not None:
            g.lanes[lane].send(packed, waiter)
        else:
            self.transit.forward(owner, lane, slot, keys, packed, waiter,
                                 asyncio.get_running_loop().time())

    def call(self, owner: Owner, lane: int, slot: int, keys: list[bytes], waiter: Waiter,
             run: Callable[[RoutedGroup], None]) -> None:
        """Run `run(group)` on the group that serves `slot` now (a transaction's EXEC, a
        WATCH): its owner; for a migrating slot the target, once `keys` are pulled from the
        source; held while the slot is locked, then routed again under the next map. `waiter`
        gets the error if it cannot run (-TRYAGAIN, -CLUSTERDOWN)."""
        g = self.by_slot[slot]
        if g is not None:
            run(g)
            return
        self.transit.call(owner, lane, slot, keys, waiter, run,
                          lambda: self.call(owner, lane, slot, keys, waiter, run),
                          asyncio.get_running_loop().time())

    def any_group(self) -> RoutedGroup | None:
        """A group to send keyless-but-routable commands to (EVAL with 0 keys): slot 0's owner,
        else the first assigned group that is up."""
        g = self.by_slot[0]
        if g is not None and g.up:
            return g
        for g in self.groups.values():
            if g.up:
                return g
        return g or next(iter(self.groups.values()), None)
