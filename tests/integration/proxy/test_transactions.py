"""MULTI / EXEC / DISCARD / WATCH / UNWATCH through the proxy.

Differential: the same command sequences on raw sockets against one direct redis-server and
through the proxy give byte-identical replies (RESP2 and RESP3). Then real clients: redis-py
sync and asyncio pipelines, `transaction()` with a concurrent modifier, `Lock`; and bad input
(queue bound, leased-connection bound).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aredis

from slotcore.resp import frame_reply, pack_command
from tests.harness import ProxyProcess, RedisServer, group_config, until

pytestmark = pytest.mark.integration


class Raw:
    """A socket that sends commands and returns each reply's exact bytes."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def call(self, *args: bytes | str | int) -> bytes:
        return self.many([args])[0]

    def many(self, cmds: list[tuple]) -> list[bytes]:
        """Send every command in one write (a pipeline), then read one reply per command."""
        self.sock.sendall(b"".join(pack_command(*c) for c in cmds))
        out = []
        for _ in cmds:
            while True:
                end = frame_reply(self.buf, 0) if self.buf else -1
                if end >= 0:
                    break
                chunk = self.sock.recv(65536)
                if not chunk:
                    out.append(b"<closed>")
                    break
                self.buf += chunk
            if end >= 0:
                out.append(self.buf[:end])
                self.buf = self.buf[end:]
            else:
                break
        return out

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def direct(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One plain redis-server, the reference."""
    s = RedisServer(tmp_path_factory.mktemp("direct")).start()
    yield s
    s.stop()


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def pair(request: pytest.FixtureRequest, direct: RedisServer, proxy: ProxyProcess,
         backends: list[RedisServer]) -> Iterator[tuple[Raw, Raw]]:
    for s in [direct, *backends]:
        redis.Redis(port=s.port).flushall()
    a, b = Raw(direct.port), Raw(proxy.port)
    if request.param == 3:
        a.call("HELLO", 3)
        b.call("HELLO", 3)
    yield a, b
    a.close()
    b.close()


# Every key shares the hash tag {t}: one slot, as a transaction through the proxy requires.
SEQUENCES = {
    "basic": [("MULTI",), ("SET", "{t}a", 1), ("INCR", "{t}a"), ("GET", "{t}a"),
              ("EXEC",)],
    "empty": [("MULTI",), ("EXEC",)],
    "per-command error": [("SET", "{t}s", "str"), ("MULTI",), ("INCR", "{t}s"),
                          ("SET", "{t}x", 1), ("LPUSH", "{t}s", "v"), ("EXEC",),
                          ("GET", "{t}x")],
    "execabort unknown": [("MULTI",), ("SET", "{t}a", 1), ("NOSUCHCMD", "x"), ("EXEC",),
                          ("GET", "{t}a")],
    "execabort arity": [("MULTI",), ("GET",), ("SET", "{t}a", 1), ("EXEC",),
                        ("EXISTS", "{t}a")],
    "nested multi": [("MULTI",), ("MULTI",), ("SET", "{t}a", 1), ("EXEC",)],
    "exec without multi": [("EXEC",), ("DISCARD",)],
    "watch inside multi": [("MULTI",), ("WATCH", "{t}a"), ("SET", "{t}a", 2), ("EXEC",)],
    "watch arity inside multi": [("MULTI",), ("WATCH",), ("SET", "{t}a", 2), ("EXEC",)],
    "multi arity": [("MULTI", "x"), ("EXEC",)],
    "discard": [("MULTI",), ("SET", "{t}a", 1), ("DISCARD",), ("GET", "{t}a"), ("EXEC",)],
    "reset": [("WATCH", "{t}a"), ("MULTI",), ("SET", "{t}a", 1), ("RESET",), ("EXEC",),
              ("GET", "{t}a")],
    "watch untouched": [("SET", "{t}w", 1), ("WATCH", "{t}w"), ("GET", "{t}w"), ("MULTI",),
                        ("INCR", "{t}w"), ("EXEC",), ("GET", "{t}w")],
    "watch touched by self": [("WATCH", "{t}w"), ("SET", "{t}w", 5), ("MULTI",),
                              ("INCR", "{t}w"), ("EXEC",), ("GET", "{t}w")],
    "watch several": [("WATCH", "{t}w", "{t}v"), ("WATCH", "{t}u"), ("SET", "{t}u", 1),
                      ("MULTI",), ("SET", "{t}w", 1), ("EXEC",), ("EXISTS", "{t}w")],
    "unwatch": [("WATCH", "{t}w"), ("SET", "{t}w", 5), ("UNWATCH",), ("MULTI",),
                ("INCR", "{t}w"), ("EXEC",)],
    "unwatch inside multi": [("WATCH", "{t}w"), ("MULTI",), ("UNWATCH",), ("INCR", "{t}w"),
                             ("EXEC",)],
    "discard unwatches": [("WATCH", "{t}w"), ("MULTI",), ("DISCARD",), ("SET", "{t}w", 1),
                          ("MULTI",), ("INCR", "{t}w"), ("EXEC",)],
    "exec unwatches": [("WATCH", "{t}w"), ("SET", "{t}w", 1), ("MULTI",), ("EXEC",),
                       ("MULTI",), ("INCR", "{t}w"), ("EXEC",)],
    "execabort unwatches": [("WATCH", "{t}w"), ("MULTI",), ("BAD",), ("EXEC",),
                            ("SET", "{t}w", 1), ("MULTI",), ("INCR", "{t}w"), ("EXEC",)],
    "local commands queued": [("MULTI",), ("PING",), ("PING", "hi"), ("ECHO", "e"),
                              ("SET", "{t}a", 1), ("EXEC",)],
    "watch arity": [("WATCH",), ("EXEC",)],
    "split commands in one slot": [("MULTI",), ("MSET", "{t}a", 1, "{t}b", 2),
                                   ("MGET", "{t}a", "{t}b"), ("DEL", "{t}a", "{t}b", "{t}c"),
                                   ("EXISTS", "{t}a"), ("EXEC",)],
    "mset arity in multi": [("MULTI",), ("MSET", "{t}a", 1, "{t}b"), ("EXEC",)],
    "blocking pop inside multi does not block": [
        ("MULTI",), ("BLPOP", "{t}l", 0), ("RPUSH", "{t}l", "x"), ("BRPOP", "{t}l", 0),
        ("EXEC",)],
    "pipelined after exec": [("MULTI",), ("INCR", "{t}c"), ("EXEC",), ("INCR", "{t}c"),
                             ("GET", "{t}c"), ("WATCH", "{t}c"), ("MULTI",), ("INCR", "{t}c"),
                             ("EXEC",), ("GET", "{t}c"), ("INCR", "{t}c")],
}


@pytest.mark.parametrize("name", list(SEQUENCES))
@pytest.mark.parametrize("pipelined", [False, True], ids=["one-by-one", "pipelined"])
def test_differential(pair: tuple[Raw, Raw], name: str, pipelined: bool) -> None:
    a, b = pair
    cmds = SEQUENCES[name]
    if pipelined:
        want, got = a.many(cmds), b.many(cmds)
    else:
        want = [a.call(*c) for c in cmds]
        got = [b.call(*c) for c in cmds]
    assert got == want, name


def test_watch_touched_by_another_client(pair: tuple[Raw, Raw], direct: RedisServer,
                                         proxy: ProxyProcess) -> None:
    for conn, port in zip(pair, (direct.port, proxy.port), strict=True):
        other = Raw(port)
        assert conn.call("WATCH", "{t}w") == b"+OK\r\n"
        other.call("SET", "{t}w", "changed")
        conn.call("MULTI")
        conn.call("SET", "{t}w", "mine")
        nil = conn.call("EXEC")
        assert nil in (b"*-1\r\n", b"_\r\n")
        assert conn.call("GET", "{t}w") == b"$7\r\nchanged\r\n"
        other.close()
    # RESP2 null array, RESP3 null: the same as Redis (checked above on both)


def test_quit_inside_multi(direct: RedisServer, proxy: ProxyProcess) -> None:
    outs = []
    for port in (direct.port, proxy.port):
        c = Raw(port)
        outs.append(c.many([("WATCH", "{t}q"), ("MULTI",), ("SET", "{t}q", 1), ("QUIT",)]))
        c.close()
    assert outs[0] == outs[1]
    assert redis.Redis(port=proxy.port).get("{t}q") is None


def test_crossslot_inside_multi_aborts(pair: tuple[Raw, Raw]) -> None:
    # Redis Cluster's text; a plain Redis has no such rule, so only the proxy is checked.
    _, b = pair
    assert b.many([("MULTI",), ("SET", "a", 1), ("SET", "b", 2), ("EXEC",)]) == [
        b"+OK\r\n", b"+QUEUED\r\n",
        b"-CROSSSLOT Keys in request don't hash to the same slot\r\n",
        b"-EXECABORT Transaction discarded because of previous errors.\r\n"]
    assert b.call("GET", "a") in (b"$-1\r\n", b"_\r\n")
    assert b.call("MGET", "a", "b")[:1] == b"*"  # out of MULTI: split as usual
    # MGET across slots inside MULTI, and a WATCH in one slot then a key in another.
    assert b.many([("MULTI",), ("MGET", "a", "b"), ("EXEC",)])[1:] == [
        b"-CROSSSLOT Keys in request don't hash to the same slot\r\n",
        b"-EXECABORT Transaction discarded because of previous errors.\r\n"]
    assert b.many([("WATCH", "a", "b")]) == [
        b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"]
    assert b.many([("WATCH", "a"), ("MULTI",), ("SET", "b", 1), ("EXEC",)]) == [
        b"+OK\r\n", b"+OK\r\n", b"-CROSSSLOT Keys in request don't hash to the same slot\r\n",
        b"-EXECABORT Transaction discarded because of previous errors.\r\n"]
    assert b.many([("WATCH", "a"), ("WATCH", "b"), ("UNWATCH",), ("WATCH", "b")]) == [
        b"+OK\r\n", b"-CROSSSLOT Keys in request don't hash to the same slot\r\n",
        b"+OK\r\n", b"+OK\r\n"]
    b.call("UNWATCH")


def test_keyless_transaction_and_time(pair: tuple[Raw, Raw]) -> None:
    _, b = pair
    got = b.many([("MULTI",), ("TIME",), ("PING",), ("EXEC",)])
    assert got[:3] == [b"+OK\r\n", b"+QUEUED\r\n", b"+QUEUED\r\n"]
    assert got[3].startswith(b"*2\r\n*2\r\n$")


def test_proxy_state_commands_refused_inside_multi(pair: tuple[Raw, Raw]) -> None:
    _, b = pair
    got = b.many([("MULTI",), ("SELECT", 0), ("CLIENT", "SETNAME", "x"), ("KEYS", "*"),
                  ("EXEC",)])
    assert got[1].startswith(b"-ERR command 'SELECT' is not supported by the proxy inside")
    assert got[2].startswith(b"-ERR command 'CLIENT SETNAME' is not supported")
    assert got[3].startswith(b"-ERR command 'KEYS' is not supported by the proxy")
    assert got[4].startswith(b"-EXECABORT")


def test_client_list_shows_multi(proxy: ProxyProcess) -> None:
    c = proxy.client()
    b = Raw(proxy.port)
    b.many([("MULTI",), ("SET", "{t}a", 1), ("SET", "{t}a", 2)])
    line = next(ln for ln in c.client_list() if ln["multi"] != "-1")
    assert line["multi"] == "2"
    b.call("DISCARD")
    info = c.info("proxy")
    assert info["transactions_discarded"] >= 1
    c.close()
    b.close()


# ------------------------------------------------------------------ redis-py


def test_redis_py_pipelines(r: redis.Redis) -> None:
    with r.pipeline() as p:  # transactional by default
        p.set("{u}a", 1).incr("{u}a").get("{u}a")
        assert p.execute() == [True, 2, b"2"]
    with r.pipeline(transaction=False) as p:
        for i in range(50):
            p.set(f"k{i}", i)
        p.mget([f"k{i}" for i in range(50)])
        assert p.execute()[-1] == [str(i).encode() for i in range(50)]
    with r.pipeline() as p:
        p.set("{u}s", "x").incr("{u}s").set("{u}b", 2)
        res = p.execute(raise_on_error=False)
        assert res[0] is True and isinstance(res[1], redis.ResponseError) and res[2] is True
    with r.pipeline() as p:
        p.set("{u}a", 1).set("{u}b", 2).get("{u}a")
        assert p.execute() == [True, True, b"1"]
    with r.pipeline() as p, pytest.raises(redis.ResponseError, match="same slot"):
        p.set("x1", 1).set("x2", 2).execute()


def test_redis_py_transaction_with_concurrent_modifier(r: redis.Redis,
                                                       proxy: ProxyProcess) -> None:
    r.set("{c}n", 0)
    other = proxy.client()
    attempts = 0

    def incr(pipe: redis.client.Pipeline) -> None:
        nonlocal attempts
        attempts += 1
        v = int(pipe.get("{c}n"))
        if attempts <= 3:
            other.incr("{c}n", 100)  # between WATCH and EXEC: this attempt must fail
        pipe.multi()
        pipe.set("{c}n", v + 1)

    r.transaction(incr, "{c}n")
    assert attempts == 4
    assert int(r.get("{c}n")) == 301
    other.close()


def test_counter_with_threads(r: redis.Redis, proxy: ProxyProcess) -> None:
    r.set("{c}ctr", 0)
    n_threads, per = 6, 40
    done = []

    def worker() -> None:
        c = proxy.client(protocol=r.connection_pool.connection_kwargs.get("protocol", 2))
        ok = 0
        while ok < per:
            with c.pipeline() as p:
                try:
                    p.watch("{c}ctr")
                    v = int(p.get("{c}ctr"))
                    p.multi()
                    p.set("{c}ctr", v + 1)
                    p.execute()
                    ok += 1
                except redis.WatchError:
                    continue
        done.append(ok)
        c.close()

    ts = [threading.Thread(target=worker) for _ in range(n_threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert sum(done) == n_threads * per
    assert int(r.get("{c}ctr")) == n_threads * per


def test_redis_py_lock(proxy: ProxyProcess, r: redis.Redis) -> None:
    a, b = proxy.client(), proxy.client()
    la = a.lock("res", timeout=5, blocking_timeout=0.2)
    lb = b.lock("res", timeout=5, blocking_timeout=0.2)
    assert la.acquire()
    assert not lb.acquire()
    assert la.extend(10)
    assert 5 < a.pttl("res") / 1000 <= 15
    la.release()
    assert lb.acquire()
    with pytest.raises(redis.exceptions.LockError):
        la.release()
    lb.release()
    a.close()
    b.close()


def test_redis_py_asyncio(proxy: ProxyProcess, r: redis.Redis) -> None:
    async def main() -> None:
        c = aredis.Redis(host=proxy.host, port=proxy.port)
        async with c.pipeline() as p:
            p.set("{a}x", 1).incr("{a}x")
            assert await p.execute() == [True, 2]
        async with c.pipeline(transaction=False) as p:
            p.set("y1", 1).set("y2", 2).mget("y1", "y2")
            assert (await p.execute())[-1] == [b"1", b"2"]
        await c.set("{a}n", 0)

        async def bump(pipe: aredis.client.Pipeline) -> None:
            v = int(await pipe.get("{a}n"))
            pipe.multi()
            pipe.set("{a}n", v + 1)

        async def worker() -> None:
            w = aredis.Redis(host=proxy.host, port=proxy.port)
            for _ in range(20):
                await w.transaction(bump, "{a}n")
            await w.aclose()

        await asyncio.gather(*(worker() for _ in range(5)))
        assert int(await c.get("{a}n")) == 100
        lock = c.lock("alock", timeout=5)
        assert await lock.acquire()
        assert await lock.extend(5)
        await lock.release()
        await c.aclose()

    asyncio.run(main())


# ------------------------------------------------------------------ bounds


@pytest.fixture(scope="module")
def small_proxy(backends: list[RedisServer], tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[ProxyProcess]:
    cfg = group_config(backends, limits={"max_queued": 100},
                       backend={"max_leased": 2})
    p = ProxyProcess(tmp_path_factory.mktemp("small"), cfg).start()
    yield p
    p.stop()


def test_queue_bound(small_proxy: ProxyProcess) -> None:
    b = Raw(small_proxy.port)
    got = b.many([("MULTI",)] + [("INCR", "{q}n")] * 150 + [("EXEC",), ("GET", "{q}n")])
    assert got[1:101] == [b"+QUEUED\r\n"] * 100
    assert got[101].startswith(b"-ERR transaction queue limit reached")
    assert got[-2].startswith(b"-EXECABORT")
    assert got[-1] in (b"$-1\r\n", b"_\r\n")
    b.close()


def test_ten_thousand_queued_commands(proxy: ProxyProcess, r: redis.Redis) -> None:
    b = Raw(proxy.port)
    got = b.many([("MULTI",)] + [("INCR", "{q}n")] * 10_000 + [("EXEC",)])
    assert got[-1].startswith(b"*10000\r\n:1\r\n")
    assert int(r.get("{q}n")) == 10_000
    b.close()


def test_lease_bound(small_proxy: ProxyProcess) -> None:
    holders = [Raw(small_proxy.port) for _ in range(2)]
    for h in holders:
        assert h.call("WATCH", "{l}k") == b"+OK\r\n"
    extra = Raw(small_proxy.port)
    err = extra.call("WATCH", "{l}k")
    assert err.startswith(b"-ERR proxy has 2 dedicated connections to backend")
    # Everyone else is unaffected: plain commands and MULTI without WATCH still work.
    assert extra.call("SET", "{l}k", 1) == b"+OK\r\n"
    assert extra.many([("MULTI",), ("INCR", "{l}k"), ("EXEC",)])[-1] == b"*1\r\n:2\r\n"
    # A returned connection is reused.
    holders[0].call("UNWATCH")  # returned once the backend confirmed its own UNWATCH
    until(lambda: extra.call("WATCH", "{l}k") == b"+OK\r\n", 10, "an UNWATCHed lease reused")
    holders[1].close()  # disconnect returns it too (once the proxy has seen the close)
    other = Raw(small_proxy.port)
    until(lambda: other.call("WATCH", "{l}k") == b"+OK\r\n", 10,
          "a disconnected client's lease returned")
    for c in (holders[0], extra, other):
        c.close()


def test_watch_then_backend_gone_is_no_silent_success(tmp_path: Path) -> None:
    srv = RedisServer(tmp_path / "g").start()
    p = ProxyProcess(tmp_path / "p", group_config([srv])).start()
    try:
        b = Raw(p.port)
        assert b.call("WATCH", "w") == b"+OK\r\n"
        redis.Redis(port=srv.port).client_kill_filter(_type="normal", skipme=True)
        got = b.many([("MULTI",), ("SET", "w", 1), ("EXEC",)])
        assert got[2] in (b"*-1\r\n", b"_\r\n") or got[2].startswith(b"-")
        b.close()
    finally:
        p.stop()
        srv.stop()


def test_subscribe_after_watch_gives_the_lease_back(small_proxy: ProxyProcess) -> None:
    """SUBSCRIBE ends a WATCH (it could not be EXECed from the subscribed mode): its
    dedicated connection goes back to the pool, so the bound is not eaten by subscribers."""
    subs = [Raw(small_proxy.port) for _ in range(3)]  # one more than backend.max_leased
    for s in subs:
        assert s.call("WATCH", "{s}k") == b"+OK\r\n"
        assert s.call("SUBSCRIBE", "ch") == b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"
    for s in subs:
        s.close()


def test_multi_while_subscribed_in_resp3_is_refused_clearly(proxy: ProxyProcess) -> None:
    c = Raw(proxy.port)
    assert c.call("HELLO", "3").startswith(b"%")
    assert c.call("SUBSCRIBE", "ch") == b">3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"
    assert c.call("MULTI") == (b"-ERR command 'MULTI' is not supported by the proxy in "
                               b"subscribed mode\r\n")
    assert c.call("PING") == b"+PONG\r\n"  # still usable, still subscribed
    c.close()
