"""Operator-facing behaviour end to end: big keys, a backend going down, cancel, fencing of
stale proxies, rebalance / add-group / drain-group via proxyctl, --watch progress."""

from __future__ import annotations

import contextlib
import io
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from dashboard import cli
from slotcore.keyslot import key_slot
from tests.harness import TOKEN, until
from tests.harness.cluster import NSLOTS, Load, cluster
from tests.harness.commandlog import CommandLog

from .test_mover import CHUNK_MAX, chunk_commands, chunk_size, content, tmp_name

pytestmark = pytest.mark.integration


def proxyctl(c, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = cli.main(["--dashboard", c.dash.url, "--token", TOKEN, *argv])
    return code, out.getvalue()


def fill_counters(r: redis.Redis, n: int) -> None:
    """k:0 .. k:n-1 = their index, written through the proxy in one pipeline."""
    p = r.pipeline(transaction=False)
    for i in range(n):
        p.set(f"k:{i}", i)
    p.execute()


def stream_groups(r: redis.Redis, key: bytes) -> dict[str, dict]:
    """Everything a consumer group remembers: position, consumers, and each pending entry's
    owner and delivery count (delivery times are restored too, but shift by test timing)."""
    out = {}
    for g in r.xinfo_groups(key):
        name = g["name"].decode() if isinstance(g["name"], bytes) else g["name"]
        pending = r.xpending_range(key, name, "-", "+", 10_000)
        out[name] = {
            "last-delivered-id": g["last-delivered-id"],
            "entries-read": g.get("entries-read"),
            "consumers": sorted(c["name"] for c in r.xinfo_consumers(key, name)),
            "pending": [(p["message_id"], p["consumer"], None, p["times_delivered"])
                        for p in pending],
        }
    return out


def test_big_keys_move_in_chunks_under_a_fence_without_a_long_block(tmp_path: Path) -> None:
    with cluster(tmp_path, migration={"big_key_bytes": 1 << 20, "stall_ms": 50}) as c:
        r = redis.Redis(port=c.proxies[0].port, protocol=2)
        direct = redis.Redis(port=c.redis[0].port)
        big = {kind: next(k for i in range(100) if key_slot(k := f"big{kind}{i}".encode(),
                                                             NSLOTS) < 512)
               for kind in ("hash", "list", "zset", "stream")}
        direct.eval("for i=1,150000 do redis.call('HSET', KEYS[1], 'f'..i, 'v'..i) end", 1,
                    big["hash"])
        direct.eval("for i=1,150000 do redis.call('RPUSH', KEYS[1], 'v'..i) end", 1,
                    big["list"])
        direct.eval("for i=1,150000 do redis.call('ZADD', KEYS[1], i, 'm'..i) end", 1,
                    big["zset"])
        # A big stream with consumer groups: entries, pending entries (PEL), consumers and the
        # groups' positions must all arrive.
        sk = big["stream"]
        direct.eval("for i=1,100000 do redis.call('XADD', KEYS[1], '*', 'f', i, 'g', i) end",
                    1, sk)
        direct.xgroup_create(sk, "workers", id="0")
        direct.xgroup_create(sk, "audit", id="$")
        direct.xreadgroup("workers", "c1", {sk: ">"}, count=300)
        got = direct.xreadgroup("workers", "c2", {sk: ">"}, count=200)
        direct.xack(sk, "workers", *[eid for eid, _ in got[0][1][:50]])
        direct.xgroup_createconsumer(sk, "workers", "idle-consumer")
        groups_before = stream_groups(direct, sk)
        assert groups_before["workers"]["pending"][0][3] == 1
        for k in big.values():
            assert c.slotmap().owner[key_slot(k, NSLOTS)] == 1
            direct.expire(k, 3600)
        before = {k: content(direct, k) for k in big.values()}
        slots = ",".join(str(key_slot(k, NSLOTS)) for k in big.values())
        with CommandLog(c.redis[0].port) as src_log, CommandLog(c.redis[1].port) as dst_log:
            with Load([c.proxies[1].port], writers=1, readers=1) as load:
                c.migrate(slots, 2)
                m = c.wait_idle(60)
            src_cmds, dst_cmds = src_log.commands(), dst_log.commands()
        load.verify(c.proxies[0].port)
        reported = {b["key"]: b for b in m["big_keys"]}
        assert set(reported) == {k.decode() for k in big.values()}, m["big_keys"]
        assert all(b["moved"] for b in reported.values())
        target = redis.Redis(port=c.redis[1].port)
        for k in big.values():
            assert not direct.exists(k) and content(target, k) == before[k]
            assert 3500 < target.ttl(k) <= 3600
            assert r.type(k) != b"none"  # and the proxies route to it
        assert stream_groups(target, sk) == groups_before
        # Neither server was asked to move a big value at once: each big key went over in
        # several chunks, no read or write carried more than the mover's chunk bound (SCAN
        # pages: twice, see test_mover) and nothing dumped or restored a whole big key.
        for k in big.values():
            reads = chunk_commands(src_cmds, k)
            writes = chunk_commands(dst_cmds, tmp_name(k, NSLOTS))
            assert not reads["whole"] and not writes["whole"], k
            assert reads["reads"] and max(map(chunk_size, reads["reads"])) <= CHUNK_MAX, k
            assert len(writes["writes"]) > 1, k
            assert max(map(chunk_size, writes["writes"])) <= 2 * CHUNK_MAX, k
        assert not [cmd for cmd in src_cmds + dst_cmds if cmd.name in ("DUMP", "RESTORE")
                    and cmd.args[1] in big.values()]
        c.check_placement()


def test_target_down_pauses_the_slot_until_it_returns(tmp_path: Path) -> None:
    with cluster(tmp_path, migration={"migrate_timeout_ms": 300, "keys_per_sec": 20000}) as c:
        r = redis.Redis(port=c.proxies[0].port, protocol=2)
        fill_counters(r, 20000)
        target = c.redis[1]
        c.migrate("0-300", 2)
        until(lambda: c.migrations()["keys_moved"] > 0, 20, "keys moving")
        target.process.signal(signal.SIGSTOP)
        try:
            m = until(lambda: (m := c.migrations()) and any(
                "paused" in (s["error"] or "") and "target" in s["error"] for s in m["slots"])
                and m, 20, "a paused slot")
            assert target.addr in str(m["slots"])
        finally:
            target.process.signal(signal.SIGCONT)
        c.wait_idle(60)
        assert r.mget([f"k:{i}" for i in range(0, 20000, 7)]) == [
            str(i).encode() for i in range(0, 20000, 7)]
        c.check_placement()


def test_cancel_leaves_every_slot_on_one_owner(tmp_path: Path) -> None:
    with cluster(tmp_path, migration={"max_concurrent_slots": 16, "keys_per_sec": 3000}) as c:
        r = redis.Redis(port=c.proxies[0].port, protocol=2)
        fill_counters(r, 20000)
        c.migrate("0-511", 2)
        until(lambda: c.migrations()["slots_done"] >= 16, 30, "a batch done")
        code, out = proxyctl(c, "migrate", "cancel")
        assert code == 0 and "cancelled slots" in out, out
        m = c.wait_idle(30)
        assert m["status"] == "idle"
        sm = c.slotmap()
        moved = [s for s in range(512) if sm.owner[s] == 2]
        assert 16 <= len(moved) < 512
        c.check_placement()
        assert r.mget([f"k:{i}" for i in range(0, 20000, 3)]) == [
            str(i).encode() for i in range(0, 20000, 3)]


def past_fence(c, fence: float) -> set[str]:
    """The proxies the dashboard last heard from more than `fence` seconds ago."""
    now = time.time()
    return {p["id"] for p in c.dash.get("/api/v1/proxies")["proxies"]
            if now - p["last_seen"] > fence}


def test_stale_proxy_blocks_new_batches_and_force_remove(tmp_path: Path) -> None:
    # The fence is long enough that the migrator has surely looked at the force-removed proxy
    # (and reported "blocked") before it expires, even on a loaded machine.
    with cluster(tmp_path, fence_timeout=8.0) as c:
        frozen = c.proxies[1]
        frozen.process.signal(signal.SIGSTOP)
        try:
            until(lambda: past_fence(c, 8.0) == {"proxy-1"}, 30,
                  "the frozen proxy to be past fence_timeout")
            status, body = c.dash.call("POST", "/api/v1/migrations", {"slots": "0-9", "to": 2})
            assert status == 409 and "proxy-1" in body["error"], body
            assert "fence_timeout" in body["error"]
            code, out = proxyctl(c, "proxy", "remove", "proxy-1")
            assert code == 1 and "make sure it is stopped" in out
        finally:
            frozen.process.signal(signal.SIGCONT)
        until(lambda: c.dash.call("POST", "/api/v1/migrations",
                                  {"slots": "0-9", "to": 2})[0] == 201, 10, "proxy back")
        c.wait_idle(30)
        frozen.kill()
        assert proxyctl(c, "proxy", "remove", "proxy-1", "--force")[0] == 0
        c.migrate("10-19", 2)
        # no batch starts until the removed proxy, if it were still running, fenced itself
        until(lambda: c.migrations()["status"] == "blocked", 8, "the migrator to hold the batch")
        m = c.migrations()
        assert m["status"] == "blocked" and "force-removed" in m["error"], m
        c.wait_idle(30)
        c.check_placement()


def test_rebalance_add_group_and_drain_group_via_proxyctl(tmp_path: Path) -> None:
    with cluster(tmp_path, ngroups=3, migration={"max_concurrent_slots": 512}) as c:
        # start with 2 groups owning everything; group 3 empty
        status, body = c.dash.call("POST", "/api/v1/slots/assign", {
            "assign": [{"slots": "0-511", "group": 1}, {"slots": "512-1023", "group": 2}],
            "force": True})
        assert status == 200, body
        r = redis.Redis(port=c.proxies[0].port, protocol=2)
        p = r.pipeline(transaction=False)
        for i in range(5000):
            p.set(f"k:{i}", i)
        p.execute()
        code, out = proxyctl(c, "rebalance", "--dry-run")
        assert code == 0 and "dry run" in out and "342" in out, out
        assert c.migrations()["slots"] == []  # nothing started
        code, out = proxyctl(c, "rebalance", "--watch")
        assert code == 0 and "rebalance plan" in out and "migration finished" in out, out
        counts = {g: c.slotmap().owner.count(g) for g in (1, 2, 3)}
        assert sorted(counts.values()) == [341, 341, 342], counts
        # a 4th server: add it and rebalance onto it in one command
        from tests.harness import RedisServer
        extra = RedisServer(tmp_path / "redis-extra").start()
        c.redis.append(extra)
        code, out = proxyctl(c, "group", "add", "4", "--master", extra.addr, "--rebalance",
                             "--watch")
        assert code == 0 and "group 4 created" in out, out
        assert c.slotmap().owner.count(4) == 256
        # drain group 1 before removing it: one command
        code, out = proxyctl(c, "group", "drain", "1", "--watch")
        assert code == 0, out
        assert c.slotmap().owner.count(1) == 0
        assert proxyctl(c, "group", "remove", "1")[0] == 0
        assert r.mget([f"k:{i}" for i in range(5000)]) == [str(i).encode()
                                                           for i in range(5000)]
        c.check_placement()


def test_load_aware_rebalance_and_watch(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        r = redis.Redis(port=c.proxies[0].port, protocol=2)
        # group 1's slots hold many keys, group 2's few: load-aware evens keys, not counts
        p = r.pipeline(transaction=False)
        n = 0
        owner = c.slotmap().owner
        for i in range(40000):
            k = f"k:{i}"
            if owner[key_slot(k.encode(), NSLOTS)] == 1 or i % 10 == 0:
                p.set(k, "x" * 20)
                n += 1
        p.execute()
        status, plan = c.dash.call("POST", "/api/v1/rebalance", {"mode": "load",
                                                                  "sample_seconds": 0.2})
        assert status == 200, plan
        moves = plan["plan"]["moves"]
        assert moves and all(m["from"] == 1 and m["to"] == 2 for m in moves), moves
        after = plan["plan"]["after"]
        assert abs(after["1"]["load"] - after["2"]["load"]) < 0.1, after
        assert plan["measured"]["keys"] == n
        # count mode sees nothing to do
        status, plan2 = c.dash.call("POST", "/api/v1/rebalance", {})
        assert plan2["plan"]["moves"] == []
        # start it and watch it from the CLI in a separate process (non-tty output)
        status, started = c.dash.call("POST", "/api/v1/rebalance",
                                      {"mode": "load", "dry_run": False,
                                       "sample_seconds": 0.2})
        assert status == 200 and started["started"]["count"] > 0, started
        out = subprocess.run([sys.executable, "-m", "dashboard.cli", "--dashboard", c.dash.url,
                              "migrate", "--watch", "--interval", "0.2"], capture_output=True,
                             text=True, timeout=60, cwd=str(Path(__file__).parents[3]))
        assert out.returncode == 0, out.stderr
        assert "migration finished" in out.stdout and "keys/s" in out.stdout
        c.check_placement()
        m = c.migrations()
        assert m["keys_moved"] > 0
        _ = Load  # (load generator used by the other tests)
