"""The cluster-wide big-key scan against real redis-servers: every type found with its element
count and MEMORY USAGE bytes across two groups, throttled (each server's own slow log shows the
scan's commands all short and every SCAN with the COUNT asked for), progress reported by
`proxyctl bigkeys`, and a second scan replacing the first one's results."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import redis

from slotcore.keyslot import key_slot
from tests.harness import REPO, TOKEN, env, until
from tests.harness.cluster import NSLOTS, Cluster
from tests.harness.commandlog import CommandLog

SCAN_COMMANDS = {"SCAN", "MEMORY", "TYPE", "STRLEN", "LLEN", "HLEN", "SCARD", "ZCARD", "XLEN"}
SLOW_USEC = 10_000  # what a server's slowlog-log-slower-than would be set to in production
FILLER = 1200


def tag_for(cluster: Cluster, gid: int) -> str:
    owner = cluster.slotmap().owner
    return next(t for i in range(10_000)
                if owner[key_slot((t := f"g{gid}x{i}").encode(), NSLOTS)] == gid)


def load_keys(cluster: Cluster) -> dict[str, dict[str, Any]]:
    """Big keys of every type in both groups (sizes differ per group), plus small strings.
    Returns key -> {type, elements, group}."""
    client = cluster.proxies[0].client()
    for srv in cluster.redis:
        redis.Redis(port=srv.port).flushall()
    expected: dict[str, dict[str, Any]] = {}
    for gid, scale in ((1, 1), (2, 2)):
        t = tag_for(cluster, gid)
        keys = {"string": f"big:str:{{{t}}}", "list": f"big:list:{{{t}}}",
                "hash": f"big:hash:{{{t}}}", "set": f"big:set:{{{t}}}",
                "zset": f"big:zset:{{{t}}}", "stream": f"big:stream:{{{t}}}"}
        n = {"string": 100_000 * scale, "list": 3000 * scale, "hash": 2000 * scale,
             "set": 1500 * scale, "zset": 1000 * scale, "stream": 500 * scale}
        client.set(keys["string"], b"x" * n["string"])
        for lo in range(0, n["list"], 500):
            client.rpush(keys["list"], *[f"item-{i}" for i in range(lo, min(n["list"], lo + 500))])
        for lo in range(0, n["hash"], 500):
            client.hset(keys["hash"], mapping={f"f{i}": f"v{i}" for i in
                                               range(lo, min(n["hash"], lo + 500))})
        for lo in range(0, n["set"], 500):
            client.sadd(keys["set"], *[f"m{i}" for i in range(lo, min(n["set"], lo + 500))])
        for lo in range(0, n["zset"], 500):
            client.zadd(keys["zset"], {f"z{i}": i for i in range(lo, min(n["zset"], lo + 500))})
        pipe = client.pipeline(transaction=False)
        for i in range(n["stream"]):
            pipe.xadd(keys["stream"], {"n": i})
        pipe.execute()
        for kind, key in keys.items():
            expected[key] = {"type": kind, "elements": n[kind], "group": gid}
    pipe = client.pipeline(transaction=False)
    for i in range(FILLER):
        pipe.set(f"small:{i}", "v")
    pipe.execute()
    client.close()
    return expected


def memory_usage(cluster: Cluster, gid: int, key: str) -> int:
    return int(redis.Redis(port=cluster.redis[gid - 1].port).memory_usage(key))


def server_usage(cluster: Cluster) -> dict[str, int]:
    """MEMORY USAGE summed per type over every key of every server, read directly."""
    out: dict[str, int] = {}
    for srv in cluster.redis:
        r = redis.Redis(port=srv.port, decode_responses=True)
        for key in r.scan_iter(count=1000):
            kind = r.type(key)
            out[kind] = out.get(kind, 0) + int(r.memory_usage(key))
        r.close()
    return out


def proxyctl(cluster: Cluster, *argv: str) -> subprocess.CompletedProcess[str]:
    environ = {**env(), "SLOTPROXY_DASHBOARD": cluster.dash.url, "SLOTPROXY_ADMIN_TOKEN": TOKEN}
    return subprocess.run([sys.executable, "-m", "dashboard.cli", *argv], env=environ, cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_big_keys_of_every_type_found_throttled(cluster: Cluster) -> None:
    expected = load_keys(cluster)
    dbsize = sum(redis.Redis(port=s.port).dbsize() for s in cluster.redis)
    assert dbsize == len(expected) + FILLER
    logs = [CommandLog(s.port) for s in cluster.redis]
    for log in logs:
        log.__enter__()
    try:
        out = proxyctl(cluster, "bigkeys", "--count", "50", "--pause-ms", "5", "--top", "3",
                       "--interval", "0.05", "--rows", "50")
        commands = [log.commands() for log in logs]
    finally:
        for log in logs:
            log.__exit__(None, None, None)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()

    # Progress: the bar from the POST on (running), then the table.
    progress = [line for line in lines if line.startswith("big-key scan:")]
    assert progress and "running" in progress[0]
    assert any(line.startswith("big keys:") and f"{dbsize} keys scanned" in line
               for line in lines), out.stdout

    data = cluster.dash.get("/api/v1/bigkeys")
    assert data["state"] == "done" and data["error"] is None
    assert data["settings"] == {"count": 50, "pause_ms": 5.0, "top": 3, "samples": 5}
    assert data["progress"]["dbsize"] == dbsize
    for g in data["progress"]["groups"]:
        assert g["done"] and g["scanned"] >= g["dbsize"] > 0
    res = data["result"]
    assert res["keys"] == dbsize
    assert set(res["top"]) == {"string", "list", "hash", "set", "zset", "stream"}
    found = {r["key"]: r for r in res["rows"]}
    for key, want in expected.items():
        r = found[key]
        assert (r["type"], r["elements"], r["group"]) == (want["type"], want["elements"],
                                                          want["group"]), key
        assert r["slot"] == key_slot(key.encode(), NSLOTS)
        assert r["bytes"] == memory_usage(cluster, want["group"], key), key
        assert key in out.stdout  # in proxyctl's table too
    # Per type, biggest first; the group-2 keys (twice the elements) lead.
    for kind, rows in res["top"].items():
        assert [r["bytes"] for r in rows] == sorted((r["bytes"] for r in rows), reverse=True)
        if kind != "string":
            assert res["summary"][kind]["most_elements"]["group"] == 2
    strings = res["summary"]["string"]
    assert strings["keys"] == FILLER + 2
    assert strings["biggest"]["elements"] == 200_000
    usage = server_usage(cluster)
    assert strings["bytes"] == usage["string"]
    for kind, total in usage.items():
        assert res["summary"][kind]["bytes"] == total, kind
    assert res["summary"]["list"]["keys"] == 2
    assert res["summary"]["list"]["elements"] == 3000 + 6000

    # Per-slot keys and bytes, for the heat map.
    slots = cluster.dash.get("/api/v1/bigkeys/slots")
    assert slots["slots"] == NSLOTS and sum(slots["keys"]) == dbsize
    assert sum(slots["bytes"]) == sum(usage.values())
    for key in expected:
        assert slots["keys"][key_slot(key.encode(), NSLOTS)] >= 1

    # Throttled: every SCAN asked for the COUNT given; no scan command was a long one on
    # either server (its own timing, in its own slow log).
    for gid, cmds in enumerate(commands, start=1):
        scan = [c for c in cmds if c.name in SCAN_COMMANDS]
        scans = [c for c in scan if c.name == "SCAN"]
        assert len(scans) >= data["progress"]["groups"][gid - 1]["dbsize"] // 50
        assert {c.args[2:] for c in scans} == {(b"COUNT", b"50")}
        slow = [c for c in scan if c.usec >= SLOW_USEC]
        assert not slow, slow
        mem = [c for c in scan if c.name == "MEMORY"]
        assert mem and all(c.args[3:] == (b"SAMPLES", b"5") for c in mem)


def test_second_scan_replaces_the_first(cluster: Cluster) -> None:
    first = cluster.dash.get("/api/v1/bigkeys")
    if first["result"] is None:  # run alone: make a first scan
        load_keys(cluster)
        cluster.dash.api.ok("POST", "/api/v1/bigkeys/scan", {"pause_ms": 0})
        first = until(lambda: (d := cluster.dash.get("/api/v1/bigkeys"))["state"] == "done"
                      and d, 60, "first scan")
    old_list = next(r for r in first["result"]["top"]["list"] if r["group"] == 1)
    client = cluster.proxies[0].client()
    client.delete(old_list["key"])
    client.sadd("new:set", *[f"n{i}" for i in range(7000)])
    client.close()

    started = cluster.dash.api.ok("POST", "/api/v1/bigkeys/scan", {"count": 200})
    assert started["state"] == "running"
    # The previous results stay readable while the new scan runs.
    assert started["result"] is not None
    done = until(lambda: (d := cluster.dash.get("/api/v1/bigkeys"))["state"] == "done" and d,
                 60, "second scan")
    res = done["result"]
    assert res["finished"] > first["result"]["finished"]
    keys = {r["key"] for r in res["rows"]}
    assert old_list["key"] not in keys and "new:set" in keys
    assert res["summary"]["list"]["keys"] == first["result"]["summary"]["list"]["keys"] - 1
    top_set = res["top"]["set"][0]
    assert (top_set["key"], top_set["elements"]) == ("new:set", 7000)


def test_bigkeys_api_errors(cluster: Cluster) -> None:
    api = cluster.dash.api
    for body, text in [({"count": 0}, "'count'"), ({"count": 100_001}, "'count'"),
                       ({"pause_ms": -1}, "'pause_ms'"), ({"samples": 0}, "'samples'"),
                       ({"bogus": 1}, "bogus"), ({"top": "x"}, "'top'")]:
        status, out = api.call("POST", "/api/v1/bigkeys/scan", body)
        assert status == 400 and text in out["error"], (body, out)
    status, out = api.call("POST", "/api/v1/bigkeys/scan", {}, token=None)
    assert status == 401
    until(lambda: cluster.dash.get("/api/v1/bigkeys")["state"] != "running", 60, "idle")
    status, out = api.call("POST", "/api/v1/bigkeys/cancel")
    assert status == 409 and "no big-key scan is running" in out["error"]
    # A scan can be cancelled while it runs (slow pages: it cannot finish first).
    api.ok("POST", "/api/v1/bigkeys/scan", {"count": 1, "pause_ms": 1000})
    status, out = api.call("POST", "/api/v1/bigkeys/scan", {})
    assert status == 409 and "already running" in out["error"]
    out = api.ok("POST", "/api/v1/bigkeys/cancel")
    assert out["state"] == "cancelled" and out["result"] is not None  # results kept
