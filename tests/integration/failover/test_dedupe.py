"""`migrate.failover.dedupe` against real redis-servers: after a source failed over mid-migration,
the keys its promoted replica still holds although the target has them are deleted (the target's
copy is the newer one), and nothing else is touched."""

from __future__ import annotations

from pathlib import Path

import redis

from dashboard.migrate.failover import dedupe
from slotcore.keyslot import key_slot
from tests.harness import RedisServer

NSLOTS = 1024


async def test_dedupe_deletes_only_what_the_target_already_has(tmp_path: Path) -> None:
    src, dst = RedisServer(tmp_path / "src").start(), RedisServer(tmp_path / "dst").start()
    try:
        s, d = redis.Redis(port=src.port), redis.Redis(port=dst.port)
        keys = [f"k:{i}" for i in range(3000)]
        slot = {k: key_slot(k.encode(), NSLOTS) for k in keys}
        moving = {x for x in range(0, 1024, 2)}  # the even slots are migrating
        mine = [k for k in keys if slot[k] in moving]
        s.mset({k: "stale" for k in keys})
        # Half the migrating keys were moved before the failover: the target has them (newer).
        moved = mine[::2]
        d.mset({k: "new" for k in moved})
        removed = await dedupe(src.addr, dict.fromkeys(moving, dst.addr), NSLOTS, batch=100)
        assert removed == len(moved)
        left = {k.decode() for k in s.scan_iter(count=1000)}
        assert left == set(keys) - set(moved)          # not-yet-moved and other slots stay
        assert d.mget(moved) == [b"new"] * len(moved)   # the target is untouched
    finally:
        src.stop()
        dst.stop()
