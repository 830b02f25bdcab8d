"""In-process component tests of the proxy's data path: one event loop, no subprocesses.

* The client side is a real `ClientConnection` driven over a `FakeTransport` (the transport
  methods the connection uses; it records what is written and decodes it with hiredis).
* The backends are `FakeBackend`s: tiny asyncio servers on free loopback ports (not
  redis-server) that parse RESP requests with hiredis and answer request *i* with the bulk
  string "i" (Codis's ordering test), unless a handler for the command says otherwise. Replies
  can be held until the test releases them, delayed, or the connection dropped.
* The proxy's parts come from `proxy.app.build_services`, the same composition the process uses,
  with a `SlotMap` pointing the groups at the fake backends.

Everything a test opens is closed in fixture teardown (clients, backend pool, servers), so no
callback is left to fail on a closed loop.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from typing import Any

import hiredis
import pytest

from proxy import _accel
from proxy.app import build_services
from proxy.client.connection import new_client, select_hot_path
from proxy.client.context import Services
from proxy.config import BackendConfig, LimitsConfig, MigrationConfig, ProxyConfig
from proxy.dispatch import dispatch
from proxy.routing.router import Router
from proxy.routing.transit import Transit
from slotcore.keyslot import key_slot
from slotcore.resp import ReplyErrorValue, encode_array, encode_bulk, encode_int, pack_command
from slotcore.slotmap import GroupSpec, SlotMap

NSLOTS = 16384
WAIT = 5.0  # bound on every wait: a hang fails the test instead of stalling the suite


async def wait_until(pred: Callable[[], bool], what: str = "condition",
                     timeout: float = WAIT) -> None:
    """Yield to the loop until `pred()` holds (bounded: fails the test after `timeout`)."""
    async def poll() -> None:
        while not pred():
            await asyncio.sleep(0.001)
    try:
        await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def settle(n: int = 20) -> None:
    """Let the loop run a few iterations (socket round trips on loopback included)."""
    for _ in range(n):
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)
    for _ in range(n):
        await asyncio.sleep(0)


# ---------------------------------------------------------------------------- fake transport
class FakeTransport:
    """What `ClientConnection` uses of an asyncio transport; records the bytes written."""

    def __init__(self, protocol: asyncio.Protocol, peer: tuple[str, int]) -> None:
        self.protocol = protocol
        self.peer = peer
        self.written = bytearray()
        self.reader = hiredis.Reader(replyError=ReplyErrorValue)
        self.replies: list[Any] = []
        self.writes = 0
        self.closed = False
        self.aborted = False
        self.reading = True
        self.pause_calls = 0
        self.resume_calls = 0
        self.buffer_size = 0  # what get_write_buffer_size reports
        self.limits: dict[str, Any] = {}

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.writes += 1
        self.written += data
        self.reader.feed(data)
        while (r := self.reader.gets()) is not False:
            self.replies.append(r)

    def _lose(self) -> None:
        if not self.closed:
            self.closed = True
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def close(self) -> None:
        self._lose()

    def abort(self) -> None:
        self.aborted = True
        self._lose()

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        assert self.reading, "pause_reading while paused"
        self.reading = False
        self.pause_calls += 1

    def resume_reading(self) -> None:
        assert not self.reading, "resume_reading while reading"
        self.reading = True
        self.resume_calls += 1

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.peer if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.limits = {"high": high, "low": low}

    def get_write_buffer_size(self) -> int:
        return self.buffer_size


class Client:
    """A `ClientConnection` over a `FakeTransport`, with helpers to feed requests and await
    replies (decoded by hiredis: errors are `ReplyErrorValue` strings)."""

    _ports = itertools.count(40000)

    def __init__(self, services: Services) -> None:
        self.conn = new_client(services, dispatch)
        self.transport = FakeTransport(self.conn, ("127.0.0.1", next(self._ports)))
        self.conn.connection_made(self.transport)  # type: ignore[arg-type]
        self.taken = 0

    @property
    def replies(self) -> list[Any]:
        return self.transport.replies

    def feed(self, data: bytes) -> None:
        self.conn.data_received(data)

    def send(self, *cmds: tuple[bytes | str | int, ...]) -> None:
        """Feed the commands as one pipelined chunk."""
        self.feed(b"".join(pack_command(*c) for c in cmds))

    async def take(self, n: int, timeout: float = WAIT) -> list[Any]:
        """The next `n` replies, once they have been written."""
        want = self.taken + n
        await wait_until(lambda: len(self.replies) >= want, f"{n} replies "
                         f"(have {len(self.replies) - self.taken})", timeout)
        got = self.replies[self.taken:want]
        self.taken = want
        return got

    async def call(self, *cmds: tuple[bytes | str | int, ...]) -> list[Any]:
        self.send(*cmds)
        return await self.take(len(cmds))

    def close(self) -> None:
        self.transport.close()


# ---------------------------------------------------------------------------- fake backend
Handler = Callable[[list[bytes], int], bytes | None]


def default_reply(argv: list[bytes], seq: int) -> bytes:
    """Request `seq` gets "seq", except the commands whose reply shape a merge reads."""
    name = argv[0].upper()
    if name == b"PING":
        return b"+PONG\r\n"
    if name == b"HELLO":
        return b"%1\r\n$5\r\nproto\r\n:" + argv[1] + b"\r\n" if len(argv) > 1 else b"%0\r\n"
    if name == b"MGET":
        return encode_array([b"%s@%d" % (k, seq) for k in argv[1:]])
    if name in (b"DEL", b"UNLINK", b"EXISTS", b"TOUCH"):
        return encode_int(len(argv) - 1)
    if name in (b"MSET", b"SELECT", b"AUTH"):
        return b"+OK\r\n"
    if name == b"DBSIZE":
        return encode_int(10)
    return encode_bulk(str(seq).encode())


class FakeBackendConn(asyncio.Protocol):
    def __init__(self, backend: FakeBackend) -> None:
        self.backend = backend
        self.index = len(backend.conns)
        self.reader = hiredis.Reader()
        self.transport: asyncio.Transport | None = None
        self.pending: list[bytes] = []  # replies not written yet, in order
        self.first: list[bytes] | None = None  # the first request seen on this connection
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.backend.conns.append(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.timer is not None:
            self.timer.cancel()
        self.backend.conns.remove(self)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        b = self.backend
        while (req := self.reader.gets()) is not False:
            if self.first is None:
                self.first = req
            reply = b.on_request(self, req)
            if reply is not None:
                self.pending.append(reply)
        self.pump()

    def pump(self) -> None:
        b = self.backend
        if not self.pending or self.transport is None or b.holding:
            return
        if b.delay:
            if self.timer is None:
                self.timer = asyncio.get_running_loop().call_later(b.delay, self._timer)
            return
        self.write_pending()

    def _timer(self) -> None:
        self.timer = None
        self.write_pending()
        self.pump()

    def write_pending(self) -> None:
        if self.transport is None or not self.pending:
            return
        data = b"".join(self.pending)
        self.backend.answered += len(self.pending)
        self.pending.clear()
        self.transport.write(data)


class FakeBackend:
    """A loopback RESP server: request i (counted per backend) is answered "i" by default."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.seq = 0
        self.answered = 0
        self.max_in_flight = 0
        self.log: list[tuple[int, int, list[bytes]]] = []  # (seq, connection index, argv)
        self.handlers: dict[bytes, Handler] = {}
        self.observers: list[Callable[[], None]] = []  # called after each request is logged
        self.holding = False
        self.delay = 0.0
        self.conns: list[FakeBackendConn] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> FakeBackend:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: FakeBackendConn(self), "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def in_flight(self) -> int:
        """Requests received and not answered yet."""
        return self.seq - self.answered

    def on_request(self, conn: FakeBackendConn, argv: list[bytes]) -> bytes | None:
        self.seq += 1
        self.log.append((self.seq, conn.index, argv))
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        for observe in self.observers:
            observe()
        handler = self.handlers.get(argv[0].upper())
        reply = handler(argv, self.seq) if handler is not None else None
        return reply if reply is not None else default_reply(argv, self.seq)

    # ------------------------------------------------------------ what the test sees
    def commands(self, name: bytes | None = None) -> list[list[bytes]]:
        """argv of every request received (of command `name` only, if given), in order."""
        return [argv for _, _, argv in self.log
                if name is None or argv[0].upper() == name.upper()]

    def seq_of(self, *argv: bytes) -> list[int]:
        """The sequence numbers of the requests equal to `argv`."""
        want = list(argv)
        return [seq for seq, _, a in self.log if a == want]

    def keys_seen(self) -> list[bytes]:
        return [a[1] for a in self.commands() if len(a) > 1]

    # ------------------------------------------------------------ behaviours
    def hold(self) -> None:
        """Keep every reply from now on until `release`."""
        self.holding = True

    def release(self) -> None:
        self.holding = False
        for c in list(self.conns):
            c.pump()

    def drop(self) -> None:
        """Abort every connection (replies not written are lost)."""
        for c in list(self.conns):
            c.pending.clear()
            if c.transport is not None:
                c.transport.abort()

    async def close(self) -> None:
        self.drop()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


