"""Reads from replicas through real proxies over real replicating redis-servers: where reads
land (counted by the servers themselves in INFO commandstats), that writes, transactions and
blocking commands never go to a replica, READONLY/READWRITE per client, and that a lagging,
detached or dead replica is skipped while reads keep working."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.harness import ProxyProcess, RedisServer, free_port, until

from .ha_servers import (
    calls,
    proxy_info,
    rc,
    readonly_errors,
    replicate,
    servers,
    wait_in_sync,
    wait_replica_status,
)

N = 60


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RedisServer]]:
    """A master and two replicas replicating from it."""
    m, r1, r2 = servers(tmp_path_factory.mktemp("ha"), 3)
    replicate(r1, m)
    replicate(r2, m)
    yield [m, r1, r2]
    for s in (m, r1, r2):
        s.stop()


def _proxy(base: Path, group: list[RedisServer], **extra: object) -> ProxyProcess:
    m, *reps = group
    cfg = {"groups": {1: {"master": m.addr, "replicas": [r.addr for r in reps]}},
           "replica_check_interval": 0.2, "replica_check_timeout": 5,
           "replica_max_lag_bytes": 4096, "log_level": "info", **extra}
    p = ProxyProcess(base, cfg).start()
    for r in reps:
        wait_replica_status(p, r.addr, "ok")
    return p


@pytest.fixture(scope="module")
def plain(group: list[RedisServer], tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[ProxyProcess]:
    """read_from master (the default): replicas only for clients that say READONLY."""
    p = _proxy(tmp_path_factory.mktemp("plain"), group)
    yield p
    p.stop()


@pytest.fixture(scope="module")
def prefer(group: list[RedisServer], tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[ProxyProcess]:
    p = _proxy(tmp_path_factory.mktemp("prefer"), group, read_from="prefer-replica")
    yield p
    p.stop()


def _gets(group: list[RedisServer]) -> list[int]:
    return [calls(s, "get") for s in group]


def _delta(before: list[int], after: list[int]) -> list[int]:
    return [a - b for a, b in zip(after, before, strict=True)]


def _single(proxy: ProxyProcess) -> redis.Redis:
    # One connection: READONLY/READWRITE are per connection.
    return proxy.client(single_connection_client=True)


def _visible(c: redis.Redis, key: str, value: bytes) -> None:
    until(lambda: c.get(key) == value, 10, f"{key} replicated")


def _replicated(group: list[RedisServer], key: str, value: bytes) -> None:
    """Every replica holds `value` (reads balance over them: one having it is not enough)."""
    def everywhere() -> bool:
        for s in group[1:]:
            with redis.Redis(port=s.port) as r:
                if r.get(key) != value:
                    return False
        return True
    until(everywhere, 10, f"{key} replicated to every replica")


def test_default_policy_reads_from_the_master(group: list[RedisServer],
                                              plain: ProxyProcess) -> None:
    c = _single(plain)
    c.set("k:default", "v")
    before = _gets(group)
    for _ in range(N):
        assert c.get("k:default") == b"v"
    assert _delta(before, _gets(group)) == [N, 0, 0]


def test_readonly_reads_from_replicas_and_readwrite_goes_back(
        group: list[RedisServer], plain: ProxyProcess) -> None:
    c = _single(plain)
    assert c.execute_command("READONLY") in (b"OK", "OK", True)
    c.set("k:ro", "v1")  # a write from a READONLY client: to the master, as always
    _replicated(group, "k:ro", b"v1")
    before = _gets(group)
    for _ in range(N):
        assert c.get("k:ro") == b"v1"
    d = _delta(before, _gets(group))
    assert d[0] == 0 and d[1] + d[2] == N
    assert d[1] > 0 and d[2] > 0  # balanced over both replicas
    info = proxy_info(plain)
    assert int(info["replica_reads"]) >= N
    assert int(plain.client().info("proxy").get("replica_reads", 0)) >= N
    # READWRITE: to the master again; another connection never read from replicas.
    assert c.execute_command("READWRITE") in (b"OK", "OK", True)
    before = _gets(group)
    for _ in range(10):
        assert c.get("k:ro") == b"v1"
    assert _delta(before, _gets(group)) == [10, 0, 0]
    # RESET forgets READONLY, as on Redis.
    c.execute_command("READONLY")
    c.execute_command("RESET")
    before = _gets(group)
    c.get("k:ro")
    assert _delta(before, _gets(group)) == [1, 0, 0]
    assert [readonly_errors(s) for s in group[1:]] == [0, 0]


def test_writes_transactions_and_blocking_never_go_to_replicas(
        group: list[RedisServer], prefer: ProxyProcess) -> None:
    c = _single(prefer)
    m = group[0]
    c.delete("k:w", "k:list")
    for i in range(20):
        c.set("k:w", i)
        c.incr("k:n")
        c.rpush("k:list", i)
    _replicated(group, "k:w", b"19")
    # Plain reads: replicas (read_from prefer-replica, no READONLY needed).
    before = _gets(group)
    assert c.get("k:w") == b"19"
    assert _delta(before, _gets(group))[0] == 0
    # MULTI/EXEC: the master, reads included.
    before = _gets(group)
    tx = c.pipeline(transaction=True)
    tx.get("k:w")
    tx.set("k:w", "tx")
    assert tx.execute() == [b"19", True]
    assert _delta(before, _gets(group)) == [1, 0, 0]
    # WATCH: the reads after it too (the watched state lives on the master).
    before = _gets(group)
    c.execute_command("WATCH", "k:w")
    assert c.get("k:w") == b"tx"
    c.execute_command("UNWATCH")
    assert _delta(before, _gets(group)) == [1, 0, 0]
    # Blocking commands: the master.
    blpop = [calls(s, "blpop") for s in group]
    assert c.blpop(["k:list"], timeout=1) == (b"k:list", b"0")
    assert [calls(s, "blpop") - b for s, b in zip(group, blpop, strict=True)] == [1, 0, 0]
    assert calls(m, "set") > 0
    assert [readonly_errors(s) for s in group[1:]] == [0, 0]


def test_a_lagging_replica_is_skipped(group: list[RedisServer], plain: ProxyProcess) -> None:
    r2 = group[2]
    c = _single(plain)
    c.execute_command("READONLY")
    # CLIENT PAUSE WRITE on a replica: it still answers reads and INFO, its link stays up,
    # but it applies nothing from its master: its offset falls behind.
    rc(r2).execute_command("CLIENT", "PAUSE", "120000", "WRITE")
    try:
        c.set("k:lag", "x" * 8192)  # past replica_max_lag_bytes (4096)
        st = wait_replica_status(plain, r2.addr, "skipped")
        assert "lagging" in st["reason"]
        _visible(c, "k:lag", b"x" * 8192)  # served by the replica in sync
        # A check that overlapped the write may have seen r1 behind too: wait for two rounds
        # more (the second began after the write was applied), with r1 in sync.
        rounds = int(proxy_info(plain)["replica_checks"])
        until(lambda: int(proxy_info(plain)["replica_checks"]) >= rounds + 2, 30, "2 checks")
        wait_replica_status(plain, group[1].addr, "ok")
        before = _gets(group)
        for _ in range(N):
            assert c.get("k:lag") == b"x" * 8192  # never the stale value
        assert _delta(before, _gets(group)) == [0, N, 0]
    finally:
        rc(r2).execute_command("CLIENT", "UNPAUSE")
    wait_replica_status(plain, r2.addr, "ok")


def test_a_replica_detached_from_its_master_is_skipped(group: list[RedisServer],
                                                        plain: ProxyProcess) -> None:
    m, r1 = group[:2]
    c = _single(plain)
    c.execute_command("READONLY")
    rc(r1).execute_command("REPLICAOF", "127.0.0.1", str(free_port()))  # nobody there
    try:
        wait_replica_status(plain, r1.addr, "skipped")
        c.set("k:detached", "new")
        _visible(c, "k:detached", b"new")
        before = _gets(group)
        for _ in range(N):
            assert c.get("k:detached") == b"new"
        assert _delta(before, _gets(group)) == [0, 0, N]
    finally:
        replicate(r1, m)
    wait_replica_status(plain, r1.addr, "ok")


def test_info_replication_and_cluster_nodes_name_no_backend_replica(
        group: list[RedisServer], plain: ProxyProcess) -> None:
    c = plain.client()
    repl = c.info("replication")
    assert repl["role"] == "master" and repl["connected_slaves"] == 0
    assert not [k for k in repl if k.startswith("slave")]
    nodes = c.execute_command("CLUSTER", "NODES")
    nodes = nodes.decode() if isinstance(nodes, bytes) else str(nodes)
    for r in group[1:]:
        assert str(r.port) not in nodes
    assert "slave" not in nodes


def test_a_dead_replica_is_skipped_master_fallback_or_masterdown(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """Own servers: the replica is killed."""
    base = tmp_path_factory.mktemp("dead")
    m, r = servers(base, 2)
    prefer = only = None
    try:
        replicate(r, m)
        prefer = _proxy(base / "prefer", [m, r], read_from="prefer-replica")
        only = _proxy(base / "only", [m, r], read_from="replica")
        pc, oc = _single(prefer), _single(only)
        pc.set("k:dead", "v")
        wait_in_sync(r, m)
        before = calls(r, "get")
        assert oc.get("k:dead") == b"v" and pc.get("k:dead") == b"v"
        assert calls(r, "get") - before == 2
        r.kill()
        wait_replica_status(prefer, r.addr, "skipped")
        wait_replica_status(only, r.addr, "skipped")
        before_m = calls(m, "get")
        for _ in range(10):
            assert pc.get("k:dead") == b"v"  # prefer-replica: the master serves
        assert calls(m, "get") - before_m == 10
        with pytest.raises(redis.exceptions.MasterDownError,
                           match="no replica of group 1 is in sync"):
            oc.get("k:dead")  # read_from replica: never the master
        assert calls(m, "get") - before_m == 10
        oc.set("k:dead", "w")  # writes are unaffected
        assert pc.get("k:dead") == b"w"
        assert int(proxy_info(only)["replica_reads_refused"]) >= 1
        assert int(proxy_info(prefer)["replica_read_fallbacks"]) >= 10
    finally:
        for p in (prefer, only):
            if p is not None:
                p.stop()
        m.stop()
        r.stop()
