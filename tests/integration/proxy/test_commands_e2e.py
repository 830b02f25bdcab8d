"""Every data type's common commands, routing, split/merge and CROSSSLOT through a real proxy
over three real redis-server groups, with redis-py as the client."""

from __future__ import annotations

import subprocess

import pytest
import redis

from slotcore.keyslot import key_slot
from tests.harness import ProxyProcess, RedisServer

pytestmark = pytest.mark.integration


def owner(backends: list[RedisServer], key: bytes | str) -> redis.Redis:
    """The backend that must hold `key`: the proxy spreads 16384 slots evenly over 3 groups."""
    k = key.encode() if isinstance(key, str) else key
    slot = key_slot(k)
    # SlotMap.even gives group i the contiguous slots [16384*i//3, 16384*(i+1)//3)
    index = next(i for i in range(3) if 16384 * i // 3 <= slot < 16384 * (i + 1) // 3)
    return redis.Redis(port=backends[index].port)


def stream_entries(reply: object) -> dict[bytes, list]:
    """XREAD/XREADGROUP reply as {stream: entries}: a list of pairs in RESP2, a map in RESP3."""
    if isinstance(reply, dict):  # RESP3: {stream: [[entry, ...]]}
        return {k: (v[0] if v and isinstance(v[0], list) else v) for k, v in reply.items()}
    return {k: v for k, v in reply}  # type: ignore[union-attr]


def test_strings_land_on_the_owning_group(r: redis.Redis, backends: list[RedisServer]) -> None:
    keys = [f"user:{i}" for i in range(300)]
    for k in keys:
        assert r.set(k, k.upper())
    for k in keys:
        assert r.get(k) == k.upper().encode()
        assert owner(backends, k).get(k) == k.upper().encode()
    # and nowhere else
    per_backend = [redis.Redis(port=b.port).dbsize() for b in backends]
    assert sum(per_backend) == 300
    assert all(n > 50 for n in per_backend), per_backend


def test_string_commands(r: redis.Redis) -> None:
    assert r.set("s", "10") is True
    assert r.incr("s") == 11
    assert r.incrby("s", 5) == 16
    assert r.decr("s") == 15
    assert r.incrbyfloat("s", 0.5) == 15.5
    assert r.append("s2", "ab") == 2
    assert r.append("s2", "cd") == 4
    assert r.getrange("s2", 1, 2) == b"bc"
    assert r.strlen("s2") == 4
    assert r.setnx("s2", "x") is False
    assert r.set("s2", "new", get=True) == b"abcd"
    assert r.getdel("s2") == b"new"
    assert r.get("s2") is None
    assert r.set("e", "v", ex=100) is True
    assert 90 < r.ttl("e") <= 100
    assert r.set("e", "v", nx=True) is None
    assert r.set("e2", "v", ex=50) is True
    assert r.pexpire("e2", 100000) is True
    assert r.persist("e2") is True
    assert r.ttl("e2") == -1
    assert r.type("e2") == b"string"
    assert r.exists("e2") == 1
    assert r.setbit("bits", 7, 1) == 0
    assert r.getbit("bits", 7) == 1
    assert r.bitcount("bits") == 1
    assert r.get("nosuch") is None


def test_lists_hashes_sets_zsets(r: redis.Redis) -> None:
    assert r.rpush("l", "a", "b", "c") == 3
    assert r.lpush("l", "z") == 4
    assert r.lrange("l", 0, -1) == [b"z", b"a", b"b", b"c"]
    assert r.lpop("l") == b"z"
    assert r.rpop("l") == b"c"
    assert r.llen("l") == 2
    assert r.lindex("l", 1) == b"b"

    assert r.hset("h", mapping={"f1": "1", "f2": "2"}) == 2
    assert r.hget("h", "f1") == b"1"
    assert r.hgetall("h") == {b"f1": b"1", b"f2": b"2"}
    assert r.hincrby("h", "f1", 10) == 11
    assert sorted(r.hkeys("h")) == [b"f1", b"f2"]
    assert r.hdel("h", "f2") == 1
    assert r.hlen("h") == 1

    assert r.sadd("set", "a", "b", "c") == 3
    assert r.sismember("set", "a")
    assert r.smembers("set") == {b"a", b"b", b"c"}
    assert r.srem("set", "a") == 1
    assert r.scard("set") == 2

    assert r.zadd("z", {"a": 1, "b": 2, "c": 3}) == 3
    assert [tuple(x) for x in r.zrange("z", 0, -1, withscores=True)] == [
        (b"a", 1.0), (b"b", 2.0), (b"c", 3.0)]
    assert r.zscore("z", "b") == 2.0
    assert r.zincrby("z", 5, "a") == 6.0
    assert r.zrevrange("z", 0, 0) == [b"a"]
    assert r.zrank("z", "b") == 0
    assert r.zcard("z") == 3


def test_streams_geo_hll_and_scripts(r: redis.Redis) -> None:
    i1 = r.xadd("st", {"a": "1"})
    r.xadd("st", {"a": "2"})
    assert r.xlen("st") == 2
    assert [e[1] for e in r.xrange("st")] == [{b"a": b"1"}, {b"a": b"2"}]
    r.xgroup_create("st", "g", id="0")
    got = stream_entries(r.xreadgroup("g", "c1", {"st": ">"}, count=1))
    assert got[b"st"][0][0] == i1
    assert r.xack("st", "g", i1) == 1
    # XREAD without BLOCK is served; keys found after STREAMS
    assert len(stream_entries(r.xread({"st": "0"}))[b"st"]) == 2

    assert r.geoadd("geo", (13.361389, 38.115556, "Palermo"), ) == 1
    assert r.geoadd("geo", (15.087269, 37.502669, "Catania")) == 1
    assert 166000 < r.geodist("geo", "Palermo", "Catania") < 167000

    assert r.pfadd("hll", "a", "b", "c") == 1
    assert r.pfcount("hll") == 3

    # EVAL with keys in one slot is served by that group; numkeys 0 goes to any group.
    assert r.eval("return redis.call('SET', KEYS[1], ARGV[1])", 1, "ek", "v") == b"OK"
    assert r.get("ek") == b"v"
    assert r.eval("return 7", 0) == 7
    sha = r.script_load("return redis.call('GET', KEYS[1])")
    # SCRIPT LOAD reaches every group, so EVALSHA works whatever group the key is on.
    for k in ("ek", "a", "b", "c", "d", "e"):
        r.set(k, k)
        assert r.evalsha(sha, 1, k) == k.encode()
    assert r.script_exists(sha) == [True]


def test_multikey_split_and_merge(r: redis.Redis, backends: list[RedisServer]) -> None:
    keys = [f"mk:{i}" for i in range(100)]
    assert r.mset({k: f"v{i}" for i, k in enumerate(keys)}) is True
    # all three groups got some
    assert all(redis.Redis(port=b.port).dbsize() > 10 for b in backends)
    want = [f"v{i}".encode() for i in range(100)]
    assert r.mget(keys) == want
    # missing keys are nil, in position
    assert r.mget(["mk:1", "missing:1", "mk:50", "missing:2"]) == [b"v1", None, b"v50", None]
    # duplicates keep their positions
    assert r.mget(["mk:3", "mk:3", "mk:4"]) == [b"v3", b"v3", b"v4"]
    assert r.exists(*keys[:30], "missing:x") == 30
    assert r.exists("mk:1", "mk:1") == 2  # Redis counts duplicates
    assert r.touch(*keys[:10]) == 10
    assert r.delete(*keys[:40], "missing:y") == 40
    assert r.unlink(*keys[40:70]) == 30
    assert r.mget(keys[35:45]) == [None] * 10
    assert r.mget(keys[68:72]) == [None, None, want[70], want[71]]
    assert r.dbsize() == 30
    # single key variants go straight through
    assert r.delete("mk:99") == 1
    assert r.exists("mk:99") == 0


def test_mset_arity_and_mget_errors(r: redis.Redis) -> None:
    with pytest.raises(redis.ResponseError, match="wrong number of arguments for 'mset'"):
        r.execute_command("MSET", "a", "1", "b")
    with pytest.raises(redis.ResponseError, match="wrong number of arguments for 'mget'"):
        r.execute_command("MGET")
    # a wrong-type error from one group is the reply of the whole command
    r.lpush("listkey", "x")
    assert r.mget(["a", "listkey"]) == [None, None]  # MGET on a list is nil, not an error


def test_crossslot_refused_and_same_slot_served(r: redis.Redis, proxy: ProxyProcess) -> None:
    r.set("a", "1")
    # "a" and "b" are in different slots
    assert key_slot(b"a") != key_slot(b"b")
    for args in (
        ("RENAME", "a", "b"),
        ("SMOVE", "a", "b", "m"),
        ("LMOVE", "a", "b", "LEFT", "RIGHT"),
        ("SINTERSTORE", "a", "b", "c"),
        ("ZUNIONSTORE", "d", "2", "a", "b"),
        ("BITOP", "AND", "d", "a", "b"),
        ("PFMERGE", "a", "b"),
        ("MSETNX", "a", "1", "b", "2"),
        ("EVAL", "return 1", "2", "a", "b"),
    ):
        with pytest.raises(redis.ResponseError, match="Keys in request don't hash to the same"):
            r.execute_command(*args)
    raw = proxy.raw()
    raw.send(b"RENAME a b\r\n")
    assert raw.read_lines(1) == [b"-CROSSSLOT Keys in request don't hash to the same slot"]
    raw.close()
    # with a hash tag everything is one slot and Redis semantics apply
    r.set("{u1}a", "1")
    assert r.rename("{u1}a", "{u1}b") is True
    assert r.get("{u1}b") == b"1"
    r.sadd("{t}s1", "x", "y")
    r.sadd("{t}s2", "y", "z")
    assert r.sinterstore("{t}dst", ["{t}s1", "{t}s2"]) == 1
    assert r.zadd("{t}z1", {"a": 1}) == 1
    assert r.zadd("{t}z2", {"a": 2, "b": 3}) == 2
    assert r.zunionstore("{t}zd", ["{t}z1", "{t}z2"]) == 2
    assert r.zscore("{t}zd", "a") == 3.0
    assert r.msetnx({"{t}n1": "1", "{t}n2": "2"}) is True
    assert r.eval("return redis.call('MGET', KEYS[1], KEYS[2])", 2, "{t}n1", "{t}n2") == [
        b"1", b"2"]
    assert r.lmove("{t}nolist", "{t}other") is None


def test_unsupported_and_unknown_keep_the_connection(r: redis.Redis) -> None:
    for args, reason in (
        (("MONITOR",), "administrative"),
        (("SWAPDB", "0", "1"), "DB 0 only"),
        (("SHUTDOWN",), "SIGTERM"),
        (("CONFIG", "REWRITE"), "config file"),
    ):
        with pytest.raises(redis.ResponseError) as e:
            r.execute_command(*args)
        msg = str(e.value)
        assert "is not supported by the proxy" in msg and reason in msg, msg
        assert r.ping() is True  # same connection still works
    with pytest.raises(redis.ResponseError, match="unknown command 'NOSUCHCMD'"):
        r.execute_command("NOSUCHCMD", "x")
    with pytest.raises(redis.ResponseError, match="wrong number of arguments for 'get'"):
        r.execute_command("GET")
    # containers (OBJECT, XINFO, MEMORY...) answer like Redis for a bad subcommand
    with pytest.raises(redis.ResponseError, match=r"unknown subcommand 'BOGUS'\. Try OBJECT HELP"):
        r.execute_command("OBJECT", "BOGUS", "k")
    with pytest.raises(redis.ResponseError, match="wrong number of arguments for 'object'"):
        r.execute_command("OBJECT")
    r.hset("objh", "a", "1")
    assert r.object("encoding", "objh") in (b"listpack", "listpack")
    assert r.memory_usage("objh") > 0
    assert r.ping() is True


def test_keyless_commands(r: redis.Redis, proxy: ProxyProcess) -> None:
    assert r.ping() is True
    assert r.echo("hello") == b"hello"
    assert r.execute_command("SELECT", "0") is True
    with pytest.raises(redis.ResponseError, match="DB index is out of range"):
        r.execute_command("SELECT", "3")
    assert r.client_setname("worker-1") is True
    assert r.client_getname() == "worker-1" or r.client_getname() == b"worker-1"
    cid = r.client_id()
    assert isinstance(cid, int) and cid > 0
    assert "worker-1" in str(r.execute_command("CLIENT", "LIST"))
    count = r.command_count()
    assert count > 200
    assert r.command_getkeys("ZUNIONSTORE", "d", "2", "a", "b", "WEIGHTS", "1", "2") in ([
        b"d", b"a", b"b"], ["d", "a", "b"])
    raw = proxy.raw()
    raw.send(b"COMMAND DOCS get\r\n")
    docs = raw.read_lines(5)
    assert docs[:3] == [b"*2", b"$3", b"get"] and docs[3][:1] == b"*"  # Redis's own docs
    raw.buf = b""
    raw.close()
    raw = proxy.raw()
    raw.send(b"COMMAND INFO get nosuch\r\n")
    head = raw.read_lines(4)
    assert head[:4] == [b"*2", b"*10", b"$3", b"get"]  # Redis 7 shape: 10 fields
    raw.close()
    for i in range(50):
        r.set(f"db:{i}", i)
    assert r.dbsize() == 50
    info = r.info()
    assert info["redis_mode"] == "proxy"
    assert info["groups"] == 3 and info["groups_up"] == 3
    assert info["db0"]["keys"] == 50
    assert "used_memory" in info
    assert r.info("proxy")["slots"] == 16384
    t = r.time()
    assert t[0] > 1_600_000_000
    with pytest.raises(redis.ResponseError, match="NOPROTO"):
        r.execute_command("HELLO", "4")
    assert r.execute_command("CLUSTER", "KEYSLOT", "somekey") == 11058
    assert r.execute_command("CLUSTER", "KEYSLOT", "foo{hash_tag}") == 2515


def test_quit_closes_after_reply(proxy: ProxyProcess) -> None:
    raw = proxy.raw()
    raw.send(b"PING\r\nQUIT\r\nPING\r\n")
    assert raw.read_lines(2) == [b"+PONG", b"+OK"]
    assert raw.closed_by_peer()
    assert raw.buf == b""  # nothing after QUIT was executed
    raw.close()


def test_pipeline_of_10000_mixed_commands_in_order(r: redis.Redis) -> None:
    pipe = r.pipeline(transaction=False)
    expected: list[object] = []
    for i in range(10000):
        k = f"p:{i % 997}"
        match i % 5:
            case 0:
                pipe.set(k, i)
                expected.append(True)
            case 1:
                pipe.incr(f"cnt:{i % 13}")
                expected.append(None)  # checked below
            case 2:
                pipe.get(k)
                expected.append("get")
            case 3:
                pipe.rpush(f"lst:{i % 7}", i)
                expected.append(None)
            case 4:
                pipe.echo(str(i))
                expected.append(str(i).encode())
    results = pipe.execute()
    assert len(results) == 10000
    last_set: dict[str, int] = {}
    counters: dict[str, int] = {}
    lists: dict[str, int] = {}
    for i, (res, exp) in enumerate(zip(results, expected, strict=True)):
        k = f"p:{i % 997}"
        match i % 5:
            case 0:
                assert res is True
                last_set[k] = i
            case 1:
                c = f"cnt:{i % 13}"
                counters[c] = counters.get(c, 0) + 1
                assert res == counters[c], (i, res)
            case 2:
                assert res == (str(last_set[k]).encode() if k in last_set else None), i
            case 3:
                lk = f"lst:{i % 7}"
                lists[lk] = lists.get(lk, 0) + 1
                assert res == lists[lk]
            case 4:
                assert res == exp


def test_redis_cli_works_through_the_proxy(proxy: ProxyProcess, r: redis.Redis) -> None:
    out = subprocess.run(
        ["redis-cli", "-p", str(proxy.port), "SET", "cli:k", "hello"],
        capture_output=True, text=True, timeout=10, check=True)
    assert out.stdout.strip() == "OK"
    out = subprocess.run(
        ["redis-cli", "-p", str(proxy.port), "--no-raw", "MGET", "cli:k", "nothing"],
        capture_output=True, text=True, timeout=10, check=True)
    assert out.stdout.splitlines() == ['1) "hello"', "2) (nil)"]
    # redis-cli in pipe mode (the mass-insertion protocol)
    data = "".join(f"SET pipe:{i} {i}\r\n" for i in range(1000))
    out = subprocess.run(["redis-cli", "-p", str(proxy.port), "--pipe"], input=data,
                         capture_output=True, text=True, timeout=30)
    assert "errors: 0, replies: 1000" in out.stdout, out.stdout + out.stderr
    assert r.get("pipe:999") == b"999"
