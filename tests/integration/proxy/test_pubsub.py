"""Pub/Sub through the proxy against real redis-servers.

Differential tests run the same steps against a direct redis-server and through a proxy with
one redis-server behind it, over raw sockets, and compare every frame byte for byte. The other
tests use three groups (patterns on every group, channels on their slot's group), redis-py
(sync and asyncio), two proxy processes over the same backends, and bad clients (one that
never reads, one with 100,000 channels) against the limits.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from slotcore.keyslot import key_slot
from slotcore.resp import ReplyReader, pack_command
from tests.harness import ProxyProcess, RedisServer, group_config

# ---------------------------------------------------------------------- helpers


def until(cond, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Conn:
    """A raw RESP client: exact frames (ReplyReader), no client library in between."""

    def __init__(self, port: int, proto: int = 2) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.reader = ReplyReader()
        self.frames: list[bytes] = []
        self.marks = 0
        if proto == 3:
            self.send("HELLO", "3")
            self.read(1)
            self.frames.clear()

    def send(self, *args) -> None:
        self.sock.sendall(pack_command(*args))

    def read(self, n: int, timeout: float = 10.0) -> list[bytes]:
        """At least `n` frames in total (waiting for them), all of them returned."""
        deadline = time.monotonic() + timeout
        while len(self.frames) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"wanted {n} frames, got {self.frames!r}")
            self.sock.settimeout(left)
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise AssertionError(f"connection closed after {self.frames!r}")
            self.frames += self.reader.feed(chunk)
        return self.frames

    def sync(self, want: int | None = None) -> list[bytes]:
        """Everything received before a PING marker's reply (after `want` frames, if given:
        messages published by another client arrive through the proxy a little later)."""
        if want is not None:
            self.read(want)
        self.marks += 1
        mark = f"mark{self.marks}".encode()
        self.send("PING", mark)
        while True:
            frames = self.read(len(self.frames) + 1)
            if frames[-1].endswith(b"\r\n" + mark + b"\r\n"):
                got = frames[:-1]
                self.frames = []
                return got

    def close(self) -> None:
        self.sock.close()


def transcript(port: int, steps: list[tuple], proto: int,
               expect: list[list[list[bytes]]] | None = None) -> list[list[list[bytes]]]:
    """Run `steps` ((client index, *command)); after each, every client's frames so far."""
    nclients = max(s[0] for s in steps) + 1
    conns = [Conn(port, proto) for _ in range(nclients)]
    out = []
    try:
        for i, (who, *cmd) in enumerate(steps):
            conns[who].send(*cmd)
            if who != 0:  # the publisher's reply first, then the others' messages
                conns[who].read(1)
            row = []
            for j, conn in enumerate(conns):
                want = len(expect[i][j]) if expect is not None else None
                row.append(conn.sync(want))
            out.append(row)
    finally:
        for conn in conns:
            conn.close()
    return out


def differential(direct: RedisServer, proxy: ProxyProcess, steps: list[tuple],
                 proto: int) -> None:
    ref = transcript(direct.port, steps, proto)
    got = transcript(proxy.port, steps, proto, expect=ref)
    for i, (a, b) in enumerate(zip(ref, got, strict=True)):
        assert a == b, f"step {i} {steps[i]}: redis {a} != proxy {b}"


def confirmed(ps: redis.client.PubSub, n: int) -> None:
    """Read `n` subscribe confirmations: only then is the subscription in place (as with
    Redis itself, a PUBLISH racing a SUBSCRIBE on another connection may miss it)."""
    got = 0
    while got < n:
        m = ps.get_message(timeout=5.0)
        assert m is not None, "no confirmation"
        assert m["type"] in ("subscribe", "psubscribe", "ssubscribe"), m
        got += 1


def flush(servers: list[RedisServer]) -> None:
    for s in servers:
        redis.Redis(port=s.port).flushall()


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def backend_subscribers(servers: list[RedisServer]) -> int:
    """Connections in subscribed mode on the backends (CLIENT LIST flags P)."""
    n = 0
    for s in servers:
        for c in redis.Redis(port=s.port).client_list():
            if "P" in c["flags"]:
                n += 1
    return n


