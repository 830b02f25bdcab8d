"""`workers: 2`: the supervisor's admin API answers /metrics, /api/latency, /api/slowlog and
/api/hotkeys for all its workers (real supervisor and worker processes, real redis-servers,
Debian's promtool, the dashboard's hot-key merge)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dashboard.observe.hotkeys import merge as cluster_merge
from tests.harness import ProxyProcess, RedisServer, free_port, group_config, until
from tests.integration.migration.test_workers import one_per_worker
from tests.integration.observe.test_proxy_metrics import promtool_check, samples

pytestmark = pytest.mark.integration
TOKEN = "sup-secret"
SETS, GETS = 15, 7  # per worker


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[ProxyProcess]:
    servers = [RedisServer(tmp_path / f"r{i}").start() for i in range(2)]
    cfg = group_config(servers, workers=2, admin_listen=f"127.0.0.1:{free_port()}",
                       admin_token=TOKEN, latency_sample_every=1, slowlog_log_slower_than=0,
                       slowlog_max_len=1000, hotkeys={"sample_rate": 1, "window": 3600})
    p = ProxyProcess(tmp_path, cfg).start()
    try:
        yield p
    finally:
        p.stop()
        for s in servers:
            s.stop()


def test_supervisor_serves_metrics_latency_slowlog_hotkeys_for_all_workers(
        supervised: ProxyProcess) -> None:
    p = supervised
    conns = one_per_worker(p.port)
    for w, conn in conns.items():
        for i in range(SETS - 10):
            assert conn.set(f"w{w}-{i}", "v")
        for _ in range(10):
            assert conn.set("hot", w)
        for _ in range(GETS):
            assert conn.get("hot") is not None
    for conn in conns.values():
        conn.close()
    admin = p.admin

    # /metrics: one exposition promtool accepts; the workers' calls add up to what was sent
    def scrape() -> str:
        resp = admin.request("GET", "/metrics")
        assert resp.status == 200 and resp.content_type.startswith("text/plain; version=0.0.4")
        return resp.body.decode()

    text = until(lambda: (t := scrape()) and sum(
        v for k, v in samples(t, "slotproxy_commands_total").items()
        if 'command="set"' in k) == 2 * SETS and t, 30, "both workers' SETs counted")
    promtool_check(text)
    calls = samples(text, "slotproxy_commands_total")
    assert calls['{worker="0",command="set"}'] == SETS
    assert calls['{worker="1",command="set"}'] == SETS
    assert calls['{worker="0",command="get"}'] == GETS
    assert samples(text, "slotproxy_workers")['{state="ready"}'] == 2
    assert set(samples(text, "slotproxy_uptime_seconds")) == {'{worker="0"}', '{worker="1"}'}

    # /api/latency: every request timed (sample 1 in 1), the workers' histograms added
    lat = admin.get("/api/latency")
    assert lat["sample_every"] == 1
    for cmd, n in (("set", 2 * SETS), ("get", 2 * GETS)):
        t = lat["commands"][cmd]
        assert t["count"] == n and sum(t["buckets"]) == n and t["failed"] == 0
    assert sum(t["count"] for t in lat["groups"].values()) >= 2 * (SETS + GETS)

    # /api/slowlog: admin token; both workers' entries, newest first, each with its worker
    assert admin.call("GET", "/api/slowlog", token=False)[0] == 401
    assert admin.call("GET", "/api/slowlog?count=x")[0] == 400
    log = admin.get("/api/slowlog")
    assert {e["worker"] for e in log["entries"]} == {0, 1}
    assert log["length"] == len(log["entries"]) >= 2 * (SETS + GETS)
    order = [(e["time"], e["id"]) for e in log["entries"] if e["worker"] == 0]
    assert order == sorted(order, reverse=True)
    times = [e["time"] for e in log["entries"]]
    assert times == sorted(times, reverse=True)
    assert len(admin.get("/api/slowlog?count=3")["entries"]) == 3

    # /api/hotkeys: one report in a proxy's shape, which the dashboard's merge reads
    assert admin.call("GET", "/api/hotkeys?limit=0")[0] == 400
    rep = admin.get("/api/hotkeys")
    assert rep["enabled"] and rep["sample_rate"] == 1
    hot = 0
    for window in ("current", "previous"):  # the SETs may straddle a window boundary
        if rep[window] is None:
            continue
        assert rep[window]["workers"] in ([0], [1], [0, 1])
        out = cluster_merge({"proxy-0": rep}, [], window=window)
        assert out["proxies"] == ["proxy-0"]
        hot += sum(k["count"] for k in out["keys"] if k["key"] == "hot")
        assert all(k["count"] - k["error"] >= 0 for k in rep[window]["keys"])
    assert hot == 2 * (10 + GETS)  # sampled 1 in 1, summaries not full: exact
    assert len(admin.get("/api/hotkeys?limit=2")["current"]["keys"]) <= 2
