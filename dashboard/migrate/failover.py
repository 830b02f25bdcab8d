"""A group fails over while its slots migrate: what changes for the migration (sans-IO parts).

Target failed over: nothing to re-plan. The proxies pull keys to the new target master as soon
as the map names it, the mover re-reads the target's address on its next pass; whatever the
old target had acknowledged and not yet replicated is lost exactly as any write to it would be.

Source failed over: the promoted replica may still hold keys the old master had already MIGRATEd
away -- MIGRATE's DEL on the source is replicated asynchronously like any write. Moved again,
such a stale copy would REPLACE the newer value on the target. So the same change that records
the new master puts that group's migrating slots back to `prepared` (LOCKED: proxies hold their
requests), and before they go back to migrating the migrator deletes from the new source every
key of those slots that the target already holds (`dedupe`): the target's copy is the newer one,
because no proxy writes a migrating slot's keys on the source.
"""

from __future__ import annotations

from dataclasses import replace

from redis.exceptions import RedisError

from slotcore.keyslot import key_slot

from ..model.records import Topology
from ..observe.redisconn import connect
from .mover import ServerDown


def relock_source(topo: Topology, gid: int) -> tuple[Topology, list[int]]:
    """Group `gid`'s migrating slots back to prepared (LOCKED); returns (topology, slots)."""
    slots = sorted(s for s, m in topo.migrations.items()
                   if m.source == gid and m.state == "migrating")
    if not slots:
        return topo, []
    migrations = dict(topo.migrations)
    for s in slots:
        migrations[s] = replace(migrations[s], state="prepared")
    return replace(topo, migrations=migrations), slots


async def dedupe(source: str, targets: dict[int, str], nslots: int, batch: int = 500,
                 password: str | None = None) -> int:
    """Delete from `source` the keys of `targets`' slots (slot -> target addr) that their target
    already holds; returns how many. Run only while those slots are LOCKED on every proxy."""
    src = connect(source, password=password)
    dsts = {addr: connect(addr, password=password) for addr in set(targets.values())}
    removed = 0
    try:
        cursor = 0
        while True:
            try:
                cursor, keys = await src.scan(cursor, count=batch)
            except (RedisError, OSError) as e:
                raise ServerDown("source", source, str(e) or type(e).__name__) from None
            by_target: dict[str, list[bytes]] = {}
            for k in keys:
                t = targets.get(key_slot(k, nslots))
                if t is not None:
                    by_target.setdefault(t, []).append(k)
            for addr, ks in by_target.items():
                try:
                    pipe = dsts[addr].pipeline(transaction=False)
                    for k in ks:
                        pipe.exists(k)
                    there = await pipe.execute()
                except (RedisError, OSError) as e:
                    raise ServerDown("target", addr, str(e) or type(e).__name__) from None
                stale = [k for k, n in zip(ks, there, strict=True) if n]
                if stale:
                    try:
                        removed += int(await src.delete(*stale))
                    except (RedisError, OSError) as e:
                        raise ServerDown("source", source, str(e) or type(e).__name__) from None
            if int(cursor) == 0:
                return removed
    finally:
        await src.aclose()
        for c in dsts.values():
            await c.aclose()


__all__ = ["ServerDown", "dedupe", "relock_source"]
