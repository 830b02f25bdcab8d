"""The supervisor's merges of its workers' observability documents (proxy/workers/merge.py):
real expositions from the proxy's collector through Debian's promtool, real hot-key reports
from the proxy's sampler through the dashboard's cluster merge."""

from __future__ import annotations

import random
import subprocess
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dashboard.observe.hotkeys import merge as cluster_merge
from proxy.app import build_services
from proxy.config import HotKeysConfig, ProxyConfig
from proxy.observe import histogram as h
from proxy.observe.hotkeys import HotKeys
from proxy.observe.meter import clock_ns
from proxy.observe.metrics import exposition
from proxy.workers.merge import (
    merge_expositions,
    merge_hotkeys,
    merge_latency,
    merge_slowlog,
    supervisor_series,
    with_label,
)

CLIENT = SimpleNamespace(addr="127.0.0.1:5000", name=b"app")


def promtool_check(text: str) -> None:
    res = subprocess.run(["/usr/bin/promtool", "check", "metrics"], input=text.encode(),
                         capture_output=True, timeout=60)
    assert res.returncode == 0, (res.stdout + res.stderr).decode()


def test_with_label_goes_first_or_alone() -> None:
    w = 'worker="1"'
    assert with_label("up 1", w) == 'up{worker="1"} 1'
    assert with_label("up{} 1 1700000000", w) == 'up{worker="1"} 1 1700000000'
    assert with_label('x_bucket{le="+Inf"} 3.0', w) == 'x_bucket{worker="1",le="+Inf"} 3.0'
    assert with_label('x{a="b c}",d="e"} 2', w) == 'x{worker="1",a="b c}",d="e"} 2'
    with pytest.raises(ValueError):
        with_label("garbage", w)


async def worker_text(sets: int, gets: int) -> str:
    services = build_services(ProxyConfig())
    try:
        m = services.stats.meter
        m.raw_calls[b"SET"] = sets  # the request path's exact call counts
        if gets:
            m.raw_calls[b"GET"] = gets
        for _ in range(sets):
            m.finish("set", "1", clock_ns() - 200_000, b"+OK\r\n", [b"SET", b"k", b"v"], CLIENT)
        for _ in range(gets):
            m.finish("get", "2", clock_ns() - 50_000, b"$-1\r\n", [b"GET", b"k"], CLIENT)
        return exposition(services, "0.1.0").decode()
    finally:
        await services.pool.close()


async def test_merged_exposition_is_one_valid_family_per_name() -> None:
    texts = [(0, await worker_text(5, 0)), (1, await worker_text(3, 7))]
    own = supervisor_series([{"index": 0, "state": "ready", "restarts": 0},
                             {"index": 1, "state": "ready", "restarts": 2}])
    merged = merge_expositions(texts, own)
    promtool_check(merged)
    lines = merged.splitlines()
    # HELP/TYPE once per family, and each family's samples contiguous
    types = [ln.split()[2] for ln in lines if ln.startswith("# TYPE")]
    assert len(types) == len(set(types))
    fams = {f.name: f for f in text_string_to_metric_families(merged)}
    assert list(fams)[:2] == ["slotproxy_workers", "slotproxy_worker_restarts"]
    calls = {(s.labels["worker"], s.labels["command"]): s.value
             for s in fams["slotproxy_commands"].samples}
    assert calls == {("0", "set"): 5, ("1", "set"): 3, ("1", "get"): 7}
    # sum without(worker): the total of the workers
    assert sum(v for (_, c), v in calls.items() if c == "set") == 8
    hist = fams["slotproxy_command_duration_seconds"].samples
    counts = {(s.labels["worker"], s.labels["command"]): s.value
              for s in hist if s.name.endswith("_count")}
    assert counts == {("0", "set"): 5, ("1", "set"): 3, ("1", "get"): 7}
    assert all(s.labels["worker"] in ("0", "1") for s in hist)
    uptime = [s.labels for s in fams["slotproxy_uptime_seconds"].samples]
    assert uptime == [{"worker": "0"}, {"worker": "1"}]
    states = {s.labels["state"]: s.value for s in fams["slotproxy_workers"].samples}
    assert states["ready"] == 2 and states["failed"] == 0
    # the family order is the first appearance
    first = [ln.split()[2] for ln in texts[0][1].splitlines() if ln.startswith("# TYPE")]
    assert types[2:2 + len(first)] == first


