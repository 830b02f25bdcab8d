"""Backend side of the data path: long-lived pipelined connections to one redis-server each.

Two ideas carry the throughput (see docs/architecture.md):

* **Write coalescing per event-loop iteration.** Nothing calls `transport.write` per command. A
  connection with output marks itself dirty in the loop's `Flusher`; the flusher runs once via
  `call_soon`, i.e. after every readable socket of this loop iteration has been processed, and
  writes each dirty connection's buffer in one syscall. Fifty clients each sending one command
  become one write to the backend; the backend's replies for them come back in one read.
* **FIFO reply matching.** Redis answers in order, so every request pushes a waiter on a deque and
  every complete reply pops the head. A waiter is never removed early: a client that went away
  still gets its reply read and dropped, so the connection cannot fall out of step (the
  redis-py CVE-2023-28859 class of bug).

Waiters are duck-typed: anything with `resolve(raw: bytes)`. `raw` is the complete RESP reply,
passed through undecoded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from typing import Any, Protocol

from slotcore.resp import ProtocolError, ReplyReader, pack_command

from .. import _accel
from ..errors import backend_error
from ..observe.stats import BackendCounters

log = logging.getLogger("slotproxy.backend")


class Waiter(Protocol):
    def resolve(self, raw: bytes) -> None: ...


class Flusher:
    """Coalesces writes of many connections into one write each per loop iteration."""

    __slots__ = ("_dirty", "_loop", "_scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._dirty: list[Any] = []
        self._scheduled = False

    def mark(self, conn: Any) -> None:
        self._dirty.append(conn)
        if not self._scheduled:
            self._scheduled = True
            # call_soon runs after all I/O callbacks of the current iteration (asyncio and
            # uvloop both), so every request/reply produced in this iteration is in the buffers.
            self._loop.call_soon(self._run)

    def _run(self) -> None:
        self._scheduled = False
        dirty, self._dirty = self._dirty, []
        for conn in dirty:
            conn.flush()


def new_flusher(loop: asyncio.AbstractEventLoop) -> Flusher:
    """The Flusher of the selected hot path (its compiled twin has the same surface)."""
    sp = _accel.speedups
    return Flusher(loop) if sp is None else sp.Flusher(loop)


class _InitWaiter:
    """Checks the reply to AUTH/SELECT sent on connect; a failure closes the connection."""

    __slots__ = ("conn", "what")

    def __init__(self, conn: BackendConn, what: str) -> None:
        self.conn = conn
        self.what = what

    def resolve(self, raw: bytes) -> None:
        if raw[:1] == b"-":
            msg = raw[1:].strip().decode(errors="replace")
            log.error("backend %s rejected %s: %s", self.conn.addr, self.what, msg)
            self.conn.fail(f"{self.what} failed: {msg}")


class _ProbeWaiter:
    __slots__ = ("fut",)

    def __init__(self, fut: asyncio.Future[bytes]) -> None:
        self.fut = fut

    def resolve(self, raw: bytes) -> None:
        if not self.fut.done():
            self.fut.set_result(raw)


DOWN, CONNECTING, UP, CLOSED = 0, 1, 2, 3


def _deliver(fifo: deque[Waiter], replies: list[bytes]) -> None:
    """Each reply to the waiter at the head, in order (compiled twin: `_speedups.deliver`)."""
    popleft = fifo.popleft
    for raw in replies:
        popleft().resolve(raw)


class BackendConn(asyncio.Protocol):
    """One pipelined connection to a redis-server, reconnecting with backoff."""

    # Slots, not a __dict__: the compiled hot path reads fifo, out, dirty and state of the
    # lane it routes to on every request, by slot offset (see proxy._accel).
    __slots__ = (
        "_backoff", "_connect_timeout", "_db", "_deliver", "_flusher", "_lost", "_password",
        "_reconnect_max", "_reconnect_min", "_request_timeout", "_stall_head", "_stall_since",
        "_task", "_up_event", "_username", "addr", "counters", "dirty", "fifo", "host",
        "last_error", "out", "port", "proto", "reader", "state", "transport", "unavailable",
    )

    def __init__(
        self,
        host: str,
        port: int,
        flusher: Flusher,
        *,
        password: str | None = None,
        username: str | None = None,
        db: int = 0,
        proto: int = 2,
        connect_timeout: float = 1.0,
        request_timeout: float = 5.0,
        reconnect_min: float = 0.05,
        reconnect_max: float = 2.0,
        counters: BackendCounters | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.addr = f"{host}:{port}"
        self._flusher = flusher
        self._password = password
        self._username = username
        self._db = db
        self.proto = proto
        self._connect_timeout = connect_timeout
        self._request_timeout = request_timeout
        self._reconnect_min = reconnect_min
        self._reconnect_max = reconnect_max
        self.state = DOWN
        self.transport: asyncio.Transport | None = None
        self.fifo: deque[Waiter] = deque()
        self.out: list[bytes] = []
        self.dirty = False
        # Frames replies across reads; resumable, so a big aggregate is scanned once. With the
        # compiled hot path, its twin frames them, and `_deliver` hands them to the waiters.
        sp = _accel.speedups
        self.reader = ReplyReader() if sp is None else sp.ReplyReader()
        self._deliver = _deliver if sp is None else sp.deliver
        self._task: asyncio.Task[None] | None = None
        self._up_event = asyncio.Event()
        self._lost = asyncio.Event()
        self._backoff = reconnect_min
        # Stall detection without a clock read per request: remember the head waiter and when it
        # became the head; a periodic check fails the connection if it stays there too long.
        self._stall_head: Waiter | None = None
        self._stall_since = 0.0
        self.unavailable = backend_error(self.addr)
        self.counters = counters if counters is not None else BackendCounters()
        self.last_error = ""

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._task is None and self.state != CLOSED:
            # Connecting from now on, not only once the task first runs: a request sent in the
            # meantime (the pipeline that said the first HELLO 3 opens the RESP3 lanes) is
            # queued until the connection is up, not refused as "unavailable".
            self.state = CONNECTING
            self._task = asyncio.get_running_loop().create_task(self._connect_loop())

    async def wait_up(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._up_event.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def _connect_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while self.state != CLOSED:
            if self.state == UP:
                # Connected: nothing to do until connection_lost sets `_lost`, then reconnect
                # (at once; the backoff applies only to failed attempts).
                await self._lost.wait()
                if self.state == CLOSED:
                    return
                continue
            self.state = CONNECTING
            try:
                # asyncio.timeout, not wait_for: on 3.11 a wait_for cancelled (close()) just
                # as the connect fails leaves that failure "never retrieved".
                async with asyncio.timeout(self._connect_timeout):
                    await loop.create_connection(lambda: self, self.host, self.port)
                if self.state != UP:  # connected but dropped at once (e.g. AUTH refused)
                    raise OSError("connection dropped during set-up")
            except (OSError, TimeoutError) as e:
                self.state = DOWN
                self.last_error = f"connect: {e}" if str(e) else "connect: timed out"
                self.out.clear()
                self._fail_all(self.unavailable)
                await asyncio.sleep(self._backoff)
                self._backoff = min(self._backoff * 2, self._reconnect_max)
                continue

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Called by the loop once the TCP connection is established."""
        self.transport = transport  # type: ignore[assignment]
        self._lost = asyncio.Event()
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.counters.connects += 1
        # AUTH/SELECT go first so they precede anything queued; their waiters check the replies.
        init: list[tuple[bytes, str]] = []
        if self._password:
            if self._username:
                init.append((pack_command(b"AUTH", self._username, self._password), "AUTH"))
            else:
                init.append((pack_command(b"AUTH", self._password), "AUTH"))
        if self._db:
            init.append((pack_command(b"SELECT", self._db), "SELECT"))
        if self.proto == 3:
            # Connections that serve RESP3 clients speak RESP3 themselves, so replies can still
            # be passed through byte for byte.
            init.append((pack_command(b"HELLO", b"3"), "HELLO 3"))
        for packed, what in reversed(init):
            self.fifo.appendleft(_InitWaiter(self, what))
            self.out.insert(0, packed)
        self.state = UP
        self._backoff = self._reconnect_min
        self._up_event.set()
        if self.out:
            self.flush()
        log.info("backend %s connected", self.addr)

    def connection_lost(self, exc: Exception | None) -> None:
        """Called by the loop when the connection closes, for whatever reason."""
        was_up = self.state == UP
        self.transport = None
        if self.state != CLOSED:
            self.state = DOWN
        self._up_event.clear()
        self.reader.reset()
        self.out.clear()
        self._fail_all(backend_error(self.addr, "connection lost"))
        if was_up and self.state != CLOSED:
            log.warning("backend %s connection lost%s", self.addr, f": {exc}" if exc else "")
        self._lost.set()

    def fail(self, reason: str) -> None:
        """Drop the connection (protocol desync, rejected AUTH, stalled reply)."""
        self.last_error = reason
        if self.transport is not None:
            self.transport.abort()

    async def close(self) -> None:
        self.state = CLOSED
        if self.transport is not None:
            self.transport.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._fail_all(backend_error(self.addr, "closed"))

    def fail_unsent(self, raw: bytes) -> int:
        """Not connected: answer `raw` to every request queued for when it connects, so none
        of them is ever written (a group re-pointed away from this server). Nothing is in
        flight on a connection that is not up; an up one is left alone. Returns how many."""
        if self.state == UP:
            return 0
        n = len(self.fifo)
        self.out.clear()
        self._fail_all(raw)
        return n

    def _fail_all(self, raw: bytes) -> None:
        fifo = self.fifo
        while fifo:
            fifo.popleft().resolve(raw)

    # ------------------------------------------------------------------ requests
    def send(self, packed: bytes, waiter: Waiter) -> None:
        """Queue one request; its reply will be passed to `waiter.resolve` (or an error reply)."""
        state = self.state
        if state in (UP, CONNECTING):
            self.fifo.append(waiter)
            self.out.append(packed)
            if not self.dirty and state == UP:
                self.dirty = True
                self._flusher.mark(self)
        else:
            self.counters.errors += 1
            waiter.resolve(self.unavailable)

    def flush(self) -> None:
        """Called by the Flusher: one write for everything queued this iteration."""
        self.dirty = False
        out = self.out
        if not out or self.transport is None:
            return
        # Requests are counted here, once per write, not once per request on the hot path.
        self.counters.requests += len(out)
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        self.transport.write(data)

    async def probe(self, packed: bytes, timeout: float) -> bytes:
        """Send one request through the shared pipeline and await its raw reply."""
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.send(packed, _ProbeWaiter(fut))
        return await asyncio.wait_for(fut, timeout)

    # ------------------------------------------------------------------ replies
    def data_received(self, data: bytes) -> None:
        """Called by the loop with reply bytes; hands out whole replies in request order."""
        reader = self.reader
        try:
            replies = reader.feed(data)
        except ProtocolError as e:
            self._unparsable(e)
            return
        if reader.errors:
            self.counters.errors += reader.errors
            reader.errors = 0
        fifo = self.fifo
        if len(replies) > len(fifo):
            self._unrequested()
            return
        self._deliver(fifo, replies)

    _py_data_received = data_received

    # The two ways a backend's byte stream goes wrong (also called by the compiled twin of
    # data_received): the connection cannot be trusted any more.
    def _unparsable(self, e: ProtocolError) -> None:
        log.error("backend %s sent an unparsable reply (%s); reconnecting", self.addr, e)
        self.fail(f"protocol error: {e}")

    def _unrequested(self) -> None:
        log.error("backend %s sent a reply with no request waiting for it; reconnecting",
                  self.addr)
        self.fail("protocol error: reply with no request waiting for it")

    # ------------------------------------------------------------------ health
    def check_stall(self, now: float) -> None:
        """Called periodically: fail the connection if its oldest request waits too long."""
        if not self._request_timeout or self.state != UP:
            return
        head = self.fifo[0] if self.fifo else None
        if head is None:
            self._stall_head = None
            return
        if head is not self._stall_head:
            self._stall_head = head
            self._stall_since = now
        elif now - self._stall_since > self._request_timeout:
            log.error("backend %s: no reply for %.1fs; dropping the connection",
                      self.addr, now - self._stall_since)
            self._stall_head = None
            self.fifo.popleft()  # resolved below with the timeout error, then the rest
            head.resolve(backend_error(self.addr, "timed out"))
            self._fail_all(backend_error(self.addr, "timed out"))
            self.fail("request timed out")

    @property
    def up(self) -> bool:
        return self.state == UP


if _accel.built is not None:
    class CompiledBackendConn(BackendConn):
        """BackendConn of the compiled hot path: its read callback and its write (`flush`,
        called by the Flusher once per loop iteration) are the compiled twins
        (`_speedups.backend_data_received`, `_speedups.backend_flush`)."""

        __slots__ = ()
        data_received = _accel.built.backend_data_received
        flush = _accel.built.backend_flush
else:
    CompiledBackendConn = None  # type: ignore[assignment, misc]


def new_backend_conn(host: str, port: int, flusher: Flusher, **kw: Any) -> BackendConn:
    """A BackendConn of the hot path selected now (see proxy._accel.select)."""
    if _accel.speedups is not None and CompiledBackendConn is not None:
        return CompiledBackendConn(host, port, flusher, **kw)
    return BackendConn(host, port, flusher, **kw)
