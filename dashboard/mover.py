"""Moving keys between stock redis-servers: the scan passes, batched MIGRATE, big keys in chunks.

Everything here talks to redis only; what the proxies are told is the migrator's business.

* `prescan` -- one SCAN pass over a source: keys and bytes per leaving slot, and the big keys
  (MEMORY USAGE above `big_key_bytes`), reported before anything moves.
* `MovePass` -- one SCAN pass over a source serving ALL slots leaving it: keys of those slots
  (slot computed client-side) go to their target with `MIGRATE host port "" 0 timeout REPLACE
  KEYS k...`, batched by count and bytes, throttled to `keys_per_sec`. A key above
  `big_key_bytes` is handed to the caller (it must be fenced and chunk-copied instead).
* `copy_big_key` -- copy one (fenced) key to the target in chunks under a temporary name, check
  it is complete, RENAME it into place with its expiry, UNLINK it on the source.

MIGRATE is atomic on the single-threaded source (DUMP, RESTORE on the target, DEL only after the
target said OK), so it races safely with the proxies' on-access MIGRATE of the same key: the
loser gets NOKEY. REPLACE makes a retry after IOERR (key possibly on both sides) converge.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from slotcore.keyslot import key_slot

# MEMORY USAGE of each key (-1 when it does not exist): one round trip for a whole scan page.
SIZES_LUA = """
local out = {}
for i, k in ipairs(KEYS) do
  local m = redis.call('MEMORY', 'USAGE', k, 'SAMPLES', 5)
  out[i] = m or -1
