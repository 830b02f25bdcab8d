"""Moving keys between stock redis-servers: the scan passes and batched MIGRATE.

Everything here talks to redis only; what the proxies are told is the migrator's business.

* `prescan` -- one SCAN pass over a source: keys and bytes per leaving slot, and the big keys
  (MEMORY USAGE above `big_key_bytes`), reported before anything moves.
* `MovePass` -- one SCAN pass over a source serving ALL slots leaving it: keys of those slots
  (slot computed client-side) go to their target with `MIGRATE host port "" 0 timeout REPLACE
  KEYS k...`, batched by count and bytes, throttled to `keys_per_sec`. A key above
  `big_key_bytes` is handed to the caller (it must be fenced and chunk-copied instead).

Big keys are copied in chunks by `bigkeys.copy_big_key`.

MIGRATE is atomic on the single-threaded source (DUMP, RESTORE on the target, DEL only after the
target said OK), so it races safely with the proxies' on-access MIGRATE of the same key: the
loser gets NOKEY. REPLACE makes a retry after IOERR (key possibly on both sides) converge.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Container
from dataclasses import dataclass, field
from typing import Any

import hiredis
from redis.exceptions import RedisError, ResponseError

from slotcore.addr import split_addr
from slotcore.keyslot import key_slot
from slotcore.resp import pack_command

from ..observe.keyscan import MAX_COUNT
from ..observe.redisconn import connect
from .pacing import PaceController, PaceLimits
from .pages import PageError, leaving, next_page, page_request, page_sizes


class ServerDown(Exception):
    """A source or target redis cannot be reached (the slot pauses until it returns)."""

    def __init__(self, role: str, addr: str, error: str) -> None:
        super().__init__(f"{role} {addr} unreachable: {error}")
        self.role = role
        self.addr = addr


@dataclass
class Settings:
    """Migration knobs; the API changes them while a migration runs (read at every batch)."""

    batch_size: int = 500            # SCAN COUNT; keys per MIGRATE (adaptive: the first)
    batch_bytes: int = 4 << 20       # bytes per MIGRATE (MEMORY USAGE estimate)
    keys_per_sec: int = 0            # per source group; 0 = unlimited
    max_concurrent_slots: int = 256  # slots per batch (one push per transition per batch)
    big_key_bytes: int = 2 << 20     # above this a key is copied in chunks under a fence
    stall_ms: float = 50.0           # bound for one blocking command of a big-key copy
    chunk_elements: int = 1000       # starting chunk size for big keys (adapted to stall_ms)
    migrate_timeout_ms: int = 5000
    paused: bool = False
    # The adaptive pace (pacing.py): batch sizes from measured MIGRATE stalls, rests from the
    # source's latency. Off: every MIGRATE carries `batch_size` keys, back to back.
    adaptive: bool = True
    target_stall_ms: float = 0.5     # budget for one MIGRATE call (source blocked meanwhile)
    min_batch: int = 10
    max_batch: int = 1000
    latency_factor: float = 1.5      # source latency above factor x baseline ...
    latency_slack_ms: float = 0.5    # ... and this much above it: back off
    max_pause_ms: float = 5.0        # longest rest between two batches
    probe_interval_ms: float = 5.0   # at most one latency probe (PING) this often
    # The clients' latency as the proxies time it (proxylat.py): their p99 per group over a
    # window, read this often while moving (0: not used), against the window before.
    proxy_poll_ms: float = 0.0  # 0: off (measured: ~5x slower moves for a p99 x1.75 not x3.3)
    proxy_window_ms: float = 1000.0
    client_slack_ms: float = 0.1     # proxies' p99 above factor x baseline and this much above
    stall_share: float = 1.0         # one MIGRATE blocks <= this share of their baseline p99
    recheck_s: float = 3.0           # their p99 high this long: hold a window, re-measure (0: no)

    FIELDS = ("batch_size", "batch_bytes", "keys_per_sec", "max_concurrent_slots",
              "big_key_bytes", "stall_ms", "chunk_elements", "migrate_timeout_ms", "paused",
              "adaptive", "target_stall_ms", "min_batch", "max_batch", "latency_factor",
              "latency_slack_ms", "max_pause_ms", "probe_interval_ms", "proxy_poll_ms",
              "proxy_window_ms", "client_slack_ms", "stall_share", "recheck_s")
    _FLAGS = ("paused", "adaptive")
    _FLOATS = ("stall_ms", "target_stall_ms", "latency_factor", "latency_slack_ms",
               "max_pause_ms", "probe_interval_ms", "proxy_poll_ms", "proxy_window_ms",
               "client_slack_ms", "stall_share", "recheck_s")
    _ZERO_OK = frozenset(("keys_per_sec", "max_pause_ms", "latency_slack_ms", "proxy_poll_ms",
                          "client_slack_ms", "stall_share", "recheck_s"))

    def to_json(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.FIELDS}

    def update(self, data: dict[str, Any]) -> list[str]:
        """Apply known fields (validated); returns the names changed. Raises ValueError."""
        unknown = sorted(set(data) - set(self.FIELDS))
        if unknown:
            raise ValueError(f"unknown migration setting(s): {', '.join(unknown)}")
        new: dict[str, Any] = {}
        for name, value in data.items():
            if name in self._FLAGS:
                if not isinstance(value, bool):
                    raise ValueError(f"{name!r} must be true or false")
            else:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError(f"{name!r} must be a number")
                value = float(value) if name in self._FLOATS else int(value)
                if name in self._FLOATS and name not in self._ZERO_OK | {"latency_factor"}:
                    # a duration below 1 ms is a valid budget (the default stall is 0.5)
                    if value <= 0:
                        raise ValueError(f"{name!r} must be > 0")
                else:
                    low = 0 if name in self._ZERO_OK else 1
                    if value < low:
                        raise ValueError(f"{name!r} must be >= {low}")
            new[name] = value
        lo = new.get("min_batch", self.min_batch)
        hi = new.get("max_batch", self.max_batch)
        if lo > hi:
            raise ValueError(f"'min_batch' ({lo}) must be <= 'max_batch' ({hi})")
        for name, value in new.items():  # all or nothing
            setattr(self, name, value)
        return list(new)

    def pace_limits(self) -> PaceLimits:
        return PaceLimits(target_stall=self.target_stall_ms / 1000, min_batch=self.min_batch,
                          max_batch=self.max_batch, latency_factor=self.latency_factor,
                          latency_slack=self.latency_slack_ms / 1000,
                          max_pause=self.max_pause_ms / 1000,
                          client_slack=self.client_slack_ms / 1000,
                          stall_share=self.stall_share, recheck=self.recheck_s,
                          # a check's rest: one whole window of the proxies' figures after
                          # the last batch, and the poll that reads it
                          hold=(self.proxy_window_ms + 2 * self.proxy_poll_ms) / 1000)


class Throttle:
    """Token bucket for keys/s; the rate is re-read on every call and while waiting
    (changeable while running: a limit raised or removed mid-wait applies within `SLICE`,
    not after a wait sized for the old rate -- a 100-key batch at 5 keys/s is 20 s)."""

    SLICE = 0.2  # seconds: the longest sleep before the rate is read again

    def __init__(self, rate: Callable[[], int],
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self.allowance = 0.0
        self.last = clock()

    def _refill(self, rate: int) -> None:
        now = self.clock()
        self.allowance = min(float(rate), self.allowance + (now - self.last) * rate)
        self.last = now

    async def take(self, n: int) -> None:
        rate = self.rate()
        if rate <= 0:
            return
        self._refill(rate)
        self.allowance -= n
        while self.allowance < 0:
            await self.sleep(min(-self.allowance / rate, self.SLICE))
            rate = self.rate()
            if rate <= 0:  # the limit was removed: owe nothing
                self.allowance = 0.0
                self.last = self.clock()
                return
            self._refill(rate)


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

    async def connect(self) -> RawConn:
        host, port = split_addr(self.addr)
        try:
            self.reader, self.writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), 2.0)
        except (OSError, TimeoutError) as e:
            raise _down(self.role, self.addr, e) from None
        return self

    async def pipeline(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Send several commands at once; replies in order (error replies are returned as
        hiredis.ReplyError objects, not raised)."""
        return await self.send(b"".join([pack_command(*c) for c in commands]), len(commands))

    async def send(self, payload: bytes, n: int) -> list[Any]:
        """Write pre-packed commands; read their `n` replies (errors returned, not raised).
        One deadline for the whole exchange (`asyncio.timeout`, not `wait_for` per read:
        that wraps every read in a task of its own, one more event-loop turn per reply)."""
        assert self.writer is not None and self.reader is not None
        parser, reader = self.parser, self.reader
        try:
            self.writer.write(payload)
            replies: list[Any] = []
            async with asyncio.timeout(self.timeout):
                while len(replies) < n:
                    reply = parser.gets()
                    if reply is False:
                        data = await reader.read(1 << 20)
                        if not data:
                            raise ConnectionError("connection closed")
                        parser.feed(data)
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

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
            self.writer = None


