"""A standalone proxy answering as a one-node Redis Cluster (masquerade): reply shapes checked
against a real 1-node Redis Cluster, cluster clients (redis-py sync and asyncio, redis-cli -c,
redis-benchmark --cluster) against the proxy, COUNTKEYSINSLOT/GETKEYSINSLOT, and masquerade
off answering as a non-cluster Redis."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio.cluster as acluster
from redis.cluster import RedisCluster

from slotcore.keyslot import key_slot
from slotcore.resp import frame_reply, pack_command, parse_reply
from tests.harness import ProxyProcess, RedisServer, free_port, group_config, until

DISABLED = "This instance has cluster support disabled"


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real 1-node Redis Cluster owning all slots (its port): the reference for shapes."""
    d = tmp_path_factory.mktemp("refcluster")
    srv = RedisServer(d, extra=["--cluster-enabled", "yes", "--cluster-config-file",
                                str(d / "nodes.conf"), "--cluster-announce-ip", "127.0.0.1",
                                "--cluster-port", str(free_port())]
                      ).start()
    r = redis.Redis(port=srv.port, socket_timeout=5)
    r.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
    until(lambda: b"cluster_state:ok" in r.execute_command("CLUSTER", "INFO"), 10,
          "reference cluster ok")
    r.close()
    yield srv.port
    srv.stop()