end
return out
"""

TMP_PREFIX = b"__slotproxy_mig"


class ServerDown(Exception):
    """A source or target redis cannot be reached (the slot pauses until it returns)."""

    def __init__(self, role: str, addr: str, error: str) -> None:
        super().__init__(f"{role} {addr} unreachable: {error}")
        self.role = role
        self.addr = addr


@dataclass
class Settings:
    """Migration knobs; the API changes them while a migration runs (read at every batch)."""

    batch_size: int = 500            # keys per MIGRATE (and SCAN COUNT)
    batch_bytes: int = 4 << 20       # bytes per MIGRATE (MEMORY USAGE estimate)
    keys_per_sec: int = 0            # per source group; 0 = unlimited
    max_concurrent_slots: int = 256  # slots per batch (one push per transition per batch)
    big_key_bytes: int = 2 << 20     # above this a key is copied in chunks under a fence
    stall_ms: float = 50.0           # bound for one blocking command of a big-key copy
    chunk_elements: int = 1000       # starting chunk size for big keys (adapted to stall_ms)
    migrate_timeout_ms: int = 5000
    paused: bool = False

    FIELDS = ("batch_size", "batch_bytes", "keys_per_sec", "max_concurrent_slots",
              "big_key_bytes", "stall_ms", "chunk_elements", "migrate_timeout_ms", "paused")

    def to_json(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.FIELDS}

    def update(self, data: dict[str, Any]) -> list[str]:
        """Apply known fields (validated); returns the names changed. Raises ValueError."""
        unknown = sorted(set(data) - set(self.FIELDS))
        if unknown:
            raise ValueError(f"unknown migration setting(s): {', '.join(unknown)}")
        changed = []
        for name, value in data.items():
            if name == "paused":
                if not isinstance(value, bool):
                    raise ValueError("'paused' must be true or false")
            else:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError(f"{name!r} must be a number")
                value = float(value) if name == "stall_ms" else int(value)
                low = 0 if name == "keys_per_sec" else 1
                if value < low:
                    raise ValueError(f"{name!r} must be >= {low}")
            setattr(self, name, value)
            changed.append(name)
        return changed


class Throttle:
    """Token bucket for keys/s; the rate is re-read on every call (changeable while running)."""

    def __init__(self, rate: Callable[[], int]) -> None:
        self.rate = rate
        self.allowance = 0.0
        self.last = time.monotonic()

    async def take(self, n: int) -> None:
        rate = self.rate()
        if rate <= 0:
            return
        now = time.monotonic()
        self.allowance = min(float(rate), self.allowance + (now - self.last) * rate)
        self.last = now
        self.allowance -= n
        if self.allowance < 0:
            await asyncio.sleep(-self.allowance / rate)


class RawConn:
    """A minimal RESP client for the hot loops (SCAN, sizes, MIGRATE with hundreds of keys):
    redis-py's generic command packing costs more CPU than the servers spend on the work."""

    def __init__(self, addr: str, role: str, timeout: float = 30.0) -> None:
        self.addr = addr
        self.role = role
        self.timeout = timeout
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.parser = hiredis.Reader()
        self.sha: bytes | None = None

    async def connect(self) -> RawConn:
        host, _, port = self.addr.rpartition(":")
        try:
            self.reader, self.writer = await asyncio.wait_for(
                asyncio.open_connection(host, int(port)), 2.0)
        except (OSError, TimeoutError) as e:
            raise _down(self.role, self.addr, e) from None
        return self

    @staticmethod
    def pack(args: tuple[Any, ...]) -> bytes:
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%b\r\n" % (len(b), b))
        return b"".join(out)

    async def pipeline(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Send several commands at once; replies in order (error replies are returned as
        hiredis.ReplyError objects, not raised)."""
        assert self.writer is not None and self.reader is not None
        try:
            self.writer.write(b"".join(self.pack(c) for c in commands))
            replies: list[Any] = []
            while len(replies) < len(commands):
                reply = self.parser.gets()
                if reply is False:
                    data = await asyncio.wait_for(self.reader.read(1 << 20), self.timeout)
                    if not data:
                        raise ConnectionError("connection closed")
                    self.parser.feed(data)
                    continue
                replies.append(reply)
            return replies
        except (OSError, TimeoutError, ConnectionError) as e:
            raise _down(self.role, self.addr, e) from None

    async def call(self, *args: Any) -> Any:
        reply = (await self.pipeline(args))[0]
        if isinstance(reply, hiredis.ReplyError):
            raise ResponseError(str(reply))
        return reply

    async def sizes(self, keys: list[bytes]) -> list[int]:
        if not keys:
            return []
        if self.sha is None:
            self.sha = await self.call("SCRIPT", "LOAD", SIZES_LUA)
        reply = (await self.pipeline(("EVALSHA", self.sha, len(keys), *keys)))[0]
        if isinstance(reply, hiredis.ReplyError):
            if "NOSCRIPT" not in str(reply):
                raise ResponseError(str(reply))
            self.sha = None
            return await self.sizes(keys)
        return [int(x) for x in reply]

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
            self.writer = None


def client(addr: str) -> aioredis.Redis:
    host, _, port = addr.rpartition(":")
    return aioredis.Redis(host=host, port=int(port), socket_timeout=30,
                          socket_connect_timeout=2)


def _down(role: str, addr: str, e: Exception) -> ServerDown:
    return ServerDown(role, addr, str(e) or type(e).__name__)


async def key_sizes(conn: aioredis.Redis, keys: list[bytes]) -> list[int]:
    if not keys:
        return []
    return [int(x) for x in await conn.eval(SIZES_LUA, len(keys), *keys)]


@dataclass
class PrescanResult:
    keys: dict[int, int] = field(default_factory=dict)
    bytes: dict[int, int] = field(default_factory=dict)
    big: list[tuple[bytes, int, int]] = field(default_factory=list)  # (key, bytes, slot)


async def prescan(addr: str, slots: set[int], nslots: int, settings: Settings) -> PrescanResult:
    """Count keys and bytes per leaving slot and find the big keys (nothing is moved)."""
    res = PrescanResult()
    conn = await RawConn(addr, "source").connect()
    count = max(1000, settings.batch_size)
    try:
        cursor: bytes | int = 0
        while True:
            cursor, keys = await conn.call("SCAN", cursor, "COUNT", count)
            pairs = [(k, s) for k in keys if (s := key_slot(k, nslots)) in slots]
            sizes = await conn.sizes([k for k, _ in pairs])
            for (k, s), size in zip(pairs, sizes, strict=True):
                if size < 0:
                    continue
                res.keys[s] = res.keys.get(s, 0) + 1
                res.bytes[s] = res.bytes.get(s, 0) + size
                if size > settings.big_key_bytes:
                    res.big.append((k, size, s))
            if cursor in (b"0", 0):
                return res
    finally:
        await conn.close()


@dataclass
class PassResult:
    moved: dict[int, int] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)  # slot -> last error


class MovePass:
    """One full SCAN pass over `source`, moving every key of `targets`' slots to its target.

    `targets` maps slot -> target addr and may shrink while the pass runs (slots finished
    elsewhere are simply skipped). `on_big(key, size, slot)` is awaited for a key above the
    big-key threshold: it must move the key (chunked, fenced) or raise.
    `on_moved(slot, keys, bytes)` reports progress.
    """

    def __init__(self, source: str, targets: dict[int, str], nslots: int, settings: Settings,
                 on_moved: Callable[[int, int, int], None],
                 on_big: Callable[[bytes, int, int], Awaitable[None]],
                 skip: Callable[[bytes], bool] = lambda k: False,
                 throttle: Throttle | None = None) -> None:
        self.source = source
        self.targets = targets
        self.nslots = nslots
        self.settings = settings
        self.on_moved = on_moved
        self.on_big = on_big
        self.skip = skip
        self.throttle = throttle or Throttle(lambda: settings.keys_per_sec)
        self.result = PassResult()

    async def run(self, wait_unpaused: Callable[[], Awaitable[None]] | None = None
                  ) -> PassResult:
        conn = await RawConn(self.source, "source").connect()
        try:
            cursor, keys = await conn.call("SCAN", 0, "COUNT", self.settings.batch_size)
            while True:
                if wait_unpaused is not None:
                    await wait_unpaused()
                mine = [(k, s) for k in keys if (s := key_slot(k, self.nslots)) in self.targets]
                done = cursor in (b"0", 0)
                # the sizes of this page and the next page of the scan: one round trip
                cmds: list[tuple[Any, ...]] = []
                if mine:
                    if conn.sha is None:
                        conn.sha = await conn.call("SCRIPT", "LOAD", SIZES_LUA)
                    cmds.append(("EVALSHA", conn.sha, len(mine), *(k for k, _ in mine)))
                if not done:
                    cmds.append(("SCAN", cursor, "COUNT", self.settings.batch_size))
                replies = await conn.pipeline(*cmds) if cmds else []
                for r in replies:
                    if isinstance(r, hiredis.ReplyError):
                        conn.sha = None
                        raise ServerDown("source", self.source, f"scan failed: {r}")
                sizes = [int(x) for x in replies[0]] if mine else []
                if mine:
                    await self._move(conn, mine, sizes)
                if done:
                    return self.result
                cursor, keys = replies[-1]
        finally:
            await conn.close()

    async def _move(self, conn: RawConn, keys: list[tuple[bytes, int]],
                    sizes: list[int]) -> None:
        batches: dict[str, list[tuple[bytes, int, int]]] = {}
        for (k, slot), size in zip(keys, sizes, strict=True):
            if size < 0:
                continue  # gone since the SCAN (moved on access, expired, deleted)
            target = self.targets.get(slot)
            if target is None or self.skip(k):
                continue
            if size > self.settings.big_key_bytes:
                try:
                    await self.on_big(k, size, slot)
                except ServerDown:
                    raise
                except Exception as e:
                    self.result.failed[slot] = f"big key {k[:60]!r}: {e}"
                continue
            batches.setdefault(target, []).append((k, size, slot))
        for target, items in batches.items():
            chunk: list[tuple[bytes, int, int]] = []
            nbytes = 0
            for item in items:
                if chunk and (len(chunk) >= self.settings.batch_size
                              or nbytes + item[1] > self.settings.batch_bytes):
                    await self._migrate(conn, target, chunk)
                    chunk, nbytes = [], 0
                chunk.append(item)
                nbytes += item[1]
            if chunk:
                await self._migrate(conn, target, chunk)

    async def _migrate(self, conn: RawConn, target: str,
                       items: list[tuple[bytes, int, int]]) -> None:
        await self.throttle.take(len(items))
        host, _, port = target.rpartition(":")
        reply = (await conn.pipeline(
            ("MIGRATE", host, port, "", 0, self.settings.migrate_timeout_ms, "REPLACE",
             "KEYS", *(k for k, _, _ in items))))[0]
        if isinstance(reply, hiredis.ReplyError):
            msg = str(reply)
            if "IOERR" in msg or "connect" in msg.lower():
                raise ServerDown("target", target, msg)
            for _, _, slot in items:
                self.result.failed[slot] = msg
            return
        if reply == b"OK":
            for _, size, slot in items:
                self.result.moved[slot] = self.result.moved.get(slot, 0) + 1
                self.on_moved(slot, 1, size)


# -- big keys ----------------------------------------------------------------------------------

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
    src, dst = client(source), client(target)
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
    host, _, port = source.rpartition(":")
    # RESP2 on purpose: the FULL reply is read as plain nested lists, whatever the default.
    raw = aioredis.Redis(host=host, port=int(port), protocol=2, socket_timeout=30)
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


async def count_slot_keys(addr: str, slots: set[int], nslots: int) -> dict[int, int]:
    """Exact keys per slot in `slots` on one server (full SCAN; for checks and tests)."""
    conn = client(addr)
    out: dict[int, int] = {}
    try:
        async for k in conn.scan_iter(count=1000):
            s = key_slot(k, nslots)
            if s in slots:
                out[s] = out.get(s, 0) + 1
    except RedisError as e:
        raise _down("server", addr, e) from None
    finally:
        await conn.aclose()
    return out
