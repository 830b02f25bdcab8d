"""The adaptive pace on real redis-servers: a MovePass with a PaceController and a latency
probe moves every key, feeds the controller the source's own MIGRATE times (INFO
commandstats) and keeps every batch within the configured bounds."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import redis

from dashboard.migrate.mover import LatencyProbe, MovePass, Settings
from dashboard.migrate.pacing import PaceController
from slotcore.keyslot import key_slot
from tests.harness import until
from tests.harness.cluster import Load, cluster

pytestmark = pytest.mark.integration

NSLOTS = 1024


def fill(port: int, n: int) -> None:
    buf = b"".join(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$8\r\nvvvvvvvv\r\n" % (len(k), k)
                   for k in (b"p:%d" % i for i in range(n)))
    subprocess.run(["redis-cli", "-p", str(port), "--pipe"], input=buf, check=True,
                   capture_output=True)


class Recording(PaceController):
    """The controller, remembering every MIGRATE size it was told of."""

    __slots__ = ("sizes",)

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.sizes: list[int] = []

    def on_stall(self, keys: int, seconds: float) -> None:
        self.sizes.append(keys)
        super().on_stall(keys, seconds)


async def test_an_adaptive_pass_moves_everything_within_its_bounds(two_redis) -> None:
    src, dst = two_redis
    fill(src.port, 20000)
    leaving = set(range(0, 512))
    expect = sum(1 for i in range(20000) if key_slot(b"p:%d" % i, NSLOTS) in leaving)
    settings = Settings(batch_size=400, min_batch=20, max_batch=150, target_stall_ms=0.5,
                        probe_interval_ms=2.0, max_pause_ms=2.0)
    pace = Recording(settings.pace_limits(), start=settings.batch_size)
    probe = LatencyProbe(src.addr)
    pace.set_baseline(await probe.baseline())
    moved: dict[int, int] = {}

    def on_moved(slot: int, keys: int, nbytes: int) -> None:
        moved[slot] = moved.get(slot, 0) + keys

    async def on_big(key: bytes, size: int, slot: int) -> None:
        raise AssertionError(f"unexpected big key {key!r}")

    try:
        res = await MovePass(src.addr, dict.fromkeys(leaving, dst.addr), NSLOTS, settings,
                             on_moved, on_big, pace=pace, probe=probe).run()
    finally:
        await probe.close()
    assert not res.failed
    assert sum(moved.values()) == expect
    a, b = redis.Redis(port=src.port), redis.Redis(port=dst.port)
    assert b.dbsize() == expect and a.dbsize() == 20000 - expect
    # the start (400) is clamped to max_batch; a SCAN page may end in a short batch
    sizes = pace.sizes
    assert sizes and max(sizes) <= 150 and all(n >= 1 for n in sizes)
    assert 20 <= pace.batch <= 150
    view = pace.view()
    assert view["batches"] == len(sizes) and view["stall_ms"] > 0
    assert view["baseline_ms"] and view["latency_ms"] is not None


async def test_a_fixed_pass_ignores_the_pace(two_redis) -> None:
    src, dst = two_redis
    fill(src.port, 3000)
    settings = Settings(batch_size=50, adaptive=False)
    pace = PaceController(settings.pace_limits(), start=500)
    res = await MovePass(src.addr, dict.fromkeys(range(NSLOTS), dst.addr), NSLOTS, settings,
                         lambda s, k, b: None, lambda k, s, sl: None, pace=pace).run()
    assert not res.failed and redis.Redis(port=dst.port).dbsize() == 3000
    assert pace.batches == 0  # not consulted, not fed


def test_the_pace_follows_the_proxies_latency_and_loses_nothing(tmp_path: Path) -> None:
    """A real dashboard reading a real proxy's latency histograms: before the migration the
    quiet p99 of both groups is known, the source's pace is fed both groups' figures against
    that baseline while it moves, and every acknowledged write is there afterwards."""
    # ~2,300 keys leave at 500 keys/s: the pace is fed for seconds
    migration = {"keys_per_sec": 500, "proxy_poll_ms": 100, "proxy_window_ms": 1000}
    with cluster(tmp_path, nproxies=1, proxy_cfg={"latency_sample_every": 1},
                 migration=migration) as c:
        port = c.proxies[0].port
        via = redis.Redis(port=port, protocol=2)
        p = via.pipeline(transaction=False)
        for i in range(12000):
            p.set(f"pre:{i}", i)
        p.execute()
        with Load([port]) as load:
            until(lambda: {"1", "2"} <= set(c.migrations()["client_p99_ms"]["quiet"]), 60,
                  "both groups' quiet p99 from the proxy")
            c.migrate("0-199", 2)

            def fed() -> bool:
                clients = c.migrations()["pace"].get("1", {}).get("clients", {})
                return (set(clients) == {"1", "2"}
                        and all(v["baseline_ms"] for v in clients.values()))

            until(fed, 60, "the source's pace fed the proxies' p99 of both groups")
            c.wait_idle(120)
        load.verify(port)
        c.check_placement()
        assert via.dbsize() >= 12000
        assert all(via.get(f"pre:{i}") == str(i).encode() for i in range(0, 12000, 97))
