"""Per-slot load for load-aware rebalancing: keys, memory and ops/s per slot (measured, I/O).

* ops/s: every proxy counts requests per slot (its stats with `?slots=1` -> `slot_ops`,
  cumulative since the proxy started). Two samples `sample_seconds` apart, summed over proxies,
  give ops/s per slot. A proxy that does not answer is left out of the sum.
* keys and memory: per group master, when DBSIZE <= `exact_limit` a full SCAN with MEMORY USAGE
  of every key (exact); above it, `sample` keys drawn with RANDOMKEY, their slots computed and
  their MEMORY USAGE read, then scaled: keys[s] = DBSIZE * share of the sample in s, and
  memory[s] = DBSIZE * (mean sampled size in s) * share. Only slots the group owns are counted.
"""

from __future__ import annotations

import asyncio
from typing import Any

from slotcore.keyslot import key_slot

from ..control.proxies import ProxyClient
from ..model.records import ProxyRecord, Topology
from .redisconn import connect, key_sizes


async def group_keys_memory(addr: str, owned: set[int], nslots: int, exact_limit: int = 200_000,
                            sample: int = 4000) -> tuple[dict[int, float], dict[int, float]]:
    conn = connect(addr)
    keys: dict[int, float] = {}
    mem: dict[int, float] = {}
    try:
        dbsize = int(await conn.dbsize())
        if dbsize == 0:
            return keys, mem
        if dbsize <= exact_limit:
            cursor = 0
            while True:
                cursor, batch = await conn.scan(cursor, count=1000)
                for k, size in zip(batch, await key_sizes(conn, batch), strict=True):
                    s = key_slot(k, nslots)
                    if size >= 0 and s in owned:
                        keys[s] = keys.get(s, 0) + 1
                        mem[s] = mem.get(s, 0) + size
                if cursor == 0:
                    return keys, mem
        pipe = conn.pipeline(transaction=False)
        for _ in range(sample):
            pipe.randomkey()
        drawn = [k for k in await pipe.execute() if k]
        sizes = await key_sizes(conn, drawn)
        n = len(drawn) or 1
        for k, size in zip(drawn, sizes, strict=True):
            s = key_slot(k, nslots)
            if size < 0 or s not in owned:
                continue
            keys[s] = keys.get(s, 0) + dbsize / n
            mem[s] = mem.get(s, 0) + dbsize * size / n
        return keys, mem
    finally:
        await conn.aclose()


async def proxy_slot_ops(client_: ProxyClient, proxies: list[ProxyRecord], nslots: int,
                         sample_seconds: float) -> list[float] | None:
    async def one(p: ProxyRecord) -> list[int] | None:
        data = await client_.slot_ops(p)
        ops = (data or {}).get("slot_ops")
        return ops if isinstance(ops, list) and len(ops) == nslots else None

    first = await asyncio.gather(*(one(p) for p in proxies))
    if not any(first):
        return None
    await asyncio.sleep(sample_seconds)
    second = await asyncio.gather(*(one(p) for p in proxies))
    out = [0.0] * nslots
    for a, b in zip(first, second, strict=True):
        if a and b:
            for s in range(nslots):
                out[s] += max(0, b[s] - a[s]) / sample_seconds
    return out


async def measure(topo: Topology, client_: ProxyClient, proxies: list[ProxyRecord],
                  sample_seconds: float = 1.0) -> dict[str, Any]:
    """{"keys": [...], "memory": [...], "ops": [...] or None} per slot."""
    n = topo.nslots
    keys, mem = [0.0] * n, [0.0] * n
    groups = [g for g in topo.groups.values() if g.master]
    results = await asyncio.gather(*(
        group_keys_memory(g.master or "", set(topo.slots_of(g.id)), n) for g in groups),
        return_exceptions=True)
    errors = []
    for g, res in zip(groups, results, strict=True):
        if isinstance(res, BaseException):
            errors.append(f"group {g.id}: {res}")
            continue
        for s, v in res[0].items():
            keys[s] += v
        for s, v in res[1].items():
            mem[s] += v
    ops = await proxy_slot_ops(client_, proxies, n, sample_seconds) if proxies else None
    return {"keys": keys, "memory": mem, "ops": ops, "errors": errors}
