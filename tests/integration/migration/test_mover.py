"""The key mover against real redis-servers (no proxies): every type with TTLs, throttling,
big keys found before anything moves, and big keys copied in chunks without a long block."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

from dashboard.migrate.bigkeys import copy_big_key, tmp_name
from dashboard.migrate.mover import MovePass, Settings, Throttle, count_slot_keys, prescan
from slotcore.keyslot import key_slot
from tests.harness.commandlog import Command, CommandLog

NSLOTS = 1024


def content(r: redis.Redis, k: bytes) -> object:
    kind = r.type(k)
    if kind == b"string":
        return r.get(k)
    if kind == b"hash":
        return r.hgetall(k)
    if kind == b"list":
        return r.lrange(k, 0, -1)
    if kind == b"set":
        return r.smembers(k)
    if kind == b"zset":
        return r.zrange(k, 0, -1, withscores=True)
    if kind == b"stream":
        return r.xrange(k)
    return kind


def fill_all_types(r: redis.Redis, prefix: str, n: int) -> dict[bytes, str]:
    """n keys of each type, every other one with a TTL; returns key -> type."""
    kinds: dict[bytes, str] = {}
    p = r.pipeline(transaction=False)
    for i in range(n):
        k = f"{prefix}:s:{i}"
        p.set(k, f"v{i}")
        kinds[k.encode()] = "string"
        k = f"{prefix}:h:{i}"
        p.hset(k, mapping={"a": i, "b": "x"})
        kinds[k.encode()] = "hash"
        k = f"{prefix}:l:{i}"
        p.rpush(k, 1, 2, 3)
        kinds[k.encode()] = "list"
        k = f"{prefix}:S:{i}"
        p.sadd(k, "x", "y")
        kinds[k.encode()] = "set"
        k = f"{prefix}:z:{i}"
        p.zadd(k, {"a": 1.5, "b": 2})
        kinds[k.encode()] = "zset"
        k = f"{prefix}:x:{i}"
        p.xadd(k, {"f": "v"}, id="1-1")
        p.xadd(k, {"f": "w"}, id="2-1")
        kinds[k.encode()] = "stream"
    p.execute()
    p = r.pipeline(transaction=False)
    for j, k in enumerate(sorted(kinds)):
        if j % 2:
            p.expire(k, 3600)
    p.execute()
    return kinds


async def run_pass(source: str, target: str, slots: set[int], settings: Settings):
    moved: dict[int, int] = {}

    def on_moved(slot: int, keys: int, nbytes: int) -> None:
        moved[slot] = moved.get(slot, 0) + keys

    async def on_big(key: bytes, size: int, slot: int) -> None:
        raise AssertionError(f"unexpected big key {key!r}")

    res = await MovePass(source, dict.fromkeys(slots, target), NSLOTS, settings, on_moved,
                         on_big).run()
    return res, moved


async def test_every_type_with_ttl_moves_only_the_leaving_slots(two_redis) -> None:
    src, dst = two_redis
    a, b = redis.Redis(port=src.port), redis.Redis(port=dst.port)
    kinds = fill_all_types(a, "k", 300)
    before = {k: (a.type(k), content(a, k), a.ttl(k)) for k in kinds}
    leaving = set(range(0, 512))
    settings = Settings(batch_size=100)
    pre = await prescan(src.addr, leaving, NSLOTS, settings)
    expected = sum(1 for k in kinds if key_slot(k, NSLOTS) in leaving)
    assert sum(pre.keys.values()) == expected and not pre.big
    res, moved = await run_pass(src.addr, dst.addr, leaving, settings)
    assert not res.failed
    assert sum(moved.values()) == expected
    for k, _kind in kinds.items():
        on_src, on_dst = a.exists(k), b.exists(k)
        if key_slot(k, NSLOTS) in leaving:
            assert (on_src, on_dst) == (0, 1), k
            t, dump, ttl = before[k]
            assert b.type(k) == t and content(b, k) == dump
            assert (b.ttl(k) > 3500) if ttl > 0 else (b.ttl(k) == -1)
        else:
            assert (on_src, on_dst) == (1, 0), k
    # a second pass finds nothing left of those slots
    assert await count_slot_keys(src.addr, leaving, NSLOTS) == {}
    res, moved = await run_pass(src.addr, dst.addr, leaving, settings)
    assert moved == {} and not res.failed


async def test_throttle_limits_keys_per_second(two_redis, monkeypatch) -> None:
    src, dst = two_redis
    a = redis.Redis(port=src.port)
    p = a.pipeline(transaction=False)
    for i in range(3000):
        p.set(f"t:{i}", i)
    p.execute()
    settings = Settings(batch_size=100, keys_per_sec=6000)
    taken: list[int] = []
    take = Throttle.take

    async def counting_take(self: Throttle, n: int) -> None:
        taken.append(n)
        await take(self, n)

    monkeypatch.setattr(Throttle, "take", counting_take)
    t0 = time.monotonic()
    _res, moved = await run_pass(src.addr, dst.addr, set(range(NSLOTS)), settings)
    took = time.monotonic() - t0
    assert sum(moved.values()) == 3000
    # Every key went through the token bucket, one MIGRATE batch at a time.
    assert sum(taken) == 3000 and max(taken) <= 100
    # The bucket starts empty, so 3000 keys at 6000 keys/s sleep >= (3000 - 100) / 6000 s.
    # Only a lower bound, which the throttle's sleeps guarantee: a loaded machine can make
    # the pass slower, never faster. (No upper bound: that would time the machine.)
    assert took >= (3000 - 100) / 6000, took


async def test_target_down_is_reported_as_server_down(two_redis) -> None:
    from dashboard.migrate.mover import ServerDown
    src, dst = two_redis
    redis.Redis(port=src.port).set("x", 1)
    dst.stop()
    with pytest.raises(ServerDown, match="target"):
        await run_pass(src.addr, dst.addr, set(range(NSLOTS)), Settings())
    assert redis.Redis(port=src.port).get("x") == b"1"  # nothing lost


# The chunk bound of `copy_big_key`: a chunk starts at `Settings.chunk_elements` and adapts
# between 10 and this many elements (strings: KiB) to the time each command takes.
CHUNK_MAX = 8192
READS = {"LRANGE", "HSCAN", "SSCAN", "ZSCAN", "XRANGE", "GETRANGE"}
WRITES = {"RPUSH", "HSET", "SADD", "ZADD", "XADD", "APPEND"}


def chunk_size(c: Command) -> int:
    """Elements (strings: KiB) one chunk command of a big-key copy reads or writes."""
    if c.name == "LRANGE":
        return int(c.args[3]) - int(c.args[2]) + 1
    if c.name in ("HSCAN", "SSCAN", "ZSCAN", "XRANGE"):
        return int(c.args[c.args.index(b"COUNT") + 1])
    if c.name == "GETRANGE":
        return (int(c.args[3]) - int(c.args[2]) + 1) // 1024
    if c.name in ("RPUSH", "SADD"):
        return c.nargs - 2
    if c.name in ("HSET", "ZADD"):
        return (c.nargs - 2) // 2
    if c.name == "APPEND":
        return c.arg_len(2) // 1024
    return 1  # XADD: one entry


def chunk_commands(commands: list[Command], *keys: bytes) -> dict[str, list[Command]]:
    """The copy's reads and writes of `keys` (a big key and its temporary name)."""
    out: dict[str, list[Command]] = {"reads": [], "writes": [], "whole": []}
    for c in commands:
        if len(c.args) < 2 or c.args[1] not in keys:
            continue
        if c.name in READS:
            out["reads"].append(c)
        elif c.name in WRITES:
            out["writes"].append(c)
        elif c.name in ("DUMP", "RESTORE", "HGETALL", "SMEMBERS", "GET"):
            out["whole"].append(c)  # a command that moves the whole value at once
    return out


