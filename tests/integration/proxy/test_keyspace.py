"""Keyspace-wide commands through the proxy (3 groups), differential against one direct
redis-server holding the same keys: SCAN KEYS RANDOMKEY DBSIZE FLUSH* LASTSAVE, CONFIG
GET/SET/RESETSTAT, INFO sections, FUNCTION/SCRIPT broadcast, and the refused commands."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from slotcore.resp import ReplyReader, pack_command
from tests.harness import ProxyProcess, RedisServer, free_port, group_config, until

LIB = """#!lua name=ks
redis.register_function('ks_get', function(keys, args) return redis.call('GET', keys[1]) end)
redis.register_function{function_name='ks_ro', callback=function(keys, args)
  return redis.call('GET', keys[1]) end, flags={'no-writes'}}
"""


@pytest.fixture(scope="module")
def direct(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    s = RedisServer(tmp_path_factory.mktemp("direct")).start()
    yield s
    s.stop()


@pytest.fixture
def d(direct: RedisServer, r: redis.Redis) -> Iterator[redis.Redis]:
    """A client on the direct server, same protocol as `r`, flushed."""
    c = redis.Redis(port=direct.port, protocol=r.connection_pool.connection_kwargs.get(
        "protocol", 2))
    c.flushall()
    c.function_flush()
    r.function_flush()
    yield c
    c.close()


def load(clients: list[redis.Redis], n: int = 600) -> set[bytes]:
    keys: set[bytes] = set()
    for c in clients:
        p = c.pipeline(transaction=False)
        for i in range(n):
            p.set(f"s:{i}", i)
            if i % 5 == 0:
                p.hset(f"h:{i}", "f", i)
            if i % 7 == 0:
                p.rpush(f"l:{i}", i)
        p.execute()
    for i in range(n):
        keys.add(f"s:{i}".encode())
        if i % 5 == 0:
            keys.add(f"h:{i}".encode())
        if i % 7 == 0:
            keys.add(f"l:{i}".encode())
    return keys


class Raw:
    """Raw replies, one request at a time."""

    def __init__(self, proxy: ProxyProcess) -> None:
        self.conn = proxy.raw()
        self.reader = ReplyReader()
        self.pending: list[bytes] = []

    def call(self, *args: str) -> bytes:
        self.conn.send(pack_command(*args))
        while not self.pending:
            self.conn.recv_until(lambda buf: bool(buf))
            self.pending += self.reader.feed(self.conn.buf)
            self.conn.buf = b""
        return self.pending.pop(0)


def canon(v):
    """A reply with every array's order ignored (servers list functions in hash order)."""
    if isinstance(v, dict):
        return canon(list(v.items()))
    if isinstance(v, list | tuple):
        return tuple(sorted((canon(x) for x in v), key=repr))
    return v


def full_scan(c: redis.Redis, **kw) -> Counter:
    seen: Counter = Counter()
    cursor = 0
    while True:
        cursor, page = c.scan(cursor, **kw)
        seen.update(page)
        if cursor == 0:
            return seen


# ---------------------------------------------------------------------- SCAN / KEYS
@pytest.mark.parametrize("kw", [{}, {"match": "h:*"}, {"count": 7}, {"_type": "list"},
                                {"match": "s:1*", "count": 1000, "_type": "string"}])
def test_scan_matches_direct(r: redis.Redis, d: redis.Redis, kw) -> None:
    load([r, d])
    via, ref = full_scan(r, **kw), full_scan(d, **kw)
    assert set(via) == set(ref) and ref
    assert max(via.values()) == 1  # no map change: every key exactly once


def test_scan_reply_shape(r: redis.Redis, d: redis.Redis, proxy: ProxyProcess) -> None:
    load([r, d], 50)
    raw = Raw(proxy)
    got = raw.call("SCAN", "0", "COUNT", "5")
    assert got.startswith(b"*2\r\n$")
    cursor, page = r.scan(0)
    assert isinstance(cursor, int) and 0 < cursor < 1 << 63
    assert all(isinstance(k, bytes) for k in page)
    # An empty keyspace ends in one pass of empty pages.
    r.flushall()
    assert full_scan(r) == Counter()


