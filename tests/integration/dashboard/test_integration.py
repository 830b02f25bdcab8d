"""End to end with real processes: dashboard(s), `python -m proxy` proxies, redis-servers, etcd."""

from __future__ import annotations

import contextlib
import io
import signal
from pathlib import Path

import pytest
import redis

from dashboard import cli
from slotcore.keyslot import key_slot
from slotcore.slotmap import SlotMap
from tests.harness import TOKEN, DashboardProcess, ProxyProcess, until

pytestmark = pytest.mark.integration


def client(port: int) -> redis.Redis:
    # RESP2: the proxy speaks RESP2 only (redis-py 8 would otherwise open with HELLO 3)
    return redis.Redis(port=port, protocol=2)


def proxyctl(dashboard: DashboardProcess, *argv: str, token: str | None = TOKEN) -> tuple[int, str]:
    """Run proxyctl in-process against a real dashboard; returns (exit code, stdout+stderr)."""
    out = io.StringIO()
    args = ["--dashboard", dashboard.url, *(["--token", token] if token else []), *argv]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = cli.main(args)
    return code, out.getvalue()


def owner_of(slotmap: dict, key: bytes) -> int:
    return SlotMap.from_json(slotmap).owner[key_slot(key)]


def check_routing(dash: DashboardProcess, proxies: list[ProxyProcess], backends: dict[int, int],
                  prefix: str, n: int = 200) -> None:
    """Write through one proxy, read through the other, find each key on the right backend."""
    # every proxy routes by the dashboard's map. The live proxies' list in it follows a proxy
    # coming back online by one more push (the announce), so wait for that push to land too.
    until(lambda: all(p.slotmap() == dash.get("/api/v1/slotmap") for p in proxies), 10,
          "every proxy to hold the dashboard's map")
    slotmap = dash.get("/api/v1/slotmap")
    writer = client(proxies[0].port)
    readers = [client(p.port) for p in proxies[1:]]
    direct = {gid: redis.Redis(port=port) for gid, port in backends.items()}
    keys = [f"{prefix}:{i}".encode() for i in range(n)]
    writer.mset({k: k for k in keys})
    for r in readers:
        assert r.mget(keys) == keys
    used = set()
    for k in keys:
        gid = owner_of(slotmap, k)
        used.add(gid)
        for other, conn in direct.items():
            assert (conn.get(k) == k) == (other == gid), (k, gid, other)
    assert used == set(backends) or len(used) > 1
    for c in [writer, *readers, *direct.values()]:
        c.close()


