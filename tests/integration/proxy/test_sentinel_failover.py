"""A standalone proxy (no dashboard) following three real redis-sentinels: kill -9 the master
under write load, the sentinels promote the replica, the proxy re-points the group and writes
resume there. Acknowledged writes lost to asynchronous replication are counted and reported;
what is asserted is what is guaranteed: every write acknowledged once the master was gone
went to the promoted replica and is there."""

from __future__ import annotations

from pathlib import Path

from tests.harness import ProxyProcess, RedisServer, until

from .ha_servers import Sentinel, Writer, rc, replicate, servers

NAME = "slotproxy-g1"


def _master(p: ProxyProcess) -> str:
    return str(p.client().info("proxy")["group_1"]["master"])


def test_kill_9_master_writes_resume_on_the_promoted_replica(tmp_path: Path) -> None:
    m, r = servers(tmp_path, 2)
    sentinels: list[Sentinel] = []
    p: ProxyProcess | None = None
    back: RedisServer | None = None
    try:
        replicate(r, m)
        sentinels = [Sentinel(tmp_path / f"sentinel{i}", NAME, m).start() for i in range(3)]
        # Each sentinel must know the replica and the two other sentinels before a failover
        # can be elected.
        until(lambda: all(int(s.client().sentinel_master(NAME)["num-other-sentinels"]) == 2
                          and s.client().sentinel_slaves(NAME) for s in sentinels),
              60, "sentinels discovering each other and the replica")
        p = ProxyProcess(tmp_path / "proxy", {
            "groups": {1: {"master": m.addr, "replicas": [r.addr]}},
            "sentinels": [s.addr for s in sentinels],
            "replica_check_interval": 0.2,
            "backend": {"connect_timeout": 0.5, "reconnect_max": 0.2},
        }).start()
        assert _master(p) == m.addr
        # One sentinel down: the other two are a majority and still fail over; the proxy's
        # polls skip the unreachable one.
        sentinels[2].stop()
        with Writer(p) as w:
            w.wait_acked(300)
            m.kill()  # kill -9
            until(lambda: _master(p) == r.addr, 60, "the proxy re-pointed to the promoted replica")
            w.wait_acked(300, timeout=60)
        assert rc(r).info("replication")["role"] == "master"
        failed = [n for n, _ in w.failed]
        first_failed = min(failed) if failed else None
        new = rc(r)
        lost = [n for n in w.acked if new.get(w.key(n)) != str(n).encode()]
        # Guaranteed: nothing acknowledged after the first failed write (the old master gone)
        # is lost, since only the promoted replica acknowledged those.
        if first_failed is not None:
            assert all(n < first_failed for n in lost), lost[:5]
        figures = (f"kill -9 of the master under write load: {len(w.acked)} writes "
                   f"acknowledged, {len(failed)} refused while no master was reachable "
                   f"({w.unavailable():.2f} s without writes), {len(lost)} acknowledged "
                   "writes lost (asynchronous replication)")
        print("\n" + figures)
        (tmp_path / "failover-figures.txt").write_text(figures + "\n")
        # The old master restarted: the sentinels turn it into a replica of the new master,
        # and the proxy (which kept it in the group's replicas) reads from it again once in
        # sync.
        back = RedisServer(m.workdir, port=m.port).start()
        until(lambda: rc(back).info("replication").get("master_port") == r.port, 60,
              "the old master reconfigured as a replica by the sentinels")
        until(lambda: p.client().info("proxy")["group_1_replica0"]["status"] == "ok", 60,
              "the old master serving reads as a replica")
        assert p.client().get(w.key(w.acked[-1])) == str(w.acked[-1]).encode()
        assert "sentinels: group 1" in p.log()
    finally:
        if p is not None:
            p.stop()
        for s in sentinels:
            s.stop()
        for srv in (back, r, m):
            if srv is not None:
                srv.stop()