# ---------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, ProxyProcess]]:
    """A direct redis-server, and a proxy in front of another one (exact differential)."""
    base = tmp_path_factory.mktemp("pair")
    direct = RedisServer(base / "direct").start()
    behind = RedisServer(base / "behind").start()
    p = ProxyProcess(base / "proxy", group_config([behind])).start()
    yield direct, p
    p.stop()
    direct.stop()
    behind.stop()


PROTOS = pytest.mark.parametrize("proto", [2, 3], ids=["resp2", "resp3"])

SEQUENCES = {
    "counts": [
        (0, "SUBSCRIBE", "a", "b", "a"), (0, "PSUBSCRIBE", "p*", "q*"),
        (0, "SSUBSCRIBE", "{s}1", "{s}2"), (0, "UNSUBSCRIBE", "a", "zz"),
        (0, "PUNSUBSCRIBE", "q*"), (0, "SUNSUBSCRIBE", "{s}1"), (0, "UNSUBSCRIBE"),
        (0, "PUNSUBSCRIBE"), (0, "SUNSUBSCRIBE"), (0, "UNSUBSCRIBE"), (0, "PUNSUBSCRIBE"),
        (0, "SUNSUBSCRIBE"), (0, "GET", "x"),
    ],
    "subscribed_rules": [
        (0, "SUBSCRIBE", "ch"), (0, "PING"), (0, "PING", "hello"), (0, "GET", "x"),
        (0, "SET", "x", "1"), (0, "ECHO", "e"), (0, "CLIENT", "SETNAME", "n"), (0, "NOSUCH"),
        (0, "SUBSCRIBE"), (0, "PING", "a", "b"), (0, "GET"), (0, "PUBSUB", "NOSUCH"),
        (0, "RESET"), (0, "GET", "x"), (0, "PING"),
    ],
    "messages": [
        # One matching pattern per client: Redis walks patterns in its hash table's order.
        (0, "SUBSCRIBE", "news", "sport"), (1, "PSUBSCRIBE", "n*"), (4, "PSUBSCRIBE", "ne*", "z*"),
        (2, "SUBSCRIBE", "news"), (3, "PUBLISH", "news", "hello"),
        (3, "PUBLISH", "sport", "goal"), (3, "PUBLISH", "nothing", "x"),
        (3, "PUBLISH", "other", "y"), (4, "PUNSUBSCRIBE", "ne*"),
        (3, "PUBLISH", "news", "again"), (0, "UNSUBSCRIBE", "news"),
        (3, "PUBLISH", "news", "last"), (0, "SSUBSCRIBE", "shard"),
        (3, "SPUBLISH", "shard", "s1"), (3, "SPUBLISH", "none", "s2"),
        (3, "PUBLISH", "shard", "not-sharded"),
    ],
    "introspection": [
        (0, "SUBSCRIBE", "c1", "c2"), (1, "SUBSCRIBE", "c1"), (1, "PSUBSCRIBE", "x*", "y*"),
        (2, "SSUBSCRIBE", "sc"), (3, "PUBSUB", "NUMSUB", "c1", "c2", "c3", "c1"),
        (3, "PUBSUB", "NUMSUB"), (3, "PUBSUB", "NUMPAT"), (3, "PUBSUB", "SHARDNUMSUB", "sc"),
        (3, "PUBSUB", "CHANNELS", "c1*"), (3, "PUBSUB", "SHARDCHANNELS"),
        (3, "PUBSUB", "CHANNELS", "zz*"), (3, "PUBSUB"),
    ],
}


@PROTOS
@pytest.mark.parametrize("name", list(SEQUENCES))
def test_differential(pair, name: str, proto: int) -> None:
    direct, p = pair
    differential(direct, p, SEQUENCES[name], proto)


@PROTOS
def test_resp3_commands_and_pushes_interleave(pair, proto: int) -> None:
    """RESP3: any command while subscribed, replies in order, pushes as they come."""
    direct, p = pair
    steps = [
        (0, "SUBSCRIBE", "mix"), (0, "SET", "k", "v"), (1, "PUBLISH", "mix", "m1"),
        (0, "GET", "k"), (0, "INCR", "n"), (1, "PUBLISH", "mix", "m2"), (0, "MGET", "k", "n"),
        (0, "PSUBSCRIBE", "m*"), (1, "PUBLISH", "mix", "m3"), (0, "DEL", "k", "n"),
        (0, "UNSUBSCRIBE", "mix"), (0, "PUNSUBSCRIBE"), (0, "GET", "k"),
    ]
    if proto == 2:
        steps = [s for s in steps if s[1] not in ("SET", "GET", "INCR", "MGET", "DEL")]
    differential(direct, p, steps, proto)