@pytest.mark.parametrize("cursor", ["abc", "-1", "1", "12345678901234", "18446744073709551616"])
def test_forged_cursor_is_an_error(r: redis.Redis, d: redis.Redis, cursor: str) -> None:
    load([r], 20)
    with pytest.raises(redis.ResponseError, match="invalid cursor"):
        r.execute_command("SCAN", cursor)
    if not cursor.lstrip("-").isdigit():
        with pytest.raises(redis.ResponseError, match="invalid cursor"):
            d.execute_command("SCAN", cursor)  # Redis's own text
    assert r.ping()


def test_scan_options_errors_as_redis(r: redis.Redis, d: redis.Redis) -> None:
    for args in (("COUNT", "0"), ("COUNT", "x"), ("BOGUS",)):
        with pytest.raises(redis.ResponseError) as via:
            r.execute_command("SCAN", "0", *args)
        with pytest.raises(redis.ResponseError) as ref:
            d.execute_command("SCAN", "0", *args)
        assert str(ref.value) in str(via.value)


def test_scan_under_concurrent_writes(r: redis.Redis, proxy: ProxyProcess) -> None:
    stable = load([r], 2000)
    stop = threading.Event()

    def churn() -> None:
        w = proxy.client()
        i = 0
        while not stop.is_set():
            p = w.pipeline(transaction=False)
            for j in range(50):
                p.set(f"tmp:{i}:{j}", "x")
                p.delete(f"tmp:{i - 1}:{j}")
            p.execute()
            i += 1
        w.close()

    t = threading.Thread(target=churn)
    t.start()
    try:
        for _ in range(3):
            seen = full_scan(r, count=50)
            assert stable <= set(seen), stable - set(seen)
    finally:
        stop.set()
        t.join()


def test_keys_matches_direct(r: redis.Redis, d: redis.Redis) -> None:
    load([r, d], 300)
    for pattern in ("*", "h:*", "s:1?", "nomatch"):
        assert sorted(r.keys(pattern)) == sorted(d.keys(pattern))


def test_keys_bounded_by_output_limit(backends: list[RedisServer], tmp_path: Path) -> None:
    p = ProxyProcess(tmp_path, group_config(backends, limits={
        "client_output_buffer": 4096})).start()
    try:
        c = p.client()
        for s in backends:
            redis.Redis(port=s.port).flushall()
        c.mset({f"key:{i:05d}": "v" for i in range(2000)})
        with pytest.raises(redis.ResponseError, match=r"over the client output limit.*use SCAN"):
            c.keys("*")
        assert len(c.keys("key:0000*")) == 10  # small replies still fine
        assert c.ping()
    finally:
        p.stop()


# ---------------------------------------------------------------------- RANDOMKEY DBSIZE FLUSH
def test_randomkey(r: redis.Redis, d: redis.Redis) -> None:
    assert r.randomkey() is None and d.randomkey() is None  # nil in both protocols
    r.set("only", "1")
    assert r.randomkey() == b"only"
    keys = load([r], 200) | {b"only"}
    got = {r.randomkey() for _ in range(60)}
    assert got <= keys and len(got) > 10


def test_dbsize_and_flush(r: redis.Redis, d: redis.Redis) -> None:
    load([r, d], 100)
    assert r.dbsize() == d.dbsize()
    assert r.flushdb() is True and r.dbsize() == 0
    load([r], 10)
    assert r.flushall(asynchronous=True) is True
    until(lambda: r.dbsize() == 0, what="async flush")
    assert r.execute_command("FLUSHALL", "SYNC") in (True, b"OK", "OK")
    assert r.execute_command("FLUSHDB", "SYNC") in (True, b"OK", "OK")
    for args in (("FLUSHDB", "BOGUS"), ("FLUSHALL", "ASYNC", "SYNC")):
        with pytest.raises(redis.ResponseError) as via:
            r.execute_command(*args)
        with pytest.raises(redis.ResponseError) as ref:
            d.execute_command(*args)
        assert str(via.value) == str(ref.value)


def test_lastsave(r: redis.Redis, d: redis.Redis, backends: list[RedisServer]) -> None:
    got = r.lastsave()
    assert got == min(redis.Redis(port=s.port).lastsave() for s in backends)
    assert type(got) is type(d.lastsave())