def test_exposition_families_seen_only_later_and_untyped_samples() -> None:
    a = "# HELP a_total A\n# TYPE a_total counter\na_total 1.0\n"
    b = ("# HELP a_total A\n# TYPE a_total counter\na_total 2.0\n"
         "# HELP b B\n# TYPE b gauge\nb{x=\"1\"} 3.0\n# HELP loose L\nloose 4.0\n"
         "untyped 5\n")
    merged = merge_expositions([(0, a), (1, b)])
    assert merged.splitlines() == [
        "# HELP a_total A", "# TYPE a_total counter",
        'a_total{worker="0"} 1.0', 'a_total{worker="1"} 2.0',
        "# HELP b B", "# TYPE b gauge", 'b{worker="1",x="1"} 3.0',
        "# HELP loose L", 'loose{worker="1"} 4.0', 'untyped{worker="1"} 5']
    # (promtool wants help text on every family: a worker's own all have it)
    promtool_check(merged.replace('untyped{worker="1"} 5\n', ""))
    assert merge_expositions([]) == ""


def timings(count: int, bucket: int, sum_us: int, failed: int = 0) -> dict[str, Any]:
    buckets = [0] * h.NBUCKETS
    buckets[bucket] = count
    return {"count": count, "failed": failed, "sum_us": sum_us, "buckets": buckets}


def latency_doc(**commands: dict[str, Any]) -> dict[str, Any]:
    return {"proxy_id": "p", "bounds_us": list(h.BOUNDS_US), "sample_every": 1,
            "commands": commands, "groups": {"1": timings(1, 0, 10)}}


def test_latency_adds_buckets_counts_and_sums() -> None:
    a = latency_doc(set=timings(5, 2, 300, failed=1))
    b = latency_doc(set=timings(3, 4, 900), get=timings(2, 0, 20))
    m = merge_latency([a, b], "sup")
    assert m["proxy_id"] == "sup" and m["bounds_us"] == list(h.BOUNDS_US)
    assert m["sample_every"] == 1
    s = m["commands"]["set"]
    assert (s["count"], s["failed"], s["sum_us"]) == (8, 1, 1200)
    assert s["buckets"][2] == 5 and s["buckets"][4] == 3 and sum(s["buckets"]) == 8
    assert m["commands"]["get"]["count"] == 2
    assert m["groups"]["1"]["count"] == 2 and m["groups"]["1"]["buckets"][0] == 2
    assert a["commands"]["set"]["count"] == 5  # the inputs are not changed
    empty = merge_latency([], "sup")
    assert empty["commands"] == {} and empty["bounds_us"] == list(h.BOUNDS_US)
    bad = latency_doc()
    bad["bounds_us"] = [1, 2]
    with pytest.raises(ValueError):
        merge_latency([a, bad], "sup")


def slow(id_: int, t: int, cmd: str) -> dict[str, Any]:
    return {"id": id_, "time": t, "duration_us": 10, "argv": [cmd], "client_addr": "",
            "client_name": "", "group": "1"}


def test_slowlog_newest_first_with_worker_and_count_after_merging() -> None:
    w0 = {"slower_than_us": 0, "max_len": 128, "length": 3,
          "entries": [slow(2, 105, "c"), slow(1, 103, "b"), slow(0, 100, "a")]}
    w1 = {"slower_than_us": 0, "max_len": 128, "length": 2,
          "entries": [slow(7, 105, "y"), slow(6, 101, "x")]}
    m = merge_slowlog([(0, w0), (1, w1)], -1, "sup")
    assert [(e["argv"][0], e["worker"]) for e in m["entries"]] == [
        ("y", 1), ("c", 0), ("b", 0), ("x", 1), ("a", 0)]
    assert m["length"] == 5 and m["max_len"] == 256 and m["slower_than_us"] == 0
    assert [e["argv"][0] for e in merge_slowlog([(0, w0), (1, w1)], 2, "s")["entries"]] == [
        "y", "c"]
    assert merge_slowlog([(0, w0)], 0, "s")["entries"] == []
    assert merge_slowlog([], -1, "s")["length"] == 0