def test_unsubscribe_all_answers_every_channel(pair) -> None:
    """UNSUBSCRIBE without arguments: one reply per channel, counts down to 0 (Redis's order
    is its hash table's, so names are compared as a set)."""
    direct, p = pair
    for port in (direct.port, p.port):
        c = Conn(port)
        c.send("SUBSCRIBE", *[f"u{i}" for i in range(20)])
        c.send("PSUBSCRIBE", "pat*")
        c.read(21)
        c.frames.clear()
        c.send("UNSUBSCRIBE")
        frames = c.read(20)
        names = sorted(f.split(b"\r\n")[4] for f in frames)
        assert names == sorted(f"u{i}".encode() for i in range(20))
        assert [int(f.split(b"\r\n")[5][1:]) for f in frames] == list(range(20, 0, -1))
        assert all(f.startswith(b"*3\r\n$11\r\nunsubscribe\r\n") for f in frames)
        c.close()


# ---------------------------------------------------------------------- three groups


def three_group_channels(n: int) -> list[str]:
    """`n` channels spread over the three groups of an even 16384-slot map."""
    return [f"chan:{i}" for i in range(n)]


def test_publish_counts_are_exact_across_groups(backends, proxy) -> None:
    """Channels on every group, clients with channels and patterns: every PUBLISH count is
    what one redis-server answers for the same subscribers."""
    flush(backends)
    ref_srv = backends[0]  # a plain redis-server as the reference (own channel namespace)
    chans = three_group_channels(30)
    slots = {key_slot(c.encode()) * 3 // 16384 for c in chans}
    assert slots == {0, 1, 2}  # the channels really are spread over the three groups

    def setup(port: int, prefix: str) -> list[redis.client.PubSub]:
        subs = []
        for i in range(4):
            ps = redis.Redis(port=port).pubsub()
            ps.subscribe(*[prefix + c for c in chans[i::2]])
            if i % 2:
                ps.psubscribe(prefix + "chan:1*", prefix + "chan:*")
            confirmed(ps, len(chans[i::2]) + (2 if i % 2 else 0))
            subs.append(ps)
        return subs

    ref = setup(ref_srv.port, "ref-")
    mine = setup(proxy.port, "")
    try:
        direct = redis.Redis(port=ref_srv.port)
        r = proxy.client()
        want = [direct.publish("ref-" + c, "x") for c in chans]
        got = [r.publish(c, "x") for c in chans]
        assert got == want
        assert max(want) == 6  # 2 channel subscribers + 2 clients with 2 matching patterns
        # SPUBLISH counts only shard subscribers, on the channel's group.
        ps = proxy.client().pubsub()
        ps.ssubscribe("{t}a")
        ps2 = proxy.client().pubsub()
        ps2.ssubscribe("{t}a", "{t}b")
        confirmed(ps, 1)
        confirmed(ps2, 2)
        assert r.spublish("{t}a", "1") == 2
        assert r.spublish("{t}b", "1") == 1
        assert r.publish("{t}a", "1") == 0
        ps.close()
        ps2.close()
    finally:
        for s in ref + mine:
            s.close()


def test_pubsub_introspection_is_merged_over_groups(backends, proxy) -> None:
    flush(backends)
    chans = three_group_channels(12)
    a = proxy.client().pubsub()
    b = proxy.client().pubsub()
    a.subscribe(*chans)
    b.subscribe(*chans[:6])
    a.psubscribe("p1*", "p2*")
    b.psubscribe("p2*", "p3*")
    a.ssubscribe("{x}s")
    confirmed(a, 12 + 2 + 1)
    confirmed(b, 6 + 2)
    r = proxy.client()
    assert sorted(r.pubsub_channels()) == sorted(c.encode() for c in chans)
    assert sorted(r.pubsub_channels("chan:1*")) == sorted(
        c.encode() for c in chans if c.startswith("chan:1"))
    assert r.pubsub_numsub(*chans, "none") == [(c.encode(), 2 if i < 6 else 1)
                                              for i, c in enumerate(chans)] + [(b"none", 0)]
    assert r.pubsub_numpat() == 3
    assert r.pubsub_shardchannels() == [b"{x}s"]
    assert r.execute_command("PUBSUB", "SHARDNUMSUB", "{x}s", "{x}t") == [b"{x}s", 1,
                                                                         b"{x}t", 0]
    # Every pattern is on every group; each channel on exactly one.
    per_group = [redis.Redis(port=s.port) for s in backends]
    assert [g.pubsub_numpat() for g in per_group] == [3, 3, 3]
    assert sum(len(g.pubsub_channels()) for g in per_group) == len(chans)
    a.close()
    b.close()
    until(lambda: r.pubsub_numpat() == 0 and not r.pubsub_channels(), what="unsubscribed")


def test_ssubscribe_channels_must_share_a_slot(proxy) -> None:
    c = Conn(proxy.port)
    c.send("SSUBSCRIBE", "a", "b")
    c.send("SSUBSCRIBE", "{t}a", "{t}b")
    c.send("SUNSUBSCRIBE", "a", "b")
    frames = c.read(4)
    assert frames[0] == b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    assert frames[1:3] == [b"*3\r\n$10\r\nssubscribe\r\n$4\r\n{t}a\r\n:1\r\n",
                           b"*3\r\n$10\r\nssubscribe\r\n$4\r\n{t}b\r\n:2\r\n"]
    assert frames[3] == b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    c.close()


def test_keyspace_notifications_reach_pattern_subscribers_from_every_group(backends,
                                                                          proxy) -> None:
    flush(backends)
    for s in backends:  # the operator's job: notifications are off by default
        redis.Redis(port=s.port).config_set("notify-keyspace-events", "KEA")
    try:
        keys = [f"key:{i}" for i in range(12)]
        assert {key_slot(k.encode()) * 3 // 16384 for k in keys} == {0, 1, 2}
        ps = proxy.client().pubsub()
        ps.psubscribe("__keyspace@0__:*")
        ps.subscribe("__keyevent@0__:set", f"__keyspace@0__:{keys[0]}")
        confirmed(ps, 3)
        r = proxy.client()
        for k in keys:
            r.set(k, "v")
        got: list[tuple] = []

        def collect() -> bool:
            m = ps.get_message(timeout=0.2)
            if m and m["type"] in ("message", "pmessage"):
                got.append((m["type"], m["channel"], m["data"]))
            return len(got) >= 2 * len(keys) + 1

        until(collect, what="notifications")
        assert sorted(d for t, ch, d in got if ch == b"__keyevent@0__:set") == sorted(
            k.encode() for k in keys)
        assert {ch for t, ch, d in got if t == "pmessage"} == {
            f"__keyspace@0__:{k}".encode() for k in keys}
        assert ("message", f"__keyspace@0__:{keys[0]}".encode(), b"set") in got
        ps.close()
    finally:
        for s in backends:
            redis.Redis(port=s.port).config_set("notify-keyspace-events", "")


# ---------------------------------------------------------------------- redis-py


@pytest.mark.parametrize("protocol", [2, 3], ids=["resp2", "resp3"])
def test_redis_py_get_message_listen_and_thread(proxy, protocol: int) -> None:
    r = proxy.client(protocol=protocol)
    ps = r.pubsub()
    ps.subscribe("alpha", "beta")
    ps.psubscribe("gam*")
    confirmed(ps, 3)
    assert r.publish("alpha", "1") == 1
    assert r.publish("gamma", "2") == 1
    m1 = until(lambda: ps.get_message(timeout=1.0), what="message")
    m2 = until(lambda: ps.get_message(timeout=1.0), what="pmessage")
    assert (m1["type"], m1["channel"], m1["data"]) == ("message", b"alpha", b"1")
    assert (m2["type"], m2["pattern"], m2["channel"], m2["data"]) == (
        "pmessage", b"gam*", b"gamma", b"2")
    # listen(): a generator over the same connection
    r.publish("beta", "3")
    for m in ps.listen():
        if m["type"] == "message":
            assert (m["channel"], m["data"]) == (b"beta", b"3")
            break
    ps.close()
    # run_in_thread with handlers
    seen: list[bytes] = []
    done = threading.Event()
    ps2 = r.pubsub()

    def handler(m) -> None:
        seen.append(m["data"])
        if len(seen) == 3:
            done.set()

    ps2.subscribe(**{"thr": handler})
    worker = ps2.run_in_thread(sleep_time=0.01, daemon=True)
    try:
        until(lambda: r.pubsub_numsub("thr")[0][1] == 1, what="thread subscribed")
        for i in range(3):
            r.publish("thr", str(i))
        assert done.wait(10)
        assert seen == [b"0", b"1", b"2"]
    finally:
        worker.stop()
        worker.join(5)
        ps2.close()


def test_redis_py_sharded_pubsub(proxy) -> None:
    r = proxy.client()
    ps = r.pubsub()
    ps.ssubscribe("orders:{eu}", "refunds:{eu}")
    ps.ssubscribe("orders:{us}")
    for _ in range(3):
        assert ps.get_sharded_message(timeout=5.0)["type"] == "ssubscribe"
    assert r.spublish("orders:{eu}", "o1") == 1
    assert r.spublish("orders:{us}", "o2") == 1
    got = [until(lambda: ps.get_sharded_message(timeout=1.0), what="smessage")
           for _ in range(2)]
    assert [(m["type"], m["channel"], m["data"]) for m in got] == [
        ("smessage", b"orders:{eu}", b"o1"), ("smessage", b"orders:{us}", b"o2")]
    ps.sunsubscribe("orders:{eu}", "refunds:{eu}")
    assert r.spublish("orders:{eu}", "o3") == 0
    ps.close()


def test_redis_py_asyncio(proxy) -> None:
    async def main() -> None:
        r = aioredis.Redis(host=proxy.host, port=proxy.port, protocol=3)
        ps = r.pubsub()
        await ps.subscribe("aio")
        await ps.psubscribe("ai*")
        for _ in range(2):
            m = await ps.get_message(timeout=5.0)
            assert m is not None and m["type"] in ("subscribe", "psubscribe")
        assert await r.publish("aio", "hi") == 2
        got = []
        while len(got) < 2:
            m = await ps.get_message(timeout=1.0)
            if m:
                got.append((m["type"], m["data"]))
        assert sorted(got) == [("message", b"hi"), ("pmessage", b"hi")]
        await ps.aclose()
        await r.aclose()

    asyncio.run(main())


def test_subscriber_on_one_proxy_receives_from_another(backends, proxy, tmp_path) -> None:
    other = ProxyProcess(tmp_path / "b", group_config(backends), name="proxy-b").start()
    try:
        ps = proxy.client().pubsub()
        chans = three_group_channels(9)
        ps.subscribe(*chans)
        ps.psubscribe("chan:*")
        confirmed(ps, 10)
        pub = other.client()
        for c in chans:
            assert pub.publish(c, c) == 2
        got = []
        until(lambda: (m := ps.get_message(timeout=0.2)) is None or got.append(m) or
              len(got) == 2 * len(chans), what="messages")
        assert sorted(m["data"] for m in got) == sorted(c.encode() for c in chans * 2)
        ps.close()
    finally:
        other.stop()


# ---------------------------------------------------------------------- limits


@pytest.fixture(scope="module")
def limited(backends, tmp_path_factory) -> Iterator[ProxyProcess]:
    cfg = group_config(backends, pubsub={"output_buffer": "1mb", "max_subscriptions": 50000,
                                         "max_backend_connections": 3})
    p = ProxyProcess(tmp_path_factory.mktemp("limited"), cfg).start()
    yield p
    p.stop()


def test_a_subscriber_that_never_reads_is_dropped_and_memory_stays_bounded(backends,
                                                                          limited) -> None:
    flush(backends)
    assert limited.process is not None
    pid = limited.process.proc.pid
    slow = socket.create_connection(("127.0.0.1", limited.port))
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.sendall(pack_command("SUBSCRIBE", "firehose"))
    pub = limited.client()
    until(lambda: pub.pubsub_numsub("firehose")[0][1] == 1, what="subscribed")
    healthy = limited.client().pubsub()
    healthy.subscribe("calm")
    confirmed(healthy, 1)
    before = rss_kb(pid)
    payload = b"x" * 65536
    sent = 0
    # 64 MiB at a subscriber that reads nothing: 64 times the pub/sub output limit.
    for _ in range(1024):
        if pub.publish("firehose", payload) == 0:
            break  # dropped: its subscription is gone
        sent += 1
    until(lambda: pub.pubsub_numsub("firehose")[0][1] == 0, what="slow subscriber dropped")
    assert sent < 1024
    grown_mb = (rss_kb(pid) - before) / 1024
    assert grown_mb < 1 + 40, f"proxy RSS grew {grown_mb:.0f} MiB"
    # Its backend subscriber connection is closed; the others are unaffected.
    assert pub.info("proxy")["pubsub_clients_dropped"] == 1
    assert pub.publish("calm", "still here") == 1
    m = until(lambda: (x := healthy.get_message(timeout=0.5)) and x["type"] == "message" and x,
              what="healthy subscriber's message")
    assert m["data"] == b"still here"
    assert pub.ping() and pub.set("k", "v") and pub.get("k") == b"v"
    slow.close()
    healthy.close()


def test_subscriptions_and_connections_are_bounded(backends, limited) -> None:
    flush(backends)
    r = limited.client()
    c = Conn(limited.port)
    # 100,000 channels in one SUBSCRIBE: over pubsub.max_subscriptions, refused whole.
    c.send("SUBSCRIBE", *[f"many:{i}" for i in range(100_000)])
    assert c.read(1)[0] == (b"-ERR max number of subscriptions per client reached (50000, "
                            b"pubsub.max_subscriptions)\r\n")
    c.frames.clear()
    assert r.pubsub_channels("many:*") == []
    # Up to the limit works, in pipelined commands of 1,000 channels.
    for b in range(50):
        c.send("SUBSCRIBE", *[f"many:{i}" for i in range(b * 1000, (b + 1) * 1000)])
    frames = c.read(50_000, timeout=60)
    assert frames[-1] == b"*3\r\n$9\r\nsubscribe\r\n$10\r\nmany:49999\r\n:50000\r\n"
    c.frames.clear()
    c.send("SUBSCRIBE", "one-more")
    assert c.read(1)[0].startswith(b"-ERR max number of subscriptions per client reached")
    c.frames.clear()
    assert r.publish("many:12345", "x") == 1
    assert c.read(1)[0] == b"*3\r\n$7\r\nmessage\r\n$10\r\nmany:12345\r\n$1\r\nx\r\n"
    assert r.set("other", "fine") and r.get("other") == b"fine"  # others unaffected
    c.close()
    until(lambda: not r.pubsub_channels("many:*"), what="disconnect unsubscribes")
    # pubsub.max_backend_connections = 3: a fourth subscriber of one group is refused.
    subs = []
    for _ in range(3):
        s = Conn(limited.port)
        s.send("SUBSCRIBE", "g")
        assert s.read(1)[0].startswith(b"*3\r\n$9\r\nsubscribe")
        subs.append(s)
    fourth = Conn(limited.port)
    fourth.send("SUBSCRIBE", "g")
    err = fourth.read(1)[0]
    assert err.startswith(b"-ERR max number of pub/sub connections to backend ")
    assert err.endswith(b"(3, pubsub.max_backend_connections)\r\n")
    assert r.publish("g", "x") == 3
    subs.pop().close()
    until(lambda: r.pubsub_numsub("g")[0][1] == 2, what="a connection freed")
    fourth.frames.clear()
    fourth.send("SUBSCRIBE", "g")
    assert fourth.read(1)[0] == b"*3\r\n$9\r\nsubscribe\r\n$1\r\ng\r\n:1\r\n"
    for s in [*subs, fourth]:
        s.close()


def test_disconnect_and_reset_close_backend_subscriber_connections(backends, proxy) -> None:
    flush(backends)
    base = backend_subscribers(backends)
    c = Conn(proxy.port)
    c.send("PSUBSCRIBE", "any*")  # a pattern: one connection to every group
    c.read(1)
    until(lambda: backend_subscribers(backends) == base + 3, what="3 subscriber connections")
    info = proxy.client().client_list()
    assert any(x.get("psub") == "1" for x in info)
    c.send("RESET")
    assert c.read(2)[1] == b"+RESET\r\n"
    until(lambda: backend_subscribers(backends) == base, what="closed on RESET")
    c.frames.clear()
    c.send("SUBSCRIBE", *three_group_channels(9))
    c.read(9)
    until(lambda: backend_subscribers(backends) == base + 3, what="reopened")
    c.close()
    until(lambda: backend_subscribers(backends) == base, what="closed on disconnect")
