"""`workers: 2` end to end: real supervisor and worker processes, a real dashboard, real
redis-servers. The supervisor registers once and fans every slot map out to its workers, so a
migration through it keeps every acknowledged write; a SIGKILLed worker takes only its own
clients with it and comes back with the map in force; SIGTERM drains every worker."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.harness import ProxyProcess, RedisServer, free_port, group_config, until
from tests.harness.cluster import Load, cluster
from tests.harness.raw import RawClient

pytestmark = pytest.mark.integration

WORKERS = {"workers": 2}


def worker_of(conn: redis.Redis) -> int:
    """Which worker serves this connection (INFO proxy says)."""
    return int(conn.info("proxy")["worker_id"])


def one_per_worker(port: int, n: int = 2, **kw: Any) -> dict[int, redis.Redis]:
    """A connection on each of the `n` workers (the kernel spreads connects over them)."""
    conns: dict[int, redis.Redis] = {}
    spare: list[redis.Redis] = []

    def connect() -> bool:
        c = redis.Redis(port=port, protocol=2, socket_timeout=10, single_connection_client=True,
                        **kw)
        w = worker_of(c)
        if w in conns:
            spare.append(c)
        else:
            conns[w] = c
        return len(conns) == n

    until(connect, 30, "a connection on every worker")
    for c in spare:
        c.close()
    return conns


def raw_per_worker(p: ProxyProcess, n: int = 2) -> dict[int, RawClient]:
    """A raw socket on each of the `n` workers."""
    raws: dict[int, RawClient] = {}

    def connect() -> bool:
        raw = p.raw(timeout=15)
        raw.send(b"INFO proxy\r\n")
        text = raw.recv_until(lambda b: b"scan_restarts" in b and b.endswith(b"\r\n\r\n"))
        raw.buf = b""
        w = int(text.split(b"worker_id:")[1].split(b"\r\n")[0])
        if w in raws:
            raw.close()
        else:
            raws[w] = raw
        return len(raws) == n

    until(connect, 30, "a raw connection on every worker")
    return raws


def workers_info(proxy: ProxyProcess) -> list[dict[str, Any]]:
    return proxy.info()["workers"]


def still_served(load: Load) -> None:
    ops = load.ops
    until(lambda: load.ops > ops, 30, "the load still served")


def verified(c: Any, load: Load, port: int) -> int:
    """Every acknowledged write is there, every key where its slot says; the epoch in force."""
    load.verify(port)
    c.check_placement()
    return c.slotmap().epoch


def test_migration_under_load_through_two_workers(tmp_path: Path) -> None:
    with cluster(tmp_path, nproxies=1, proxy_cfg=WORKERS,
                 migration={"max_concurrent_slots": 64}) as c:
        proxy = c.proxies[0]
        # one registration for the two workers: one proxy, one CLUSTER SLOTS node
        listed = c.dash.get("/api/v1/proxies")["proxies"]
        assert [p["id"] for p in listed] == ["proxy-0"]
        assert len(c.slotmap().proxies) == 1
        # Both workers accept before the load connects (a worker still starting would leave
        # every connection to the other); 8 connections per writer and reader spread over them.
        for conn in one_per_worker(proxy.port).values():
            conn.close()
        with Load([proxy.port] * 8) as load:
            until(lambda: load.ops > 200, 20, "load running")
            c.migrate("0-199", 2)
            c.migrate("600-799", 1)
            c.wait_idle(90)
            c.migrate("0-99", 1)
            c.wait_idle(90)
            still_served(load)
        epoch = verified(c, load, proxy.port)
        stats = proxy.admin.get("/api/stats")
        per = [w["stats"] for w in stats["workers"]]
        assert all(s["epoch"] == epoch for s in per), per  # every worker applied every push
        assert all(s["commands"] > 0 for s in per), per
        assert stats["commands"] == sum(s["commands"] for s in per)
        assert stats["clients"] == sum(s["clients"] for s in per)
        m = c.migrations()
        assert m["status"] == "idle" and m["keys_moved"] > 0


def test_a_killed_worker_drops_only_its_clients_and_returns_with_the_map(
        tmp_path: Path) -> None:
    with cluster(tmp_path, nproxies=1, proxy_cfg=WORKERS) as c:
        proxy = c.proxies[0]
        raws = raw_per_worker(proxy)
        for w, raw in raws.items():
            raw.send(f"SET k{w} {w}\r\n".encode())
            assert raw.read_lines(1) == [b"+OK"]
        victim = workers_info(proxy)[1]
        with Load([proxy.port] * 4) as load:
            until(lambda: load.ops > 100, 20, "load running")
            os.kill(victim["pid"], signal.SIGKILL)
            assert raws[1].closed_by_peer(10)  # its clients are cut off ...
            for _ in range(20):  # ... the other worker's client never notices
                raws[0].send(b"INCR survivor\r\n")
            assert raws[0].read_lines(20) == [b":%d" % i for i in range(1, 21)]
            # a migration while it is down or coming back: the push is acknowledged by the
            # live worker (a dead one serves nothing) and the restarted one starts with it
            c.migrate("0-99", 2)
            c.wait_idle(60)
            back = until(lambda: (w := workers_info(proxy)[1])["state"] == "ready"
                         and w["pid"] != victim["pid"] and w, 30, "worker 1 restarted")
            assert back["restarts"] == 1 and back["last_exit"] == -signal.SIGKILL
            c.migrate("100-199", 2)  # and it applies the pushes after its restart
            c.wait_idle(60)
            still_served(load)
        epoch = verified(c, load, proxy.port)
        per = proxy.admin.get("/api/stats")["workers"]
        assert [w["stats"]["epoch"] for w in per] == [epoch, epoch]
        raws[0].send(b"GET survivor\r\n")
        assert raws[0].read_lines(2) == [b"$2", b"20"]
        fresh = one_per_worker(proxy.port)
        assert fresh[1].get("k1") == b"1" and fresh[1].get("k0") == b"0"
        for conn in fresh.values():
            conn.close()


@pytest.fixture
def servers(tmp_path: Path):
    srv = [RedisServer(tmp_path / f"r{i}").start() for i in range(2)]
    yield srv
    for s in srv:
        s.stop()


def test_sigterm_drains_every_worker(servers: list[RedisServer], tmp_path: Path) -> None:
    p = ProxyProcess(tmp_path, group_config(servers, workers=2)).start()
    try:
        conns = one_per_worker(p.port)
        raws = list(raw_per_worker(p).values())
        # a slow command in flight on each worker (a Lua loop: DEBUG is refused)
        for raw in raws:
            raw.send(b"EVAL \"local i=0 while i<2000000 do i=i+1 end return i\" 1 slowk\r\n")
        for conn in conns.values():  # and the workers' own connections, idle
            assert conn.ping()
        time.sleep(0.05)
        assert p.process is not None
        p.process.signal(signal.SIGTERM)  # the supervisor only
        for raw in raws:
            assert raw.read_lines(1, timeout=15) == [b":2000000"]
            assert raw.closed_by_peer(10)
        assert p.process.proc.wait(20) == 0
        with pytest.raises(OSError):
            socket.create_connection((p.host, p.port), timeout=1)
        log = p.log()
        assert log.count("draining in-flight requests") == 2, log
    finally:
        p.stop()



def test_a_crash_looping_worker_is_reported_not_restarted_forever(
        servers: list[RedisServer], tmp_path: Path) -> None:
    admin = f"127.0.0.1:{free_port()}"
    cfg = group_config(servers, workers=2, admin_listen=admin,
                       supervisor={"crash_loop_restarts": 2, "crash_loop_window": 300.0,
                                   "restart_backoff_min": 0.05})
    p = ProxyProcess(tmp_path, cfg).start()
    try:
        killed: set[int] = set()

        def kill_ready(index: int) -> None:
            """SIGKILL the worker once it serves (a new process, not one already killed)."""
            w = until(lambda: (x := workers_info(p)[index])["state"] == "ready"
                      and x["pid"] not in killed and x, 30, f"worker {index} ready")
            os.kill(w["pid"], signal.SIGKILL)
            killed.add(w["pid"])

        kill_ready(1)  # one death: restarted
        first = until(lambda: (x := workers_info(p)[1])["restarts"] == 1 and x, 30, "restart")
        kill_ready(1)  # the second within the window: crash-looping, left down
        until(lambda: workers_info(p)[1]["state"] == "failed", 30, "worker 1 reported failed")
        assert workers_info(p)[1]["restarts"] == 1 and first["state"] in ("starting", "ready")
        assert "worker 1 is crash-looping" in p.log()
        c = p.client()
        assert c.set("still", "served") and c.get("still") == b"served"  # worker 0 serves
        stats = p.admin.get("/api/stats")
        assert [w["state"] for w in stats["workers"]] == ["ready", "failed"]
        assert stats["workers"][1]["stats"] is None
        kill_ready(0)
        kill_ready(0)  # every worker failed: the supervisor gives up, exit code 1
        assert p.process is not None
        assert p.process.proc.wait(30) == 1
        assert "every worker failed" in p.log()
    finally:
        p.stop()


def test_workers_do_not_outlive_a_killed_supervisor(servers: list[RedisServer],
                                                    tmp_path: Path) -> None:
    admin = f"127.0.0.1:{free_port()}"
    p = ProxyProcess(tmp_path, group_config(servers, workers=2, admin_listen=admin)).start()
    try:
        def all_ready() -> list[int]:
            ws = workers_info(p)
            return [w["pid"] for w in ws] if all(w["state"] == "ready" for w in ws) else []

        pids = until(all_ready, 30, "every worker ready")
        assert p.process is not None
        os.kill(p.process.pid, signal.SIGKILL)  # the supervisor only, not its group

        def gone(pid: int) -> bool:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            with open(f"/proc/{pid}/stat") as f:  # a zombie of the init reaper is gone too
                return f.read().split(") ")[1].startswith("Z")

        until(lambda: all(gone(pid) for pid in pids), 30, "the workers to exit")
        with pytest.raises(OSError):
            socket.create_connection((p.host, p.port), timeout=1)
    finally:
        p.stop()
