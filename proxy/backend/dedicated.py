"""Dedicated backend connections: one client at a time, never shared (WATCH, blocking commands).

Shared lanes (`backend.pool`) carry request/reply traffic of many clients, so they must never
hold per-client server state nor wait on a reply for long: a reply older than
`backend.request_timeout` drops a lane for every client on it. Whatever does either takes a
connection of its own from this pool:

* **WATCH** (`handlers.transaction`): the watched keys live on the connection until UNWATCH.
* **Blocking commands** (`proxy.blocking`: BLPOP ... XREAD BLOCK, WAIT): a reply may take as long
  as the command's timeout, or forever.

One pool, one connection class, one idle list per (address, protocol); what differs per use is
a `LeaseKind`, passed to `lease`:

* its bound: at most `limit` connections per address in use for that kind (`backend.max_leased`
  for WATCH, `backend.max_dedicated` for blocking); over it `lease` returns None and the caller
  answers a clear error, so the proxy never opens an unbounded number of sockets. A connection
  counts as in use from `lease` until it is back in the idle list or closed (a WATCH one still
  being cleaned with UNWATCH counts). Idle connections are shared by both kinds; the sockets
  open to one address stay within the sum of the bounds (an idle one is closed to make room).
* `drained`: whether requests on it take part in `BackendPool.drain()`. A watched EXEC in
  flight must delay the map swap's acknowledgement like any shared-lane request; a blocked call
  must not, since it may wait forever.
* `backend_id`: ask `CLIENT ID` (once per connection, ahead of the first command) because
  `CLIENT UNBLOCK` needs the backend's id of the connection.

A dedicated connection is initialised like a shared one (AUTH, SELECT, HELLO 3), is not subject
to stall detection (it is not a lane), and never reconnects: a lost connection has lost its
server state (the WATCH, the blocked pop), so what is pending on it fails and it is closed for
good. `release(conn, clean)` gives it back: `clean` is the command that resets its per-client
state (UNWATCH; on +OK it is reused), b"" when there is none (reused at once if nothing is in
flight), None to close it (e.g. a blocked call whose owner went away: the backend then stops
holding the pop for nobody).
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
from .conn import CLOSED, CONNECTING, DOWN, UP, BackendConn, Flusher

log = logging.getLogger("slotproxy.dedicated")

_PING = pack_command(b"PING")
_CLIENT_ID = pack_command(b"CLIENT", b"ID")


class LeaseKind:
    """What a lease is for: its per-address bound, its options, and its counters (INFO)."""

    __slots__ = ("backend_id", "drained", "in_use", "leased", "limit", "refused", "setting")

    def __init__(self, setting: str, limit: int, *, drained: bool, backend_id: bool) -> None:
        self.setting = setting  # the config key of the bound (for messages)
        self.limit = limit
        self.drained = drained
        self.backend_id = backend_id
        self.in_use: dict[str, int] = {}  # per address: leased + being cleaned
        self.leased = 0  # held by clients now, over every address
        self.refused = 0  # leases refused over the bound


class _IdWaiter:
    """Reads the reply to CLIENT ID."""

    __slots__ = ("conn",)

    def __init__(self, conn: DedicatedConn) -> None:
        self.conn = conn

    def resolve(self, raw: bytes) -> None:
        conn = self.conn
        if raw[:1] == b":":
            with contextlib.suppress(ValueError):
                conn.backend_id = int(raw[1:].strip())
        conn._id_known()


class _Cleaned:
    """Waiter for the clean-up command of a returned connection."""

    __slots__ = ("conn",)

    def __init__(self, conn: DedicatedConn) -> None:
        self.conn = conn

    def resolve(self, raw: bytes) -> None:
        self.conn.pool._cleaned(self.conn, raw)


class DedicatedConn(BackendConn):
    """One client's own connection: connects once, no stall detection, no reconnect."""

    def __init__(self, host: str, port: int, flusher: Flusher, *, pool: DedicatedPool,
                 **kw: object) -> None:
        kw["request_timeout"] = 0.0  # never "stalled": waiting is what it is for
        super().__init__(host, port, flusher, **kw)  # type: ignore[arg-type]
        self.pool = pool
        self.kind: LeaseKind | None = None  # of the current (or last) lease
        self.leased = False  # held by a client
        self.counted = False  # counts against kind.in_use[addr]
        # The backend's CLIENT ID of this connection (CLIENT UNBLOCK needs it): None until
        # the reply to CLIENT ID is in, or if no lease asked for it.
        self.backend_id: int | None = None
        self.id_asked = False
        # Called once backend_id is known (or the connection failed before it was).
        self.on_id: Callable[[], None] | None = None
        # The socket failed (refused, or dropped by the server): set before what was pending on
        # it is answered with the connection error, so a blocked call can tell "the server
        # went away" from an error reply of the server.
        self.lost = False

    def start(self) -> None:
        if self._task is None and self.state != CLOSED:
            self.state = CONNECTING  # requests queue until it is up
            self._task = asyncio.get_running_loop().create_task(self._connect_once())

    async def _connect_once(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):  # not wait_for: see conn.py
                await loop.create_connection(lambda: self, self.host, self.port)
            if self.state != UP:
                raise OSError("connection dropped during set-up")
        except (OSError, TimeoutError) as e:
            self.last_error = f"connect: {e}" if str(e) else "connect: timed out"
            self.state = CLOSED
            self.lost = True
            self.out.clear()
            self._fail_all(self.unavailable)
            self._id_known()
            self.pool._gone(self)

    def connection_lost(self, exc: Exception | None) -> None:
        """Called by the loop: the server state (WATCH, a blocked pop) is gone with the socket;
        the command pending on it gets the error reply."""
        if self.state != CLOSED:  # not our own abort()
            self.lost = True
        self.state = CLOSED
        super().connection_lost(exc)
        self._id_known()
        self.pool._gone(self)

    def ask_id(self) -> None:
        """Send CLIENT ID, ahead of whatever the lessee sends next (on a new connection AUTH,
        SELECT and HELLO still go in front of it, on connect)."""
        if not self.id_asked:
            self.id_asked = True
            self.send(_CLIENT_ID, _IdWaiter(self))

    def _id_known(self) -> None:
        hook, self.on_id = self.on_id, None
        if hook is not None:
            hook()

    def abort(self) -> None:
        """Close now; the backend frees whatever it held for this connection at once."""
        self.state = CLOSED
        self.out.clear()
        if self.transport is not None:
            self.transport.abort()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._fail_all(backend_error(self.addr, "closed"))

    def check_stall(self, now: float) -> None:
        return  # a dedicated connection may wait as long as its command says

    @property
    def broken(self) -> bool:
        return self.state in (CLOSED, DOWN)

    @property
    def idle_ready(self) -> bool:
        """Up with nothing in flight: fit for the next lease."""
        return self.state == UP and not self.fifo and not self.out