def test_real_cluster_file_store(tmp_path: Path, redis_servers) -> None:
    backends = {i: s.port for i, s in enumerate(redis_servers, start=1)}
    dash = DashboardProcess(tmp_path,
                            store={"kind": "file", "path": str(tmp_path / "store")}).start()
    proxies: list[ProxyProcess] = []
    try:
        # groups via the API, slots via the API and via proxyctl
        for gid, srv in enumerate(redis_servers, start=1):
            status, body = dash.call("POST", "/api/v1/groups", {"id": gid, "master": srv.addr})
            assert status == 201, body
        status, body = dash.call("POST", "/api/v1/slots/assign",
                                 {"assign": [{"slots": "0-5460", "group": 1}]})
        assert status == 200, body
        assert proxyctl(dash, "slots", "assign", "5461-10922", "2")[0] == 0
        code, out = proxyctl(dash, "slots", "assign", "10923-16383", "3")
        assert code == 0 and "assigned to group 3" in out

        proxies = [ProxyProcess.managed(tmp_path, f"proxy-{i}", dash.url).start() for i in (1, 2)]
        until(lambda: all(p["state"] == "online" for p in dash.get("/api/v1/proxies")["proxies"])
              and len(dash.get("/api/v1/proxies")["proxies"]) == 2, what="proxies online")
        check_routing(dash, proxies, backends, "a")

        code, out = proxyctl(dash, "status")
        assert code == 0
        assert "0-5460" in out and "proxy-1" in out and "proxy-2" in out and "online" in out
        # per-proxy stats come from the proxies' own admin API
        # (polled every few seconds: the first poll may predate the commands above)
        until(lambda: all(p["stats"] and p["stats"]["commands"] > 0
                          for p in dash.get("/api/v1/proxies")["proxies"]),
              what="proxy stats counting the commands sent")

        # a change is pushed to both proxies before the API call returns
        code, out = proxyctl(dash, "slots", "assign", "0-100", "2", "--force")
        assert code == 0, out
        epoch = dash.get("/api/v1/topology")["epoch"]
        assert [p.info()["epoch"] for p in proxies] == [epoch, epoch]
        check_routing(dash, proxies, backends, "b")

        # bad input through the API and proxyctl: refused with a clear error, nothing changes
        assert proxyctl(dash, "slots", "assign", "0-10", "9")[0] == 1
        code, out = proxyctl(dash, "slots", "assign", "0-10", "9")
        assert "unknown group 9" in out
        code, out = proxyctl(dash, "slots", "assign", "0-10", "1", token="wrong")
        assert code == 1 and "401" in out
        status, body = dash.call("POST", "/api/v1/slots/assign", {"assign": [
            {"slots": "0-10", "group": 1}, {"slots": "10-20", "group": 3}]})
        assert status == 400 and "overlapping" in body["error"]
        assert dash.get("/api/v1/topology")["epoch"] == epoch

        # dashboard down: the proxies keep serving with the map they have
        before = dash.get("/api/v1/topology")
        dash.stop()
        check_routing_without_dashboard(proxies, "c")

        # dashboard restart: the same topology, proxies still registered and in sync
        dash.start()
        after = dash.get("/api/v1/topology")
        assert (after["epoch"], after["ranges"]) == (before["epoch"], before["ranges"])
        assert [(g["id"], g["master"]) for g in after["groups"]] == \
            [(g["id"], g["master"]) for g in before["groups"]]
        assert {p["id"] for p in after["proxies"]} == {"proxy-1", "proxy-2"}
        assert proxyctl(dash, "slots", "assign", "0-100", "1", "--force")[0] == 0
        check_routing(dash, proxies, backends, "d")

        # a proxy freezes during a change: the change fails and is rolled back; once it thaws
        # it catches up by epoch with the rolled-back map and routes like the other one
        proxies[1].process.signal(signal.SIGSTOP)
        try:
            code, out = proxyctl(dash, "slots", "assign", "0-100", "3", "--force")
            assert code == 1 and "proxy-2" in out and "no answer" in out, out
        finally:
            proxies[1].process.signal(signal.SIGCONT)
        epoch = dash.get("/api/v1/topology")["epoch"]
        until(lambda: proxies[1].info()["epoch"] == epoch, 10, "proxy-2 to catch up")
        until(lambda: {p["state"] for p in dash.get("/api/v1/proxies")["proxies"]} == {"online"},
              10, "proxy-2 back online")
        check_routing(dash, proxies, backends, "f")

        # a proxy dies: changes fail naming it and are rolled back, until it is removed
        proxies[1].kill()
        code, out = proxyctl(dash, "slots", "assign", "0-100", "3", "--force")
        assert code == 1
        assert "proxy-2" in out and str(proxies[1].admin_port) in out and "rolled back" in out
        assert dash.get("/api/v1/slots")["ranges"][0] == [0, 5460, 1]
        assert owner_of(proxies[0].slotmap(), b"x") == owner_of(dash.get("/api/v1/slotmap"),
                                                                 b"x")
        code, out = proxyctl(dash, "--json", "proxy", "list")
        assert code == 0 and '"unreachable"' in out
        code, out = proxyctl(dash, "proxy", "remove", "proxy-2")
        assert code == 1 and "make sure it is stopped" in out  # unreachable: --force needed
        assert proxyctl(dash, "proxy", "remove", "proxy-2", "--force")[0] == 0
        assert proxyctl(dash, "slots", "assign", "0-100", "3", "--force")[0] == 0
        assert proxies[0].info()["epoch"] == dash.get("/api/v1/topology")["epoch"]
        check_routing(dash, proxies[:1], backends, "e")
    finally:
        for p in proxies:
            p.stop()
        dash.stop()


