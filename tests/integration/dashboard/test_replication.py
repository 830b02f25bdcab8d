"""Replicas that replicate, replica health and the manual promote, against real redis-servers
(in-process dashboard; the promote under load with real proxies is in test_promote_load.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from dashboard.config import BackendAuth, StoreConfig
from slotcore.slotmap import SlotMap
from tests.harness import AsyncHttp, RedisServer, free_port
from tests.harness.inproc import DashboardServer

from .test_cli import run

PASSWORD = "s3cret-backend"


async def eventually(cond: Any, timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await cond()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def client(srv: RedisServer) -> aioredis.Redis:
    return aioredis.Redis(port=srv.port, password=srv.password, protocol=2,
                          decode_responses=True)


@pytest.fixture
def servers(redis_servers: list[RedisServer]) -> list[RedisServer]:
    return redis_servers


@pytest.fixture
def cli_env(dash: DashboardServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLOTPROXY_DASHBOARD", dash.url)
    monkeypatch.setenv("SLOTPROXY_ADMIN_TOKEN", "test-token")


async def info(srv: RedisServer) -> dict[str, Any]:
    c = client(srv)
    try:
        return await c.info("replication")
    finally:
        await c.aclose()


async def replica_entry(api: AsyncHttp, gid: int, addr: str) -> dict[str, Any]:
    health = await api.get("/api/v1/health")
    return next(s for s in health["groups"][str(gid)]["servers"] if s["addr"] == addr)


async def test_add_server_replicates_and_health_shows_lag(dash, servers, cli_env) -> None:
    a, b, _ = servers
    api = AsyncHttp(dash.url)
    ca, cb = client(a), client(b)
    await api.ok("POST", "/api/v1/groups", {"id": 1, "master": a.addr})
    await ca.set("before", "1")

    code, out, err = await run("group", "add-server", "1", b.addr)
    assert code == 0, err
    assert f"{b.addr} added to group 1 as replica" in out
    assert f"{b.addr} in sync with {a.addr}" in out, out
    assert await cb.get("before") == "1"  # written before: on the replica once "in sync"
    await ca.set("after", "2")
    await eventually(lambda: cb.get("after"), what="a write after the add to replicate")
    assert (await info(b))["role"] == "slave"

    async def link_up() -> dict[str, Any] | None:
        r = (await replica_entry(api, 1, b.addr))["replication"]
        # offset > 0: a poll after the write above (the backlog starts with the replica)
        return r if r["link"] == "up" and r["offset"] and r["lag_bytes"] is not None else None
    repl = await eventually(link_up, what="health to show the replica's link up")
    assert repl["lag_bytes"] >= 0 and repl["lag_seconds"] is not None

    code, out, _ = await run("status")
    assert code == 0
    row = next(line for line in out.splitlines() if line.split()[:3] == ["1", b.addr, a.addr])
    assert row.split()[3] == "up", out
    await ca.aclose()
    await cb.aclose()


async def test_remove_server_detaches_only_when_asked(dash, servers, cli_env) -> None:
    a, b, _ = servers
    api = AsyncHttp(dash.url)
    await api.ok("POST", "/api/v1/groups", {"id": 1, "master": a.addr, "replicas": [b.addr]})
    await eventually(lambda: _linked(b, a), what="the replica to link up")

    code, out, err = await run("group", "remove-server", "1", b.addr)
    assert code == 0, err
    assert (await api.get("/api/v1/groups/1"))["replicas"] == []
    assert (await info(b))["role"] == "slave"  # still replicating: re-adding needs no full sync

    code, out, err = await run("group", "add-server", "1", b.addr)
    assert code == 0 and "in sync" in out, err
    code, out, err = await run("group", "remove-server", "1", b.addr, "--detach")
    assert code == 0 and "detached" in out, err
    assert (await info(b))["role"] == "master"


async def _linked(replica: RedisServer, master: RedisServer) -> bool:
    i = await info(replica)
    return (i.get("role") == "slave" and i.get("master_port") == master.port
            and i.get("master_link_status") == "up")


async def _online(replica: RedisServer, master: RedisServer) -> bool:
    """The master lists the replica online (what min-replicas-to-write counts)."""
    seen = await info(master)
    return await _linked(replica, master) and any(
        isinstance(v, dict) and v.get("port") == replica.port and v.get("state") == "online"
        for k, v in seen.items() if k.startswith("slave"))


async def test_add_server_refusals_change_nothing(dash, servers, tmp_path: Path) -> None:
    a, b, c = servers
    api = AsyncHttp(dash.url)
    await api.ok("POST", "/api/v1/groups", {"id": 1, "master": a.addr})
    before = (await api.get("/api/v1/groups"))["groups"]

    dead = f"127.0.0.1:{free_port()}"
    status, err = await api.call("POST", "/api/v1/groups/1/servers", {"addr": dead})
    assert status == 502 and f"server {dead} unreachable" in err["error"]
    assert "Error 111 connecting" in err["error"], err  # the cause (refused), not a timeout

    cb = client(b)
    await cb.set("own", "data")
    status, err = await api.call("POST", "/api/v1/groups/1/servers", {"addr": b.addr})
    assert status == 409 and "holds 1 keys" in err["error"] and "force" in err["error"]
    assert (await info(b))["role"] == "master" and await cb.get("own") == "data"

    # a master of other replicas (another cluster's) is not taken
    cc = client(c)
    await cc.replicaof("127.0.0.1", b.port)
    await eventually(lambda: _linked(c, b), what="c to replicate b")
    status, err = await api.call("POST", "/api/v1/groups/1/servers",
                                 {"addr": b.addr, "force": True})
    assert status == 409 and "is the master of 1 replica" in err["error"]
    # a replica of another master is re-pointed only with force
    status, err = await api.call("POST", "/api/v1/groups/1/servers", {"addr": c.addr})
    assert status == 409 and f"replicates from {b.addr}" in err["error"]
    assert (await api.get("/api/v1/groups"))["groups"] == before

    # a server of another group (here: its master) is refused by the topology, untouched
    await api.ok("POST", "/api/v1/groups", {"id": 2})
    status, err = await api.call("POST", "/api/v1/groups/2/servers",
                                 {"addr": a.addr, "role": "replica"})
    assert status == 409 and "already belongs to group 1" in err["error"]

    # with force, the data is replaced by the group's
    await cc.replicaof("NO", "ONE")
    await api.ok("POST", "/api/v1/groups/1/servers", {"addr": c.addr, "force": True})
    await eventually(lambda: _linked(c, a), what="c to replicate a")
    for conn in (cb, cc):
        await conn.aclose()


async def test_password_protected_group(tmp_path: Path) -> None:
    made = [RedisServer(tmp_path / f"p{i}", password=PASSWORD).start() for i in range(2)]
    server = await DashboardServer(store_cfg=StoreConfig(path=str(tmp_path / "store")),
                                   backend=BackendAuth(password=PASSWORD)).start()
    try:
        a, b = made
        api = AsyncHttp(server.url)
        ca = client(a)
        await ca.set("k", "v")
        created = await api.ok("POST", "/api/v1/groups",
                               {"id": 1, "master": a.addr, "replicas": [b.addr]})
        target = created["sync"][b.addr]["target_offset"]

        async def in_sync() -> bool:
            s = await api.get(f"/api/v1/groups/1/servers/{b.addr}/sync?offset={target}")
            return s["in_sync"]
        await eventually(in_sync, what="the password-protected replica to sync")
        cb = client(b)
        assert await cb.get("k") == "v"
        assert (await cb.config_get("masterauth"))["masterauth"] == PASSWORD

        async def healthy() -> bool:  # the poller logs in with the backend password
            g = (await api.get("/api/v1/health"))["groups"]["1"]
            return g["ok"] and g["servers"][1]["replication"]["link"] == "up"
        await eventually(healthy, what="health polled with the password")
        await ca.aclose()
        await cb.aclose()
    finally:
        await server.stop()
        for s in made:
            s.stop()


async def test_group_config_applies_knobs(dash, servers, cli_env) -> None:
    a, b, _ = servers
    api = AsyncHttp(dash.url)
    code, out, err = await run("group", "add", "1", "--master", a.addr, "--replica", b.addr)
    assert code == 0, err
    assert "group 1 created" in out and f"{b.addr} in sync with {a.addr}" in out, out
    await eventually(lambda: _online(b, a), what="the master to list its replica online")
    # more replicas than the master has: it would refuse every write, so refused
    code, _, err = await run("group", "config", "1", "min-replicas-to-write", "2")
    assert code == 1 and "needs 2 replica(s) online" in err and "the master has 1" in err
    code, out, err = await run("group", "config", "1", "min-replicas-to-write", "1",
                               "min-replicas-max-lag", "5")
    assert code == 0, err
    assert "min-replicas-max-lag 5, min-replicas-to-write 1" in out
    ca = client(a)
    assert (await ca.config_get("min-replicas-to-write"))["min-replicas-to-write"] == "1"
    assert (await ca.config_get("min-replicas-max-lag"))["min-replicas-max-lag"] == "5"
    # a master changed behind the dashboard's back gets them again from the topology
    from dashboard.api.services import REPLICATION
    await ca.config_set("min-replicas-to-write", 0)
    assert await dash.app[REPLICATION].apply_settings(1)
    assert (await ca.config_get("min-replicas-to-write"))["min-replicas-to-write"] == "1"
    await ca.aclose()
    assert (await api.get("/api/v1/groups/1"))["config"] == {
        "min-replicas-max-lag": "5", "min-replicas-to-write": "1"}
    status, err = await api.call("PUT", "/api/v1/groups/1/config", {"maxmemory": 1})
    assert status == 400 and "unknown group setting 'maxmemory'" in err["error"]
    status, err = await api.call("PUT", "/api/v1/groups/1/config",
                                 {"min-replicas-to-write": -1})
    assert status == 400 and "outside" in err["error"]
    code, _, err = await run("group", "config", "1", "min-replicas-to-write")
    assert code == 2


async def test_promote_switches_master_and_refuses_safely(dash, servers, cli_env) -> None:
    a, b, c = servers
    api = AsyncHttp(dash.url)
    await api.ok("POST", "/api/v1/groups", {"id": 1, "master": a.addr,
                                            "replicas": [b.addr, c.addr]})
    await api.ok("POST", "/api/v1/slots/assign", {"assign": [{"slots": "0-16383",
                                                              "group": 1}]})
    for r in (b, c):
        await eventually(lambda r=r: _online(r, a), what="replicas to link up")
    await api.ok("PUT", "/api/v1/groups/1/config", {"min-replicas-to-write": 1})

    # refusals: not a replica of the group, the master itself
    status, err = await api.call("POST", "/api/v1/groups/1/promote",
                                 {"addr": f"127.0.0.1:{free_port()}"})
    assert status == 404 and "is not a replica of group 1" in err["error"]
    status, err = await api.call("POST", "/api/v1/groups/1/promote", {"addr": a.addr})
    assert status == 409 and "already is the master" in err["error"]

    # a replica that does not catch up in time: rolled back, nothing changed
    cb, ca = client(b), client(a)
    before = (await api.get("/api/v1/groups"))["groups"]
    await cb.execute_command("CLIENT", "PAUSE", "30000", "WRITE")  # stops applying the stream
    await ca.set("unreplicated", "x")
    status, err = await api.call("POST", "/api/v1/groups/1/promote",
                                 {"addr": b.addr, "timeout": 0.5})
    assert status == 504 and "did not catch up" in err["error"] and "rolled back" in \
        err["error"], err
    await cb.execute_command("CLIENT", "UNPAUSE")
    assert (await api.get("/api/v1/groups"))["groups"] == before
    assert not SlotMap.from_json(await api.get("/api/v1/slotmap")).transit  # unlocked
    assert (await info(a))["role"] == "master" and (await info(b))["role"] == "slave"

    # the real thing, through proxyctl
    from dashboard.api.services import PROMOTER
    switched: list[tuple[int, str, str]] = []

    async def hook(gid: int, new: str, old: str) -> None:
        switched.append((gid, new, old))
    dash.app[PROMOTER].on_switch(hook)
    await ca.set("k", "v")
    code, out, err = await run("group", "promote", "1", b.addr)
    assert code == 0, err
    assert switched == [(1, b.addr, a.addr)]
    assert f"{b.addr} is now the master of group 1 (was {a.addr}" in out
    g = await api.get("/api/v1/groups/1")
    assert g["master"] == b.addr and g["replicas"] == [a.addr, c.addr]
    assert g["state"] == "active"
    sm = SlotMap.from_json(await api.get("/api/v1/slotmap"))
    assert sm.groups[1].master == b.addr and not sm.transit
    assert (await info(b))["role"] == "master"
    for old in (a, c):  # the old master and the other replica follow the new master
        await eventually(lambda old=old: _linked(old, b), what="re-pointed to the new master")
    assert await cb.get("k") == "v" and await cb.get("unreplicated") == "x"
    # the group's knob went to the new master, which accepts writes (its replicas are online)
    assert (await cb.config_get("min-replicas-to-write"))["min-replicas-to-write"] == "1"
    await eventually(lambda: cb.set("after", "1"), what="a write on the new master")
    for conn in (ca, cb):
        await conn.aclose()


async def test_promote_refused_while_migrating(dash, servers) -> None:
    a, b, c = servers
    api = AsyncHttp(dash.url)
    await api.ok("POST", "/api/v1/groups", {"id": 1, "master": a.addr, "replicas": [b.addr]})
    await api.ok("POST", "/api/v1/groups", {"id": 2, "master": c.addr})
    await api.ok("POST", "/api/v1/slots/assign", {"assign": [{"slots": "0-16383",
                                                              "group": 1}]})
    await api.ok("PUT", "/api/v1/migrations/settings", {"paused": True})
    await api.ok("POST", "/api/v1/migrations", {"slots": "0-9", "to": 2})
    status, err = await api.call("POST", "/api/v1/groups/1/promote", {"addr": b.addr})
    assert status == 409 and "takes part in a slot migration (slots 0-9)" in err["error"]


async def test_an_interrupted_promotion_is_settled_by_the_leader(dash, servers) -> None:
    """A dashboard that died mid-promotion leaves the group "promoting" (slots locked): the
    leader finishes it when the replica was already made a master, else just unlocks."""
    from dashboard.api.services import PLANE
    from dashboard.model import replication as rep

    a, b, _ = servers
    api = AsyncHttp(dash.url)
    plane = dash.app[PLANE]
    await api.ok("POST", "/api/v1/groups", {"id": 1, "master": a.addr, "replicas": [b.addr]})
    await api.ok("POST", "/api/v1/slots/assign", {"assign": [{"slots": "0-16383",
                                                              "group": 1}]})
    await eventually(lambda: _online(b, a), what="the replica online")

    # interrupted before REPLICAOF NO ONE: unlocked, nothing else changes
    locked = await plane.change(lambda t: rep.set_state(t, 1, "promoting"))
    assert locked.slot_map().transit  # what the proxies were pushed: the group's slots held

    async def settled() -> dict[str, Any] | None:
        g = await api.get("/api/v1/groups/1")
        return g if g["state"] == "active" else None
    g = await eventually(settled, what="the lock to be released")
    assert g["master"] == a.addr and (await info(b))["role"] == "slave"
    assert not SlotMap.from_json(await api.get("/api/v1/slotmap")).transit

    # interrupted after REPLICAOF NO ONE: finished forward (b holds every write)
    cb = client(b)
    await cb.replicaof("NO", "ONE")
    await plane.change(lambda t: rep.set_state(t, 1, "promoting"))
    g = await eventually(settled, what="the promotion to be finished")
    assert g["master"] == b.addr and g["replicas"] == [a.addr]
    await eventually(lambda: _linked(a, b), what="the old master to follow the new one")
    await cb.aclose()


async def test_wrong_backend_password_is_named(tmp_path: Path, dash) -> None:
    """A server that wants a password the dashboard does not have: said so, not 'unreachable'."""
    locked = RedisServer(tmp_path / "locked", password=PASSWORD).start()
    free = RedisServer(tmp_path / "free").start()
    try:
        api = AsyncHttp(dash.url)
        await api.ok("POST", "/api/v1/groups", {"id": 1, "master": free.addr})
        status, err = await api.call("POST", "/api/v1/groups/1/servers", {"addr": locked.addr})
        assert status == 502 and f"server {locked.addr} refused the dashboard" in err["error"]
        assert "backend.password" in err["error"]
    finally:
        locked.stop()
        free.stop()