# ---------------------------------------------------------------------------- the proxy
class Proxy:
    """The data path's services over the fake backends, plus helpers for slot maps and keys."""

    def __init__(self, services: Services, backends: list[FakeBackend]) -> None:
        self.services = services
        self.backends = backends
        self.groups = {i + 1: GroupSpec(i + 1, b.addr) for i, b in enumerate(backends)}
        self.clients: list[Client] = []
        self.epoch = 0

    @property
    def router(self) -> Router:
        return self.services.router

    @property
    def transit(self) -> Transit:
        return self.services.router.transit

    def backend(self, gid: int) -> FakeBackend:
        return self.backends[gid - 1]

    def slot_map(self, transit: tuple[tuple[int, int, int, int, str], ...] = (),
                 fenced: frozenset[bytes] = frozenset(),
                 move: dict[int, int] | None = None) -> SlotMap:
        """The even map over the groups at the next epoch; `move` reassigns slots (slot →
        gid); a transit entry's slots are given to its target, as the map requires."""
        self.epoch += 1
        owner = list(SlotMap.even(NSLOTS, self.groups).owner)
        for slot, gid in (move or {}).items():
            owner[slot] = gid
        for start, end, _src, dst, _state in transit:
            for s in range(start, end + 1):
                owner[s] = dst
        return SlotMap(nslots=NSLOTS, owner=tuple(owner), groups=dict(self.groups),
                       epoch=self.epoch, transit=transit, fenced=fenced)

    async def apply(self, slotmap: SlotMap) -> None:
        await asyncio.wait_for(self.router.apply(slotmap, wait_connect=WAIT), WAIT)

    def gid_of(self, key: bytes) -> int:
        assert self.router.slotmap is not None
        return self.router.slotmap.owner[key_slot(key, NSLOTS)]

    def keys_on(self, gid: int, n: int, prefix: bytes = b"k") -> list[bytes]:
        """`n` keys that the even map puts on group `gid`."""
        even = SlotMap.even(NSLOTS, self.groups).owner
        out = []
        for i in itertools.count():
            k = b"%s%d" % (prefix, i)
            if even[key_slot(k, NSLOTS)] == gid:
                out.append(k)
                if len(out) == n:
                    return out
        raise AssertionError("unreachable")

    def client(self) -> Client:
        c = Client(self.services)
        self.clients.append(c)
        return c

    async def close(self) -> None:
        for c in self.clients:
            c.close()
        await self.services.pool.close()
        await asyncio.sleep(0)


