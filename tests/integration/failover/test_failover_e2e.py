"""Automatic failover end to end: real redis-servers (master + replica per group), three real
redis-sentinels, the dashboard following them, two proxies, clients writing through the proxies.

One cluster serves the whole module (starting it costs seconds); each test fails over a group
and leaves every group with a master and an in-sync replica again. What a failover loses is
measured, not assumed: every acknowledged INCR is counted, the counters are read back, the loss
is printed, and the test asserts what is actually guaranteed -- nothing the replica was seen to
hold before the master died is lost.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from slotcore.keyslot import key_slot
from tests.harness import REPO, RedisServer, env, until
from tests.harness.failover import (
    HACluster,
    Writer,
    checkpoint,
    in_sync,
    info,
    read_counters,
)

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def ha(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HACluster]:
    c = HACluster(tmp_path_factory.mktemp("ha"))
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(autouse=True)
def healed(ha: HACluster) -> Iterator[None]:
    """Every test starts with every group watched and replicated, whatever the last one left."""
    ha.heal()
    yield


def restore(ha: HACluster, gid: int, old) -> None:
    """Restart a killed old master as a replica of the new one (it restarts empty: see
    HACluster.restart_as_replica); it syncs, and the sentinels watch it again."""
    ha.restart_as_replica(old, gid)
    new = ha.master(gid)
    until(lambda: info(old.port).get("role") == "slave"
          and info(old.port).get("master_port") == new.port, 90,
          f"{old.addr} to come back as a replica of {new.addr}")
    ha.wait_watched(gid, 60)


class Confirmed(threading.Thread):
    """Keeps the latest `checkpoint` of a writer: the acked counts the replica holds."""

    def __init__(self, writer: Writer, master: int, replica: int) -> None:
        super().__init__(daemon=True)
        self.writer, self.master, self.replica = writer, master, replica
        self.stop = threading.Event()
        self.best: dict[str, int] = {}

    def run(self) -> None:
        while not self.stop.is_set():
            snap = checkpoint(self.writer, self.master, self.replica, timeout=1.0)
            if snap is None:
                return  # the master is gone: the last checkpoint stands
            self.best = snap
            time.sleep(0.05)


def test_status_shows_the_sentinels(ha: HACluster) -> None:
    view = ha.sentinel_view()
    assert view["enabled"] and len(view["sentinels"]) == 3
    assert all(s["reachable"] for s in view["sentinels"])
    for gid in (1, 2):
        g = view["groups"][str(gid)]
        assert g["agreed"] == ha.master(gid).addr
        assert set(g["sentinels_say"].values()) == {ha.master(gid).addr}
    out = subprocess.run([sys.executable, "-m", "dashboard.cli", "--dashboard", ha.dash.url,
                          "status"], capture_output=True, text=True, env=env(), cwd=REPO,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    assert "SENTINEL" in out.stdout and "failovers followed" in out.stdout
    for s in ha.sentinels:
        assert s.addr in out.stdout


def test_groups_added_later_are_monitored_and_removed_ones_unmonitored(
        ha: HACluster, tmp_path_factory: pytest.TempPathFactory) -> None:
    srv = RedisServer(tmp_path_factory.mktemp("g9")).start()
    try:
        status, body = ha.dash.call("POST", "/api/v1/groups", {"id": 9, "master": srv.addr})
        assert status == 201, body
        until(lambda: all(ha.sentinel_master(s, 9) == srv.addr for s in ha.sentinels), 20,
              "every sentinel to monitor group 9")
        status, body = ha.dash.call("DELETE", "/api/v1/groups/9")
        assert status == 200, body
        until(lambda: all(ha.sentinel_master(s, 9) is None for s in ha.sentinels), 20,
              "every sentinel to forget group 9")
    finally:
        srv.stop()


def test_kill_master_under_load(ha: HACluster) -> None:
    """kill -9 group 1's master under writes and reads through two proxies."""
    ha.wait_watched(1)
    old, replica = ha.master(1), ha.replica(1)
    before = ha.sentinel_view()["failovers"]
    g1 = ha.keys_of(1, 200, "a")
    g2 = ha.keys_of(2, 100, "b")
    writers = [Writer(ha.proxies[0].port, g1[:100]), Writer(ha.proxies[1].port, g1[100:])]
    other = Writer(ha.proxies[1].port, g2)
    readers_ok = [0]
    reading = threading.Event()

    def reader() -> None:
        c = redis.Redis(port=ha.proxies[0].port, socket_timeout=5, protocol=2)
        while not reading.is_set():
            try:
                c.mget(g1[:20])
                readers_ok[0] += 1
            except redis.RedisError:
                c = redis.Redis(port=ha.proxies[0].port, socket_timeout=5, protocol=2)
                time.sleep(0.02)

    rt = threading.Thread(target=reader, daemon=True)
    for w in (*writers, other):
        w.start()
    rt.start()
    confirmed = [Confirmed(w, old.port, replica.port) for w in writers]
    for c in confirmed:
        c.start()
    try:
        until(lambda: all(w.ok > 200 for w in writers) and all(c.best for c in confirmed),
              30, "load to run")
        old.kill()
        ha.wait_master(1, replica.addr)
        base = [w.ok for w in writers]
        reads = readers_ok[0]
        until(lambda: all(w.ok > b + 200 for w, b in zip(writers, base, strict=True)), 30,
              "writes to resume on the promoted replica")
        until(lambda: readers_ok[0] > reads + 50, 30, "reads to resume")
    finally:
        for w in (*writers, other):
            w.halt()
        reading.set()
        rt.join(10)
        for c in confirmed:
            c.stop.set()
    # The other group never stopped: not one failed write.
    assert other.errors == [] and other.ok > 0
    lost_total, report = 0, []
    for w, c in zip(writers, confirmed, strict=True):
        values = read_counters(ha.proxies[0].port, w.keys)
        lost, lines = w.losses(values)
        lost_total += lost
        report += lines
        # Guaranteed: everything the replica held before the kill is there.
        short = {k: (values[k], n) for k, n in c.best.items() if values[k] < n}
        assert not short, f"writes the replica had confirmed were lost: {short}"
    windows = [b - a for w in writers for a, b in w.windows]
    print(f"\nfailover: {sum(w.ok for w in writers)} acked INCRs, {lost_total} lost "
          f"(acked by the old master, not yet replicated); unavailability {windows}")
    for line in report[:20]:
        print("  lost:", line)
    view = ha.sentinel_view()
    assert view["failovers"] == before + 1
    last = view["history"][-1]
    assert (last["group"], last["old"], last["new"]) == (1, old.addr, replica.addr)
    # The group lists the old master as a replica; restarted, sentinel makes it one.
    assert ha.group(1)["replicas"] == [old.addr]
    restore(ha, 1, old)