class StallMeter:
    """MIGRATE's time on the source, from `INFO commandstats` (cmdstat_migrate calls/usec):
    the mean of the MIGRATE calls since the previous reading (ours, and any the proxies made
    on access meanwhile). None when the figure is missing (first reading, a server restart)."""

    def __init__(self) -> None:
        self.calls = self.usec = -1

    def measure(self, info: Any) -> float | None:
        if not isinstance(info, bytes):
            return None
        # "cmdstat_migrate:calls=N,usec=U,...": read in place (one per MIGRATE: no dict)
        i = info.find(b"cmdstat_migrate:calls=")
        if i < 0:
            return None
        i += 22
        j = info.find(b",usec=", i)
        k = info.find(b",", j + 6) if j > 0 else -1
        try:
            calls, usec = int(info[i:j]), int(info[j + 6:k])
        except ValueError:
            return None
        prev_calls, prev_usec = self.calls, self.usec
        self.calls, self.usec = calls, usec
        if prev_calls < 0 or calls <= prev_calls or usec < prev_usec:
            return None
        return (usec - prev_usec) / (calls - prev_calls) / 1e6


class LatencyProbe:
    """The source's latency as a client sees it: PING round trips on a connection of its own
    (a request queued behind a MIGRATE, or behind the requests queued behind one, waits)."""

    def __init__(self, addr: str) -> None:
        self.conn = RawConn(addr, "source", timeout=5.0)
        self.connected = False

    async def sample(self) -> float:
        if not self.connected:
            await self.conn.connect()
            self.connected = True
        t0 = time.perf_counter()
        try:
            await self.conn.call("PING")
        except BaseException:
            await self.close()  # reconnect on the next sample
            raise
        return time.perf_counter() - t0

    async def baseline(self, n: int = 9) -> float:
        """The median of `n` round trips (taken before anything moves)."""
        samples = sorted([await self.sample() for _ in range(n)])
        return samples[len(samples) // 2]

    async def close(self) -> None:
        await self.conn.close()
        self.connected = False


def _down(role: str, addr: str, e: Exception) -> ServerDown:
    return ServerDown(role, addr, str(e) or type(e).__name__)


@dataclass
class PrescanResult:
    keys: dict[int, int] = field(default_factory=dict)
    bytes: dict[int, int] = field(default_factory=dict)
    big: list[tuple[bytes, int, int]] = field(default_factory=list)  # (key, bytes, slot)


async def scan_pages(conn: RawConn, nslots: int, slots: Container[int], count: int
                     ) -> AsyncIterator[tuple[list[tuple[bytes, int]], list[int]]]:
    """Every page of one full SCAN of `conn`'s server that holds keys of `slots`: their
    (key, slot) and sizes (-1: gone since the SCAN), one round trip per page (pages.py).
    `slots` is read at every page (a dict of slots still moving may shrink meanwhile)."""
    count = max(1, min(count, MAX_COUNT))
    try:
        cursor, keys = await conn.call("SCAN", 0, "COUNT", count)
        while True:
            mine = leaving(keys, nslots, slots)
            done = cursor in (b"0", 0)
            if not mine and done:
                return
            replies = await conn.send(
                page_request([k for k, _ in mine], None if done else cursor, count),
                len(mine) + (not done))
            if mine:
                yield mine, page_sizes(replies, len(mine))
            if done:
                return
            cursor, keys = next_page(replies, len(mine))
    except (PageError, ResponseError) as e:
        raise ServerDown("source", conn.addr, f"scan failed: {e}") from None


async def prescan(addr: str, slots: set[int], nslots: int, settings: Settings) -> PrescanResult:
    """Count keys and bytes per leaving slot and find the big keys (nothing is moved): one
    SCAN pass over the source, unthrottled, sized like the move passes (`scan_pages`)."""
    res = PrescanResult()
    keys, nbytes, big = res.keys, res.bytes, settings.big_key_bytes
    conn = await RawConn(addr, "source").connect()
    try:
        async for mine, sizes in scan_pages(conn, nslots, slots,
                                            max(1000, settings.batch_size)):
            for (k, s), size in zip(mine, sizes, strict=True):
                if size < 0:
                    continue
                keys[s] = keys.get(s, 0) + 1
                nbytes[s] = nbytes.get(s, 0) + size
                if size > big:
                    res.big.append((k, size, s))
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
    `on_moved(slot, keys, bytes)` reports progress (once per slot and MIGRATE).
    `fenced()` names the keys no MIGRATE may carry (fenced big keys being chunk-copied).

    With `pace` (and `settings.adaptive`), each MIGRATE's size is the controller's and it is
    fed the duration of every MIGRATE; with `probe` too, a latency sample of the source
    between batches, at most every `probe_interval_ms` (pacing.py). Otherwise every MIGRATE
    is `batch_size` keys. SCAN pages are `batch_size` keys either way (a page holds keys of
    slots that stay as well; small pages would cost a round trip for few keys to move).

    What the pass costs per key moved is mostly per round trip (a wake-up of the source, the
    target and this process each), so everything per page is one round trip (`scan_pages`)
    and per key only a slot computation, a size and a place in a MIGRATE remain here.
    """

    def __init__(self, source: str, targets: dict[int, str], nslots: int, settings: Settings,
                 on_moved: Callable[[int, int, int], None],
                 on_big: Callable[[bytes, int, int], Awaitable[None]],
                 fenced: Callable[[], Collection[bytes]] = frozenset,
                 throttle: Throttle | None = None, pace: PaceController | None = None,
                 probe: LatencyProbe | None = None) -> None:
        self.source = source
        self.targets = targets
        self.nslots = nslots
        self.settings = settings
        self.on_moved = on_moved
        self.on_big = on_big
        self.fenced = fenced
        self.throttle = throttle or Throttle(lambda: settings.keys_per_sec)
        self.pace = pace
        self.probe = probe
        self._stalls = StallMeter()
        self._probed = 0.0
        self.result = PassResult()

    def _next_size(self) -> int:
        """Keys in the next MIGRATE."""
        if self.pace is not None and self.settings.adaptive:
            return self.pace.size()
        return self.settings.batch_size

    async def run(self, wait_unpaused: Callable[[], Awaitable[None]] | None = None
                  ) -> PassResult:
        conn = await RawConn(self.source, "source").connect()
        try:
            async for mine, sizes in scan_pages(conn, self.nslots, self.targets,
                                                self.settings.batch_size):
                if wait_unpaused is not None:
                    await wait_unpaused()
                await self._move(conn, mine, sizes)
            return self.result
        finally:
            await conn.close()

    async def _move(self, conn: RawConn, keys: list[tuple[bytes, int]],
                    sizes: list[int]) -> None:
        batches: dict[str, list[tuple[bytes, int, int]]] = {}
        targets, big = self.targets, self.settings.big_key_bytes
        fenced = self.fenced()
        for (k, slot), size in zip(keys, sizes, strict=True):
            if size < 0:
                continue  # gone since the SCAN (moved on access, expired, deleted)
            target = targets.get(slot)
            if target is None or (fenced and k in fenced):
                continue
            if size > big:
                try:
                    await self.on_big(k, size, slot)
                except ServerDown:
                    raise
                except Exception as e:
                    self.result.failed[slot] = f"big key {k[:60]!r}: {e}"
                continue
            items = batches.get(target)
            if items is None:
                items = batches[target] = []
            items.append((k, size, slot))
        for target, items in batches.items():
            start, nbytes, limit, cap = 0, 0, self._next_size(), self.settings.batch_bytes
            for i, item in enumerate(items):
                if i > start and (i - start >= limit or nbytes + item[1] > cap):
                    await self._migrate(conn, target, items[start:i])
                    start, nbytes, limit = i, 0, self._next_size()
                nbytes += item[1]
            if start < len(items):
                await self._migrate(conn, target, items[start:])

    async def _migrate(self, conn: RawConn, target: str,
                       items: list[tuple[bytes, int, int]]) -> None:
        await self.throttle.take(len(items))
        pace = self.pace if self.settings.adaptive else None
        if pace is not None:
            rest = pace.rest(time.monotonic())
            if rest > 0:
                await asyncio.sleep(rest)
        host, port = split_addr(target)
        migrate = pack_command("MIGRATE", host, port, "", 0, self.settings.migrate_timeout_ms,
                               "REPLACE", "KEYS", *[k for k, _, _ in items])
        if pace is None:
            reply = (await conn.send(migrate, 1))[0]
        else:
            # The stall as the source itself measured it (INFO commandstats, in the same round
            # trip): our own wait for the reply would add this process's scheduling delays.
            t0 = time.perf_counter()
            reply, info = await conn.send(migrate + _INFO_COMMANDSTATS, 2)
            elapsed = time.perf_counter() - t0
            stall = self._stalls.measure(info)
            pace.on_stall(len(items), stall if stall is not None else elapsed)
            now = time.perf_counter()
            due = now - self._probed >= self.settings.probe_interval_ms / 1000
            if self.probe is not None and due:
                # Between batches, while this mover waits (its own work cannot delay the
                # reading): how long the requests queued behind the batch take to drain.
                pace.on_latency(await self.probe.sample())
                self._probed = now
        if isinstance(reply, hiredis.ReplyError):
            msg = str(reply)
            if "IOERR" in msg or "connect" in msg.lower():
                raise ServerDown("target", target, msg)
            for _, _, slot in items:
                self.result.failed[slot] = msg
            return
        if reply == b"OK":
            # progress once per slot of the batch (a batch mostly holds a few slots)
            per_slot: dict[int, list[int]] = {}
            for _, size, slot in items:
                c = per_slot.get(slot)
                if c is None:
                    per_slot[slot] = [1, size]
                else:
                    c[0] += 1
                    c[1] += size
            moved = self.result.moved
            for slot, (n, nbytes) in per_slot.items():
                moved[slot] = moved.get(slot, 0) + n
                self.on_moved(slot, n, nbytes)


_INFO_COMMANDSTATS = pack_command("INFO", "commandstats")


async def count_slot_keys(addr: str, slots: set[int], nslots: int) -> dict[int, int]:
    """Exact keys per slot in `slots` on one server (full SCAN; for checks and tests)."""
    conn = connect(addr)
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
