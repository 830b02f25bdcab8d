"""`proxyctl up --sentinels 3`: the README's failover walk-through, run for real."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import redis

from slotcore.addr import split_addr
from slotcore.keyslot import key_slot
from slotcore.slotmap import SlotMap
from tests.harness import TOKEN, RedisServer, http, until
from tests.harness.failover import REPL, in_sync
from tests.integration.dashboard.test_up import pid_alive, running_up


def sentinel_says(addr: str, name: str) -> str | None:
    host, port = split_addr(addr)
    with redis.Redis(host=host, port=port, socket_timeout=2) as r:
        got = r.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", name)
    return f"{got[0].decode()}:{int(got[1])}" if got else None


def sees_replica_and_peers(addr: str, name: str) -> bool:
    host, port = split_addr(addr)
    with redis.Redis(host=host, port=port, socket_timeout=2) as r:
        d = r.execute_command("SENTINEL", "MASTER", name)
    return int(d[b"num-slaves"]) >= 1 and int(d[b"num-other-sentinels"]) >= 2


def test_up_with_sentinels_fails_a_group_over(tmp_path: Path) -> None:
    workdir = tmp_path / ".cluster"
    replica = RedisServer(tmp_path / "replica", extra=REPL)
    with running_up(workdir, "--groups", "2", "--proxies", "1", "--sentinels", "3",
                    "--down-after-ms", "1000",
                    extra_env={"SLOTPROXY_ADMIN_TOKEN": TOKEN}) as (proc, info):
        try:
            pids = info["pids"]
            assert {"sentinel-1", "sentinel-2", "sentinel-3"} <= set(pids)
            assert len(info["sentinels"]) == 3
            dash = info["dashboard"]
            master = info["groups"]["1"]
            # Each sentinel has its own config file in its own directory.
            assert all((workdir / f"sentinel-{i}" / "sentinel.conf").is_file() for i in (1, 2, 3))
            # The dashboard made every sentinel monitor every group's master.
            for gid in ("1", "2"):
                until(lambda gid=gid: all(sentinel_says(s, f"slotproxy-default-g{gid}")
                                          == info["groups"][gid] for s in info["sentinels"]),
                      20, f"the sentinels to monitor group {gid}")
            # Give group 1 a replica (REPLICAOF, then `group add-server`), as the README does.
            replica.start()
            mhost, mport = split_addr(master)
            redis.Redis(port=replica.port).replicaof(mhost, mport)
            until(lambda: in_sync(replica.port, mport), 20, "the replica to sync")
            status, body = http("POST", f"{dash}/api/v1/groups/1/servers",
                                {"addr": replica.addr, "role": "replica"}, TOKEN)
            assert status == 201, body
            until(lambda: all(sees_replica_and_peers(s, "slotproxy-default-g1")
                              for s in info["sentinels"]),
                  30, "the sentinels to see the replica and each other")
            # Kill the master: the map changes to the replica, writes through the proxy resume.
            os.kill(pids["redis-1"], signal.SIGKILL)
            until(lambda: http("GET", f"{dash}/api/v1/groups/1")[1]["master"] == replica.addr, 60,
                  "the dashboard to record the new master")
            phost, pport = split_addr(info["proxies"][0])
            c = redis.Redis(host=phost, port=pport, socket_timeout=5)
            sm = SlotMap.from_json(http("GET", f"{dash}/api/v1/slotmap")[1])
            key = next(k for k in (f"k{i}" for i in range(10000))
                       if sm.owner[key_slot(k.encode(), sm.nslots)] == 1)
            until(lambda: c.set(key, "v") is True, 20, "a write to group 1")
            assert redis.Redis(port=replica.port).get(key) == b"v"
            view = http("GET", f"{dash}/api/v1/sentinels")[1]
            assert view["failovers"] == 1 and view["history"][0]["new"] == replica.addr

            proc.send_signal(signal.SIGINT)
            assert proc.wait(30) == 0
            until(lambda: not any(pid_alive(p) for p in pids.values()), 15,
                  "every process `up` started to stop")
        finally:
            replica.stop()
