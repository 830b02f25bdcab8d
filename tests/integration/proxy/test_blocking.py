"""Blocking commands through the proxy, against real redis-servers.

Differential: the same sequences run on a direct redis-server and through the proxy must give
byte-identical replies (RESP2 and RESP3), for every blocking command with expiring timeouts,
wake-ups by another client, odd timeouts, CLIENT UNBLOCK. Then the proxy-only behaviour:
pipelining behind a blocked command, redis-py (sync and asyncio) woken through a second proxy,
disconnect while blocked, reuse of dedicated connections, the bound, a 10,000-BLPOP pipeline.
No wall-clock assertions: waits poll for a state (a blocked client on a backend) instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import hiredis
import pytest
import redis
import redis.asyncio

from slotcore.resp import frame_reply, pack_command
from tests.harness import ProxyProcess, RedisServer, group_config

pytestmark = pytest.mark.integration


def until(cond: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class Raw:
    """A socket speaking RESP: exact reply bytes, framed one at a time."""

    def __init__(self, port: int, proto: int = 2) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        if proto == 3:
            assert self.call("HELLO", "3")[:1] == b"%"

    def send(self, *args: object) -> None:
        self.sock.sendall(pack_command(*args))  # type: ignore[arg-type]

    def read(self, timeout: float = 10.0) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            end = frame_reply(self.buf, 0) if self.buf else -1
            if end > 0:
                raw, self.buf = self.buf[:end], self.buf[end:]
                return raw
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no complete reply; have {self.buf[:200]!r}")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed; have {self.buf[:200]!r}")
            self.buf += chunk

    def nothing_yet(self) -> bool:
        """No reply byte has arrived (non-blocking peek)."""
        if self.buf:
            return False
        self.sock.setblocking(False)
        try:
            return not self.sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return True
        finally:
            self.sock.setblocking(True)

    def call(self, *args: object) -> bytes:
        self.send(*args)
        return self.read()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def decoded(raw: bytes) -> object:
    r = hiredis.Reader()
    r.feed(raw)
    return r.gets()


def backend_blocked(servers: list[RedisServer]) -> int:
    n = 0
    for s in servers:
        c = redis.Redis(port=s.port)
        n += int(c.info("clients")["blocked_clients"])
        c.close()
    return n


class Target:
    """Where a sequence runs: a direct redis-server, or the proxy (over its backends)."""

    def __init__(self, port: int, servers: list[RedisServer]) -> None:
        self.port = port
        self.servers = servers

    def conn(self, proto: int) -> Raw:
        return Raw(self.port, proto)

    def blocked(self) -> int:
        return backend_blocked(self.servers)

    def flush(self) -> None:
        for s in self.servers:
            c = redis.Redis(port=s.port)
            c.flushall()
            c.close()


@pytest.fixture(scope="module")
def direct(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    s = RedisServer(tmp_path_factory.mktemp("direct")).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def proxy2(backends: list[RedisServer], tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[ProxyProcess]:
    """A second proxy process over the same groups."""
    p = ProxyProcess(tmp_path_factory.mktemp("proxy2"), group_config(backends),
                     name="proxy2").start()
    yield p
    p.stop()


@pytest.fixture
def targets(direct: RedisServer, proxy: ProxyProcess, backends: list[RedisServer]
            ) -> tuple[Target, Target]:
    d, p = Target(direct.port, [direct]), Target(proxy.port, backends)
    d.flush()
    p.flush()
    return d, p


PROTOS = pytest.mark.parametrize("proto", [2, 3], ids=["resp2", "resp3"])


def run_plain(t: Target, proto: int, cmds: list[tuple[object, ...]]) -> list[bytes]:
    c = t.conn(proto)
    try:
        return [c.call(*cmd) for cmd in cmds]
    finally:
        c.close()


def run_woken(t: Target, proto: int, setup: list[tuple[object, ...]],
              block: tuple[object, ...], wake: list[tuple[object, ...]],
              after: list[tuple[object, ...]]) -> list[bytes]:
    """Client A blocks; once the backend holds it, client B runs `wake`; A's reply, then B's,
    then `after` on A (its connection is clean again)."""
    a, b = t.conn(proto), t.conn(proto)
    try:
        out = [b.call(*cmd) for cmd in setup]
        base = t.blocked()
        a.send(*block)
        until(lambda: t.blocked() == base + 1, what="the command to block on the backend")
        assert a.nothing_yet()
        out += [b.call(*cmd) for cmd in wake]
        out.append(a.read())
        out += [a.call(*cmd) for cmd in after]
        return out
    finally:
        a.close()
        b.close()


def same(targets: tuple[Target, Target], fn: Callable[[Target], list[bytes]]) -> list[bytes]:
    d, p = targets
    want = fn(d)
    got = fn(p)
    assert got == want, f"\ndirect: {want}\nproxy:  {got}"
    return got


# -------------------------------------------------------------------------------- differential
TIMEOUTS_EXPIRE = [
    ("BLPOP", "{t}l", "0.05"),
    ("BRPOP", "{t}l", "{t}m", "0.05"),
    ("BLMOVE", "{t}a", "{t}b", "LEFT", "RIGHT", "0.05"),
    ("BRPOPLPUSH", "{t}a", "{t}b", "0.05"),
    ("BLMPOP", "0.05", "2", "{t}a", "{t}b", "LEFT"),
    ("BZPOPMIN", "{t}z", "0.05"),
    ("BZPOPMAX", "{t}z", "{t}y", "0.05"),
    ("BZMPOP", "0.05", "1", "{t}z", "MIN", "COUNT", "2"),
    ("XADD", "{t}s", "1-1", "f", "v"),
    ("XREAD", "BLOCK", "50", "STREAMS", "{t}s", "$"),
    ("XREAD", "COUNT", "2", "BLOCK", "50", "STREAMS", "{t}s", "{t}s2", "1-1", "0"),
    ("XGROUP", "CREATE", "{t}s", "g", "$"),
    ("XREADGROUP", "GROUP", "g", "c", "BLOCK", "50", "STREAMS", "{t}s", ">"),
    ("XREADGROUP", "GROUP", "g", "c", "COUNT", "1", "BLOCK", "50", "NOACK", "STREAMS",
     "{t}s", ">"),
    ("BLPOP", "{t}l", "0.2"),
    ("PING",),
]


@PROTOS
def test_timeouts_expire_like_redis(targets: tuple[Target, Target], proto: int) -> None:
    got = same(targets, lambda t: run_plain(t, proto, TIMEOUTS_EXPIRE))
    assert got[0] in (b"*-1\r\n", b"_\r\n")


ODD_TIMEOUTS = [
    ("BLPOP", "{t}l", "-1"),
    ("BLPOP", "{t}l", "-0.5"),
    ("BLPOP", "{t}l", "abc"),
    ("BLPOP", "{t}l", ""),
    ("BLPOP", "{t}l", "1e-2"),
    ("BLPOP", "{t}l", ".01"),
    ("BLPOP", "{t}l", "0.0001"),
    ("BLPOP", "{t}l", "nan"),
    ("BLPOP", "{t}l", "99999999999999999999999"),
    ("BRPOPLPUSH", "{t}a", "{t}b", "-3"),
    ("BLMOVE", "{t}a", "{t}b", "LEFT", "UP", "0.01"),
    ("BLMPOP", "-1", "1", "{t}a", "LEFT"),
    ("BLMPOP", "0.01", "0", "{t}a", "LEFT"),
    ("BLMPOP", "0.01", "x", "{t}a", "LEFT"),
    ("BZMPOP", "abc", "1", "{t}z", "MIN"),
    ("BZPOPMIN", "{t}z", "-1"),
    ("XREAD", "BLOCK", "-1", "STREAMS", "{t}s", "0"),
    ("XREAD", "BLOCK", "abc", "STREAMS", "{t}s", "0"),
    ("XREAD", "BLOCK", "0.5", "STREAMS", "{t}s", "0"),
    ("XREAD", "BLOCK", "10", "STREAMS", "{t}s"),
    ("XREADGROUP", "GROUP", "g", "c", "BLOCK", "10", "STREAMS", "{t}nosuch", ">"),
    ("RPUSH", "{t}l", "x", "y"),
    ("BLPOP", "{t}l", "0"),  # zero = forever, but there is data
    ("BRPOP", "{t}l", "0.0"),
    ("SET", "{t}str", "v"),
    ("BLPOP", "{t}str", "0.01"),  # WRONGTYPE
    ("WAIT", "0", "0"),
    ("WAIT", "0", "-1"),
    ("WAIT", "abc", "0"),
    ("WAIT", "1", "10"),  # no replicas: 0 once the timeout passes
    ("PING",),
]


@PROTOS
def test_odd_timeouts_and_errors_like_redis(targets: tuple[Target, Target], proto: int) -> None:
    got = same(targets, lambda t: run_plain(t, proto, ODD_TIMEOUTS))
    assert got[0] == b"-ERR timeout is negative\r\n"


IMMEDIATE = [
    ("RPUSH", "{t}a", "1", "2", "3"),
    ("BLMOVE", "{t}a", "{t}b", "RIGHT", "LEFT", "0"),
    ("BRPOPLPUSH", "{t}a", "{t}b", "0"),
    ("LRANGE", "{t}b", "0", "-1"),
    ("BLMPOP", "0", "2", "{t}x", "{t}b", "RIGHT", "COUNT", "5"),
    ("ZADD", "{t}z", "1", "a", "2", "b", "3", "c"),
    ("BZPOPMIN", "{t}z", "0"),
    ("BZPOPMAX", "{t}y", "{t}z", "0"),
    ("BZMPOP", "0", "1", "{t}z", "MAX", "COUNT", "2"),
    ("XADD", "{t}s", "5-1", "f", "v"),
    ("XREAD", "BLOCK", "0", "STREAMS", "{t}s", "0"),
    ("XGROUP", "CREATE", "{t}s", "g", "0"),
    ("XREADGROUP", "GROUP", "g", "c", "BLOCK", "0", "STREAMS", "{t}s", ">"),
    ("XPENDING", "{t}s", "g"),
]


@PROTOS
def test_data_already_there_like_redis(targets: tuple[Target, Target], proto: int) -> None:
    same(targets, lambda t: run_plain(t, proto, IMMEDIATE))


WOKEN = [
    ([], ("BLPOP", "{t}q", "0"), [("RPUSH", "{t}q", "v1", "v2")], [("LRANGE", "{t}q", "0", "-1")]),
    ([], ("BRPOP", "{t}q", "{t}r", "5"), [("LPUSH", "{t}r", "v")], [("EXISTS", "{t}r")]),
    ([], ("BLMOVE", "{t}a", "{t}b", "LEFT", "RIGHT", "0"), [("RPUSH", "{t}a", "x")],
     [("LRANGE", "{t}b", "0", "-1")]),
    ([], ("BRPOPLPUSH", "{t}a", "{t}b", "0"), [("RPUSH", "{t}a", "y")],
     [("LRANGE", "{t}b", "0", "-1")]),
    ([], ("BLMPOP", "0", "2", "{t}a", "{t}c", "RIGHT", "COUNT", "3"),
     [("RPUSH", "{t}c", "1", "2")], []),
    ([], ("BZPOPMIN", "{t}z", "0"), [("ZADD", "{t}z", "2", "m", "1", "n")], []),
    ([], ("BZPOPMAX", "{t}z", "{t}y", "3"), [("ZADD", "{t}y", "7", "p")], []),
    ([], ("BZMPOP", "0", "2", "{t}z", "{t}y", "MIN", "COUNT", "5"),
     [("ZADD", "{t}y", "1", "a", "2", "b")], []),
    ([], ("XREAD", "BLOCK", "0", "STREAMS", "{t}s", "$"), [("XADD", "{t}s", "7-1", "f", "v")],
     []),
    ([("XGROUP", "CREATE", "{t}g", "grp", "$", "MKSTREAM")],
     ("XREADGROUP", "GROUP", "grp", "c1", "BLOCK", "0", "STREAMS", "{t}g", ">"),
     [("XADD", "{t}g", "9-1", "f", "v")], [("XPENDING", "{t}g", "grp")]),
    ([("XGROUP", "CREATE", "{t}g2", "grp", "$", "MKSTREAM")],
     ("XREADGROUP", "GROUP", "grp", "c1", "COUNT", "5", "BLOCK", "10000", "NOACK", "STREAMS",
      "{t}g2", ">"),
     [("XADD", "{t}g2", "9-2", "a", "b")], [("XPENDING", "{t}g2", "grp")]),
]


@PROTOS
@pytest.mark.parametrize("case", range(len(WOKEN)), ids=[w[1][0] for w in WOKEN])
def test_woken_by_another_client_like_redis(targets: tuple[Target, Target], proto: int,
                                            case: int) -> None:
    setup, block, wake, after = WOKEN[case]
    got = same(targets, lambda t: (t.flush(), run_woken(t, proto, setup, block, wake, after))[1])
    assert got[len(setup) + len(wake)] not in (b"*-1\r\n", b"_\r\n")


@PROTOS
@pytest.mark.parametrize("how", ["TIMEOUT", "ERROR", None])
def test_client_unblock_like_redis(targets: tuple[Target, Target], proto: int,
                                   how: str | None) -> None:
    def seq(t: Target) -> list[bytes]:
        a, b = t.conn(proto), t.conn(proto)
        try:
            aid = int(a.call("CLIENT", "ID")[1:])
            base = t.blocked()
            a.send("BRPOP", "{t}q", "0")
            until(lambda: t.blocked() == base + 1, what="BRPOP to block")
            args = ("CLIENT", "UNBLOCK", aid) + ((how,) if how else ())
            out = [b.call(*args), a.read(), b.call(*args), a.call("PING")]
            out += [b.call("CLIENT", "UNBLOCK", aid, "BOGUS"), b.call("CLIENT", "UNBLOCK", "x"),
                    b.call("CLIENT", "UNBLOCK", 987654321)]
            return out
        finally:
            a.close()
            b.close()

    got = same(targets, seq)
    assert got[0] == b":1\r\n" and got[2] == b":0\r\n"
    assert got[1] == (b"-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n" if how == "ERROR"
                      else b"*-1\r\n" if proto == 2 else b"_\r\n")


def test_crossslot_and_info(proxy: ProxyProcess, backends: list[RedisServer]) -> None:
    c = Raw(proxy.port)
    try:
        for cmd in (("BLPOP", "a", "b", "0"), ("BLMOVE", "a", "b", "LEFT", "LEFT", "0"),
                    ("BZMPOP", "0", "2", "a", "b", "MIN"),
                    ("XREAD", "BLOCK", "0", "STREAMS", "a", "b", "0", "0")):
            assert c.call(*cmd) == b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
        assert backend_blocked(backends) == 0
        c.send("BLPOP", "{i}q", "0")
        until(lambda: backend_blocked(backends) == 1)
        r = proxy.client()
        assert r.info("proxy")["blocked_clients"] == 1
        info = r.info()
        assert info["blocked_clients"] == 1 and info["dedicated_connections"] == 1
        r.rpush("{i}q", "v")
        assert decoded(c.read()) == [b"{i}q", b"v"]
        assert r.info("proxy")["blocked_clients"] == 0
        r.close()
    finally:
        c.close()


# -------------------------------------------------------------------------------- proxy-only
def test_pipelined_commands_wait_behind_the_blocked_one(
        proxy: ProxyProcess, backends: list[RedisServer]) -> None:
    r = proxy.client()
    r.set("x", "1")
    c = Raw(proxy.port)
    try:
        c.sock.sendall(pack_command("BLPOP", "pq", "0") + pack_command("GET", "x")
                       + pack_command("SET", "x", "2") + pack_command("GET", "x"))
        until(lambda: backend_blocked(backends) == 1)
        r.set("x", "3")  # runs before the pipelined SET: they wait behind BLPOP
        assert c.nothing_yet()
        r.rpush("pq", "v")
        assert decoded(c.read()) == [b"pq", b"v"]
        assert [c.read(), c.read(), c.read()] == [b"$1\r\n3\r\n", b"+OK\r\n", b"$1\r\n2\r\n"]
        # back on the fast path afterwards
        assert c.call("GET", "x") == b"$1\r\n2\r\n"
    finally:
        c.close()
        r.close()


def test_redis_py_sync_woken_through_another_proxy(
        proxy: ProxyProcess, proxy2: ProxyProcess, backends: list[RedisServer]) -> None:
    a, b = proxy.client(protocol=2), proxy2.client(protocol=3)
    got: dict[str, object] = {}
    t = threading.Thread(target=lambda: got.update(
        pop=a.blpop(["{j}jobs"], timeout=0), move=a.blmove("{j}src", "{j}dst", 0),
        z=a.bzpopmin("{j}z", 0)))
    t.start()
    for push in (lambda: b.rpush("{j}jobs", "job-1"), lambda: b.rpush("{j}src", "m"),
                 lambda: b.zadd("{j}z", {"e": 1.5})):
        until(lambda: backend_blocked(backends) == 1, what="a blocked client")
        push()
    t.join(10)
    assert got["pop"] == (b"{j}jobs", b"job-1") or got["pop"] == [b"{j}jobs", b"job-1"]
    assert got["move"] == b"m"
    assert list(got["z"]) == [b"{j}z", b"e", 1.5]  # type: ignore[call-overload]
    assert b.lrange("{j}dst", 0, -1) == [b"m"]
    a.close()
    b.close()


def test_redis_py_asyncio_woken_through_another_proxy(
        proxy: ProxyProcess, proxy2: ProxyProcess, backends: list[RedisServer]) -> None:
    async def main() -> None:
        a = redis.asyncio.Redis(port=proxy.port, protocol=3)
        b = redis.asyncio.Redis(port=proxy2.port)
        for i in range(3):
            pop = asyncio.ensure_future(a.brpop([f"{{aq}}{i}"], timeout=5))
            while backend_blocked(backends) != 1:
                await asyncio.sleep(0.01)
            await b.lpush(f"{{aq}}{i}", f"v{i}")
            assert list(await pop) == [f"{{aq}}{i}".encode(), f"v{i}".encode()]
        await b.xadd("{aq}s", {"f": "v"}, id="3-3")
        read = asyncio.ensure_future(a.xread({"{aq}s": "3-3"}, block=0))
        while backend_blocked(backends) != 1:
            await asyncio.sleep(0.01)
        await b.xadd("{aq}s", {"g": "w"}, id="4-4")
        got = await read
        assert b"4-4" in repr(got).encode()
        await a.aclose()
        await b.aclose()

    asyncio.run(main())


def test_disconnect_while_blocked_frees_the_backend(
        proxy: ProxyProcess, backends: list[RedisServer]) -> None:
    r = proxy.client()

    def conns() -> int:
        return sum(len(redis.Redis(port=s.port).client_list()) for s in backends)

    for cmd in (("BLPOP", "dq", "0"), ("XREAD", "BLOCK", "0", "STREAMS", "ds", "$"),
                ("WAIT", "1", "0")):
        before = conns()
        c = Raw(proxy.port)
        c.send(*cmd)
        n = 1 if cmd[0] != "WAIT" else len(backends)
        until(lambda n=n: backend_blocked(backends) == n, what=f"{cmd[0]} to block")
        assert r.info("proxy")["blocked_clients"] == 1
        c.close()
        until(lambda: backend_blocked(backends) == 0, what="the backend to free it")
        until(lambda: r.info("proxy")["blocked_clients"] == 0)
        # The dedicated connection itself is closed, not just unblocked (one leased from the
        # idle list makes it one fewer than before).
        until(lambda before=before: conns() <= before, what="the dedicated conn to close")
    # and nothing was popped for the departed client
    r.rpush("dq", "kept")
    assert r.lrange("dq", 0, -1) == [b"kept"]
    r.close()


def test_dedicated_connections_are_reused(proxy: ProxyProcess,
                                          backends: list[RedisServer]) -> None:
    r = proxy.client()
    r.blpop(["reuse"], timeout=0.01)

    def conns() -> int:
        return sum(len(redis.Redis(port=s.port).client_list()) for s in backends)

    before = conns()
    for _ in range(20):
        assert r.blpop(["reuse"], timeout=0.01) is None
        assert r.rpush("reuse", "v") == 1 and r.blpop(["reuse"], timeout=0) is not None
    assert conns() <= before
    r.close()


def test_over_the_bound_is_a_clear_error(backends: list[RedisServer], tmp_path: Path) -> None:
    p = ProxyProcess(tmp_path, group_config(backends, backend={"max_dedicated": 2})).start()
    held = []
    try:
        for _ in range(2):
            c = Raw(p.port)
            c.send("BLPOP", "{b}q", "0")
            held.append(c)
        until(lambda: backend_blocked(backends) == 2)
        c = Raw(p.port)
        err = c.call("BLPOP", "{b}q", "0")
        assert err.startswith(b"-ERR too many blocked clients on backend") \
            and b"backend.max_dedicated" in err
        assert c.call("SET", "{b}k", "v") == b"+OK\r\n"  # the refused client carries on
        r = p.client()
        assert r.info("proxy")["dedicated_refused"] >= 1
        r.rpush("{b}q", "1", "2")
        assert [decoded(h.read()) for h in held] == [[b"{b}q", b"1"], [b"{b}q", b"2"]]
        assert c.call("BLPOP", "{b}q", "0.01") == b"*-1\r\n"  # a slot is free again
        r.close()
        c.close()
    finally:
        for h in held:
            h.close()
        p.stop()


def test_ten_thousand_pipelined_blpops_are_bounded(
        proxy: ProxyProcess, backends: list[RedisServer]) -> None:
    n = 10_000
    payload = b"".join(pack_command("BLPOP", "{flood}q", "0") for _ in range(n))
    c = Raw(proxy.port)
    sender = threading.Thread(target=_send_all, args=(c.sock, payload), daemon=True)
    sender.start()
    r = proxy.client()
    try:
        until(lambda: backend_blocked(backends) == 1)
        # One is dispatched; the rest wait in order behind it; others are unaffected.
        assert r.info("proxy")["blocked_clients"] == 1
        assert r.info("proxy")["dedicated_connections"] == 1
        assert r.set("flood-other", "ok") and r.get("flood-other") == b"ok"
        line = [x for x in r.client_list() if x.get("pipeline") == "1"]
        assert line, r.client_list()
        r.rpush("{flood}q", *[str(i) for i in range(5)])
        for i in range(5):
            assert decoded(c.read()) == [b"{flood}q", str(i).encode()]
        until(lambda: backend_blocked(backends) == 1)  # the sixth now blocks
    finally:
        # shutdown, not just close: the sender thread still holds the socket in sendall
        with contextlib.suppress(OSError):
            c.sock.shutdown(socket.SHUT_RDWR)
        c.close()
    until(lambda: backend_blocked(backends) == 0, what="the flood's dedicated conn to close")
    until(lambda: r.info("proxy")["blocked_clients"] == 0)
    r.close()


def _send_all(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):
        sock.sendall(data)


def test_wait_counts_replicas_of_every_group(tmp_path: Path) -> None:
    """WAIT through the proxy: the smallest count over the groups, never an over-count."""
    masters = [RedisServer(tmp_path / f"m{i}").start() for i in range(2)]
    replicas = [RedisServer(tmp_path / f"r{i}", extra=["--replicaof", "127.0.0.1", str(m.port)]
                            ).start() for i, m in enumerate(masters)]
    bare = RedisServer(tmp_path / "bare").start()
    p = ProxyProcess(tmp_path / "p", group_config(masters)).start()
    p3 = ProxyProcess(tmp_path / "p3", group_config([*masters, bare]), name="p3").start()
    try:
        for m in masters:
            # online, not just connected: Redis 7 delays a diskless full sync by 5 s, and a
            # replica acknowledges nothing before its sync is done
            until(lambda m=m: redis.Redis(port=m.port).info("replication").get(
                "slave0", {}).get("state") == "online", 30, "replica in sync")
        r = p.client()
        r.set("w1", "a")
        r.set("w2", "b")
        assert r.execute_command("WAIT", "1", "5000") == 1  # one replica in each group
        # numreplicas 0 answers at once, with the replicas that acknowledged so far (the no-op
        # write is new, so as on Redis right after a write: 0 or 1)
        assert r.execute_command("WAIT", "0", "0") in (0, 1)
        r.set("w3", "c")
        # asking for more than there are: the timeout passes, the count is what acknowledged
        # by then (a timeout long enough for one replica per group even on a loaded machine)
        assert r.execute_command("WAIT", "2", "2000") == 1
        # a group without replicas makes it 0: WAIT speaks for every group
        r3 = p3.client()
        r3.set("w4", "d")
        assert r3.execute_command("WAIT", "1", "100") == 0
        # the no-op write leaves no key behind
        for s in [*masters, bare]:
            assert redis.Redis(port=s.port).exists("__slotproxy:wait__") == 0
        # pipelined: WAIT runs after the writes before it are answered, and the GET after it
        c = Raw(p.port)
        c.sock.sendall(pack_command("SET", "w5", "e") + pack_command("WAIT", "1", "5000")
                       + pack_command("GET", "w5"))
        assert [c.read(), c.read(), c.read()] == [b"+OK\r\n", b":1\r\n", b"$1\r\ne\r\n"]
        c.close()
        r.close()
        r3.close()
    finally:
        p.stop()
        p3.stop()
        for s in [*replicas, *masters, bare]:
            s.stop()


def test_shutdown_answers_blocked_clients_with_their_timeout(
        backends: list[RedisServer], tmp_path: Path) -> None:
    p = ProxyProcess(tmp_path, group_config(backends)).start()
    c = Raw(p.port)
    c.send("BLPOP", "{sd}q", "0")
    until(lambda: backend_blocked(backends) == 1)
    assert p.process is not None
    p.process.proc.terminate()  # SIGTERM: graceful shutdown
    assert c.read() == b"*-1\r\n"  # as if it had timed out: nothing popped is lost
    assert p.process.proc.wait(10) == 0
    until(lambda: backend_blocked(backends) == 0)
    c.close()
    p.stop()
