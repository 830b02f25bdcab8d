"""The dashboard API in-process, against real redis-servers and contract-level proxies."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from dashboard.config import StoreConfig
from slotcore.slotmap import SlotMap
from tests.harness import AsyncHttp
from tests.harness.inproc import ContractProxy, DashboardServer


@pytest.fixture
async def proxies():
    made = [await ContractProxy(f"p{i}").start() for i in range(2)]
    try:
        yield made
    finally:
        for p in made:
            await p.stop()


async def eventually(check, timeout: float = 5.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return result
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


async def setup_groups(api: AsyncHttp, servers) -> None:
    for i, srv in enumerate(servers, start=1):
        await api.ok("POST", "/api/v1/groups", {"id": i, "master": srv.addr})
    await api.ok("POST", "/api/v1/slots/assign", {"assign": [
        {"slots": "0-5460", "group": 1}, {"slots": "5461-10922", "group": 2},
        {"slots": "10923-16383", "group": 3}]})


async def test_groups_slots_and_health(dash, redis_servers) -> None:
    api = AsyncHttp(dash.url)
    await setup_groups(api, redis_servers)
    topo = await api.get("/api/v1/topology")
    assert topo["dashboard"]["role"] == "leader"
    assert topo["ranges"] == [[0, 5460, 1], [5461, 10922, 2], [10923, 16383, 3]]
    assert topo["unassigned"] == ""
    assert [g["slots"] for g in topo["groups"]] == ["0-5460", "5461-10922", "10923-16383"]
    # created at 1; 3 group creates + one assignment: every change bumped the epoch once
    assert topo["epoch"] == 5
    slotmap = SlotMap.from_json(await api.get("/api/v1/slotmap"))
    assert slotmap.owner[0] == 1 and slotmap.owner[16383] == 3
    assert slotmap.groups[2].master == redis_servers[1].addr

    # health is polled from the real servers: write keys into group 2 and watch them appear
    r = aioredis.Redis(port=redis_servers[1].port)
    await r.mset({f"k{i}": i for i in range(25)})
    await r.aclose()

    async def keys_seen():
        health = await api.get("/api/v1/health")
        g2 = health["groups"]["2"]
        return g2["ok"] and g2["keys"] == 25 and g2["servers"][0]["role"] == "master"
    await eventually(keys_seen)

    # a dead server shows as unreachable
    redis_servers[2].stop()

    async def down():
        g3 = (await api.get("/api/v1/groups/3"))["health"]
        return not g3["ok"] and g3["servers"][0]["reachable"] is False
    await eventually(down)


async def test_group_lifecycle_and_servers(dash, redis_servers) -> None:
    api = AsyncHttp(dash.url)
    a, b = redis_servers[0].addr, redis_servers[1].addr
    created = await api.ok("POST", "/api/v1/groups", {})
    assert created["group"]["id"] == 1 and created["group"]["master"] is None
    await api.ok("POST", "/api/v1/groups/1/servers", {"addr": a})
    g = await api.ok("POST", "/api/v1/groups/1/servers", {"addr": b})
    assert g["group"]["master"] == a and g["group"]["replicas"] == [b]
    # a server belongs to one group only
    await api.ok("POST", "/api/v1/groups", {"id": 2})
    status, err = await api.call("POST", "/api/v1/groups/2/servers", {"addr": a})
    assert status == 409 and "already belongs to group 1" in err["error"]
    await api.ok("POST", "/api/v1/slots/assign", {"assign": [{"slots": "0-99", "group": 1}]})
    status, err = await api.call("DELETE", "/api/v1/groups/1")
    assert status == 409 and "owns slots 0-99" in err["error"]
    status, err = await api.call("DELETE", f"/api/v1/groups/1/servers/{a}")
    assert status == 409
    await api.ok("DELETE", f"/api/v1/groups/1/servers/{b}")
    assert (await api.get("/api/v1/groups/1"))["replicas"] == []
    await api.ok("DELETE", "/api/v1/groups/2")
    status, _ = await api.call("GET", "/api/v1/groups/2")
    assert status == 404


async def test_bad_input_is_refused_without_change(dash, redis_servers) -> None:
    api = AsyncHttp(dash.url)
    await setup_groups(api, redis_servers)
    before = await api.get("/api/v1/topology")
    cases = [
        ({"assign": [{"slots": "0-10", "group": 7}]}, True, 404, "unknown group 7"),
        ({"assign": [{"slots": "0-10", "group": 1}, {"slots": "5-20", "group": 2}]}, True,
         400, "overlapping ranges: slots 5-10"),
        ({"assign": [{"slots": "16000-17000", "group": 1}]}, True, 400, "outside 0-16383"),
        ({"assign": [{"slots": "10-5", "group": 1}]}, True, 400, "start > end"),
        ({"assign": [{"slots": "0-10", "group": 2}]}, True, 409, "already belong to group"),
        ({"assign": [{"slots": "0-10", "group": 1}]}, "wrong", 401, "admin token"),
        ({"assign": [{"slots": "0-10", "group": 1}]}, None, 401, "admin token"),
        ({"assign": []}, True, 400, "non-empty list"),
    ]
    for body, token, status, message in cases:
        got, err = await api.call("POST", "/api/v1/slots/assign", body, token=token)
        assert got == status, (body, err)
        assert message in err["error"], err
    got, err = await api.call("POST", "/api/v1/groups", {"id": 1})
    assert got == 409 and "already exists" in err["error"]
    got, err = await api.call("POST", "/api/v1/groups", {"id": 4, "master": "nohostport"})
    assert got == 400 and "host:port" in err["error"]
    got, err = await api.call("POST", "/api/v1/groups", {"id": 0})
    assert got == 400
    got, err = await api.call("GET", "/api/v1/nope")
    assert got == 404 and "error" in err
    got, err = await api.call("POST", "/api/v1/groups", data=b"{not json")
    assert got == 400 and "JSON" in err["error"]
    after = await api.get("/api/v1/topology")
    assert after["epoch"] == before["epoch"] and after["ranges"] == before["ranges"]
    # force is the explicit way to reassign without moving data
    await api.ok("POST", "/api/v1/slots/assign",
                 {"assign": [{"slots": "0-10", "group": 2}], "force": True})
    assert (await api.get("/api/v1/slots"))["ranges"][0] == [0, 10, 2]


async def test_every_change_is_pushed_to_every_proxy(dash, proxies, redis_servers) -> None:
    api = AsyncHttp(dash.url)
    for p in proxies:
        reply = await p.register(dash.url)
        assert reply["epoch"] == 1  # the empty topology the dashboard created
    # registration triggers a push of the current map: proxies serve only after it
    await eventually(lambda: all(p.epoch == 1 for p in proxies))
    await setup_groups(api, redis_servers)
    for p in proxies:
        assert p.slotmap is not None and p.slotmap.epoch == 5
        assert p.slotmap.to_json() == await api.get("/api/v1/slotmap")
    listed = (await api.get("/api/v1/proxies"))["proxies"]
    assert [(x["id"], x["state"], x["epoch"]) for x in listed] == [("p0", "online", 5),
                                                                   ("p1", "online", 5)]
    # heartbeats reply with the current epoch
    assert (await proxies[0].register(dash.url))["epoch"] == 5


async def test_unreachable_proxy_fails_the_change_and_it_is_rolled_back(
        dash, proxies, redis_servers) -> None:
    api = AsyncHttp(dash.url)
    for p in proxies:
        await p.register(dash.url)
    await setup_groups(api, redis_servers)
    before = await api.get("/api/v1/topology")
    await proxies[1].stop()  # dies without telling anyone

    status, err = await api.call("POST", "/api/v1/slots/assign",
                                 {"assign": [{"slots": "0-100", "group": 2}], "force": True})
    assert status == 502
    assert "proxy p1" in err["error"] and proxies[1].admin in err["error"]
    assert "rolled back" in err["error"]
    after = await api.get("/api/v1/topology")
    assert after["ranges"] == before["ranges"]          # content unchanged ...
    assert after["epoch"] == before["epoch"] + 2         # ... under a newer epoch
    # the live proxy saw the change and then the rollback: it routes like the store says
    assert proxies[0].slotmap is not None
    assert proxies[0].slotmap.epoch == after["epoch"]
    assert proxies[0].slotmap.to_json() == await api.get("/api/v1/slotmap")
    states = {x["id"]: x["state"] for x in (await api.get("/api/v1/proxies"))["proxies"]}
    assert states == {"p0": "online", "p1": "unreachable"}

    # removing an unreachable proxy must be explicit (it may still be running, partitioned)
    status, err = await api.call("DELETE", "/api/v1/proxies/p1")
    assert status == 409 and "make sure it is stopped" in err["error"]
    # the operator made sure it is stopped and removes it with force; changes work again
    await api.ok("DELETE", "/api/v1/proxies/p1?force=1")
    status, err = await api.call("DELETE", "/api/v1/proxies/p1?force=1")
    assert status == 404 and "unknown proxy" in err["error"]
    done = await api.ok("POST", "/api/v1/slots/assign",
                        {"assign": [{"slots": "0-100", "group": 2}], "force": True})
    assert done["ranges"][0] == [0, 100, 2]
    assert proxies[0].slotmap.owner[50] == 2


@pytest.mark.parametrize("kind", ["file", "etcd"])
async def test_restart_keeps_topology_and_resyncs_proxies(kind, tmp_path, proxies, redis_servers,
                                                          keys, request):
    if kind == "file":
        store_cfg = StoreConfig(path=str(tmp_path / "store"))
    else:
        store_cfg = StoreConfig(kind="etcd", endpoints=(request.getfixturevalue("etcd_url"),))
    first = await DashboardServer(store_cfg=store_cfg, cluster=keys.cluster).start()
    api = AsyncHttp(first.url)
    await proxies[0].register(first.url)
    await setup_groups(api, redis_servers)
    before = await api.get("/api/v1/topology")
    await first.stop()

    await proxies[0].stop()  # the restarted dashboard must not wait for the dead one
    second = await DashboardServer(store_cfg=store_cfg, cluster=keys.cluster).start()
    try:
        after = await AsyncHttp(second.url).get("/api/v1/topology")
        for field in ("epoch", "ranges", "slots", "unassigned", "migrations"):
            assert after[field] == before[field], field
        assert [(g["id"], g["master"], g["replicas"]) for g in after["groups"]] == \
               [(g["id"], g["master"], g["replicas"]) for g in before["groups"]]
        assert [p["id"] for p in after["proxies"]] == ["p0"]
        # on taking over it re-pushed the map: the proxy that is gone shows as unreachable
        assert after["proxies"][0]["state"] == "unreachable"
    finally:
        await second.stop()


async def test_second_dashboard_on_one_file_store_is_a_standby(tmp_path, redis_servers):
    store_cfg = StoreConfig(path=str(tmp_path / "store"))
    leader = await DashboardServer(store_cfg=store_cfg).start()
    standby = await DashboardServer(store_cfg=store_cfg).start(wait_leader=False)
    try:
        await AsyncHttp(leader.url).ok("POST", "/api/v1/groups", {"id": 1,
                                                            "master": redis_servers[0].addr})
        sapi = AsyncHttp(standby.url)
        topo = await sapi.get("/api/v1/topology")  # reads work on a standby
        assert topo["dashboard"]["role"] == "standby"
        assert [g["id"] for g in topo["groups"]] == [1]
        assert topo["dashboard"]["leader"]["url"] == leader.url
        status, err = await sapi.call("POST", "/api/v1/groups", {"id": 2})
        assert status == 503 and "standby" in err["error"] and leader.url in err["error"]
        await leader.stop()
        await asyncio.wait_for(standby.dashboard.leading.wait(), 5)
        await sapi.ok("POST", "/api/v1/groups", {"id": 2})
        assert [g["id"] for g in (await sapi.get("/api/v1/groups"))["groups"]] == [1, 2]
    finally:
        await standby.stop()
        await leader.stop()


async def test_openapi_describes_every_route(dash) -> None:
    from dashboard.api.routes import ENDPOINTS
    spec = await AsyncHttp(dash.url).get("/api/openapi.json")
    assert spec["openapi"].startswith("3.")
    served = {(r.method, r.path) for r in ENDPOINTS}
    described = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert served == described
    assert {r.resource.canonical for r in dash.app.router.routes()} == {p for _, p in served}
    assign = spec["paths"]["/api/v1/slots/assign"]["post"]
    assert assign["security"] == [{"bearer": []}]
    assert "security" not in spec["paths"]["/api/v1/slotmap"]["get"]
