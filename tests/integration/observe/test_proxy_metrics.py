"""The proxy's metrics, INFO commandstats/latencystats and SLOWLOG against real processes:
redis-server backends, a slotproxy process, redis-py as the client and Debian's promtool."""

from __future__ import annotations

import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.harness import ProxyProcess, RedisServer, free_port, group_config, until

pytestmark = pytest.mark.integration
PROMTOOL = "/usr/bin/promtool"


@pytest.fixture(scope="module", params=["compiled", "python"])
def metered(request: pytest.FixtureRequest, backends: list[RedisServer],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    """A proxy timing every request (sample 1 in 1) and logging every one as slow, over each
    hot path (the compiled fast path counts and times its requests itself)."""
    cfg = group_config(backends, admin_listen=f"127.0.0.1:{free_port()}",
                       latency_sample_every=1, slowlog_log_slower_than=0, slowlog_max_len=1000,
                       use_accelerator=request.param == "compiled")
    p = ProxyProcess(tmp_path_factory.mktemp(f"metered-{request.param}"), cfg).start()
    yield p
    p.stop()


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return resp.read().decode()


def samples(text: str, name: str) -> dict[str, float]:
    """{label text: value} of one metric's samples in an exposition."""
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            head, _, value = line.rpartition(" ")
            out[head[len(name):]] = float(value)
    return out


def promtool_check(text: str) -> None:
    res = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(),
                         capture_output=True, timeout=60)
    assert res.returncode == 0, (res.stdout + res.stderr).decode()


def reset(r: redis.Redis, backends: list[RedisServer]) -> None:
    for s in backends:
        redis.Redis(port=s.port).flushall()
    r.config_resetstat()
    r.slowlog_reset()


def test_counts_histograms_and_promtool(metered: ProxyProcess, backends: list[RedisServer]
                                        ) -> None:
    r = metered.client()
    reset(r, backends)
    for i in range(50):
        r.set(f"k{i}", "v")
    pipe = r.pipeline(transaction=False)
    for i in range(30):
        pipe.get(f"k{i}")
    pipe.execute()
    with pytest.raises(redis.ResponseError):
        r.execute_command("GET", "a", "b")  # wrong arity: rejected, not called
    r.lpush("k1-list", "x")
    with pytest.raises(redis.ResponseError):
        r.lpush("k1", "x")  # WRONGTYPE: a failed call
    text = scrape(metered.admin_port)
    promtool_check(text)
    calls = samples(text, "slotproxy_commands_total")
    assert calls['{command="set"}'] == 50
    assert calls['{command="get"}'] == 30
    assert calls['{command="lpush"}'] == 2
    assert samples(text, "slotproxy_command_rejected_total")['{command="get"}'] == 1
    assert samples(text, "slotproxy_command_errors_total")['{command="lpush"}'] == 1
    # Every request timed: histogram counts are the requests sent; buckets monotonic.
    assert samples(text, "slotproxy_command_duration_seconds_count")['{command="set"}'] == 50
    buckets = [v for k, v in samples(text, "slotproxy_command_duration_seconds_bucket").items()
               if 'command="get"' in k]
    assert buckets == sorted(buckets) and buckets[-1] == 30
    groups = samples(text, "slotproxy_group_duration_seconds_count")
    assert sum(groups.values()) == 50 + 30 + 2
    assert samples(text, "slotproxy_connected_clients")[""] >= 1
    assert samples(text, "slotproxy_client_received_bytes_total")[""] > 0
    assert samples(text, "slotproxy_build_info")


def test_info_commandstats_and_latencystats(metered: ProxyProcess,
                                            backends: list[RedisServer]) -> None:
    r = metered.client()
    reset(r, backends)
    for i in range(20):
        r.set(f"k{i}", i)
    with pytest.raises(redis.ResponseError):
        r.execute_command("SET", "x")  # rejected
    stats = r.info("commandstats")
    assert stats["cmdstat_set"]["calls"] == 20
    assert stats["cmdstat_set"]["rejected_calls"] == 1
    assert stats["cmdstat_set"]["failed_calls"] == 0
    assert stats["cmdstat_set"]["usec"] > 0
    assert stats["cmdstat_set"]["usec_per_call"] > 0
    lat = r.info("latencystats")
    p = lat["latency_percentiles_usec_set"]
    assert 0 < p["p50"] <= p["p99"] <= p["p99.9"]
    # In a merged INFO everything the proxy's own sections replace the backends'.
    everything = r.info("everything")
    assert everything["cmdstat_set"]["calls"] == 20
    assert "redis_version" in everything


