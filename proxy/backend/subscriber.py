"""Dedicated backend connections for Pub/Sub: one per subscribed client and backend address.

A subscribed connection receives frames nobody asked for (messages), so it cannot be one of
the shared, FIFO-matched request/reply lanes (`backend.conn`): their "reply with no request"
check and stall detection would kill it. A `SubscriberConn` is stream-framed with
`slotcore.resp.ReplyReader`, always speaks RESP2 (a RESP3 client's push is the RESP2 frame with
its first byte changed to `>`), and sorts every frame into:

* a message (`message`, `pmessage`, `smessage`): handed to its client (`Sink.deliver`), in
  arrival order;
* anything else (subscribe/unsubscribe confirmations, AUTH/SELECT replies, errors): it answers
  the oldest command sent, which expects one frame per channel argument (an error frame ends
  the command at once). The proxy never sends an argument-less UNSUBSCRIBE, so the number of
  frames a command gets back is always known.

The connection holds the channels, patterns and shard channels its client wants on this
backend; on (re)connect it subscribes to all of them before anything else, so a backend restart
costs the messages published while it was down (Pub/Sub is at-most-once), never a subscription.
A command made while the connection is not up only updates that state; its confirmation waits
until the state is subscribed on the backend (or the connect attempt fails).

`SubscriberPool` counts these connections per backend address and refuses more than
`pubsub.max_backend_connections`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from collections.abc import Callable
from typing import Protocol

from slotcore.addr import split_addr
from slotcore.resp import ProtocolError, ReplyReader, pack_command, pack_tuple

from ..config import BackendConfig, PubSubConfig
from ..observe.stats import ProxyStats

log = logging.getLogger("slotproxy.pubsub")

# The three message frames, by their fixed RESP2 prefix (the name of the first element).
MESSAGE = b"*3\r\n$7\r\nmessage\r\n"
PMESSAGE = b"*4\r\n$8\r\npmessage\r\n"
SMESSAGE = b"*3\r\n$8\r\nsmessage\r\n"
MESSAGES = (MESSAGE, PMESSAGE, SMESSAGE)

CHANNELS, PATTERNS, SHARDS = 0, 1, 2
SUBSCRIBE = (b"SUBSCRIBE", b"PSUBSCRIBE", b"SSUBSCRIBE")
UNSUBSCRIBE = (b"UNSUBSCRIBE", b"PUNSUBSCRIBE", b"SUNSUBSCRIBE")
# Channels per backend command: one huge SUBSCRIBE would be one huge request.
BATCH = 1000

DOWN, CONNECTING, UP, CLOSED = 0, 1, 2, 3

Done = Callable[[], None]


class Sink(Protocol):
    """The client side of a subscriber connection (`client.modes.subscribed.Subscriptions`)."""

    def deliver(self, raw: bytes, kind: int) -> None: ...

    def deliver_all(self, frames: list[bytes]) -> None: ...

    def conn_idle(self, conn: SubscriberConn) -> None: ...


def _init() -> None:
    """Marks the AUTH/SELECT sent on connect: an error reply to it drops the connection."""


class SubscriberConn(asyncio.Protocol):
    def __init__(self, addr: str, pool: SubscriberPool, sink: Sink) -> None:
        self.addr = addr
        self.pool = pool
        self.sink = sink
        # What the client wants subscribed on this backend, per kind (dicts: ordered sets).
        self.names: tuple[dict[bytes, None], dict[bytes, None], dict[bytes, None]] = ({}, {}, {})
        self.state = DOWN
        self.transport: asyncio.Transport | None = None
        self.reader = ReplyReader()
        # Commands sent and not yet fully answered: [frames still expected, done callback].
        self.pending: deque[list] = deque()
        # Confirmations made while not up: called once the state is subscribed (or connecting
        # failed).
        self.waiting: list[Done] = []
        self._task: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self._backoff = pool.backend.reconnect_min

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._connect_loop())

    async def _connect_loop(self) -> None:
        loop = asyncio.get_running_loop()
        cfg = self.pool.backend
        host, port = split_addr(self.addr)
        while self.state != CLOSED:
            if self.state == UP:
                await self._lost.wait()
                continue
            self.state = CONNECTING
            try:
                async with asyncio.timeout(cfg.connect_timeout):  # not wait_for: see conn.py
                    await loop.create_connection(lambda: self, host, port)
            except (OSError, TimeoutError) as e:
                if self.state == CLOSED:
                    return
                self.state = DOWN
                log.warning("pub/sub connection to %s failed: %s", self.addr, e or "timeout")
                self._release_waiting()
                await asyncio.sleep(self._backoff)
                self._backoff = min(self._backoff * 2, cfg.reconnect_max)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.state == CLOSED:
            transport.close()
            return
        self._lost = asyncio.Event()
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self.state = UP
        self._backoff = self.pool.backend.reconnect_min
        cfg = self.pool.backend
        out: list[bytes] = []
        if cfg.password:
            args = (b"AUTH", cfg.username, cfg.password) if cfg.username else (b"AUTH",
                                                                                cfg.password)
            out.append(pack_command(*args))
            self.pending.append([1, _init])
        if cfg.db:
            out.append(pack_command(b"SELECT", cfg.db))
            self.pending.append([1, _init])
        # The whole state first: commands made while connecting only changed it.
        for kind, names in enumerate(self.names):
            self._queue(out, SUBSCRIBE[kind], list(names), None)
        waiting, self.waiting = self.waiting, []
        if waiting:
            if self.pending and self.pending[-1][1] is not _init:
                self.pending[-1][1] = _chain(self.pending[-1][1], waiting)
            else:  # nothing to subscribe (any more)
                for done in waiting:
                    done()
        if out:
            transport.write(b"".join(out))  # type: ignore[attr-defined]
        self.pool.stats.pubsub_connects += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.reader.reset()
        pending, self.pending = self.pending, deque()
        if self.state != CLOSED:
            self.state = DOWN
            log.warning("pub/sub connection to %s lost%s; resubscribing", self.addr,
                        f": {exc}" if exc else "")
        # Commands in flight: their confirmations are owed to the client all the same.
        for _, done in pending:
            if done is not None:
                done()
        self._release_waiting()
        self._lost.set()

    def _release_waiting(self) -> None:
        waiting, self.waiting = self.waiting, []
        for done in waiting:
            done()

    def close(self) -> None:
        """Drop the connection for good (the client left, unsubscribed all, or RESET)."""
        if self.state == CLOSED:
            return
        self.state = CLOSED
        if self.transport is not None:
            self.transport.abort()
        if self._task is not None:
            self._task.cancel()
        self._release_waiting()
        pending, self.pending = self.pending, deque()
        for _, done in pending:
            if done is not None:
                done()
        self.pool.released(self)

    # ------------------------------------------------------------------ commands
    def _queue(self, out: list[bytes], verb: bytes, names: list[bytes], done: Done | None) -> None:
        for i in range(0, len(names), BATCH):
            chunk = names[i:i + BATCH]
            out.append(pack_tuple((verb, *chunk)))
            last = i + BATCH >= len(names)
            self.pending.append([len(chunk), done if last else None])

    def subscribe(self, kind: int, names: list[bytes], done: Done) -> None:
        have = self.names[kind]
        for n in names:
            have[n] = None
        self._command(SUBSCRIBE[kind], names, done)

    def unsubscribe(self, kind: int, names: list[bytes], done: Done) -> None:
        have = self.names[kind]
        for n in names:
            have.pop(n, None)
        self._command(UNSUBSCRIBE[kind], names, done)

    def _command(self, verb: bytes, names: list[bytes], done: Done) -> None:
        if self.state == UP and self.transport is not None:
            out: list[bytes] = []
            self._queue(out, verb, names, done)
            self.transport.write(b"".join(out))
        elif self.state == CLOSED:
            done()
        else:
            # Not up: the state above is what gets subscribed on connect.
            self.waiting.append(done)

    def empty(self) -> bool:
        return not (self.names[0] or self.names[1] or self.names[2])

    def idle(self) -> bool:
        return not self.pending and not self.waiting

    # ------------------------------------------------------------------ frames
    def data_received(self, data: bytes) -> None:
        try:
            frames = self.reader.feed(data)
        except ProtocolError as e:
            log.error("pub/sub connection to %s: unparsable frame (%s); reconnecting",
                      self.addr, e)
            if self.transport is not None:
                self.transport.abort()
            return
        sink = self.sink
        pending = self.pending
        if not pending:
            # Nothing owed: every frame is a message (a standalone redis-server sends nothing
            # else unasked), and for a name the client still holds (an unsubscribe leaves
            # `pending` non-empty until the backend confirmed it): handed over in one go.
            msgs = [f for f in frames if f.startswith(MESSAGES)]
            if msgs:
                sink.deliver_all(msgs)
            return
        for raw in frames:
            if raw.startswith(MESSAGE):
                sink.deliver(raw, CHANNELS)
            elif raw.startswith(PMESSAGE):
                sink.deliver(raw, PATTERNS)
            elif raw.startswith(SMESSAGE):
                sink.deliver(raw, SHARDS)
            elif pending:
                head = pending[0]
                if raw[:1] == b"-":
                    log.warning("pub/sub connection to %s: %s", self.addr,
                                raw[1:].strip().decode(errors="replace"))
                    if head[1] is _init:
                        if self.transport is not None:
                            self.transport.abort()
                        return
                    head[0] = 1  # an error answers the whole command
                head[0] -= 1
                if head[0] <= 0:
                    pending.popleft()
                    done = head[1]
                    if done is not None:
                        done()
            # else: an unsolicited confirmation (none from a standalone redis-server); ignored
        if not pending and not self.waiting and self.empty():
            self.sink.conn_idle(self)


def _chain(first: Done | None, more: list[Done]) -> Done:
    def run() -> None:
        if first is not None:
            first()
        for done in more:
            done()
    return run


class SubscriberPool:
    """Subscriber connections per backend address, bounded; the counters INFO shows."""

    def __init__(self, backend: BackendConfig, cfg: PubSubConfig, stats: ProxyStats) -> None:
        self.backend = backend
        self.cfg = cfg
        self.stats = stats
        self.per_addr: dict[str, int] = {}

    def open(self, addr: str, sink: Sink) -> SubscriberConn | None:
        """A new connection to `addr` for `sink`, or None when the bound is reached."""
        n = self.per_addr.get(addr, 0)
        if n >= self.cfg.max_backend_connections:
            self.stats.pubsub_refused += 1
            return None
        self.per_addr[addr] = n + 1
        self.stats.pubsub_connections += 1
        conn = SubscriberConn(addr, self, sink)
        conn.start()
        return conn

    def released(self, conn: SubscriberConn) -> None:
        n = self.per_addr.get(conn.addr, 0) - 1
        if n > 0:
            self.per_addr[conn.addr] = n
        else:
            self.per_addr.pop(conn.addr, None)
        self.stats.pubsub_connections -= 1