class DedicatedPool:
    """Dedicated connections per backend address, bounded per `LeaseKind`, idle ones reused."""

    def __init__(self, cfg: BackendConfig, flusher: Flusher, stats: ProxyStats) -> None:
        self.cfg = cfg
        self.flusher = flusher
        self.stats = stats
        self.watch = LeaseKind("backend.max_leased", cfg.max_leased,
                               drained=True, backend_id=False)
        self.blocking = LeaseKind("backend.max_dedicated", cfg.max_dedicated,
                                  drained=False, backend_id=True)
        # Open sockets per address stay within the sum of the bounds (idle ones are closed).
        self.max_open = cfg.max_leased + cfg.max_dedicated
        self.idle: dict[tuple[str, int], list[DedicatedConn]] = {}
        self.count: dict[str, int] = {}  # open sockets per address: in use + idle
        self.conns: set[DedicatedConn] = set()

    def lease(self, addr: str, proto: int, kind: LeaseKind) -> DedicatedConn | None:
        """A connection to `addr` speaking `proto` for one client, or None when `kind` is at
        its bound for `addr`."""
        in_use = kind.in_use.get(addr, 0)
        if in_use >= kind.limit:
            kind.refused += 1
            return None
        conn: DedicatedConn | None = None
        idle = self.idle.get((addr, proto))
        while idle:
            c = idle.pop()
            if c.idle_ready:
                conn = c
                break
            self._close(c)
        if conn is None:
            conn = self._open(addr, proto)
        kind.in_use[addr] = in_use + 1
        kind.leased += 1
        conn.kind = kind
        conn.leased = True
        conn.counted = True
        if kind.backend_id:
            conn.ask_id()
        return conn

    def release(self, conn: DedicatedConn, clean: bytes | None) -> None:
        """Give `conn` back: `clean` (e.g. UNWATCH) is sent and on +OK it is kept for reuse;
        b"": nothing to reset, kept if nothing is in flight; None: closed."""
        kind = conn.kind
        if not conn.leased or kind is None:
            return
        conn.leased = False
        conn.on_id = None
        kind.leased -= 1
        if clean is None or conn.broken:
            self._close(conn)
        elif clean:
            conn.send(clean, _Cleaned(conn))
        else:
            self._cleaned(conn, b"+")

    def in_use(self, addr: str, kind: LeaseKind) -> int:
        return kind.in_use.get(addr, 0)

    def retire_idle(self, live: set[str]) -> None:
        """Close idle connections to addresses no group uses any more (after a map swap)."""
        for key in [k for k in self.idle if k[0] not in live]:
            for conn in self.idle.pop(key):
                self._close(conn)

    def close_leased(self, addr: str, kind: LeaseKind) -> int:
        """Close the connections of `kind` leased to `addr` (its lessees see them broken)."""
        doomed = [c for c in self.conns if c.leased and c.kind is kind and c.addr == addr]
        for conn in doomed:
            conn.abort()
        return len(doomed)

    # ------------------------------------------------------------------ internals
    def _open(self, addr: str, proto: int) -> DedicatedConn:
        if self.count.get(addr, 0) >= self.max_open:
            # Room for a new socket: the idle ones left are of the other protocol.
            for (a, _), conns in self.idle.items():
                if a == addr and conns:
                    self._close(conns.pop())
                    break
        host, port = split_addr(addr)
        c = self.cfg
        conn = DedicatedConn(
            host, port, self.flusher, pool=self,
            password=c.password, username=c.username, db=c.db, proto=proto,
            connect_timeout=c.connect_timeout, counters=self.stats.backend(addr),
        )
        self.count[addr] = self.count.get(addr, 0) + 1
        self.conns.add(conn)
        conn.start()
        return conn

    def _uncount(self, conn: DedicatedConn) -> None:
        kind = conn.kind
        if conn.counted and kind is not None:
            conn.counted = False
            kind.in_use[conn.addr] = kind.in_use.get(conn.addr, 1) - 1

    def _cleaned(self, conn: DedicatedConn, raw: bytes) -> None:
        if raw[:1] == b"+" and conn.idle_ready and not conn.leased and conn in self.conns:
            self._uncount(conn)
            self.idle.setdefault((conn.addr, conn.proto), []).append(conn)
        else:
            self._close(conn)

    def _close(self, conn: DedicatedConn) -> None:
        if conn.state != CLOSED:
            conn.abort()
        self._gone(conn)

    def _gone(self, conn: DedicatedConn) -> None:
        if conn in self.conns:
            self.conns.discard(conn)
            self.count[conn.addr] = self.count.get(conn.addr, 1) - 1
            self._uncount(conn)
            idle = self.idle.get((conn.addr, conn.proto))
            if idle and conn in idle:
                idle.remove(conn)

    async def drain(self, timeout: float) -> None:
        """Wait until every request sent on a leased `drained` connection before now is
        answered (the router's map swap acknowledges only then, as for the shared lanes)."""
        conns = [c for c in self.conns
                 if c.leased and c.kind is not None and c.kind.drained and c.up and c.fifo]
        if conns:
            await asyncio.gather(*(c.probe(_PING, timeout) for c in conns),
                                 return_exceptions=True)

    async def close(self) -> None:
        conns = list(self.conns)
        self.conns.clear()
        self.idle.clear()
        self.count.clear()
        for conn in conns:
            conn.abort()
        await asyncio.sleep(0)
