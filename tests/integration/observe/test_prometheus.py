"""A real Prometheus (Debian's /usr/bin/prometheus) scrapes a running proxy and dashboard;
the figures of a known load come back through its HTTP API. Also: both endpoints pass
`promtool check metrics`, the shipped alert rules and config pass promtool, every query of the
shipped Grafana dashboard is valid PromQL, and `proxyctl slowlog` merges proxies and groups."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from tests.harness import REPO, Process, env, free_port, until, wait_port
from tests.harness.cluster import Cluster
from tests.harness.http import TOKEN

pytestmark = pytest.mark.integration
PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"


class Prometheus:
    """A Prometheus on a free port with its own config and storage, stopped by PID."""

    def __init__(self, workdir: Path, targets: dict[str, list[str]]) -> None:
        self.port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        cfg = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
               "scrape_configs": [{"job_name": job, "metrics_path": "/metrics",
                                   "static_configs": [{"targets": hosts}]}
                                  for job, hosts in targets.items()]}
        path = workdir / "prometheus.yml"
        path.write_text(yaml.safe_dump(cfg))
        self.proc = Process([PROMETHEUS, f"--config.file={path}",
                             f"--storage.tsdb.path={workdir / 'data'}",
                             f"--web.listen-address=127.0.0.1:{self.port}"],
                            workdir / "prometheus.log")
        wait_port("127.0.0.1", self.port, 30, self.proc.proc)

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = (f"http://127.0.0.1:{self.port}/api/v1/query?"
               + urllib.parse.urlencode({"query": expr}))
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return body["data"]["result"]

    def value(self, expr: str) -> float | None:
        res = self.query(expr)
        return float(res[0]["value"][1]) if res else None

    def stop(self) -> None:
        self.proc.stop(10)


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[Cluster, Prometheus]]:
    tmp = Path(tempfile.mkdtemp(prefix="slotproxy-prom-"))
    c = Cluster(tmp, ngroups=2, nproxies=1, health_interval=0.5)
    proxy = c.proxies[0]
    prom = Prometheus(tmp / "prometheus", {
        "slotproxy": [f"127.0.0.1:{proxy.admin_port}"],
        "slotproxy-dashboard": [f"127.0.0.1:{c.dash.port}"]})
    try:
        yield c, prom
    finally:
        prom.stop()
        c.close()


def test_known_load_through_prometheus(stack: tuple[Cluster, Prometheus]) -> None:
    c, prom = stack
    r = redis.Redis(port=c.proxies[0].port, socket_timeout=10)
    r.config_set("proxy-latency-sample-every", 1)  # time every request (default: 1 in 61)
    r.config_resetstat()
    for i in range(500):
        r.set(f"load:{i}", i)
    pipe = r.pipeline(transaction=False)
    for i in range(300):
        pipe.get(f"load:{i}")
    assert pipe.execute()[299] == b"299"
    # Wait for a scrape taken after the load (the values only grow to these).
    until(lambda: prom.value('slotproxy_commands_total{command="set"}') == 500, 60,
          "500 SETs in Prometheus")
    until(lambda: prom.value('slotproxy_commands_total{command="get"}') == 300, 60,
          "300 GETs in Prometheus")
    # Every request is timed (sample 1 in 1): histogram counts are the requests sent. Calls
    # are counted when read, latency when the reply is queued: a scrape in between sees the
    # calls first, so each figure is waited for.
    until(lambda: prom.value('slotproxy_command_duration_seconds_count{command="set"}') == 500,
          60, "500 timed SETs")
    until(lambda: prom.value('slotproxy_command_duration_seconds_count{command="get"}') == 300,
          60, "300 timed GETs")
    assert prom.value('slotproxy_command_duration_seconds_bucket{command="get",le="+Inf"}') \
        == 300
    buckets = sorted((float(s["metric"]["le"]), float(s["value"][1])) for s in prom.query(
        'slotproxy_command_duration_seconds_bucket{command="set"}'))
    counts = [v for _, v in buckets]
    assert counts == sorted(counts) and counts[-1] == 500
    assert prom.value("sum(slotproxy_group_duration_seconds_count)") >= 800
    assert prom.value("slotproxy_connected_clients") >= 1
    assert prom.value('slotproxy_group_up{group="1"}') == 1
    assert prom.value("slotproxy_slotmap_epoch") >= 1
    # The dashboard's series, scraped alike.
    until(lambda: prom.value("sum(slotproxy_dashboard_group_slots)") == 1024, 30,
          "the dashboard's slot counts")
    assert prom.value("slotproxy_dashboard_groups") == 2
    assert prom.value('slotproxy_dashboard_proxies{state="online"}') == 1
    assert prom.value("slotproxy_dashboard_is_leader") == 1
    assert prom.value('slotproxy_dashboard_group_master_up{group="1"}') == 1
    assert prom.value("slotproxy_dashboard_store_up") == 1
    assert prom.value("slotproxy_dashboard_failovers_total") is not None
    assert prom.value('sum(up{job=~"slotproxy.*"})') == 2
    # A p99 over the histogram, once two scrapes give it a rate.
    until(lambda: prom.value('histogram_quantile(0.99, sum by (le) '
                             '(rate(slotproxy_command_duration_seconds_bucket[1m])))')
          is not None, 60, "a p99 from the histogram")


def _promtool(*args: str, stdin: bytes | None = None) -> None:
    res = subprocess.run([PROMTOOL, *args], input=stdin, capture_output=True, timeout=60)
    assert res.returncode == 0, (res.stdout + res.stderr).decode()


def test_promtool_accepts_both_endpoints(stack: tuple[Cluster, Prometheus]) -> None:
    c, _ = stack
    for url in (f"http://127.0.0.1:{c.proxies[0].admin_port}/metrics", f"{c.dash.url}/metrics"):
        with urllib.request.urlopen(url, timeout=10) as resp:
            _promtool("check", "metrics", stdin=resp.read())


def test_shipped_rules_config_and_grafana_queries(stack: tuple[Cluster, Prometheus]) -> None:
    _, prom = stack
    _promtool("check", "rules", str(REPO / "etc/prometheus/alerts.yml"))
    _promtool("check", "config", str(REPO / "etc/prometheus/prometheus.yml"))
    board = json.loads((REPO / "etc/grafana/slotproxy-dashboard.json").read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    assert len(exprs) >= 15
    for e in exprs:  # valid PromQL over our series (the query API rejects a bad one)
        prom.query(e.replace("$proxy", ".*"))


def test_proxyctl_slowlog_merges_proxies_and_groups(stack: tuple[Cluster, Prometheus]) -> None:
    c, _ = stack
    r = redis.Redis(port=c.proxies[0].port, socket_timeout=10)
    r.config_set("proxy-slowlog-log-slower-than", 0)
    r.config_set("slowlog-log-slower-than", 0)  # every group's servers (CONFIG SET fan-out)
    try:
        r.set("slow:probe", "x")
        res = subprocess.run(
            [sys.executable, "-m", "dashboard.cli", "slowlog", "--dashboard", c.dash.url,
             "-n", "50", "--json"], capture_output=True, timeout=60,
            env={**env(), "SLOTPROXY_ADMIN_TOKEN": TOKEN}, cwd=str(REPO))
        assert res.returncode == 0, res.stderr.decode()
        data = json.loads(res.stdout)
        sources = {e["source"] for e in data["entries"]}
        assert "proxy proxy-0" in sources
        assert any(s.startswith("group ") for s in sources), sources
        mine = [e for e in data["entries"] if e["argv"][:2] == ["SET", "slow:probe"]]
        assert {e["kind"] for e in mine} == {"proxy", "server"}  # both views of one command
        times = [e["time"] for e in data["entries"]]
        assert times == sorted(times, reverse=True)
        # The merged slow log needs the admin token (it shows clients' arguments).
        status = urllib.request.Request(f"{c.dash.url}/api/v1/slowlog")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(status, timeout=10)
        assert err.value.code == 401
    finally:
        r.config_set("proxy-slowlog-log-slower-than", 10000)
        r.config_set("slowlog-log-slower-than", 10000)
