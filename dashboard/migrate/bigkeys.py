"""Big keys: copied in chunks under a fence instead of one MIGRATE that would block both servers.

`copy_big_key` copies one (fenced) key to the target in chunks under a temporary name that
hashes to the key's slot, checks it is complete, RENAMEs it into place with its expiry and
UNLINKs it on the source. Streams also get their consumer groups, consumers and pending entries
(`copy_stream_groups`), which MIGRATE's DUMP/RESTORE would have carried.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from slotcore.keyslot import key_slot

from ..observe.redisconn import connect
from .mover import ServerDown, Settings

TMP_PREFIX = b"__slotproxy_mig"

_SLOT_TAGS: dict[int, list[bytes]] = {}


def slot_tag(slot: int, nslots: int) -> bytes:
    """A short string that hashes to `slot` (for temporary keys that stay in the key's slot)."""
    table = _SLOT_TAGS.get(nslots)
    if table is None:
        table = [b""] * nslots
        missing, i = nslots, 0
        while missing:
            tag = str(i).encode()
            s = key_slot(tag, nslots)
            if not table[s]:
                table[s] = tag
                missing -= 1
            i += 1
        _SLOT_TAGS[nslots] = table
    return table[slot]


def tmp_name(key: bytes, nslots: int) -> bytes:
    digest = hashlib.sha1(key).hexdigest()[:20].encode()
    return TMP_PREFIX + b":{" + slot_tag(key_slot(key, nslots), nslots) + b"}:" + digest


LENGTH = {b"hash": "HLEN", b"set": "SCARD", b"zset": "ZCARD", b"list": "LLEN",
          b"stream": "XLEN", b"string": "STRLEN"}


async def copy_big_key(source: str, target: str, key: bytes, nslots: int, settings: Settings,
                       still_leader: Callable[[], bool] = lambda: True) -> dict[str, Any]:
    """Copy a FENCED key in chunks, then RENAME it into place and UNLINK it on the source.

    Returns {"moved": bool, "type", "elements", "chunks", "max_stall_ms"}. No command issued
    here blocks either server for long: each reads or writes one chunk, whose size adapts so a
    chunk takes at most half of `stall_ms`; RENAME and UNLINK are O(1) for the servers (UNLINK
    frees the value in a background thread).
    """
    src, dst = connect(source), connect(target)
    tmp = tmp_name(key, nslots)
    stats: dict[str, Any] = {"moved": False, "type": None, "elements": 0, "chunks": 0,
                             "max_stall_ms": 0.0}
    chunk = max(10, settings.chunk_elements)

    async def timed(conn: aioredis.Redis, *args: Any) -> Any:
        t0 = time.perf_counter()
        out = await conn.execute_command(*args)
        ms = (time.perf_counter() - t0) * 1000
        stats["max_stall_ms"] = max(stats["max_stall_ms"], ms)
        return out, ms

    def adapt(ms: float) -> None:
        nonlocal chunk
        if ms > settings.stall_ms / 2 and chunk > 10:
            chunk = max(10, chunk // 2)
        elif ms < settings.stall_ms / 8:
            chunk = min(chunk * 2, 8192)

    try:
        kind = await src.type(key)
        stats["type"] = kind.decode() if isinstance(kind, bytes) else kind
        if kind in (b"none", "none"):
            return stats
        expire_at = int(await src.execute_command("PEXPIRETIME", key))
        await dst.unlink(tmp)
        n = 0
        if kind == b"string":
            pos = 0
            while True:
                part, ms = await timed(src, "GETRANGE", key, pos, pos + chunk * 1024 - 1)
                if not part:
                    break
                await timed(dst, "APPEND", tmp, part)
                pos += len(part)
                stats["chunks"] += 1
                adapt(ms)
            n = pos
        elif kind == b"list":
            pos = 0
            while True:
                items, ms = await timed(src, "LRANGE", key, pos, pos + chunk - 1)
                if not items:
                    break
                await timed(dst, "RPUSH", tmp, *items)
                pos += len(items)
                stats["chunks"] += 1
                adapt(ms)
            n = pos
        elif kind in (b"hash", b"set", b"zset"):
            cmd = {b"hash": "HSCAN", b"set": "SSCAN", b"zset": "ZSCAN"}[kind]
            cursor = b"0"
            while True:
                (cursor, items), ms = await timed(src, cmd, key, cursor, "COUNT", chunk)
                if items:
                    # (redis-py turns HSCAN pages into dicts and ZSCAN pages into pairs)
                    if kind == b"hash":
                        flat = ([x for kv in items.items() for x in kv]
                                if isinstance(items, dict) else items)
                        await timed(dst, "HSET", tmp, *flat)
                    elif kind == b"set":
                        await timed(dst, "SADD", tmp, *items)
                    else:
                        if items and isinstance(items[0], tuple | list):
                            pairs = [x for m, sc in items for x in (repr(float(sc)), m)]
                        else:
                            pairs = [x for i in range(0, len(items), 2)
                                     for x in (items[i + 1], items[i])]
                        await timed(dst, "ZADD", tmp, *pairs)
                    stats["chunks"] += 1
                adapt(ms)
                if cursor in (b"0", 0, "0"):
                    break
        elif kind == b"stream":
            start = b"-"
            while True:
                entries, ms = await timed(src, "XRANGE", key, start, "+", "COUNT", chunk)
                if not entries:
                    break
                pipe = dst.pipeline(transaction=False)
                for eid, fields in entries:
                    flat = [x for pair in _pairs(fields) for x in pair]
                    pipe.execute_command("XADD", tmp, eid, *flat)
                await pipe.execute()
                stats["chunks"] += 1
                adapt(ms)
                last = entries[-1][0]
                start = b"(" + (last if isinstance(last, bytes) else str(last).encode())
            info = await src.execute_command("XINFO", "STREAM", key)
            info = dict(_pairs(info))
            last_id = info.get(b"last-generated-id") or info.get("last-generated-id")
            if not await dst.exists(tmp):
                await dst.execute_command("XADD", tmp, "MAXLEN", "0", "0-1", "x", "y")
            await dst.execute_command("XSETID", tmp, last_id)
            await copy_stream_groups(source, key, dst, tmp)
        else:
            raise ValueError(f"cannot chunk-copy a key of type {stats['type']}")
        if kind != b"string":
            n = int(await dst.execute_command(LENGTH[kind], tmp))
        stats["elements"] = n
        # Complete? (Fenced: nobody writes the key, so the lengths must match exactly.)
        now_src = await src.execute_command(LENGTH[kind], key) if await src.exists(key) else None
        if now_src is None or int(now_src) != n or not still_leader():
            await dst.unlink(tmp)
            return stats
        await dst.rename(tmp, key)
        if expire_at > 0:
            await dst.execute_command("PEXPIREAT", key, expire_at)
        await src.unlink(key)
        stats["moved"] = True
        return stats
    except (RedisConnectionError, RedisTimeoutError, OSError) as e:
        raise ServerDown("source or target", f"{source}/{target}", str(e)) from None
    finally:
        await src.aclose()
        await dst.aclose()


async def copy_stream_groups(source: str, key: bytes, dst: aioredis.Redis, tmp: bytes) -> None:
    """Consumer groups exactly as on the source: last-delivered id, entries-read, every
    consumer, and every pending entry with its owner, last delivery time and delivery count —
    so readers resume where they were and XPENDING/XCLAIM see the same state (MIGRATE's
    DUMP/RESTORE carries all of this; a chunked copy has to rebuild it)."""
    # RESP2 on purpose: the FULL reply is read as plain nested lists, whatever the default.
    raw = connect(source, protocol=2)
    try:
        full = dict(_pairs(await raw.execute_command(
            "XINFO", "STREAM", key, "FULL", "COUNT", "0")))
    finally:
        await raw.aclose()
    for group in full.get(b"groups") or []:
        g = dict(_pairs(group))
        name = g[b"name"]
        create = ["XGROUP", "CREATE", tmp, name, g[b"last-delivered-id"]]
        if g.get(b"entries-read") is not None:
            create += ["ENTRIESREAD", g[b"entries-read"]]
        await dst.execute_command(*create)
        pipe = dst.pipeline(transaction=False)
        for consumer in g.get(b"consumers") or []:
            pipe.execute_command("XGROUP", "CREATECONSUMER", tmp, name,
                                 dict(_pairs(consumer))[b"name"])
        for n, (eid, owner, delivered_ms, count) in enumerate(g.get(b"pending") or [], 1):
            # FORCE creates the PEL entry; TIME/RETRYCOUNT restore its delivery state.
            # (redis-py's xclaim(), not execute_command: its reply parser needs `justid`.)
            pipe.xclaim(tmp, name, owner, 0, [eid], time=delivered_ms, retrycount=count,
                        force=True, justid=True)
            if n % 1000 == 0:
                await pipe.execute()
        await pipe.execute()


def _pairs(flat: Iterable[Any]) -> list[tuple[Any, Any]]:
    if isinstance(flat, dict):
        return list(flat.items())
    it = iter(flat)
    return list(zip(it, it, strict=False))