def test_swapdb_move_refused(r: redis.Redis) -> None:
    for args in (("SWAPDB", "0", "1"), ("MOVE", "k", "1")):
        with pytest.raises(redis.ResponseError, match="DB 0 only"):
            r.execute_command(*args)


# ---------------------------------------------------------------------- CONFIG
def test_config_get_matches_direct(r: redis.Redis, d: redis.Redis) -> None:
    for pattern in ("maxmemory-policy", "hash-max-*", "slowlog*"):
        assert r.config_get(pattern) == d.config_get(pattern)
    got = r.execute_command("CONFIG", "GET", "maxmemory", "notify-keyspace-events")
    ref = d.execute_command("CONFIG", "GET", "maxmemory", "notify-keyspace-events")
    if isinstance(got, list):  # RESP2: a flat array, in the server's order
        got, ref = dict(zip(got[::2], got[1::2], strict=True)), dict(
            zip(ref[::2], ref[1::2], strict=True))
    assert got == ref


def test_config_get_shape(proxy: ProxyProcess) -> None:
    raw = Raw(proxy)
    assert raw.call("CONFIG", "GET", "maxmemory") == b"*2\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n"
    raw.call("HELLO", "3")
    assert raw.call("CONFIG", "GET", "maxmemory") == b"%1\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n"


def test_config_get_redacts_secrets(r: redis.Redis) -> None:
    got = r.config_get("*")
    assert len(got) > 100
    for name in ("requirepass", "masterauth", "masteruser", "dir", "dbfilename", "logfile",
                 "aclfile", "tls-key-file-pass"):
        key = name.encode() if isinstance(next(iter(got)), bytes) else name
        assert got[key] in (b"(redacted by the proxy)", "(redacted by the proxy)"), name
    assert r.config_get("maxmemory-policy")


def test_config_set_refused(r: redis.Redis, backends: list[RedisServer]) -> None:
    for param in ("dir", "dbfilename", "DIR", "requirepass", "replicaof", "logfile"):
        with pytest.raises(redis.ResponseError, match="never allowed"):
            r.config_set(param, "/tmp")
    with pytest.raises(redis.ResponseError, match=r"config\.set_allowed"):
        r.config_set("maxclients", "10")
    # One refused parameter refuses the whole call: nothing applied.
    with pytest.raises(redis.ResponseError, match="never allowed"):
        r.execute_command("CONFIG", "SET", "slowlog-max-len", "99", "dir", "/tmp")
    for s in backends:
        assert redis.Redis(port=s.port).config_get("slowlog-max-len")["slowlog-max-len"] != "99"
    with pytest.raises(redis.ResponseError, match="wrong number of arguments"):
        r.execute_command("CONFIG", "SET", "slowlog-max-len")


def test_config_set_every_server_replicas_included(backends: list[RedisServer],
                                                   tmp_path: Path) -> None:
    replica = RedisServer(tmp_path / "replica", extra=[
        "--replicaof", backends[0].host, str(backends[0].port)]).start()
    dead = f"127.0.0.1:{free_port()}"
    try:
        groups = {1: {"master": backends[0].addr, "replicas": [replica.addr]},
                  2: {"master": backends[1].addr}, 3: {"master": backends[2].addr}}
        p = ProxyProcess(tmp_path / "p", {"groups": groups, "config": {
            "set_allowed": ["maxmemory-policy", "slowlog-*", "dir"]}}).start()
        c = p.client()
        assert c.execute_command("CONFIG", "SET", "maxmemory-policy", "allkeys-lru",
                                 "slowlog-max-len", "77") in (True, b"OK")
        for s in [*backends, replica]:
            cfg = redis.Redis(port=s.port, decode_responses=True).config_get("*")
            assert cfg["maxmemory-policy"] == "allkeys-lru", s.addr
            assert cfg["slowlog-max-len"] == "77", s.addr
        with pytest.raises(redis.ResponseError, match="never allowed"):
            c.config_set("dir", "/tmp")  # listed by the operator: still refused
        # Refused alike by every server (a bad value, an unknown name): Redis's own error.
        for param, value in (("maxmemory-policy", "bogus"), ("slowlog-bogus", "1")):
            with pytest.raises(redis.ResponseError) as via:
                c.config_set(param, value)
            with pytest.raises(redis.ResponseError) as ref:
                redis.Redis(port=backends[0].port).config_set(param, value)
            assert str(via.value) == str(ref.value)
        p.stop()
        groups[2]["replicas"] = [dead]
        p = ProxyProcess(tmp_path / "p2", {"groups": groups}).start()
        c = p.client()
        with pytest.raises(redis.ResponseError,
                           match=rf"failed on 1 of 5 servers: group 2 {dead}: ERR unreachable"):
            c.config_set("maxmemory-policy", "volatile-lru")
        for s in [*backends, replica]:  # the reachable ones applied it
            assert redis.Redis(port=s.port, decode_responses=True).config_get(
                "maxmemory-policy")["maxmemory-policy"] == "volatile-lru"
        for s in [*backends, replica]:
            redis.Redis(port=s.port).config_set("maxmemory-policy", "noeviction")
            redis.Redis(port=s.port).config_set("slowlog-max-len", "128")
        p.stop()
    finally:
        replica.stop()