def check_routing_without_dashboard(proxies: list[ProxyProcess], prefix: str) -> None:
    a, b = (client(p.port) for p in proxies)
    keys = [f"{prefix}:{i}".encode() for i in range(50)]
    a.mset({k: b"v" + k for k in keys})
    assert b.mget(keys) == [b"v" + k for k in keys]
    a.close()
    b.close()


def test_etcd_leader_failover_with_real_proxies(tmp_path: Path, etcd_url: str, keys,
                                                redis_servers) -> None:
    store = {"kind": "etcd", "endpoints": [etcd_url], "lease_ttl": 2}
    common = {"store": store, "cluster": keys.cluster}
    first = DashboardProcess(tmp_path, "dash-a", **common).start()
    second = DashboardProcess(tmp_path, "dash-b", **common).start(wait_leader=False)
    proxy = None
    try:
        topo = second.get("/api/v1/topology")
        assert topo["dashboard"]["role"] == "standby"
        assert topo["dashboard"]["leader"]["id"] == "dash-a"
        status, body = second.call("POST", "/api/v1/groups", {"id": 1})
        assert status == 503 and "dash-a" in body["error"]

        for gid, srv in enumerate(redis_servers, start=1):
            assert first.call("POST", "/api/v1/groups", {"id": gid, "master": srv.addr})[0] == 201
        assert proxyctl(first, "slots", "assign", "0-16383", "1")[0] == 0
        proxy = ProxyProcess.managed(tmp_path, "proxy-1", first.url).start()
        until(lambda: first.get("/api/v1/proxies")["proxies"][0]["state"] == "online")
        before = first.get("/api/v1/topology")

        # the leader freezes (a long GC pause, a partition): its lease expires, the standby
        # takes over, and when the old leader wakes up it is fenced and steps down
        assert first.process is not None
        first.process.signal(signal.SIGSTOP)
        try:
            until(lambda: second.get("/api/v1/topology")["dashboard"]["role"] == "leader", 10,
                  "the standby to take over")
            after = second.get("/api/v1/topology")
            assert (after["epoch"], after["ranges"]) == (before["epoch"], before["ranges"])
            # the new leader knows the proxy from the store and pushes changes to it
            assert proxyctl(second, "slots", "assign", "8192-16383", "2", "--force")[0] == 0
        finally:
            first.process.signal(signal.SIGCONT)
        epoch = second.get("/api/v1/topology")["epoch"]
        assert proxy.info()["epoch"] == epoch
        until(lambda: first.get("/api/v1/topology")["dashboard"]["role"] == "standby", 10,
              "the old leader to step down")
        status, body = first.call("POST", "/api/v1/slots/assign",
                                  {"assign": [{"slots": "0-10", "group": 3}], "force": True})
        assert status == 503 and "dash-b" in body["error"]
        assert second.get("/api/v1/topology")["epoch"] == epoch

        # now the leader crashes outright: the old one takes over again
        second.kill()
        until(lambda: first.get("/api/v1/topology")["dashboard"]["role"] == "leader", 10,
              "dash-a to take over")
        assert proxyctl(first, "slots", "assign", "0-100", "3", "--force")[0] == 0
        assert proxy.slotmap()["epoch"] > epoch
        # the live proxies' list in the map follows the take-over's heartbeats by one announce
        until(lambda: proxy.slotmap() == first.get("/api/v1/slotmap"), 10,
              "the proxy to hold the new leader's map")
        slotmap = first.get("/api/v1/slotmap")
        r = client(proxy.port)
        for key in (b"after-failover", b"{x}1", b"zzz"):
            r.set(key, b"1")
            gid = owner_of(slotmap, key)
            with redis.Redis(port=redis_servers[gid - 1].port) as direct:
                assert direct.get(key) == b"1"
        r.close()
    finally:
        if proxy is not None:
            proxy.stop()
        second.stop()
        first.stop()
