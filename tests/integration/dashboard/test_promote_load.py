"""`group promote` under concurrent writes through two real proxies: every acknowledged write
survives, the old master follows the new one, and every proxy's map names the new master."""

from __future__ import annotations

from pathlib import Path

import redis

from slotcore.keyslot import key_slot
from tests.harness import RedisServer, until
from tests.harness.cluster import NSLOTS, Cluster, Load


def linked(replica: RedisServer, master: RedisServer) -> bool:
    """Linked as both see it: the replica's link is up and the master lists it online."""
    info = redis.Redis(port=replica.port, protocol=2).info("replication")
    seen = redis.Redis(port=master.port, protocol=2).info("replication")
    return (info.get("role") == "slave" and info.get("master_port") == master.port
            and info.get("master_link_status") == "up"
            and any(isinstance(v, dict) and v.get("port") == replica.port
                    and v.get("state") == "online" for k, v in seen.items()
                    if k.startswith("slave")))


def test_promote_under_load_loses_no_acknowledged_write(tmp_path: Path) -> None:
    c = Cluster(tmp_path, ngroups=2, nproxies=2)
    replica = RedisServer(tmp_path / "replica1").start()
    try:
        old = c.redis[0]
        status, body = c.dash.call("POST", "/api/v1/groups/1/servers", {"addr": replica.addr})
        assert status == 201, body
        until(lambda: linked(replica, old), 20, "the replica to link up")
        status, body = c.dash.call("PUT", "/api/v1/groups/1/config",
                                   {"min-replicas-to-write": 1, "min-replicas-max-lag": 10})
        assert status == 200, body

        with Load([p.port for p in c.proxies], writers=3, readers=2) as load:
            until(lambda: load.ops > 2000, 60, "load to run")
            status, body = c.dash.call("POST", "/api/v1/groups/1/promote",
                                       {"addr": replica.addr, "timeout": 5})
            assert status == 200, body
            assert body["old_master"] == old.addr and not body["warnings"], body
            ops = load.ops
            print(f"promote held writes {body['seconds']}s, offset {body['offset']}")
            until(lambda: load.ops > ops + 2000, 60, "writes to go on after the promotion")

        load.verify(c.proxies[0].port)  # every acknowledged INCR and SET is there
        assert load.acked, "no write was acknowledged"
        group = c.dash.get("/api/v1/groups/1")
        assert group["master"] == replica.addr and group["replicas"] == [old.addr]
        until(lambda: linked(old, replica), 20, "the old master to follow the new one")
        for p in c.proxies:
            until(lambda p=p: p.slotmap()["groups"]["1"]["master"] == replica.addr, 10,
                  f"{p.name} to route group 1 to the new master")
        # Group 1's writes through the proxies now land on the new master.
        r = redis.Redis(port=replica.port, protocol=2)
        assert r.config_get("min-replicas-to-write")["min-replicas-to-write"] == "1"
        sm = c.slotmap()
        keys = [k for k in (f"post:{i}" for i in range(400))
                if sm.owner[key_slot(k.encode(), NSLOTS)] == 1][:50]
        w = c.proxies[1].client(protocol=2)
        for k in keys:
            w.set(k, "1")
        assert r.mget(keys) == [b"1"] * len(keys)
    finally:
        c.close()
        replica.stop()