def test_config_resetstat(r: redis.Redis, proxy: ProxyProcess, backends) -> None:
    for i in range(50):
        r.set(f"k{i}", i)
    assert r.config_resetstat() is True
    assert int(r.info("proxy")["total_commands_processed"]) < 5
    assert "cmdstat_set" not in redis.Redis(port=backends[0].port).info("commandstats")
    with pytest.raises(redis.ResponseError, match="not supported by the proxy"):
        r.execute_command("CONFIG", "REWRITE")


# ---------------------------------------------------------------------- INFO
def test_info_sections(r: redis.Redis, d: redis.Redis, backends) -> None:
    r.config_resetstat()
    load([r, d], 300)
    for sec in ("server", "clients", "memory", "persistence", "stats", "replication", "cpu",
                "commandstats", "errorstats", "cluster", "keyspace"):
        via, ref = r.info(sec), d.info(sec)
        assert set(ref) <= set(via) or sec in ("commandstats", "errorstats"), sec
    ks = r.info("keyspace")["db0"]
    assert ks["keys"] == d.info("keyspace")["db0"]["keys"]
    calls = sum(redis.Redis(port=s.port).info("commandstats")["cmdstat_set"]["calls"]
                for s in backends)
    cs = r.info("commandstats")["cmdstat_set"]
    assert cs["calls"] == calls
    assert abs(cs["usec_per_call"] - cs["usec"] / cs["calls"]) < 0.01
    with pytest.raises(redis.ResponseError):
        r.execute_command("NOSUCHCMD")
    # errorstats of the backends summed (the proxy's own replies are not backend errors)
    for s in backends:
        redis.Redis(port=s.port).execute_command("CONFIG", "RESETSTAT")
    with pytest.raises(redis.ResponseError):
        r.execute_command("HGET", "s:1", "f")  # WRONGTYPE on one backend
    assert r.info("errorstats")["errorstat_WRONGTYPE"]["count"] == 1
    cl = r.info("clients")
    assert cl["connected_clients"] >= 1 and cl["blocked_clients"] == 0
    assert r.info("cluster")["cluster_enabled"] == 1  # the masquerade is on by default


def test_info_multiple_sections_all_everything(r: redis.Redis, d: redis.Redis) -> None:
    def titles(text: str) -> list[str]:
        return [line[2:].strip() for line in text.splitlines() if line.startswith("# ")]

    for args in (("server", "clients"), ("all",), ("everything",), ("default",), ()):
        via = titles(_info_text(r, *args))
        ref = titles(_info_text(d, *args))
        assert [t for t in via if t != "Proxy"] == ref, args
    assert "Proxy" in titles(_info_text(r, "everything"))
    assert "Proxy" not in titles(_info_text(r, "server"))


def _info_text(c: redis.Redis, *args: str) -> str:
    conn = c.connection_pool.get_connection()
    try:
        conn.send_command("INFO", *args)
        raw = conn.read_response(disable_decoding=True)
    finally:
        c.connection_pool.release(conn)
    return raw.decode() if isinstance(raw, bytes) else str(raw)


