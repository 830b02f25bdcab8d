"""Re-pointing a group when a pushed map names a new master (failover, promotion): new
requests go to the new master, nothing is written to the old one after the push is
acknowledged (even while it is alive and still a writable master, and after it comes back
from the dead believing it is one), WATCH fails cleanly, and blocked calls follow the group."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.harness import ProxyProcess, RedisServer, free_port, until
from tests.harness.http import TOKEN

from .ha_servers import (
    Writer,
    blocked_clients,
    calls,
    push_master,
    rc,
    replicate,
    servers,
)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[RedisServer, RedisServer, ProxyProcess]]:
    """Master M, replica R of M, one standalone proxy with an admin API over them."""
    m, r = servers(tmp_path, 2)
    replicate(r, m)
    cfg = {"groups": {1: {"master": m.addr, "replicas": [r.addr]}},
           "admin_listen": f"127.0.0.1:{free_port()}", "admin_token": TOKEN,
           "replica_check_interval": 0.2,
           "backend": {"connect_timeout": 0.5, "reconnect_max": 0.2}}
    p = ProxyProcess(tmp_path / "proxy", cfg).start()
    yield m, r, p
    p.stop()
    for s in (m, r):
        s.stop()


def _promote(r: RedisServer) -> None:
    rc(r).execute_command("REPLICAOF", "NO", "ONE")


def test_no_write_reaches_the_old_master_after_the_push(
        pair: tuple[RedisServer, RedisServer, ProxyProcess]) -> None:
    m, r, p = pair
    with Writer(p) as w:
        w.wait_acked(200)
        # Split brain on purpose: R promoted while M is alive and still a writable master.
        _promote(r)
        push_master(p, 1, r.addr, [m.addr])
        sets_on_old = calls(m, "set")
        acked_at_push = len(w.acked)
        w.wait_acked(300)
    assert calls(m, "set") == sets_on_old  # not one SET after the acknowledgement
    after = w.acked[acked_at_push:]
    new = rc(r)
    assert all(new.get(w.key(n)) == str(n).encode() for n in after)
    old = rc(m)
    assert not any(old.exists(w.key(n)) for n in after[-50:])
    assert w.failed == []  # a live old master: the re-point itself fails nothing
    assert int(p.client().info("proxy")["group_repoints"]) == 1


def test_the_old_master_back_from_the_dead_gets_no_write(
        pair: tuple[RedisServer, RedisServer, ProxyProcess]) -> None:
    m, r, p = pair
    port, workdir = m.port, m.workdir
    with Writer(p) as w:
        w.wait_acked(100)
        m.kill()  # kill -9: writes fail (or queue while the proxy reconnects)
        until(lambda: w.failed, 10, "writes failing on the dead master")
        _promote(r)
        push_master(p, 1, r.addr, [m.addr])
        w.wait_acked(100)
        # The old master comes back, empty and still a master.
        back = RedisServer(workdir, port=port).start()
        try:
            until(lambda: p.client().info("proxy")["group_1_replica0"]["reason"]
                  .startswith("role is master"), 10, "the old master checked again")
            w.wait_acked(200)
            assert calls(back, "set") == 0
            assert rc(back).dbsize() == 0
        finally:
            back.stop()
    # Writes refused while the master was gone say why; none was acknowledged and lost
    # after the push (the new master has every write acknowledged since).
    last_failed = max(n for n, _ in w.failed)
    new = rc(r)
    assert all(new.get(w.key(n)) == str(n).encode() for n in w.acked if n > last_failed)
    assert all("backend" in e or "TRYAGAIN" in e for _, e in w.failed), w.failed[:3]


def test_watch_across_a_repoint_fails_the_exec(
        pair: tuple[RedisServer, RedisServer, ProxyProcess]) -> None:
    m, r, p = pair
    c = p.client(single_connection_client=True)
    c.set("k:watch", "1")
    c.execute_command("WATCH", "k:watch")
    _promote(r)
    push_master(p, 1, r.addr, [m.addr])
    c.execute_command("MULTI")
    c.execute_command("SET", "k:watch", "2")
    assert c.execute_command("EXEC") is None  # the watch is gone with the old master: retry
    tx = c.pipeline(transaction=True)
    tx.watch("k:watch")
    tx.multi()
    tx.set("k:watch", "3")
    assert tx.execute() == [True]
    assert rc(r).get("k:watch") == b"3" and rc(m).get("k:watch") == b"1"


def _blpop_in_thread(p: ProxyProcess, key: str, out: list) -> threading.Thread:
    def run() -> None:
        try:
            out.append(p.client(socket_timeout=60).blpop([key], timeout=0))
        except redis.RedisError as e:
            out.append(e)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("old_master", ["alive", "killed"])
def test_blocked_call_follows_the_repoint(
        pair: tuple[RedisServer, RedisServer, ProxyProcess], old_master: str) -> None:
    """Alive: unblocked on the old master, issued again on the new one. Killed under it (kill
    -9, nothing served): held, not failed, and issued again on the new master at the push."""
    m, r, p = pair
    key = f"q:{old_master}"
    out: list = []
    t = _blpop_in_thread(p, key, out)
    until(lambda: blocked_clients(m) == 1, 10, "BLPOP blocked on the old master")
    if old_master == "killed":
        m.kill()
        until(lambda: "held for a failover" in p.log(), 10, "the blocked call held")
        assert out == []  # not failed: waiting for the failover
    _promote(r)
    push_master(p, 1, r.addr, [m.addr])
    until(lambda: blocked_clients(r) == 1, 10, "BLPOP issued again on the new master")
    if old_master == "alive":
        assert blocked_clients(m) == 0
    p.client().lpush(key, "x")
    t.join(30)
    assert out == [(key.encode(), b"x")]
    if old_master == "alive":
        assert rc(m).llen(key) == 0