def test_partitioned_old_master_is_never_written_again(ha: HACluster) -> None:
    """SIGSTOP the master past down-after; once the map names the new master, no proxy writes
    the old one; SIGCONT, and sentinel turns it into a replica of the new master."""
    ha.wait_watched(1)
    old, replica = ha.master(1), ha.replica(1)
    oc = redis.Redis(port=old.port)
    oc.config_set("slowlog-log-slower-than", 0)
    oc.config_set("slowlog-max-len", 100000)
    oc.slowlog_reset()
    oc.close()
    keys = ha.keys_of(1, 50, "p")
    assert old.process is not None
    old.process.signal(signal.SIGSTOP)
    try:
        ha.wait_master(1, replica.addr)
        # Written only after the map named the new master, through both proxies.
        for i, k in enumerate(keys):
            until(lambda i=i, k=k: ha.proxies[i % 2].client().set(k, "after") is True, 20,
                  f"SET {k}")
    finally:
        old.process.signal(signal.SIGCONT)
    new = redis.Redis(port=replica.port)
    assert new.mget(keys) == [b"after"] * len(keys)
    until(lambda: info(old.port).get("role") == "slave"
          and info(old.port).get("master_port") == replica.port
          and info(old.port).get("master_link_status") == "up", 60,
          "the old master to become a replica of the new one")
    until(lambda: in_sync(old.port, replica.port), 30, "the old master to catch up")
    oc = redis.Redis(port=old.port)
    assert oc.mget(keys) == [b"after"] * len(keys)  # replicated from the new master
    # Every SET of those keys the old master ran came over its link to the new master.
    log = oc.slowlog_get(100000)
    oc.close()
    direct = [e for e in log if e["command"].startswith(b"SET p:")
              and not e["client_address"].endswith(f":{replica.port}".encode())]
    assert direct == [], direct[:5]
    ha.wait_watched(1, 60)


def test_failover_with_one_sentinel_down(ha: HACluster) -> None:
    """Two of three sentinels still agree (quorum 2) and fail the group over."""
    ha.wait_watched(2)
    down = ha.sentinels[2]
    down.stop()
    try:
        old, replica = ha.master(2), ha.replica(2)
        keys = ha.keys_of(2, 20, "s")
        w = Writer(ha.proxies[0].port, keys)
        w.start()
        until(lambda: w.ok > 50, 20, "writes")
        old.kill()
        ha.wait_master(2, replica.addr)
        base = w.ok
        until(lambda: w.ok > base + 50, 30, "writes to resume")
        w.halt()
        view = ha.sentinel_view()
        state = {s["addr"]: s["reachable"] for s in view["sentinels"]}
        assert state[down.addr] is False and sum(state.values()) == 2
    finally:
        down.start()
    restore(ha, 2, old)
    # The restarted sentinel learnt the new master (from its peers, or the dashboard).
    until(lambda: ha.sentinel_master(down, 2) == replica.addr, 30, "sentinel to catch up")


