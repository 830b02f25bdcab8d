"""The migration and rebalance API in process (no proxies registered: pushes are trivially
acknowledged; redis is never reached because nothing is allowed to start here)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from dashboard.config import StoreConfig
from tests.harness import AsyncHttp
from tests.harness.inproc import DashboardServer


@pytest.fixture
async def api(tmp_path) -> AsyncIterator[AsyncHttp]:
    server = DashboardServer(store_cfg=StoreConfig(path=str(tmp_path / "store")), slots=1024,
                             migration={"paused": True})
    await server.start()
    a = AsyncHttp(server.url)
    await a.ok("POST", "/api/v1/groups", {"id": 1, "master": "127.0.0.1:1"})
    await a.ok("POST", "/api/v1/groups", {"id": 2, "master": "127.0.0.1:2"})
    await a.ok("POST", "/api/v1/slots/assign", {"assign": [{"slots": "0-1023", "group": 1}]})
    try:
        yield a
    finally:
        await server.stop()


async def test_start_validation_and_status(api: AsyncHttp) -> None:
    for body, status, text in [
        ({}, 400, "required"),
        ({"slots": "5-2", "to": 2}, 400, "start > end"),
        ({"slots": "0-2000", "to": 2}, 400, "outside"),
        ({"slots": "0-9", "to": 7}, 404, "unknown group 7"),
    ]:
        code, err = await api.call("POST", "/api/v1/migrations", body)
        assert code == status and text in err["error"], (body, code, err)
    code, _ = await api.call("POST", "/api/v1/migrations", {"slots": "0-9", "to": 2}, token=None)
    assert code == 401
    started = await api.ok("POST", "/api/v1/migrations", {"slots": "0-9,20", "to": 2})
    assert started["count"] == 11 and started["queued"] == "0-9,20"
    code, err = await api.call("POST", "/api/v1/migrations", {"slots": "5", "to": 2})
    assert code == 409 and "already migrating" in err["error"]
    m = await api.get("/api/v1/migrations")
    assert m["status"] == "paused" and m["states"] == {"pending": 11}
    assert [s["slot"] for s in m["slots"]][:3] == [0, 1, 2]
    assert m["slots"][0]["from"] == 1 and m["slots"][0]["to"] == 2
    # assignment is refused while slots migrate; so is removing a group taking part
    code, err = await api.call("POST", "/api/v1/slots/assign",
                               {"assign": [{"slots": "0", "group": 2}], "force": True})
    assert code == 409
    # the stored topology and the pushed map show it
    slots = await api.get("/api/v1/slots")
    assert slots["migrations"]["0"] == {"state": "pending", "source": 1, "target": 2}
    cancelled = await api.ok("POST", "/api/v1/migrations/cancel", {})
    assert cancelled["cancelled"] == "0-9,20" and cancelled["finishing"] == ""
    assert (await api.get("/api/v1/migrations"))["slots"] == []


async def test_settings(api: AsyncHttp) -> None:
    out = await api.ok("PUT", "/api/v1/migrations/settings",
                       {"keys_per_sec": 1000, "batch_size": 50})
    assert out["settings"]["keys_per_sec"] == 1000 and out["settings"]["batch_size"] == 50
    for body in ({"bogus": 1}, {"batch_size": 0}, {"paused": "yes"}, {"keys_per_sec": "x"}):
        code, err = await api.call("PUT", "/api/v1/migrations/settings", body)
        assert code == 400, (body, err)
    m = await api.get("/api/v1/migrations")
    assert m["settings"]["keys_per_sec"] == 1000


async def test_rebalance_plan_and_weights(api: AsyncHttp) -> None:
    plan = await api.ok("POST", "/api/v1/rebalance", {})
    assert plan["dry_run"] is True
    assert plan["plan"]["moves"] == [{"from": 1, "to": 2, "slots": "512-1023", "count": 512}]
    assert (await api.get("/api/v1/migrations"))["slots"] == []  # a dry run starts nothing
    await api.ok("PUT", "/api/v1/groups/2/weight", {"weight": 3})
    plan = await api.ok("POST", "/api/v1/rebalance", {})
    assert plan["plan"]["after"] == {"1": {"slots": 256}, "2": {"slots": 768}}
    plan = await api.ok("POST", "/api/v1/rebalance", {"weights": {"2": 1}, "drain": [2]})
    assert plan["plan"]["moves"] == []  # group 2 drained: everything stays on 1
    code, err = await api.call("POST", "/api/v1/rebalance", {"drain": [1, 2]})
    assert code == 409 and "weight above 0" in err["error"]
    code, err = await api.call("POST", "/api/v1/rebalance", {"mode": "bogus"})
    assert code == 400
    started = await api.ok("POST", "/api/v1/rebalance", {"dry_run": False})
    assert started["started"]["count"] == 768
    assert (await api.get("/api/v1/migrations"))["states"] == {"pending": 768}


async def test_openapi_lists_the_new_calls(api: AsyncHttp) -> None:
    spec = await api.get("/api/openapi.json")
    for path in ("/api/v1/migrations", "/api/v1/migrations/cancel",
                 "/api/v1/migrations/settings", "/api/v1/rebalance",
                 "/api/v1/groups/{gid}/weight"):
        assert path in spec["paths"], path
    assert "transit" in spec["components"]["schemas"]["SlotMap"]["properties"]
