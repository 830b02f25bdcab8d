"""What the mover does to spend less CPU per key, against real processes: pages sized and the
next page asked for in one round trip (pipelines far larger than the server's 16 KiB reads),
fenced keys left alone, progress reported per slot and batch, and a dashboard running at a
lower CPU priority (`nice`) migrating under load without losing an acknowledged write."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from dashboard.migrate.mover import MovePass, Settings, count_slot_keys, prescan
from slotcore.keyslot import key_slot
from tests.harness import until
from tests.harness.cluster import Load, cluster

from .test_e2e import prefill
from .test_mover import NSLOTS, content, fill_all_types

pytestmark = pytest.mark.integration


async def test_pages_far_beyond_one_read_are_sized_and_moved_completely(two_redis) -> None:
    """Long keys, 2,000 a page: each page's pipeline (MEMORY USAGE per key + the next SCAN) is
    ~500 KiB one way, read by the server 16 KiB at a time and answered in pieces."""
    src, dst = two_redis
    a, b = redis.Redis(port=src.port), redis.Redis(port=dst.port)
    p = a.pipeline(transaction=False)
    keys = [b"long:%06d:" % i + b"x" * 200 for i in range(6000)]
    for i, k in enumerate(keys):
        p.set(k, b"v%d" % i, ex=3600 if i % 3 == 0 else None)
    p.execute()
    kinds = fill_all_types(a, "t", 100)
    leaving = set(range(0, 700))
    want = {k for k in [*keys, *kinds] if key_slot(k, NSLOTS) in leaving}
    before = {k: content(a, k) for k in want}
    settings = Settings(batch_size=2000, adaptive=False)
    pre = await prescan(src.addr, leaving, NSLOTS, settings)
    assert sum(pre.keys.values()) == len(want) and not pre.big
    assert sum(pre.bytes.values()) > 200 * len(want)  # MEMORY USAGE counts the key names too
    reports: list[tuple[int, int, int]] = []

    async def on_big(key: bytes, size: int, slot: int) -> None:
        raise AssertionError(f"unexpected big key {key!r}")

    res = await MovePass(src.addr, dict.fromkeys(leaving, dst.addr), NSLOTS, settings,
                         lambda s, n, nb: reports.append((s, n, nb)), on_big).run()
    assert not res.failed
    assert sum(res.moved.values()) == len(want) == sum(n for _, n, _ in reports)
    # progress comes once per slot and batch, with that slot's keys and bytes
    assert len(reports) < len(want) // 2
    assert sum(nb for _, _, nb in reports) == sum(pre.bytes.values())
    assert {s for s, _, _ in reports} == {key_slot(k, NSLOTS) for k in want}
    assert await count_slot_keys(src.addr, leaving, NSLOTS) == {}
    for k in want:
        assert content(b, k) == before[k], k
    for i, k in enumerate(keys):
        if k in want:
            assert (b.ttl(k) > 3500) if i % 3 == 0 else (b.ttl(k) == -1), k
        else:
            assert a.exists(k) and not b.exists(k)


async def test_fenced_keys_stay_on_the_source(two_redis) -> None:
    src, dst = two_redis
    a, b = redis.Redis(port=src.port), redis.Redis(port=dst.port)
    for i in range(500):
        a.set(f"f:{i}", i)
    fenced = {b"f:7", b"f:123", b"f:499"}
    asked = []

    def fenced_now() -> frozenset[bytes]:
        asked.append(1)
        return frozenset(fenced)

    async def on_big(key: bytes, size: int, slot: int) -> None:
        raise AssertionError(f"unexpected big key {key!r}")

    res = await MovePass(src.addr, dict.fromkeys(range(NSLOTS), dst.addr), NSLOTS,
                         Settings(batch_size=100), lambda *a: None, on_big,
                         fenced=fenced_now).run()
    assert sum(res.moved.values()) == 497 and not res.failed
    assert {k for k in a.scan_iter()} == fenced and b.dbsize() == 497
    assert 0 < len(asked) <= 10  # once per SCAN page, not per key


def test_a_niced_dashboard_migrates_under_load_and_loses_nothing(tmp_path: Path) -> None:
    """`nice: 10`: the dashboard (and its mover) runs at a lower CPU priority; the two-phase
    pushes and the proxies' fencing timeouts are unaffected (seconds, not the milliseconds a
    lower priority costs), and every acknowledged write is there afterwards."""
    with cluster(tmp_path, nice=10, migration={"max_concurrent_slots": 128}) as c:
        assert c.dash.process is not None
        stat = Path(f"/proc/{c.dash.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        assert int(stat[16]) == 10  # the nice field
        ports = [p.port for p in c.proxies]
        prefill(ports[0], 20000)
        with Load(ports) as load:
            time.sleep(0.5)
            c.migrate("0-511", 2)
            c.wait_idle(90)
            ops = load.ops
            until(lambda: load.ops > ops, 30, "the load still served")
        load.verify(ports[1])
        c.check_placement()
        via = redis.Redis(port=ports[1], protocol=2)
        assert all(via.get(f"pre:{i}") == str(i).encode() for i in range(0, 20000, 97))
        m = c.migrations()
        leaving = sum(1 for i in range(20000) if key_slot(b"pre:%d" % i, NSLOTS) < 512)
        assert m["status"] == "idle" and m["keys_moved"] >= leaving
