"""Hot keys through real proxies: a key doing 30% of a skewed load is the cluster's first hot
key within one window, counted on both proxies, with its slot, group and error bounds."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from slotcore.keyslot import key_slot
from tests.harness import REPO, TOKEN, env, until
from tests.harness.cluster import NSLOTS, Cluster

HOT = "user:{42}:profile"


class SkewedLoad:
    """Pipelines of GET/INCR through every proxy: 30% of the requests on one key."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.stop = threading.Event()
        self.sent = [0] * len(ports)
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True)
                        for i in range(len(ports))]

    def run(self, i: int) -> None:
        rnd = random.Random(i)
        conn = redis.Redis(port=self.ports[i], socket_timeout=10)
        while not self.stop.is_set():
            pipe = conn.pipeline(transaction=False)
            for _ in range(100):
                if rnd.random() < 0.3:
                    pipe.incr(HOT)
                else:
                    pipe.get(f"cold:{rnd.randrange(5000)}")
            pipe.execute()
            self.sent[i] += 100
        conn.close()



@pytest.fixture
def load(cluster: Cluster) -> Iterator[SkewedLoad]:
    lo = SkewedLoad([p.port for p in cluster.proxies])
    for t in lo.threads:
        t.start()
    try:
        yield lo
    finally:
        lo.stop.set()
        for t in lo.threads:
            t.join(15)


def full_window_under_load(cluster: Cluster, started_at: float) -> dict[str, Any]:
    """The cluster's last completed window once it lies wholly inside the load."""
    def ready() -> dict[str, Any] | None:
        h = cluster.dash.get("/api/v1/hotkeys?window=previous")
        ok = (h["start"] is not None and h["start"] >= started_at
              and sorted(h["proxies"]) == ["proxy-0", "proxy-1"])
        return h if ok else None
    return until(ready, 30, "a completed hot-key window under load")


def test_hot_key_shows_up_first_within_one_window(cluster: Cluster, load: SkewedLoad) -> None:
    p0 = cluster.proxies[0].admin
    started_at = p0.get("/api/hotkeys")["now"]
    until(lambda: all(load.sent), 10, "load through both proxies")
    h = full_window_under_load(cluster, started_at)
    assert h["window"] == "previous" and h["end"] - h["start"] == 3
    top = h["keys"][0]
    slot = key_slot(HOT.encode(), NSLOTS)
    owner = cluster.slotmap().owner[slot]
    assert top["key"] == HOT
    assert top["slot"] == slot and top["group"] == owner
    assert sorted(top["proxies"]) == ["proxy-0", "proxy-1"]  # counted through both
    # About 30% of the sampled requests; the bounds bracket the estimate.
    assert 0.2 < top["share"] < 0.4, top
    assert 0 <= top["lower"] <= top["count"] <= top["upper"]
    # No cold key comes close (each is ~0.014% of the load).
    assert all(k["count"] < top["count"] / 5 for k in h["keys"][1:])

    # Each proxy's own view: the same key first, with its slot and group.
    for p in cluster.proxies:
        rep = p.admin.get("/api/hotkeys?limit=3")
        assert rep["enabled"] and rep["sample_rate"] == 4 and rep["capacity"] == 32
        prev = rep["previous"]
        assert prev["keys"][0]["key"] == HOT and prev["keys"][0]["group"] == owner
        assert len(prev["keys"]) <= 3

    # Filtered by group: first in its own group, absent from the other one.
    other = 2 if owner == 1 else 1
    mine = cluster.dash.get(f"/api/v1/hotkeys?window=previous&group={owner}")
    assert mine["keys"][0]["key"] == HOT
    assert all(k["group"] == owner for k in mine["keys"])
    theirs = cluster.dash.get(f"/api/v1/hotkeys?window=previous&group={other}")
    assert HOT not in [k["key"] for k in theirs["keys"]]
    assert all(k["group"] == other for k in theirs["keys"])

    # The current (live) window finds it too, once it has a few samples.
    until(lambda: (c := cluster.dash.get("/api/v1/hotkeys"))["keys"]
          and c["keys"][0]["key"] == HOT, 15, "hot key first in the current window")


def test_hotkeys_api_errors(cluster: Cluster) -> None:
    api = cluster.dash.api
    for query, text in [("window=bogus", "'window'"), ("limit=0", "'limit'"),
                        ("limit=x", "'limit'"), ("group=abc", "group")]:
        status, body = api.call("GET", f"/api/v1/hotkeys?{query}", token=None)
        assert status == 400 and text in body["error"], (query, body)
    status, body = cluster.proxies[0].admin.call("GET", "/api/hotkeys?limit=-1", token=None)
    assert status == 400 and "limit" in body["error"]


def proxyctl(*argv: str) -> list[str]:
    return [sys.executable, "-m", "dashboard.cli", *argv]


def test_proxyctl_hotkeys_and_watch(cluster: Cluster, load: SkewedLoad) -> None:
    environ = {**env(), "SLOTPROXY_DASHBOARD": cluster.dash.url, "SLOTPROXY_ADMIN_TOKEN": TOKEN}
    started_at = cluster.proxies[0].admin.get("/api/hotkeys")["now"]
    full_window_under_load(cluster, started_at)
    out = subprocess.run(proxyctl("hotkeys", "--previous", "--limit", "5"), env=environ,
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("hot keys, previous window") and "through 2 proxies" in lines[0]
    header = next(i for i, line in enumerate(lines) if line.startswith("#"))
    assert lines[header].split()[:4] == ["#", "KEY", "REQUESTS", "SHARE"]
    assert lines[header + 1].split()[1] == HOT
    # --watch redraws until interrupted: read two frames, then stop it (our own process).
    watch = subprocess.Popen(proxyctl("hotkeys", "--watch", "--interval", "0.2", "--previous"),
                             env=environ, cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert watch.stdout is not None
        frames = 0
        while frames < 2:
            line = watch.stdout.readline()
            assert line, "proxyctl hotkeys --watch ended"
            frames += "hot keys, previous window" in line
    finally:
        watch.terminate()
        watch.wait(10)