def make_config(*, limits: dict[str, Any] | None = None,
                migration: dict[str, Any] | None = None,
                backend: dict[str, Any] | None = None, **kw: Any) -> ProxyConfig:
    return ProxyConfig(
        listen=("127.0.0.1", 0), slots=NSLOTS, command_table="builtin",
        limits=replace(LimitsConfig(), **(limits or {})),
        migration=replace(MigrationConfig(), **(migration or {})),
        backend=replace(BackendConfig(), **(backend or {})),
        **kw,
    )


MakeProxy = Callable[..., Awaitable[Proxy]]


@pytest.fixture
async def backends() -> AsyncIterator[list[FakeBackend]]:
    """Three fake backends, one per group (gid 1, 2, 3)."""
    bs = [await FakeBackend(f"g{i + 1}").start() for i in range(3)]
    yield bs
    for b in bs:
        await b.close()


@pytest.fixture(params=["compiled", "python"])
def hot_path(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every component test runs over both hot paths (proxy._accel): the compiled one and the
    pure-Python one. The compiled one must be built: its absence is a broken install."""
    if request.param == "compiled":
        assert _accel.COMPILED_AVAILABLE, f"compiled hot path not built: {_accel.IMPORT_ERROR}"
    yield request.param
    select_hot_path(True, quiet=True)


@pytest.fixture
async def make_proxy(backends: list[FakeBackend], hot_path: str) -> AsyncIterator[MakeProxy]:
    """Build a proxy's services over the fake backends (config overrides as keywords) with the
    even slot map applied and every backend connection up."""
    made: list[Proxy] = []

    async def make(*, fence_enabled: bool = False,
                   clock: Callable[[], float] | None = None, **cfg: Any) -> Proxy:
        cfg.setdefault("use_accelerator", hot_path == "compiled")
        kw: dict[str, Any] = {"fence_enabled": fence_enabled}
        if clock is not None:
            kw["clock"] = clock
        p = Proxy(build_services(make_config(**cfg), **kw), backends)
        made.append(p)
        await p.apply(p.slot_map())
        return p

    yield make
    for p in made:
        await p.close()


@pytest.fixture
async def proxy(make_proxy: MakeProxy) -> Proxy:
    return await make_proxy()