def test_slowlog_through_redis_py(metered: ProxyProcess, backends: list[RedisServer]) -> None:
    r = metered.client()
    reset(r, backends)
    r.client_setname("probe")
    r.set("{a}key", "v" * 300)
    r.execute_command("MSET", *[f"m{i}" for i in range(80)])
    entries = r.slowlog_get(128)
    assert len(entries) >= 3
    assert r.slowlog_len() == len(entries) + 1  # SLOWLOG GET itself is logged, as in Redis
    newest = entries[0]
    assert newest["command"].startswith(b"MSET m0 m1")
    assert newest["command"].endswith(b"... (50 more arguments)")
    # 31 arguments, then "... (50 more arguments)", as Redis
    assert len(newest["command"].split(b" ")) == 31 + 4
    setter = next(e for e in entries if e["command"].startswith(b"SET {a}key"))
    assert setter["command"].endswith(b"... (172 more bytes)")
    assert setter["client_name"].startswith(b"probe group=")
    assert setter["client_address"].startswith(b"127.0.0.1:")
    assert setter["duration"] >= 0
    assert [e["id"] for e in entries] == sorted((e["id"] for e in entries), reverse=True)
    assert r.slowlog_reset()
    assert r.slowlog_len() <= 1  # only the SLOWLOG LEN itself may have been logged since
    assert r.execute_command("SLOWLOG", "HELP")[0].startswith(b"SLOWLOG <subcommand>")
    with pytest.raises(redis.ResponseError, match="count should be greater than or equal to -1"):
        r.execute_command("SLOWLOG", "GET", "-2")
    with pytest.raises(redis.ResponseError, match="Try SLOWLOG HELP"):
        r.execute_command("SLOWLOG", "NOPE")


def test_slowlog_config_get_set(metered: ProxyProcess) -> None:
    r = metered.client()
    assert r.config_get("proxy-slowlog-*") == {"proxy-slowlog-log-slower-than": "0",
                                               "proxy-slowlog-max-len": "1000"}
    try:
        assert r.config_set("proxy-slowlog-max-len", 2)
        for i in range(5):
            r.get(f"x{i}")
        assert r.slowlog_len() == 2
        assert r.config_set("proxy-slowlog-log-slower-than", -1)
        r.slowlog_reset()
        r.get("y")
        assert r.slowlog_len() == 0
        with pytest.raises(redis.ResponseError, match="proxy-slowlog-max-len"):
            r.config_set("proxy-slowlog-max-len", "lots")
        # The sampler at run time: 1 in 4 timed, calls stay exact.
        r.config_resetstat()
        assert r.config_set("proxy-latency-sample-every", 4)
        assert r.config_get("proxy-latency-sample-every") == {"proxy-latency-sample-every": "4"}
        for i in range(40):
            r.get(f"s{i}")
        text = scrape(metered.admin_port)
        assert samples(text, "slotproxy_commands_total")['{command="get"}'] == 40
        assert samples(text, "slotproxy_command_duration_seconds_count")['{command="get"}'] == 10
        with pytest.raises(redis.ResponseError, match="proxy-latency-sample-every"):
            r.config_set("proxy-latency-sample-every", 0)
    finally:
        r.config_set("proxy-slowlog-log-slower-than", 0)
        r.config_set("proxy-slowlog-max-len", 1000)
        r.config_set("proxy-latency-sample-every", 1)


def test_metrics_off_counts_nothing(backends: list[RedisServer], tmp_path: Path) -> None:
    cfg = group_config(backends, admin_listen=f"127.0.0.1:{free_port()}", metrics=False)
    p = ProxyProcess(tmp_path, cfg).start()
    try:
        r = p.client()
        for i in range(10):
            r.set(f"off{i}", 1)
        assert "cmdstat_set" not in r.info("commandstats")
        text = until(lambda: scrape(p.admin_port), what="a scrape")
        promtool_check(text)
        assert samples(text, "slotproxy_latency_sample_every")[""] == 0
        assert not samples(text, "slotproxy_commands_total")
    finally:
        p.stop()