@pytest.mark.parametrize("kind", ["hash", "list", "zset", "set", "stream", "string"])
async def test_big_key_is_found_then_copied_in_chunks_without_a_long_block(two_redis,
                                                                            kind) -> None:
    src, dst = two_redis
    a, b = redis.Redis(port=src.port), redis.Redis(port=dst.port)
    key = b"big:{" + kind.encode() + b"}"
    n = 200_000 if kind != "stream" else 50_000
    # build it server-side quickly
    script = {
        "hash": "for i=1,tonumber(ARGV[1]) do redis.call('HSET', KEYS[1], 'f'..i, 'value'..i) end",
        "list": "for i=1,tonumber(ARGV[1]) do redis.call('RPUSH', KEYS[1], 'value'..i) end",
        "zset": "for i=1,tonumber(ARGV[1]) do redis.call('ZADD', KEYS[1], i, 'm'..i) end",
        "set": "for i=1,tonumber(ARGV[1]) do redis.call('SADD', KEYS[1], 'm'..i) end",
        "stream": "for i=1,tonumber(ARGV[1]) do redis.call('XADD', KEYS[1], i..'-1', 'f', i) end",
        "string": "for i=1,tonumber(ARGV[1]) do redis.call('APPEND', KEYS[1], "
                  "'0123456789abcdef0123456789abcdef') end",
    }[kind]
    a.eval(script, 1, key, n)
    a.expire(key, 5000)
    if kind == "stream":
        a.xgroup_create(key, "g1", id="10-1")
    digest = content(a, key)
    length = {"hash": a.hlen, "list": a.llen, "zset": a.zcard, "set": a.scard,
              "stream": a.xlen, "string": a.strlen}[kind](key)
    settings = Settings(big_key_bytes=256 << 10, stall_ms=50)
    slot = key_slot(key, NSLOTS)
    pre = await prescan(src.addr, {slot}, NSLOTS, settings)
    assert [k for k, _, _ in pre.big] == [key]  # reported before anything moves

    tmp = tmp_name(key, NSLOTS)
    with CommandLog(src.port) as src_log, CommandLog(dst.port) as dst_log:
        stats = await copy_big_key(src.addr, dst.addr, key, NSLOTS, settings)
        src_cmds, dst_cmds = src_log.commands(), dst_log.commands()
    assert stats["moved"] and stats["chunks"] > 1
    assert not a.exists(key) and b.exists(key) and not b.exists(tmp_name(key, NSLOTS))
    assert {"hash": b.hlen, "list": b.llen, "zset": b.zcard, "set": b.scard,
            "stream": b.xlen, "string": b.strlen}[kind](key) == length
    assert content(b, key) == digest
    assert 4900 < b.ttl(key) <= 5000
    if kind == "stream":
        assert b.xinfo_stream(key)["last-generated-id"] == f"{n}-1".encode()
        assert b.xinfo_groups(key)[0]["name"] == b"g1"
    if kind == "list":
        assert b.lrange(key, 0, 2) == [b"value1", b"value2", b"value3"]
    # No command moved the whole value: every read of the source and every write of the
    # target carried one chunk, at most CHUNK_MAX elements (a SCAN page may exceed its COUNT
    # hint by the members of the buckets it visits: twice the bound is its ceiling here).
    reads = chunk_commands(src_cmds, key)
    writes = chunk_commands(dst_cmds, tmp)
    assert not reads["whole"] and not writes["whole"], (reads["whole"], writes["whole"])
    assert reads["reads"] and max(map(chunk_size, reads["reads"])) <= CHUNK_MAX
    assert {c.name for c in writes["writes"]} == {
        "hash": {"HSET"}, "list": {"RPUSH"}, "zset": {"ZADD"}, "set": {"SADD"},
        "stream": {"XADD"}, "string": {"APPEND"}}[kind]
    bound = 2 * CHUNK_MAX if kind in ("hash", "set", "zset") else CHUNK_MAX
    assert max(map(chunk_size, writes["writes"])) <= bound
    # one write per chunk (a stream's chunk is written as one XADD per entry)
    assert len(writes["writes"]) == (n if kind == "stream" else stats["chunks"])
    assert sum(map(chunk_size, writes["writes"])) == (length if kind != "string" else
                                                      length // 1024)


async def test_big_key_gone_or_changed_midway_is_not_renamed(two_redis) -> None:
    src, dst = two_redis
    a, b = redis.Redis(port=src.port), redis.Redis(port=dst.port)
    a.eval("for i=1,50000 do redis.call('RPUSH', KEYS[1], i) end", 1, "L")
    settings = Settings(chunk_elements=100)

    async def meddle() -> None:
        await asyncio.sleep(0.01)
        a.rpush("L", "extra")  # a write the fence should have prevented

    task = asyncio.create_task(meddle())
    stats = await copy_big_key(src.addr, dst.addr, b"L", NSLOTS, settings)
    await task
    if not stats["moved"]:
        assert a.llen("L") == 50001 and not b.exists("L")
        assert not b.exists(tmp_name(b"L", NSLOTS))
