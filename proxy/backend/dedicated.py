"""Dedicated backend connections: one client's own connection while it blocks.

Shared connections (`backend.conn.BackendConn` via `backend.pool`) are request/reply only: a
reply that takes longer than `backend.request_timeout` drops the connection for every client on
it. A blocking command (BLPOP ... XREAD BLOCK, WAIT) therefore runs on a connection of its own,
leased from this pool, bounded per backend address (`backend.max_dedicated`), with no stall
detection and no reconnect: if it breaks, the one command on it gets an error reply, exactly as
a client whose own connection to Redis broke.

After a normal reply the connection is clean (nothing in flight, same protocol, same db) and
goes back to an idle list for the next lease; a connection whose owner went away while it was
blocked is closed, so the backend stops holding the pop for nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from slotcore.addr import split_addr
from slotcore.resp import pack_command

from ..config import BackendConfig
from ..errors import backend_error
from ..observe.stats import ProxyStats
from .conn import CLOSED, CONNECTING, UP, BackendConn, Flusher

log = logging.getLogger("slotproxy.dedicated")

_CLIENT_ID = pack_command(b"CLIENT", b"ID")


class _IdWaiter:
    """Reads the reply to CLIENT ID, sent on connect ahead of everything queued."""

    __slots__ = ("conn",)

    def __init__(self, conn: DedicatedConn) -> None:
        self.conn = conn

    def resolve(self, raw: bytes) -> None:
        conn = self.conn
        if raw[:1] == b":":
            with contextlib.suppress(ValueError):
                conn.backend_id = int(raw[1:].strip())
        hook, conn.on_id = conn.on_id, None
        if hook is not None:
            hook()


class DedicatedConn(BackendConn):
    """One client's own connection: no stall detection, no reconnect."""

    def __init__(self, host: str, port: int, flusher: Flusher, **kw: object) -> None:
        kw["request_timeout"] = 0.0  # never "stalled": blocking is what it is for
        super().__init__(host, port, flusher, **kw)  # type: ignore[arg-type]
        # The backend's CLIENT ID of this connection (asked once on connect; CLIENT UNBLOCK
        # needs it). None until the reply to CLIENT ID is in.
        self.backend_id: int | None = None
        # Called once backend_id is known (or the connection failed before it was).
        self.on_id: Callable[[], None] | None = None

    def start(self) -> None:
        if self._task is None and self.state != CLOSED:
            self.state = CONNECTING
            self._task = asyncio.get_running_loop().create_task(self._connect_once())

    async def _connect_once(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.create_connection(lambda: self, self.host, self.port),
                                   self._connect_timeout)
            if self.state != UP:
                raise OSError("connection dropped during set-up")
        except (OSError, TimeoutError) as e:
            self.last_error = f"connect: {e}" if str(e) else "connect: timed out"
            self.state = CLOSED
            self.out.clear()
            self._fail_all(self.unavailable)
            self._id_known()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # CLIENT ID first (after AUTH/SELECT/HELLO, which the base class puts in front), so
        # its reply does not wait behind a blocked command.
        self.fifo.appendleft(_IdWaiter(self))
        self.out.insert(0, _CLIENT_ID)
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = CLOSED  # no reconnect: the command on it gets the error below
        super().connection_lost(exc)
        self._id_known()

    def _id_known(self) -> None:
        hook, self.on_id = self.on_id, None
        if hook is not None:
            hook()

    def discard(self) -> None:
        """Close now (the owner went away, or the connection is not clean)."""
        self.state = CLOSED
        self.out.clear()
        if self.transport is not None:
            self.transport.abort()  # the backend frees its blocked client at once
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._fail_all(backend_error(self.addr, "closed"))

    def check_stall(self, now: float) -> None:
        return  # blocking for as long as the command says is the point


class DedicatedPool:
    """Dedicated connections per backend address: at most `max_per_addr` open (leased or idle)
    per address; over the bound `lease` returns None and the caller answers an error."""

    def __init__(self, cfg: BackendConfig, flusher: Flusher, stats: ProxyStats,
                 max_per_addr: int) -> None:
        self.cfg = cfg
        self.flusher = flusher
        self.stats = stats
        self.max_per_addr = max_per_addr
        self._idle: dict[tuple[str, int], list[DedicatedConn]] = {}
        self._leased: dict[str, int] = {}
        self._conns: set[DedicatedConn] = set()  # every open one, for close()
        self.refused = 0  # leases refused over the bound (INFO)

    def lease(self, addr: str, proto: int) -> DedicatedConn | None:
        """A connection of protocol `proto` to `addr`, or None over the bound."""
        leased = self._leased.get(addr, 0)
        if leased >= self.max_per_addr:
            self.refused += 1
            return None
        idle = self._idle.get((addr, proto))
        while idle:
            conn = idle.pop()
            if conn.state == UP and not conn.fifo:
                self._leased[addr] = leased + 1
                return conn
            self._drop(conn)
        # A new socket: keep open ≤ max_per_addr by closing an idle one of the other protocol.
        if leased + self._idle_count(addr) >= self.max_per_addr:
            other = self._idle.get((addr, 5 - proto))
            if other:
                self._drop(other.pop())
        host, port = split_addr(addr)
        c = self.cfg
        conn = DedicatedConn(host, port, self.flusher, password=c.password, username=c.username,
                             db=c.db, proto=proto, connect_timeout=c.connect_timeout,
                             counters=self.stats.backend(addr))
        self._conns.add(conn)
        conn.start()
        self._leased[addr] = leased + 1
        return conn

    def release(self, conn: DedicatedConn, reusable: bool) -> None:
        """Back to an idle list (clean, up) or closed."""
        addr = conn.addr
        self._leased[addr] = max(0, self._leased.get(addr, 0) - 1)
        conn.on_id = None
        if reusable and conn.state == UP and not conn.fifo and not conn.out:
            self._idle.setdefault((addr, conn.proto), []).append(conn)
        else:
            self._drop(conn)

    def leased(self, addr: str) -> int:
        return self._leased.get(addr, 0)

    def total_leased(self) -> int:
        return sum(self._leased.values())

    def retire_idle(self, live: set[str]) -> None:
        """Close idle connections to addresses no group uses any more (after a map swap)."""
        for key in [k for k in self._idle if k[0] not in live]:
            for conn in self._idle.pop(key):
                self._drop(conn)

    def _idle_count(self, addr: str) -> int:
        return sum(len(v) for (a, _), v in self._idle.items() if a == addr)

    def _drop(self, conn: DedicatedConn) -> None:
        self._conns.discard(conn)
        conn.discard()

    async def close(self) -> None:
        conns = list(self._conns)
        self._conns.clear()
        self._idle.clear()
        for conn in conns:
            conn.discard()
        await asyncio.sleep(0)
