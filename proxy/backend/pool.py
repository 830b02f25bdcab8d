"""The backend connections of the process, by address, and the lane arithmetic over them.

Every redis-server address has `n` shared RESP2 connections, followed by `n` RESP3 ones once any
client has said HELLO 3. A *lane* is a plain index into that list: a client is pinned to one
lane (`lane_for`), so all its commands to one group travel on one connection and execute in
the order it sent them. The lane is recomputed only when the client's protocol changes.
"""

from __future__ import annotations

import asyncio
import contextlib

from slotcore.addr import split_addr
from slotcore.resp import pack_command

from ..config import BackendConfig
from ..observe.stats import ProxyStats
from .conn import BackendConn, Flusher, new_backend_conn
from .dedicated import DedicatedPool

_PING = pack_command(b"PING")


class BackendPool:
    def __init__(self, cfg: BackendConfig, flusher: Flusher, stats: ProxyStats) -> None:
        self.cfg = cfg
        self.flusher = flusher
        self.stats = stats
        self.per_protocol = cfg.connections  # lanes per protocol and address
        self.resp3 = False
        self._conns: dict[str, list[BackendConn]] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        # Dedicated connections (WATCH, blocking commands): not lanes, never shared, no stall
        # detection. Owned here because the drain below must cover the WATCH ones.
        self.dedicated = DedicatedPool(cfg, flusher, stats)

    # ------------------------------------------------------------------ lanes
    def lane_for(self, client_id: int, proto: int) -> int:
        """The lane of a client: clients spread over the connections, RESP3 ones after RESP2."""
        n = self.per_protocol
        return client_id % n + (n if proto == 3 else 0)

    def plain_lane(self, lane: int) -> int:
        """The RESP2 lane beside `lane`: for replies the proxy reads itself (merges, MIGRATE)."""
        return lane % self.per_protocol

    # ------------------------------------------------------------------ connections
    def _open(self, addr: str, proto: int) -> list[BackendConn]:
        host, port = split_addr(addr)
        c = self.cfg
        counters = self.stats.backend(addr)
        conns = [
            new_backend_conn(
                host, port, self.flusher,
                password=c.password, username=c.username, db=c.db, proto=proto,
                connect_timeout=c.connect_timeout, request_timeout=c.request_timeout,
                reconnect_min=c.reconnect_min, reconnect_max=c.reconnect_max,
                counters=counters,
            )
            for _ in range(c.connections)
        ]
        for conn in conns:
            conn.start()
        return conns

    def lanes(self, addr: str) -> list[BackendConn]:
        """The lanes of `addr`, opened on first use. The list is shared and only ever grows
        (RESP3 lanes are appended in place), so holders see new lanes at once."""
        conns = self._conns.get(addr)
        if conns is None:
            conns = self._open(addr, 2)
            if self.resp3:
                conns += self._open(addr, 3)
            self._conns[addr] = conns
        return conns

    def enable_resp3(self) -> None:
        """Open RESP3 lanes to every address (the first HELLO 3 calls this); new connections
        queue requests until they are up."""
        if self.resp3:
            return
        self.resp3 = True
        for addr, conns in self._conns.items():
            conns += self._open(addr, 3)

    def retire_unused(self, live: set[str]) -> None:
        """Close the lanes of addresses no group uses any more, once their in-flight requests
        are answered (FIFO: a PING queued now is answered after every earlier request), and
        the idle dedicated connections to them (leased ones go when their lessee is done)."""
        self.dedicated.retire_idle(live)
        loop = asyncio.get_running_loop()
        for addr in [a for a in self._conns if a not in live]:
            task = loop.create_task(self._retire(self._conns.pop(addr)))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    def fence(self, addr: str, raw: bytes) -> int:
        """`addr` is no master any more (failover, promotion): requests queued for its lanes
        while they reconnect are answered `raw` instead of being written once it is back (it
        may come back still believing it is a master). Requests in flight on an up lane are
        left to the drain. Returns how many requests were failed."""
        return sum(c.fail_unsent(raw) for c in self._conns.get(addr, ()))

    def end_watches(self, addr: str) -> int:
        """Close the WATCH connections leased to `addr` (after the drain: no EXEC in flight):
        their EXEC answers nil, the transaction's "retry" (the watch cannot be trusted on a
        server that is no master any more)."""
        return self.dedicated.close_leased(addr, self.dedicated.watch)

    async def _retire(self, conns: list[BackendConn]) -> None:
        for conn in conns:
            if conn.up:
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await conn.probe(_PING, 5.0)
            await conn.close()

    async def drain(self) -> None:
        """Wait until every request sent before now has its reply.

        Backend connections answer in order, so a PING queued now is answered after every
        request queued before it. Two rounds, because a request in a migrating slot travels in
        two hops (MIGRATE on the source, then the command on the target): the second hop is
        queued when the first is answered, i.e. before the first round completes.
        """
        timeout = max(self.cfg.request_timeout, 1.0)
        for _ in range(2):
            conns = [c for c in self.all_conns() if c.up]
            await asyncio.gather(*(c.probe(_PING, timeout) for c in conns),
                                 self.dedicated.drain(timeout), return_exceptions=True)

    def all_conns(self) -> list[BackendConn]:
        return [c for conns in self._conns.values() for c in conns]

    def check_stalls(self, now: float) -> None:
        for conn in self.all_conns():
            conn.check_stall(now)

    async def close(self) -> None:
        retiring = list(self._retiring)
        for task in retiring:
            task.cancel()
        await asyncio.gather(*retiring, return_exceptions=True)
        await self.dedicated.close()
        conns = self.all_conns()
        self._conns.clear()
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