def sampler(start: float, capacity: int = 4) -> tuple[HotKeys, list[float]]:
    now = [start + 1.0]
    hk = HotKeys(HotKeysConfig(sample_rate=1, capacity=capacity, window=60.0),
                 clock=lambda: now[0], rng=random.Random(1))
    return hk, now


def offer(hk: HotKeys, counts: dict[str, int]) -> None:
    for key, n in counts.items():
        for _ in range(n):
            hk.sample(key.encode(), 7)


def test_hotkeys_sum_listed_counts_and_charge_floors_to_unlisted_keys() -> None:
    a, _ = sampler(6000.0)
    b, _ = sampler(6000.0)
    # a: 5 distinct keys into 4 counters -> full, with a floor; b: not full, floor 0
    offer(a, {"hot": 50, "k1": 5, "k2": 4, "k3": 3, "k4": 2})
    offer(b, {"hot": 30, "only-b": 10})
    ra, rb = a.report(), b.report()
    floor_a = ra["current"]["floor"]
    assert floor_a > 0 and rb["current"]["floor"] == 0
    m = merge_hotkeys([(0, ra), (1, rb)], limit=3)
    cur = m["current"]
    assert m["enabled"] and m["sample_rate"] == 1 and m["window"] == 60.0
    assert cur["start"] == 6000.0 and cur["workers"] == [0, 1]
    assert cur["samples"] == 104 and cur["requests"] == 104 and cur["floor"] == floor_a
    assert len(cur["keys"]) == 3
    rows = {k["key"]: k for k in cur["keys"]}
    assert rows["hot"]["count"] == 80 and rows["hot"]["error"] == 0
    # only-b is not listed by a: a's floor added to its count and to its error
    assert rows["only-b"]["count"] == 10 + floor_a and rows["only-b"]["error"] == floor_a
    assert rows["only-b"]["count"] - rows["only-b"]["error"] == 10
    assert cur["keys"][0]["key"] == "hot"
    counts = [k["count"] for k in cur["keys"]]
    assert counts == sorted(counts, reverse=True)
    assert m["previous"] is None
    # the dashboard's cluster merge reads the merged report as a proxy's
    out = cluster_merge({"proxy-0": m}, [0] * 16, limit=10)
    assert out["proxies"] == ["proxy-0"] and out["keys"][0]["key"] == "hot"
    assert out["requests"] == 104


def test_hotkeys_window_starts_decide_who_is_counted() -> None:
    a, now_a = sampler(6000.0)
    b, _ = sampler(6000.0)
    offer(a, {"old": 4})
    offer(b, {"old": 6})
    now_a[0] = 6061.0  # a rotated into the next window, b not yet
    offer(a, {"new": 2})
    ra, rb = a.report(), b.report()
    m = merge_hotkeys([(0, ra), (1, rb)])
    assert m["current"]["start"] == 6060.0 and m["current"]["workers"] == [0]
    assert [k["key"] for k in m["current"]["keys"]] == ["new"]
    # the previous window: a's previous and b's (still) current one share its start
    prev = m["previous"]
    assert prev["start"] == 6000.0 and prev["workers"] == [0, 1]
    assert prev["keys"][0]["key"] == "old" and prev["keys"][0]["count"] == 10
    # a disabled worker is left out; all disabled: a disabled report
    off = HotKeys.disabled().report()
    assert merge_hotkeys([(0, ra), (1, off)])["current"]["workers"] == [0]
    none = merge_hotkeys([(0, off)])
    assert none["enabled"] is False and none["current"] is None
    assert merge_hotkeys([])["current"] is None
