"""The proxy's observability cores without sockets: histogram math, the meter's sampling and
accounting, the slow log's Redis truncation, the INFO sections' format and the collector."""

from __future__ import annotations

import subprocess
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis._parsers.helpers import parse_info

from proxy.app import build_services
from proxy.config import ProxyConfig
from proxy.handlers.observe import (
    commandstats_section,
    latencystats_section,
    put_own_sections,
    slowlog_client_field,
)
from proxy.observe import histogram as h
from proxy.observe.meter import Meter, clock_ns
from proxy.observe.metrics import exposition
from proxy.observe.slowlog import SlowLog, truncate_argv

CLIENT = SimpleNamespace(addr="127.0.0.1:5000", name=b"app")


def test_bucket_bounds_are_inclusive_powers_of_two() -> None:
    assert h.BOUNDS_US[0] == 16 and h.BOUNDS_US[-1] == 1 << 24
    assert h.bucket_of(0) == 0 and h.bucket_of(16) == 0
    assert h.bucket_of(17) == 1 and h.bucket_of(32) == 1 and h.bucket_of(33) == 2
    for i, bound in enumerate(h.BOUNDS_US):
        assert h.bucket_of(bound) == i
        assert h.bucket_of(bound + 1) == i + 1
    assert h.bucket_of(10**12) == h.NBUCKETS - 1  # over the last bound: +Inf


def test_cumulative_is_monotonic_and_ends_at_the_count() -> None:
    counts = h.new()
    for us in (1, 20, 20, 500, 70_000, 10**9):
        counts[h.bucket_of(us)] += 1
    cum = h.cumulative(counts)
    assert cum == sorted(cum) and cum[-1] == 6


def test_percentiles_interpolate_inside_the_bucket() -> None:
    counts = h.new()
    assert h.percentile(counts, 50) == 0.0
    counts[h.bucket_of(100)] = 100  # (64, 128]
    assert h.percentile(counts, 50) == pytest.approx(96.0)
    assert h.percentile(counts, 100) == 128.0
    counts[h.bucket_of(10**9)] = 1
    assert h.percentile(counts, 99.99) == float(h.BOUNDS_US[-1])
    # Never off by more than the bucket: the true value 100 lies in the reported bucket.
    assert 64 <= h.percentile(counts, 10) <= 128


def test_meter_samples_one_in_n_by_counter() -> None:
    m = Meter(every=4)
    assert [m.tick() for _ in range(8)] == [False, False, False, True] * 2
    assert all(Meter(every=1).tick() for _ in range(5))


def test_meter_accounts_calls_errors_latency_and_rejects() -> None:
    m = Meter(slowlog=SlowLog(slower_than=-1))
    for raw, n in {b"GET": 2, b"get": 1, b"SET": 1}.items():  # as counted per read
        m.raw_calls[raw] = n
    m.dispatched(b"SET", "set")  # the dispatch path moves it to the table's name ...
    m.reject("set")  # ... and a refusal to rejected_calls
    m.raw_calls[b"GET"] += 1
    m.dispatched(b"GET", "get")
    m.raw_calls[b"FOO"] = 1
    m.dispatched(b"FOO", None)  # unknown: no call
    t0 = clock_ns()
    m.finish("get", "1", t0, b"$1\r\nx\r\n", [b"GET", b"k"], CLIENT)
    m.finish("get", "1", t0, b"-WRONGTYPE x\r\n", [b"GET", b"k"], CLIENT)
    m.finish("get", "2", t0, b"!5\r\nERR x\r\n", [b"GET", b"k"], CLIENT)
    rows = {r.name: r for r in m.rows()}
    assert rows["get"].calls == 4 and rows["get"].timings.count == 3
    assert "foo" not in rows
    assert rows["get"].timings.failed == 2
    assert rows["set"].calls == 0 and rows["set"].rejected == 1
    assert m.groups["1"].count == 2 and m.groups["2"].failed == 1
    assert sum(rows["get"].timings.buckets) == 3
    assert len(m.slowlog) == 0  # negative threshold: nothing logged
    m.reset()
    assert m.rows() == []


def test_slowlog_truncates_as_redis() -> None:
    argv = [b"MSET"] + [b"a"] * 40
    out = truncate_argv(argv)
    assert len(out) == 32 and out[-1] == b"... (10 more arguments)"
    assert truncate_argv([b"SET", b"k", b"v" * 200])[2] == b"v" * 128 + b"... (72 more bytes)"
    assert truncate_argv([b"GET", b"k"]) == (b"GET", b"k")


def test_slowlog_bounds_order_and_ids() -> None:
    log = SlowLog(slower_than=0, max_len=3)
    for i in range(5):
        log.add([b"GET", str(i).encode()], i, "a:1", "", "1")
    assert len(log) == 3
    assert [e.id for e in log.get(-1)] == [4, 3, 2]  # newest first
    assert [e.id for e in log.get(2)] == [4, 3]
    log.set_max_len(1)
    assert [e.id for e in log.get(-1)] == [4]
    log.reset()
    log.add([b"PING"], 1, "a:1", "", "")
    assert log.get()[0].id == 5  # ids are never reused, as Redis's
    m = Meter(slowlog=SlowLog(slower_than=0))
    m.finish("get", "3", clock_ns(), b"+OK\r\n", [b"GET", b"k"], CLIENT)
    e = m.slowlog.get()[0]
    assert (e.addr, e.name, e.group) == ("127.0.0.1:5000", "app", "3")