# ---------------------------------------------------------------------- FUNCTION / SCRIPT
def test_function_everywhere(r: redis.Redis, d: redis.Redis) -> None:
    assert r.function_load(LIB) in (b"ks", "ks")
    d.function_load(LIB)
    r.mset({f"f{i}": i for i in range(30)})  # keys on every group
    for i in range(30):
        assert r.fcall("ks_get", 1, f"f{i}") == str(i).encode()
        assert r.fcall_ro("ks_ro", 1, f"f{i}") == str(i).encode()
    assert canon(r.function_list()) == canon(d.function_list())
    assert canon(r.function_list(library="ks", withcode=True)) == canon(d.function_list(
        library="ks", withcode=True))
    dump = r.function_dump()
    assert isinstance(dump, bytes) and dump
    with pytest.raises(redis.ResponseError, match="already exists"):
        r.function_load(LIB)
    assert r.function_load(LIB, replace=True) in (b"ks", "ks")
    assert r.function_delete("ks") is True
    with pytest.raises(redis.ResponseError, match=r"ks_get|not found|Function not found"):
        r.fcall("ks_get", 1, "f1")
    assert r.function_restore(dump) is True
    assert r.fcall("ks_get", 1, "f2") == b"2"
    assert r.function_restore(dump, "REPLACE") is True
    stats = r.function_stats()
    assert stats
    with pytest.raises(redis.ResponseError) as via:
        r.function_kill()
    with pytest.raises(redis.ResponseError) as ref:
        d.function_kill()
    assert str(via.value) == str(ref.value)  # NOTBUSY
    assert r.function_flush() is True
    assert r.function_list() == []


def test_function_group_failure_reported(r: redis.Redis, d: redis.Redis, backends) -> None:
    redis.Redis(port=backends[1].port).function_load(LIB)  # only group 2 has it
    with pytest.raises(redis.ResponseError, match=r"group 2: .*already exists"):
        r.function_load(LIB)
    assert canon(r.function_list()) == canon(d.function_load(LIB) and d.function_list())
    other = LIB.replace("name=ks", "name=other").replace("'ks_", "'other_").replace(
        "name='ks_", "name='other_")
    redis.Redis(port=backends[2].port).function_load(other)
    with pytest.raises(redis.ResponseError,
                       match=r"FUNCTION LIST differs between groups \(3 differ"):
        r.function_list()
    r.function_flush()


def test_script_everywhere(r: redis.Redis, d: redis.Redis) -> None:
    sha = r.script_load("return redis.call('GET', KEYS[1])")
    r.mset({f"e{i}": i for i in range(30)})
    for i in range(30):
        assert r.evalsha(sha, 1, f"e{i}") == str(i).encode()
    assert r.script_exists(sha, "0" * 40) == [True, False]
    with pytest.raises(redis.ResponseError) as via:
        r.script_kill()
    with pytest.raises(redis.ResponseError) as ref:
        d.script_kill()
    assert str(via.value) == str(ref.value)
    assert r.script_flush() is True


# ---------------------------------------------------------------------- keyed and refused
def test_keyed_introspection(r: redis.Redis, d: redis.Redis) -> None:
    load([r, d], 20)
    for k in ("s:1", "h:0", "l:7"):
        assert r.type(k) == d.type(k)
        assert r.object("encoding", k) == d.object("encoding", k)
        assert r.memory_usage(k) == d.memory_usage(k)


@pytest.mark.parametrize("args,why", [
    (("DEBUG", "SLEEP", "0"), "administrative"),
    (("SHUTDOWN",), "SIGTERM"),
    (("MONITOR",), "administrative"),
    (("REPLICAOF", "NO", "ONE"), "dashboard/Sentinel"),
    (("SLAVEOF", "NO", "ONE"), "dashboard/Sentinel"),
    (("FAILOVER",), "dashboard/Sentinel"),
    (("ACL", "SETUSER", "u"), "proxy users"),
    (("ACL", "LIST"), "proxy users"),
    (("SAVE",), "persistence"),
    (("BGSAVE",), "persistence"),
    (("BGREWRITEAOF",), "persistence"),
    (("MODULE", "LIST"), "modules"),
    (("CONFIG", "REWRITE"), "config file"),
])
def test_refused_with_reason(r: redis.Redis, args, why) -> None:
    with pytest.raises(redis.ResponseError, match="not supported by the proxy") as e:
        r.execute_command(*args)
    assert why in str(e.value)
    assert r.ping()