@pytest.fixture(scope="module")
def masq(backends: list[RedisServer], tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[ProxyProcess]:
    p = ProxyProcess(tmp_path_factory.mktemp("masq"),
                     group_config(backends, proxy_id="masq-1")).start()
    yield p
    p.stop()


@pytest.fixture
def flushed(backends: list[RedisServer]) -> None:
    for s in backends:
        redis.Redis(port=s.port, protocol=2).flushall()


def _shape(v: Any) -> Any:
    """The structure of a reply: types and keys, not values."""
    if isinstance(v, dict):
        return {k: _shape(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_shape(x) for x in v]
    return type(v).__name__


def _raw(port: int, *cmds: list[bytes], hello3: bool = False) -> list[bytes]:
    """The raw reply bytes of each command, on one connection (after HELLO 3 if asked)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    buf = b""
    out: list[bytes] = []
    try:
        for cmd in ([[b"HELLO", b"3"]] if hello3 else []) + list(cmds):
            sock.sendall(pack_command(*cmd))
            while (end := frame_reply(buf, 0) if buf else -1) < 0:
                chunk = sock.recv(65536)
                assert chunk, "connection closed"
                buf += chunk
            out.append(buf[:end])
            buf = buf[end:]
    finally:
        sock.close()
    return out[1:] if hello3 else out


# --------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("proto", [2, 3])
def test_reply_shapes_match_a_real_cluster(masq: ProxyProcess, reference: int,
                                           proto: int) -> None:
    ours = masq.client(protocol=proto)
    ref = redis.Redis(port=reference, protocol=proto)
    for sub in ("SLOTS", "SHARDS"):
        mine, theirs = (c.execute_command("CLUSTER", sub) for c in (ours, ref))
        assert _shape(mine) == _shape(theirs), sub
    # redis-py's own parsers for NODES / INFO / MYID
    assert set(ours.cluster("INFO")) == set(ref.cluster("INFO"))
    nodes = ours.cluster("NODES")
    assert list(nodes) == [f"127.0.0.1:{masq.port}"]
    (node,) = nodes.values()
    (refnode,) = ref.cluster("NODES").values()
    assert set(node) == set(refnode)
    assert node["flags"] == "myself,master"
    assert node["slots"] == [["0", "16383"]]
    assert node["node_id"] == hashlib.sha1(b"masq-1").hexdigest()
    assert ours.execute_command("CLUSTER", "MYID") == node["node_id"].encode()
    ours.close()
    ref.close()


def test_raw_replies_match_byte_structure(masq: ProxyProcess, reference: int) -> None:
    myid = hashlib.sha1(b"masq-1").hexdigest().encode()
    cmds = [[b"CLUSTER", b"SLOTS"], [b"CLUSTER", b"SHARDS"], [b"CLUSTER", b"NODES"],
            [b"CLUSTER", b"INFO"], [b"CLUSTER", b"MYID"]]
    for hello3 in (False, True):
        mine = _raw(masq.port, *cmds, hello3=hello3)
        theirs = _raw(reference, *cmds, hello3=hello3)
        for a, b in zip(mine, theirs, strict=True):
            # same RESP types at the top (map vs array, verbatim vs bulk) and same structure
            assert a[:1] == b[:1], (a[:40], b[:40])
            assert _shape(parse_reply(a)) == _shape(parse_reply(b))
        slots, shards, nodes, info, me = map(parse_reply, mine)
        assert slots == [[0, 16383, [b"127.0.0.1", masq.port, myid, {} if hello3 else []]]]
        assert me == myid
        cport = masq.port + 10000 if masq.port <= 55535 else 0  # Redis's default bus port
        assert nodes.decode() == (f"{myid.decode()} 127.0.0.1:{masq.port}@{cport} "
                                  "myself,master - 0 0 1 connected 0-16383\n")
        fields = [ln.split(":")[0] for ln in info.decode().split("\r\n") if ln]
        ref_fields = [ln.split(":")[0] for ln in parse_reply(theirs[3]).decode().split("\r\n")
                      if ln]
        assert fields == ref_fields
        assert "cluster_state:ok" in info.decode()
        assert (shards[0][b"slots"] if hello3 else shards[0][1]) == [0, 16383]


def test_keyslot_readonly_asking_and_errors(masq: ProxyProcess) -> None:
    r = masq.client()
    assert r.execute_command("CLUSTER", "KEYSLOT", "foo") == 12182
    for cmd in ("READONLY", "READWRITE", "ASKING"):
        assert r.execute_command(cmd) in (b"OK", True)
    with pytest.raises(redis.ResponseError, match=r"Invalid slot$"):
        r.execute_command("CLUSTER", "COUNTKEYSINSLOT", 16384)
    with pytest.raises(redis.ResponseError, match="Invalid slot or number of keys"):
        r.execute_command("CLUSTER", "GETKEYSINSLOT", 5, -1)
    with pytest.raises(redis.ResponseError, match="not an integer"):
        r.execute_command("CLUSTER", "GETKEYSINSLOT", "x", 1)
    with pytest.raises(redis.ResponseError, match="unknown subcommand 'FOO'"):
        r.execute_command("CLUSTER", "FOO")
    with pytest.raises(redis.ResponseError, match="not supported by the proxy"):
        r.execute_command("CLUSTER", "ADDSLOTS", 1)
    assert r.execute_command("CLUSTER", "REPLICAS", hashlib.sha1(b"masq-1").hexdigest()) == []
    with pytest.raises(redis.ResponseError, match="Unknown node"):
        r.execute_command("CLUSTER", "REPLICAS", "abc")
    info = r.info("cluster")
    assert info["cluster_enabled"] == 1
    assert r.info()["cluster_enabled"] == 1
    r.close()


def test_countkeysinslot_and_getkeysinslot(masq: ProxyProcess, flushed: None) -> None:
    r = masq.client()
    keys = [f"{{t{i % 3}}}:k{i}" for i in range(30)] + [f"other{i}" for i in range(50)]
    for k in keys:
        r.set(k, 1)
    for tag in ("t0", "t1", "t2"):
        slot = key_slot(tag.encode())
        want = sorted(k.encode() for k in keys if key_slot(k.encode()) == slot)
        assert r.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == len(want)
        got = r.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100)
        assert sorted(got) == want
        assert len(r.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 3)) == 3
        assert r.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 0) == []
    empty = next(s for s in range(16384) if all(key_slot(k.encode()) != s for k in keys))
    assert r.execute_command("CLUSTER", "COUNTKEYSINSLOT", empty) == 0
    r.close()


# --------------------------------------------------------------------------------- clients


@pytest.mark.parametrize("proto", [2, 3])
def test_redis_py_cluster_client(masq: ProxyProcess, flushed: None, proto: int) -> None:
    rc = RedisCluster(host="127.0.0.1", port=masq.port, socket_timeout=5, protocol=proto)
    assert [n.name for n in rc.get_nodes()] == [f"127.0.0.1:{masq.port}"]
    for i in range(100):
        rc.set(f"key:{i}", i)
    assert [int(rc.get(f"key:{i}")) for i in range(100)] == list(range(100))
    rc.mset({"{u1}:a": 1, "{u1}:b": 2})
    assert rc.mget("{u1}:a", "{u1}:b") == [b"1", b"2"]
    assert rc.mget_nonatomic([f"key:{i}" for i in range(10)]) == [str(i).encode()
                                                                   for i in range(10)]
    pipe = rc.pipeline()
    for i in range(20):
        pipe.incr(f"ctr:{i}")
    assert pipe.execute() == [1] * 20
    rc.close()


def test_redis_py_asyncio_cluster_client(masq: ProxyProcess, flushed: None) -> None:
    async def main() -> None:
        rc = acluster.RedisCluster(host="127.0.0.1", port=masq.port)
        await rc.initialize()
        assert len(rc.get_nodes()) == 1
        for i in range(50):
            await rc.set(f"akey:{i}", i)
        assert await rc.mget("{x}1", "{x}2") == [None, None]
        async with rc.pipeline() as pipe:
            for i in range(50):
                pipe.get(f"akey:{i}")
            assert await pipe.execute() == [str(i).encode() for i in range(50)]
        await rc.aclose()

    asyncio.run(main())


def test_redis_cli_cluster_mode(masq: ProxyProcess, flushed: None) -> None:
    cli = shutil.which("redis-cli")
    # ./dev installs redis-tools: a missing tool is a failure, not a skip
    assert cli is not None, "redis-cli is not installed (Debian package redis-tools)"
    base = [cli, "-c", "-h", "127.0.0.1", "-p", str(masq.port)]
    for i in range(10):
        out = subprocess.run([*base, "SET", f"cli:{i}", f"v{i}"], capture_output=True,
                             text=True, timeout=10)
        assert out.stdout.strip() == "OK", out
    for i in range(10):
        out = subprocess.run([*base, "GET", f"cli:{i}"], capture_output=True, text=True,
                             timeout=10)
        assert out.stdout.strip() == f"v{i}", out
    out = subprocess.run([*base, "CLUSTER", "INFO"], capture_output=True, text=True, timeout=10)
    assert "cluster_state:ok" in out.stdout


def test_redis_benchmark_cluster_sees_one_node_like_a_real_one(masq: ProxyProcess,
                                                                reference: int) -> None:
    """redis-benchmark --cluster needs two nodes or more: against one standalone proxy it
    says what it says of a 1-node Redis Cluster (the multi-proxy tests run it for real)."""
    bench = shutil.which("redis-benchmark")
    # ./dev installs redis-tools: a missing tool is a failure, not a skip
    assert bench is not None, "redis-benchmark is not installed (Debian package redis-tools)"
    outs = [subprocess.run([bench, "--cluster", "-h", "127.0.0.1", "-p", str(port), "-t", "set",
                            "-n", "100", "-q"], capture_output=True, text=True, timeout=60)
            for port in (masq.port, reference)]
    assert [(o.returncode, o.stderr.strip()) for o in outs] == [
        (1, "Invalid cluster: 1 node(s).")] * 2


# --------------------------------------------------------------------------------- off


def test_masquerade_off_answers_as_non_cluster_redis(backends: list[RedisServer],
                                                     tmp_path: Path) -> None:
    p = ProxyProcess(tmp_path, group_config(backends, cluster={"masquerade": False})).start()
    try:
        r = p.client()
        for cmd in (["CLUSTER", "SLOTS"], ["CLUSTER", "NODES"], ["CLUSTER", "SHARDS"],
                    ["CLUSTER", "INFO"], ["CLUSTER", "MYID"], ["CLUSTER", "KEYSLOT", "k"],
                    ["CLUSTER", "COUNTKEYSINSLOT", "1"], ["READONLY"], ["READWRITE"],
                    ["ASKING"]):
            with pytest.raises(redis.ResponseError, match=DISABLED):
                r.execute_command(*cmd)
        with pytest.raises(redis.ResponseError, match="unknown subcommand"):
            r.execute_command("CLUSTER", "FOO")
        assert r.info("cluster")["cluster_enabled"] == 0
        with pytest.raises(redis.RedisClusterException):
            RedisCluster(host="127.0.0.1", port=p.port, socket_timeout=5)
        r.close()
    finally:
        p.stop()
