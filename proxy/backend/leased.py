"""Dedicated backend connections: one client at a time, never shared.

Shared lanes (`backend.pool`) carry request/reply traffic of many clients, so they must never
hold per-client server state. Anything that does — WATCH today, blocking commands and Pub/Sub
later — takes a *leased* connection:

* `lease(addr, proto)` gives a connection to `addr` speaking `proto` that no other client uses
  until it is returned; at most `backend.max_leased` sockets per address exist (leased, idle or
  being cleaned), and over the bound `lease` returns None (the caller answers a clear error; the
  proxy never opens an unbounded number of sockets).
* A leased connection is initialised like a shared one (AUTH, SELECT, HELLO 3), is not subject to
  the shared lanes' stall detection (it is not in the pool's lanes), and never reconnects: a
  lost connection has lost its server state, so it fails what is pending and is closed for good.
* `release(conn, clean)` sends `clean` (e.g. UNWATCH) and keeps the connection for reuse once the
  reply is +OK; anything else, or a lost connection, closes it. `discard(conn)` closes at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from slotcore.addr import split_addr
from slotcore.resp import pack_command

from ..config import BackendConfig
from ..observe.stats import ProxyStats
from .conn import CLOSED, CONNECTING, DOWN, BackendConn, Flusher

log = logging.getLogger("slotproxy.leased")

_PING = pack_command(b"PING")


class LeasedConn(BackendConn):
    """A BackendConn that connects once and is closed (not reconnected) when lost."""

    def __init__(self, *args: Any, pool: LeasedPool, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.pool = pool
        self.leased = False
        self.on_lost: Callable[[], None] | None = None

    async def _connect_loop(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.create_connection(lambda: self, self.host, self.port),
                                   self._connect_timeout)
        except (OSError, TimeoutError) as e:
            self.last_error = f"connect: {e}" if str(e) else "connect: timed out"
            self.state = CLOSED
            self.out.clear()
            self._fail_all(self.unavailable)
            self.pool._gone(self)

    def connection_lost(self, exc: Exception | None) -> None:
        """Called by the loop: the server state (WATCH ...) is gone with the socket."""
        self.state = CLOSED
        super().connection_lost(exc)
        self.pool._gone(self)
        cb, self.on_lost = self.on_lost, None
        if cb is not None:
            cb()

    def check_stall(self, now: float) -> None:  # never: a leased connection may wait forever
        return

    @property
    def broken(self) -> bool:
        return self.state in (CLOSED, DOWN)


class _Cleaned:
    """Waiter for the clean-up command of a returned connection."""

    __slots__ = ("conn",)

    def __init__(self, conn: LeasedConn) -> None:
        self.conn = conn

    def resolve(self, raw: bytes) -> None:
        self.conn.pool._cleaned(self.conn, raw)


class LeasedPool:
    def __init__(self, cfg: BackendConfig, flusher: Flusher, stats: ProxyStats) -> None:
        self.cfg = cfg
        self.flusher = flusher
        self.stats = stats
        self.max_per_addr = cfg.max_leased
        self.idle: dict[tuple[str, int], list[LeasedConn]] = {}
        self.count: dict[str, int] = {}  # sockets per address: leased + idle + being cleaned
        self.conns: set[LeasedConn] = set()

    def lease(self, addr: str, proto: int) -> LeasedConn | None:
        """A connection to `addr` for one client, or None when `addr` is at its bound."""
        idle = self.idle.get((addr, proto))
        while idle:
            conn = idle.pop()
            if not conn.broken:
                conn.leased = True
                self.stats.leased += 1
                return conn
        n = self.count.get(addr, 0)
        if n >= self.max_per_addr:
            self.stats.lease_refused += 1
            return None
        host, port = split_addr(addr)
        c = self.cfg
        conn = LeasedConn(
            host, port, self.flusher, pool=self,
            password=c.password, username=c.username, db=c.db, proto=proto,
            connect_timeout=c.connect_timeout, request_timeout=0,
            counters=self.stats.backend(addr),
        )
        self.count[addr] = n + 1
        self.conns.add(conn)
        conn.state = CONNECTING  # requests queue until it is up
        conn.leased = True
        self.stats.leased += 1
        conn.start()
        return conn

    def release(self, conn: LeasedConn, clean: bytes = b"") -> None:
        """Give `conn` back: `clean` (e.g. UNWATCH) is sent, and on +OK it is kept for reuse."""
        if not conn.leased:
            return
        conn.leased = False
        conn.on_lost = None
        self.stats.leased -= 1
        if conn.broken or not clean:
            self._close(conn)
            return
        conn.send(clean, _Cleaned(conn))

    def discard(self, conn: LeasedConn) -> None:
        if conn.leased:
            conn.leased = False
            conn.on_lost = None
            self.stats.leased -= 1
        self._close(conn)

    def in_use(self, addr: str) -> int:
        return self.count.get(addr, 0)

    # ------------------------------------------------------------------ internals
    def _cleaned(self, conn: LeasedConn, raw: bytes) -> None:
        if raw[:1] == b"+" and not conn.broken and not conn.leased:
            self.idle.setdefault((conn.addr, conn.proto), []).append(conn)
        else:
            self._close(conn)

    def _close(self, conn: LeasedConn) -> None:
        if conn.state != CLOSED:
            conn.state = CLOSED
            if conn.transport is not None:
                conn.transport.close()
        self._gone(conn)

    def _gone(self, conn: LeasedConn) -> None:
        if conn in self.conns:
            self.conns.discard(conn)
            self.count[conn.addr] = self.count.get(conn.addr, 1) - 1
            idle = self.idle.get((conn.addr, conn.proto))
            if idle and conn in idle:
                idle.remove(conn)

    async def drain(self, timeout: float) -> None:
        """Wait until every request sent on a leased connection before now is answered (the
        router's map swap acknowledges only then, as for the shared lanes)."""
        conns = [c for c in self.conns if c.leased and c.up and c.fifo]
        if conns:
            await asyncio.gather(*(c.probe(_PING, timeout) for c in conns),
                                 return_exceptions=True)

    async def close(self) -> None:
        conns = list(self.conns)
        for conn in conns:
            with contextlib.suppress(Exception):
                await conn.close()
        self.conns.clear()
        self.idle.clear()
        self.count.clear()
