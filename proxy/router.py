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

from .backend import BackendConn, Flusher
from .config import BackendConfig
from .slots import GroupSpec, SlotMap

log = logging.getLogger("slotproxy.router")


class Group:
    """A backend group as routed to: its master's connections."""

    __slots__ = ("conns", "gid", "master", "n", "spec")

    def __init__(self, spec: GroupSpec, conns: list[BackendConn]) -> None:
        self.gid = spec.gid
        self.master = spec.master
        self.spec = spec
        self.conns = conns
        self.n = len(conns)

    def conn_for(self, cidx: int) -> BackendConn:
        # A client always uses the same connection of a group, so its pipelined commands to
        # that group execute in the order it sent them.
        return self.conns[cidx % self.n]

    @property
    def up(self) -> bool:
        return any(c.up for c in self.conns)


class Router:
    def __init__(self, backend_cfg: BackendConfig, flusher: Flusher, nslots: int) -> None:
        self.backend_cfg = backend_cfg
        self.flusher = flusher
        self.nslots = nslots
        self.mask = nslots - 1
        self.route: list[Group | None] = [None] * nslots
        self.groups: dict[int, Group] = {}
        self.slotmap: SlotMap | None = None
        self._conns: dict[str, list[BackendConn]] = {}
        self._lock = asyncio.Lock()
        self._health_task: asyncio.Task[None] | None = None

    @property
    def epoch(self) -> int:
        return self.slotmap.epoch if self.slotmap else 0

    @property
    def online(self) -> bool:
        return self.slotmap is not None

    def _connections(self, addr: str) -> list[BackendConn]:
        conns = self._conns.get(addr)
        if conns is None:
            host, _, port = addr.rpartition(":")
            c = self.backend_cfg
            conns = [
                BackendConn(
                    host, int(port), self.flusher,
                    password=c.password, username=c.username, db=c.db,
                    connect_timeout=c.connect_timeout, request_timeout=c.request_timeout,
                    reconnect_min=c.reconnect_min, reconnect_max=c.reconnect_max,
                )
                for _ in range(c.connections)
            ]
            for conn in conns:
                conn.start()
            self._conns[addr] = conns
        return conns

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
            old_groups = self.groups
            self.route = route
            self.groups = groups
            self.slotmap = slotmap
            log.info("slot map epoch %d applied: %d groups", slotmap.epoch, len(groups))
            # Connections no group uses any more are closed once their in-flight requests are
            # answered (FIFO: a reply to a PING queued now comes after every earlier reply).
            live = {g.master for g in groups.values()}
            for g in old_groups.values():
                if g.master not in live and g.master in self._conns:
                    conns = self._conns.pop(g.master)
                    asyncio.get_running_loop().create_task(self._retire(conns))

    async def _retire(self, conns: list[BackendConn]) -> None:
        from .resp import pack_command

        for conn in conns:
            if conn.up:
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await conn.probe(pack_command(b"PING"), 5.0)
            await conn.close()

    def all_conns(self) -> list[BackendConn]:
        return [c for conns in self._conns.values() for c in conns]

    def start_health(self) -> None:
        if self._health_task is None:
            self._health_task = asyncio.get_running_loop().create_task(self._health_loop())

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            for conn in self.all_conns():
                conn.check_stall(now)

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
