"""The proxies' per-group p99 over a sliding window (dashboard/migrate/proxylat.py), from the
cumulative histograms of `GET /api/latency`, on a fake clock."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dashboard.migrate.proxylat import GroupLatency, ProxyLatencyWatch
from proxy.observe.histogram import BOUNDS_US, NBUCKETS, bucket_of


def report(groups: dict[str, dict[int, int]]) -> dict[str, Any]:
    """A proxy's /api/latency document: per group, {latency us: requests} so far."""
    out = {}
    for gid, lat in groups.items():
        buckets = [0] * NBUCKETS
        for us, n in lat.items():
            buckets[bucket_of(us)] += n
        out[gid] = {"count": sum(lat.values()), "failed": 0, "sum_us": 0, "buckets": buckets}
    return {"bounds_us": list(BOUNDS_US), "sample_every": 1, "commands": {}, "groups": out}


def test_the_p99_is_of_the_window_not_of_all_time() -> None:
    w = GroupLatency(window=1.0, min_count=100)
    w.add(0.0, {"p": report({"1": {100: 10_000}})})  # a long quiet past at 100 us
    assert w.p99() == {}  # one report: no window yet
    w.add(1.0, {"p": report({"1": {100: 10_990, 3000: 10}})})  # 1 % at 3 ms in the window
    assert 64e-6 < w.p99()["1"] <= 128e-6  # the p99 is still in the 100 us bucket
    w.add(2.0, {"p": report({"1": {100: 11_090, 3000: 910}})})  # now 90 % at 3 ms
    p99 = w.p99()["1"]
    assert 2048e-6 < p99 <= 4096e-6  # the window's, although all-time it is < 5 %


def test_proxies_add_up_and_small_windows_give_no_figure() -> None:
    w = GroupLatency(window=1.0, min_count=100)
    w.add(0.0, {"a": report({"1": {}, "2": {}}), "b": report({"1": {}})})
    w.add(1.0, {"a": report({"1": {50: 60}, "2": {50: 30}}), "b": report({"1": {50: 60}})})
    figures = w.p99()
    assert set(figures) == {"1"}  # 120 timed requests for group 1; 30 for group 2: too few
    assert 32e-6 < figures["1"] <= 64e-6
    assert w.p99(groups=["2"]) == {}


def test_a_restarted_proxy_counts_from_zero_and_an_unreachable_one_is_skipped() -> None:
    w = GroupLatency(window=1.0, min_count=10)
    w.add(0.0, {"a": report({"1": {100: 1000}}), "b": report({"1": {100: 1000}})})
    # a restarted (counts went down: only its new ones count), b unreachable
    w.add(1.0, {"a": report({"1": {5000: 20}}), "b": None})
    assert 4096e-6 < w.p99()["1"] <= 8192e-6


def test_old_reports_are_dropped() -> None:
    w = GroupLatency(window=1.0)
    for t in range(20):
        w.add(t * 0.25, {"p": report({"1": {100: t * 100}})})
    # one report at least a window old is kept, plus the ones inside the window
    assert len(w.snaps) <= 6 and w.snaps[-1][0] - w.snaps[0][0] >= 1.0
    with pytest.raises(ValueError):
        GroupLatency(window=0)


class FakeRegistry:
    """The proxy registry as the watch uses it: records() and client.latency(record)."""

    class Rec:
        def __init__(self, pid: str) -> None:
            self.id = pid

    def __init__(self) -> None:
        self.docs: dict[str, Any] = {}
        self.client = self

    def records(self) -> list[Any]:
        return [self.Rec(p) for p in self.docs]

    async def latency(self, rec: Any) -> Any:
        doc = self.docs[rec.id]
        if isinstance(doc, Exception):
            raise doc
        return doc


def test_quiet_figures_need_a_whole_quiet_window() -> None:
    reg = FakeRegistry()
    now = [0.0]
    watch = ProxyLatencyWatch(reg, window=1.0, clock=lambda: now[0])  # type: ignore[arg-type]
    counts = {100: 0}

    async def poll(quiet: bool) -> dict[str, float]:
        now[0] += 0.5
        counts[100] += 200
        reg.docs = {"p": report({"1": dict(counts)}), "q": OSError("unreachable")}
        return await watch.poll(quiet)

    async def scenario() -> None:
        await poll(quiet=False)
        await poll(quiet=False)
        await poll(quiet=True)  # just went quiet: the window still holds migration time
        await poll(quiet=True)
        assert watch.baseline(max_age=10) == {}
        await poll(quiet=True)  # a whole window since it went quiet
        base = watch.baseline(max_age=10)
        assert set(base) == {"1"} and 64e-6 < base["1"] <= 128e-6
        now[0] += 11
        assert watch.baseline(max_age=10) == {}  # too old to describe the clients now

    asyncio.run(scenario())
