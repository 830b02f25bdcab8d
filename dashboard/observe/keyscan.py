"""The key scanner: SCAN a server page by page and size every key, without blocking it.

Used by the cluster's big-key scan (`observe.bigkeys`: type, element count and bytes of every
key, per-slot keys and bytes). The migration's pre-scan and passes size keys the same way
(`MEMORY USAGE`) but in one round trip per page, the next SCAN in the same write
(`migrate.pages`: per key moved, a round trip is most of the mover's CPU). It works the way
`redis-cli --bigkeys` and `--memkeys` do, batch by batch:

1. `SCAN cursor COUNT n` (n bounded: one page costs the server O(n));
2. one pipeline of `MEMORY USAGE key SAMPLES s` (and `TYPE key`) for the page's keys;
3. with `details`, one pipeline of the type's O(1) length command (STRLEN, LLEN, HLEN,
   SCARD, ZCARD, XLEN);
4. an optional pause before the next page, so a scan takes a bounded share of the server.

Every command is O(1) or O(samples) for the server; none holds it for long whatever the key's
size (MEMORY USAGE samples `s` nested elements instead of walking them all). The connection is
anything with `async pipeline(*commands) -> replies` that returns error replies as exception
objects: `RedisPipeline` over redis-py below (the mover's raw RESP connection fits too).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis

from slotcore.keyslot import key_slot

# The O(1) element count of each type (a string's is its length in bytes, as redis-cli says).
LENGTH = {"string": "STRLEN", "list": "LLEN", "hash": "HLEN", "set": "SCARD", "zset": "ZCARD",
          "stream": "XLEN"}
MAX_COUNT = 10_000  # SCAN COUNT ceiling: one page must stay a short command


class Pipelined(Protocol):
    async def pipeline(self, *commands: tuple[Any, ...]) -> list[Any]: ...


class ScanError(Exception):
    """The server answered a scan command with an error."""


@dataclass(slots=True)
class KeyInfo:
    key: bytes
    slot: int
    bytes: int                 # MEMORY USAGE
    type: str | None = None    # with details
    elements: int | None = None  # with details (None for a module type)


@dataclass(slots=True)
class ScanProgress:
    scanned: int = 0   # keys returned by SCAN so far (a key can come twice: SCAN's guarantee)
    batches: int = 0


class RedisPipeline:
    """`Pipelined` over a redis-py asyncio client (error replies returned, not raised)."""

    def __init__(self, conn: aioredis.Redis) -> None:
        self.conn = conn

    async def pipeline(self, *commands: tuple[Any, ...]) -> list[Any]:
        pipe = self.conn.pipeline(transaction=False)
        for c in commands:
            pipe.execute_command(*c)
        return list(await pipe.execute(raise_on_error=False))


def _text(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def _check(replies: list[Any], what: str) -> list[Any]:
    for r in replies:
        if isinstance(r, Exception):
            raise ScanError(f"{what}: {r}")
    return replies


async def scan_keys(conn: Pipelined, nslots: int, *, count: int = 100, samples: int = 5,
                    details: bool = False, pause: float | Callable[[], float] = 0.0,
                    want: Callable[[int], bool] | None = None,
                    progress: ScanProgress | None = None,
                    stop: asyncio.Event | None = None) -> AsyncIterator[list[KeyInfo]]:
    """Yield the sized keys of each SCAN page (keys gone since the SCAN are left out).

    `want(slot)` filters keys before they are sized; `pause` (seconds, or a function read at
    every batch so it can change while the scan runs) is slept between pages; once `stop` is
    set the scan ends before the next page (also in the middle of a pause).
    """
    count = max(1, min(count, MAX_COUNT))
    prog = progress if progress is not None else ScanProgress()
    cursor: Any = 0
    while True:
        (page,) = _check(await conn.pipeline(("SCAN", cursor, "COUNT", count)), "SCAN")
        cursor, keys = page[0], list(page[1])
        prog.scanned += len(keys)
        prog.batches += 1
        if want is None:
            pairs = [(k, key_slot(k, nslots)) for k in keys]
        else:
            pairs = [(k, s) for k in keys if want(s := key_slot(k, nslots))]
        if pairs:
            yield await _size(conn, pairs, samples, details)
        if int(cursor) == 0 or (stop is not None and stop.is_set()):
            return
        wait = pause() if callable(pause) else pause
        if wait > 0:
            if stop is None:
                await asyncio.sleep(wait)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)
                if stop.is_set():
                    return


async def _size(conn: Pipelined, pairs: list[tuple[bytes, int]], samples: int,
                details: bool) -> list[KeyInfo]:
    cmds: list[tuple[Any, ...]] = [("MEMORY", "USAGE", k, "SAMPLES", samples) for k, _ in pairs]
    if details:
        cmds += [("TYPE", k) for k, _ in pairs]
    replies = _check(await conn.pipeline(*cmds), "MEMORY USAGE/TYPE")
    n = len(pairs)
    out: list[KeyInfo] = []
    for i, (k, slot) in enumerate(pairs):
        size = replies[i]
        if size is None:
            continue  # gone since the SCAN (expired, deleted, moved)
        info = KeyInfo(k, slot, int(size))
        if details:
            kind = _text(replies[n + i])
            if kind == "none":
                continue
            info.type = kind
        out.append(info)
    if details and out:
        measured = [i for i in out if i.type in LENGTH]
        if measured:
            lens = await conn.pipeline(*((LENGTH[i.type or ""], i.key) for i in measured))
            for info, n_el in zip(measured, lens, strict=True):
                # WRONGTYPE: the key was replaced by another type in between; keep it unsized.
                info.elements = None if isinstance(n_el, Exception) else int(n_el)
    return out
