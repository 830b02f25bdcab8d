"""Slot → group → backend connection, and atomic swaps of the slot map.

The router is the only place that knows both the slot map and the backend connections. The data
path reads `router.route[slot]` (a list indexed by slot holding a `Group` or None); a new slot
map builds a whole new list and swaps the reference, so a request sees either the old map or the
new one, never a mix.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Any

from slotcore.resp import pack_command
from slotcore.slotmap import LOCKED, GroupSpec, SlotMap

from .backend import BackendConn, Flusher, Waiter
from .config import BackendConfig, MigrationConfig
from .errors import CLUSTERDOWN
from .transit import Held, PullThenForward, TransitSlot, migrate_command, tryagain

log = logging.getLogger("slotproxy.router")


class Group:
    """A backend group as routed to: its master's connections.

    `conns` holds `n` RESP2 connections, followed by `n` RESP3 ones once any client has said
    HELLO 3. A session indexes it with its own `cidx` (fixed per client), so a client always
    uses the same connection of a group and its pipelined commands to that group execute in
    the order it sent them.
    """

    __slots__ = ("conns", "gid", "master", "n", "spec")

    def __init__(self, spec: GroupSpec, conns: list[BackendConn]) -> None:
        self.gid = spec.gid
        self.master = spec.master
        self.spec = spec
        self.conns = conns
        self.n = sum(1 for c in conns if c.proto == 2)

    @property
    def up(self) -> bool:
        return any(c.up for c in self.conns[: self.n])


_PING = pack_command(b"PING")


class Router:
    def __init__(self, backend_cfg: BackendConfig, flusher: Flusher, nslots: int,
                 migration: MigrationConfig | None = None) -> None:
        self.backend_cfg = backend_cfg
        self.migration = migration or MigrationConfig()
        self.flusher = flusher
        self.nslots = nslots
        self.mask = nslots - 1
        self.route: list[Group | None] = [None] * nslots
        self.groups: dict[int, Group] = {}
        self.slotmap: SlotMap | None = None
        # Slots in transit (their `route` entry is None), fenced keys, and held requests.
        self.transit: dict[int, TransitSlot] = {}
        self.fenced: frozenset[bytes] = frozenset()
        self.held: deque[Held] = deque()
        self._migrate_timeout = str(int(self.migration.migrate_timeout * 1000)).encode()
        # Fencing: with a dashboard, slots in transit are served only while the dashboard was
        # heard from within fence_timeout (see touch_contact).
        self.fence_enabled = False
        self.last_contact = 0.0
        self.fenced_out = False
        # Ops per slot since start, for load-aware rebalancing (one list increment per request).
        self.slot_ops: list[int] = [0] * nslots
        self._conns: dict[str, list[BackendConn]] = {}
        self.resp3 = False
        self._lock = asyncio.Lock()
        self._health_task: asyncio.Task[None] | None = None

    @property
    def epoch(self) -> int:
        return self.slotmap.epoch if self.slotmap else 0

    @property
    def online(self) -> bool:
        return self.slotmap is not None

    def _new_conns(self, addr: str, proto: int) -> list[BackendConn]:
        host, _, port = addr.rpartition(":")
        c = self.backend_cfg
        conns = [
            BackendConn(
                host, int(port), self.flusher,
                password=c.password, username=c.username, db=c.db, proto=proto,
                connect_timeout=c.connect_timeout, request_timeout=c.request_timeout,
                reconnect_min=c.reconnect_min, reconnect_max=c.reconnect_max,
            )
            for _ in range(c.connections)
        ]
        for conn in conns:
            conn.start()
        return conns

    def _connections(self, addr: str) -> list[BackendConn]:
        conns = self._conns.get(addr)
        if conns is None:
            conns = self._new_conns(addr, 2)
            if self.resp3:
                conns += self._new_conns(addr, 3)
            self._conns[addr] = conns
        return conns

    def enable_resp3(self) -> None:
        """Open RESP3 connections to every group (the first HELLO 3 calls this).

        The lists are extended in place, so Group objects already in the route see them at
        once; new connections queue requests until they are up.
        """
        if self.resp3:
            return
        self.resp3 = True
        for addr, conns in self._conns.items():
            conns += self._new_conns(addr, 3)

    async def apply(self, slotmap: SlotMap, wait_connect: float = 0.0) -> None:
        """Switch to `slotmap` atomically. Raises ValueError for a stale epoch or slot count."""
        async with self._lock:
            if slotmap.nslots != self.nslots:
                raise ValueError(
                    f"slot map has {slotmap.nslots} slots, this proxy uses {self.nslots}")
            if self.slotmap is not None and slotmap.epoch < self.slotmap.epoch:
                raise ValueError(
                    f"stale epoch {slotmap.epoch}: proxy is at epoch {self.slotmap.epoch}")
            groups = {
                gid: Group(spec, self._connections(spec.master))
                for gid, spec in slotmap.groups.items()
            }
            if wait_connect:
                await asyncio.gather(*(
                    c.wait_up(wait_connect) for g in groups.values() for c in g.conns))
            route: list[Group | None] = [groups.get(gid) if gid else None
                                         for gid in slotmap.owner]
            transit: dict[int, TransitSlot] = {}
            for start, end, src, dst, state in slotmap.transit:
                for s in range(start, end + 1):
                    transit[s] = TransitSlot(s, state, groups[src], groups[dst])
                    route[s] = None  # the hot path falls through to forward() for these
            old_groups = self.groups
            self.route = route
            self.transit = transit
            self.fenced = slotmap.fenced
            self.groups = groups
            self.slotmap = slotmap
            self.touch_contact()
            log.info("slot map epoch %d applied: %d groups, %d slots in transit, %d fenced keys",
                     slotmap.epoch, len(groups), len(transit), len(slotmap.fenced))
            # Acknowledge only once every request dispatched under the previous map is
            # answered, so no proxy still writes a slot where the new map says it is not.
            await self.drain()
            self.release_held()
            # Connections no group uses any more are closed once their in-flight requests are
            # answered (FIFO: a reply to a PING queued now comes after every earlier reply).
            live = {g.master for g in groups.values()}
            for g in old_groups.values():
                if g.master not in live and g.master in self._conns:
                    conns = self._conns.pop(g.master)
                    asyncio.get_running_loop().create_task(self._retire(conns))

    async def drain(self) -> None:
        """Wait until every request sent before now has its reply.

        Backend connections answer in order, so a PING queued now is answered after every
        request queued before it. Two rounds, because a request in a migrating slot travels in
        two hops (MIGRATE on the source, then the command on the target): the second hop is
        queued when the first is answered, i.e. before the first round completes.
        """
        timeout = max(self.backend_cfg.request_timeout, 1.0)
        for _ in range(2):
            conns = [c for c in self.all_conns() if c.up]
            await asyncio.gather(*(c.probe(_PING, timeout) for c in conns),
                                 return_exceptions=True)

    async def _retire(self, conns: list[BackendConn]) -> None:
        for conn in conns:
            if conn.up:
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await conn.probe(_PING, 5.0)
            await conn.close()

    # ------------------------------------------------------------------ transit slots
    def forward(self, session: Any, cidx: int, slot: int, keys: list[bytes], packed: bytes,
                waiter: Waiter) -> None:
        """Send a request whose keys are all in `slot`, whatever state the slot is in."""
        g = self.route[slot]
        if g is not None:
            g.conns[cidx].send(packed, waiter)
            return
        ts = self.transit.get(slot)
        if ts is None:
            waiter.resolve(CLUSTERDOWN)
            return
        if self.fenced_out:
            waiter.resolve(tryagain(slot, "this proxy lost contact with the dashboard"))
            return
        if ts.state == LOCKED or (self.fenced and not self.fenced.isdisjoint(keys)):
            self.held.append(Held(session, cidx, slot, keys, packed, waiter,
                                  asyncio.get_running_loop().time()))
            return
        src = ts.src.conns[cidx % ts.src.n]  # RESP2: we read MIGRATE's reply ourselves
        src.send(migrate_command(ts, keys, self._migrate_timeout),
                 PullThenForward(ts.dst.conns[cidx], packed, waiter, slot))

    def release_held(self) -> None:
        """Re-route held requests under the current map (they may be held again)."""
        held, self.held = self.held, deque()
        for h in held:
            if getattr(h.session, "closed", False):
                continue  # nobody is waiting for it
            self.forward(h.session, h.cidx, h.slot, h.keys, h.packed, h.waiter)

    def expire_held(self, now: float) -> None:
        limit = self.migration.lock_timeout
        while self.held and (self.fenced_out or now - self.held[0].since > limit):
            h = self.held.popleft()
            why = "lost contact with the dashboard" if self.fenced_out else "locked too long"
            h.waiter.resolve(tryagain(h.slot, why))

    def touch_contact(self) -> None:
        """The dashboard was heard from (a push or a heartbeat reply)."""
        self.last_contact = time.monotonic()
        if self.fenced_out:
            log.info("dashboard contact restored: serving slots in transit again")
        self.fenced_out = False

    def check_fence(self, now: float) -> None:
        if (self.fence_enabled and self.transit and not self.fenced_out
                and now - self.last_contact > self.migration.fence_timeout):
            self.fenced_out = True
            log.error("no contact with the dashboard for %.0fs: refusing the %d slots in "
                      "transit until it returns", now - self.last_contact, len(self.transit))

    def all_conns(self) -> list[BackendConn]:
        return [c for conns in self._conns.values() for c in conns]

    def start_health(self) -> None:
        if self._health_task is None:
            self._health_task = asyncio.get_running_loop().create_task(self._health_loop())

    async def _health_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            for conn in self.all_conns():
                conn.check_stall(now)
            self.check_fence(now)
            if self.held:
                self.expire_held(loop.time())

    async def close(self) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
            self._health_task = None
        conns = self.all_conns()
        self._conns.clear()
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)

    def any_group(self) -> Group | None:
        """A group to send keyless-but-routable commands to (EVAL with 0 keys): slot 0's owner,
        else the first assigned group that is up."""
        g = self.route[0]
        if g is not None and g.up:
            return g
        for g in self.groups.values():
            if g.up:
                return g
        return g or next(iter(self.groups.values()), None)

    def client_index(self, client_id: int, proto: int) -> int:
        """Index into Group.conns for a client: spread clients over the connections."""
        n = self.backend_cfg.connections
        return client_id % n + (n if proto == 3 else 0)
