"""Several proxies behind a dashboard, answering as one Redis Cluster whose nodes are the
proxies: every proxy gives the same answer, cluster clients discover and use all of them, a
proxy that joins appears and one that dies disappears at the next push, with no data lost.

The tests share one cluster (dashboard, 2 groups, 2 proxies on 1024 slots: the answers still
describe Redis Cluster's 16384) and run in file order."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio.cluster as acluster
from redis.cluster import RedisCluster

from tests.harness import ProxyProcess, until
from tests.harness.cluster import Cluster, cluster

pytestmark = pytest.mark.integration

STALE_AFTER = 4.0  # the dashboard's proxy_stale_after: a dead proxy leaves the answer after it


@pytest.fixture(scope="module")
def c(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with cluster(Path(tmp_path_factory.mktemp("masq")), proxy_stale_after=STALE_AFTER) as cl:
        yield cl


def addrs(p: ProxyProcess) -> list[str]:
    """The nodes proxy `p` describes, in CLUSTER SLOTS order."""
    r = p.client()
    try:
        return [f"{s[2][0].decode()}:{s[2][1]}" for s in r.execute_command("CLUSTER", "SLOTS")]
    finally:
        r.close()


def nodes_without_myself(p: ProxyProcess) -> list[list[str]]:
    r = p.client()
    try:
        text = r.execute_command("CLUSTER", "NODES").decode()
    finally:
        r.close()
    # flags (myself) and pong time differ from proxy to proxy; the rest must not
    return [ln.split()[:2] + ln.split()[3:5] + ln.split()[6:] for ln in text.splitlines()]


def addr(p: ProxyProcess) -> str:
    return f"127.0.0.1:{p.port}"


def test_every_proxy_describes_all_proxies_the_same_way(c: Cluster) -> None:
    want = sorted(addr(p) for p in c.proxies)
    for p in c.proxies:
        until(lambda p=p: sorted(addrs(p)) == want, 15, f"{p.name} to list both proxies")
    answers = [p.client().execute_command("CLUSTER", "SLOTS") for p in c.proxies]
    assert answers[0] == answers[1]
    spans = [(s[0], s[1]) for s in answers[0]]
    assert spans == [(0, 8191), (8192, 16383)]  # even, contiguous, in proxy-id order
    assert [s[2][2].decode() for s in answers[0]] == [
        hashlib.sha1(f"proxy-{i}".encode()).hexdigest() for i in range(2)]
    assert nodes_without_myself(c.proxies[0]) == nodes_without_myself(c.proxies[1])
    for p in c.proxies:
        r = p.client()
        text = r.execute_command("CLUSTER", "NODES").decode()
        mine = [ln for ln in text.splitlines() if "myself" in ln]
        assert len(mine) == 1 and addr(p) in mine[0]
        assert r.execute_command("CLUSTER", "MYID").decode() == mine[0].split()[0]
        info = r.execute_command("CLUSTER", "INFO").decode()
        assert "cluster_known_nodes:2" in info and "cluster_state:ok" in info
        assert "cluster_slots_assigned:16384" in info
        r.close()


def test_redis_py_cluster_uses_every_proxy(c: Cluster) -> None:
    before = [p.admin.get("/api/stats")["commands"] for p in c.proxies]
    rc = RedisCluster(host="127.0.0.1", port=c.proxies[0].port, socket_timeout=5)
    assert sorted(n.name for n in rc.get_nodes()) == sorted(addr(p) for p in c.proxies)
    for i in range(300):
        rc.set(f"rp:{i}", i)
    assert [int(rc.get(f"rp:{i}")) for i in range(300)] == list(range(300))
    rc.mset({"{user:7}:name": "ann", "{user:7}:age": "7"})
    assert rc.mget("{user:7}:name", "{user:7}:age") == [b"ann", b"7"]
    pipe = rc.pipeline()
    for i in range(100):
        pipe.incr(f"rpc:{i}")
    assert pipe.execute() == [1] * 100
    rc.close()
    after = [p.admin.get("/api/stats")["commands"] for p in c.proxies]
    assert all(a - b >= 100 for a, b in zip(after, before, strict=True)), (before, after)


def test_redis_py_asyncio_cluster_uses_every_proxy(c: Cluster) -> None:
    async def main() -> None:
        rc = acluster.RedisCluster(host="127.0.0.1", port=c.proxies[1].port)
        await rc.initialize()
        assert sorted(n.name for n in rc.get_nodes()) == sorted(addr(p) for p in c.proxies)
        for i in range(100):
            await rc.set(f"ap:{i}", i)
        assert await rc.mget("{t}a", "{t}b") == [None, None]
        async with rc.pipeline() as pipe:
            for i in range(100):
                pipe.get(f"ap:{i}")
            assert await pipe.execute() == [str(i).encode() for i in range(100)]
        await rc.aclose()

    asyncio.run(main())


def test_redis_cli_cluster_mode_across_slots(c: Cluster) -> None:
    cli = shutil.which("redis-cli")
    # ./dev installs redis-tools: a missing tool is a failure, not a skip
    assert cli is not None, "redis-cli is not installed (Debian package redis-tools)"
    base = [cli, "-c", "-h", "127.0.0.1", "-p", str(c.proxies[0].port)]
    for i in range(8):
        out = subprocess.run([*base, "SET", f"cli:{i}", str(i)], capture_output=True, text=True,
                             timeout=10)
        assert out.stdout.strip() == "OK", out
    r = c.proxies[1].client()
    assert r.mget([f"cli:{i}" for i in range(8)]) == [str(i).encode() for i in range(8)]
    r.close()
    for i in range(8):
        out = subprocess.run([*base, "GET", f"cli:{i}"], capture_output=True, text=True,
                             timeout=10)
        assert out.stdout.strip() == str(i), out


def test_redis_benchmark_cluster(c: Cluster) -> None:
    bench = shutil.which("redis-benchmark")
    # ./dev installs redis-tools: a missing tool is a failure, not a skip
    assert bench is not None, "redis-benchmark is not installed (Debian package redis-tools)"
    out = subprocess.run([bench, "--cluster", "-h", "127.0.0.1", "-p", str(c.proxies[0].port),
                          "-t", "set,get", "-n", "10000", "-c", "10", "-q"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out
    text = out.stdout + out.stderr
    assert "Cluster has 2 master nodes" in text, text
    assert "error" not in text.lower(), text
    assert "SET:" in text and "GET:" in text, text


def test_a_proxy_joins_then_dies_and_clients_carry_on(c: Cluster, tmp_path: Path) -> None:
    extra = c.make_proxy("proxy-2")
    try:
        want = sorted([addr(p) for p in c.proxies] + [addr(extra)])
        for p in [*c.proxies, extra]:
            until(lambda p=p: sorted(addrs(p)) == want, 15, f"{p.name} to list 3 proxies")
        rc = RedisCluster(host="127.0.0.1", port=c.proxies[0].port, socket_timeout=3)
        assert len(rc.get_nodes()) == 3
        for i in range(300):
            rc.set(f"kill:{i}", i)
        extra.kill()
        # The dashboard stops hearing from it: after proxy_stale_after it is pushed out.
        want = sorted(addr(p) for p in c.proxies)
        for p in c.proxies:
            until(lambda p=p: sorted(addrs(p)) == want, 15, f"{p.name} to drop the dead proxy")
        # The client still holds the old topology: its first request to the dead proxy fails,
        # it refreshes from a live one and carries on. Nothing written is lost.
        got = [rc.get(f"kill:{i}") for i in range(300)]
        assert got == [str(i).encode() for i in range(300)]
        assert sorted(n.name for n in rc.get_nodes()) == want
        for i in range(300):
            rc.set(f"kill:{i}", -i)
        assert rc.mget_nonatomic([f"kill:{i}" for i in range(300)]) == [
            str(-i).encode() for i in range(300)]
        rc.close()
    finally:
        extra.stop()


def test_a_removed_proxy_leaves_the_answer_at_once(c: Cluster) -> None:
    extra = c.make_proxy("proxy-3")
    want = sorted([addr(p) for p in c.proxies] + [addr(extra)])
    until(lambda: sorted(addrs(c.proxies[0])) == want, 15, "the new proxy to be listed")
    extra.stop()
    status, body = c.dash.call("DELETE", "/api/v1/proxies/proxy-3?force=1")
    assert status == 200, body
    # A push follows the removal at once (well before proxy_stale_after would matter, but
    # the test only checks the outcome).
    want = sorted(addr(p) for p in c.proxies)
    for p in c.proxies:
        until(lambda p=p: sorted(addrs(p)) == want, 15, f"{p.name} to drop the removed proxy")
    r = redis.Redis(port=c.proxies[0].port)
    assert r.execute_command("CLUSTER", "INFO").decode().count("cluster_known_nodes:2") == 1
    r.close()