def test_a_failover_missed_while_the_dashboard_was_down_is_caught_by_polling(
        ha: HACluster) -> None:
    """No +switch-master reaches a dashboard that is not running: its poll on start finds it."""
    ha.wait_watched(1)
    old, replica = ha.master(1), ha.replica(1)
    before = ha.sentinel_view()["failovers"]
    ha.dash.kill()
    try:
        old.kill()
        until(lambda: all(ha.sentinel_master(s, 1) == replica.addr for s in ha.sentinels),
              60, "the sentinels to fail group 1 over")
    finally:
        ha.dash.start()
    ha.wait_master(1, replica.addr)
    # The failover count lives in memory: the restarted dashboard counts from zero.
    view = ha.sentinel_view()
    assert view["failovers"] == 1 and before >= 1
    assert (view["history"][-1]["old"], view["history"][-1]["new"]) == (old.addr, replica.addr)
    c = ha.proxies[0].client()
    k = ha.keys_of(1, 1, "m")[0]
    until(lambda: c.set(k, "1") is True, 20, "a write to group 1")
    assert redis.Redis(port=replica.port).get(k) == b"1"
    restore(ha, 1, old)


def test_failover_of_the_source_during_a_migration(ha: HACluster) -> None:
    """Slots of group 1 migrate to group 2 under writes; group 1's master is killed halfway:
    the migration pauses, resumes against the promoted replica and completes, and not one
    acknowledged write is lost (writes to migrating slots go to the target, and the keys the
    promoted replica still held after they moved are deleted, not moved over newer values)."""
    ha.wait_watched(1)
    ha.wait_watched(2)
    lo, _ = ha._range(1)
    slots = f"{lo}-{lo + 63}"
    moving = set(range(lo, lo + 64))
    keys = [k for k in (f"mig:{i}" for i in range(20000))
            if key_slot(k.encode(), 1024) in moving][:3000]
    c = ha.proxies[0].client()
    pipe = c.pipeline(transaction=False)
    for k in keys:
        pipe.set(k, 0)
    pipe.execute()
    old, replica = ha.master(1), ha.replica(1)
    until(lambda: in_sync(replica.port, old.port), 20, "replica in sync")
    status, body = ha.dash.call("PUT", "/api/v1/migrations/settings",
                                {"keys_per_sec": 300, "batch_size": 50})
    assert status == 200, body
    w = [Writer(ha.proxies[i].port, keys[i::4][:200]) for i in range(2)]
    try:
        for x in w:
            x.start()
        until(lambda: all(x.ok > 50 for x in w), 20, "writes")
        status, body = ha.dash.call("POST", "/api/v1/migrations", {"slots": slots, "to": 2})
        assert status == 201, body
        until(lambda: ha.dash.get("/api/v1/migrations")["keys_moved"] > 400, 60,
              "the migration to be under way")
        assert ha.dash.get("/api/v1/migrations")["slots"], "finished before the failover"
        old.kill()
        ha.wait_master(1, replica.addr)
        status, body = ha.dash.call("PUT", "/api/v1/migrations/settings", {"keys_per_sec": 0})
        assert status == 200, body
        until(lambda: not ha.dash.get("/api/v1/migrations")["slots"], 120,
              "the migration to finish")
        base = [x.ok for x in w]
        until(lambda: all(x.ok > b + 50 for x, b in zip(w, base, strict=True)), 30,
              "writes after the migration")
    finally:
        for x in w:
            x.halt()
        ha.dash.call("PUT", "/api/v1/migrations/settings", {"keys_per_sec": 0,
                                                            "batch_size": 500})
    for x in w:
        lost, report = x.losses(read_counters(ha.proxies[1].port, x.keys))
        assert lost == 0, report[:10]
    # Every key of the moved slots is on group 2's master, none left on group 1's.
    src = redis.Redis(port=replica.port)
    dst = redis.Redis(port=ha.master(2).port)
    left = [k for k in src.scan_iter(count=1000) if key_slot(k, 1024) in moving]
    assert left == []
    assert sum(dst.exists(*keys[i:i + 500]) for i in range(0, len(keys), 500)) == len(keys)
    restore(ha, 1, old)