def test_slowlog_client_field_keeps_the_name_first() -> None:
    assert slowlog_client_field("app", "2") == "app group=2"
    assert slowlog_client_field("", "") == "group=-"
    assert slowlog_client_field("", "*").rpartition(" ")[2] == "group=*"


def _services_with_figures(every: int = 1) -> SimpleNamespace:
    m = Meter(every=every)
    m.calls["get"] += 3
    m.calls["config|get"] += 1
    for _ in range(3):
        m.finish("get", "1", clock_ns() - 50_000, b"$1\r\nx\r\n", [b"GET", b"k"], CLIENT)
    return SimpleNamespace(stats=SimpleNamespace(meter=m))


def test_info_sections_parse_with_redis_py() -> None:
    s = _services_with_figures()
    stats = parse_info(commandstats_section(s))
    assert stats["cmdstat_get"]["calls"] == 3
    assert stats["cmdstat_get"]["usec"] >= 150 and stats["cmdstat_get"]["usec_per_call"] >= 50
    assert stats["cmdstat_get"]["failed_calls"] == 0
    assert stats["cmdstat_config|get"]["calls"] == 1
    lat = parse_info(latencystats_section(s))["latency_percentiles_usec_get"]
    assert set(lat) == {"p50", "p99", "p99.9"} and 32 <= lat["p50"] <= 64
    merged = put_own_sections("# Server\r\nredis_version:7.0.0\r\n\r\n# Commandstats\r\n"
                              "cmdstat_get:calls=999\r\n\r\n# Keyspace\r\ndb0:keys=1\r\n",
                              {"Commandstats": commandstats_section(s)})
    info = parse_info(merged)
    assert info["cmdstat_get"]["calls"] == 3 and info["redis_version"] == "7.0.0"
    assert "db0" in info


async def test_collector_exposition_parses_and_passes_promtool() -> None:
    services = build_services(ProxyConfig())
    try:
        m = services.stats.meter
        m.raw_calls[b"SET"] = 5
        for _ in range(5):
            m.finish("set", "1", clock_ns() - 200_000, b"+OK\r\n", [b"SET", b"k", b"v"], CLIENT)
        services.stats.bytes_in = 123
        text = exposition(services, "0.1.0").decode()
    finally:
        await services.pool.close()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    calls = {s.labels["command"]: s.value for s in fams["slotproxy_commands"].samples}
    assert calls == {"set": 5}
    hist = fams["slotproxy_command_duration_seconds"].samples
    buckets = [s.value for s in hist if s.name.endswith("_bucket")]
    assert buckets == sorted(buckets) and buckets[-1] == 5
    count = next(s.value for s in hist if s.name.endswith("_count"))
    total = next(s.value for s in hist if s.name.endswith("_sum"))
    assert count == 5 and total >= 5 * 200e-6
    assert fams["slotproxy_client_received_bytes"].samples[0].value == 123
    res = subprocess.run(["/usr/bin/promtool", "check", "metrics"], input=text.encode(),
                         capture_output=True, timeout=60)
    assert res.returncode == 0, (res.stdout + res.stderr).decode()


def test_dashboard_latency_merge_and_slowlog_table() -> None:
    from dashboard.cli.render import render_slowlog
    from dashboard.observe.latency import percentile, summary

    bounds = list(h.BOUNDS_US)
    counts = h.new()
    counts[h.bucket_of(100)] = 90
    counts[h.bucket_of(5000)] = 10
    # The dashboard's percentile (no proxy import) agrees with the proxy's.
    for q in (50, 90, 99, 99.9):
        assert percentile(bounds, counts, q) == pytest.approx(h.percentile(counts, q))
    s = summary(bounds, counts, 90 * 100 + 10 * 5000)
    assert s["count"] == 100 and s["mean_us"] == 590.0 and s["p50"] < s["p99"]
    text = render_slowlog({"entries": [
        {"time": 1_700_000_000, "duration_us": 12000, "source": "proxy p1", "group": "2",
         "client_addr": "127.0.0.1:1", "argv": ["GET", "k"]},
        {"time": 1_700_000_000, "duration_us": 900, "source": "group 2 127.0.0.1:7000",
         "group": "2", "client_addr": "", "argv": ["GET", "k"]}],
        "errors": [{"source": "proxy p2", "error": "no answer"}]})
    lines = text.splitlines()
    assert "SOURCE" in lines[0] and "proxy p1" in lines[1] and "GET k" in lines[1]
    assert lines[-1] == "unreachable: proxy p2: no answer"


def test_config_observe_fields() -> None:
    from proxy.config import ConfigError, config_from_dict

    base = {"groups": {1: {"master": "127.0.0.1:7000"}}}
    cfg = config_from_dict({**base, "metrics": False, "latency_sample_every": 8,
                            "slowlog_log_slower_than": -1, "slowlog_max_len": 5})
    assert (cfg.metrics, cfg.latency_sample_every, cfg.slowlog_log_slower_than,
            cfg.slowlog_max_len) == (False, 8, -1, 5)
    for bad in ({"latency_sample_every": 0}, {"slowlog_max_len": 10**9},
                {"slowlog_log_slower_than": "soon"}, {"metrics": "yes"}):
        with pytest.raises(ConfigError):
            config_from_dict({**base, **bad})
