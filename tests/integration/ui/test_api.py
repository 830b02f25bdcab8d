"""The read endpoints and the event stream the web page is built on (no browser here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.harness import TOKEN, DashboardProcess, Http, until
from tests.harness.cluster import Cluster


def fetch(url: str, token: str | None = None) -> tuple[int, str, bytes]:
    resp = Http(url, token).request("GET", "")
    return resp.status, resp.content_type, resp.body


def first_snapshot(url: str) -> dict[str, Any]:
    with Http(url, None).stream("/api/v1/events") as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        event = None
        for raw in resp:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "snapshot":
                return json.loads(line[6:])
    raise AssertionError("stream ended without a snapshot")


def test_page_and_assets_are_served_by_the_dashboard(cluster: Cluster) -> None:
    url = cluster.dash.url
    status, ctype, body = fetch(url + "/")
    assert status == 200 and ctype.startswith("text/html")
    assert b"/ui/app.js" in body and b"https://" not in body  # nothing from a CDN
    for name, kind in [("app.js", "text/javascript"), ("app.css", "text/css"),
                       ("favicon.svg", "image/svg+xml")]:
        status, ctype, body = fetch(f"{url}/ui/{name}")
        assert status == 200 and ctype.startswith(kind) and body, name
    for bad in ["/ui/nope.js", "/ui/..%2F__init__.py", "/ui/.hidden.js", "/ui/live.py"]:
        status, ctype, body = fetch(url + bad)
        assert status == 404, bad
        assert "error" in json.loads(body)


def test_auth_check_tells_admin_from_read_only(cluster: Cluster) -> None:
    url = cluster.dash.url + "/api/v1/auth"
    assert json.loads(fetch(url)[2]) == {"admin": False, "token_configured": True}
    assert json.loads(fetch(url, "wrong")[2])["admin"] is False
    assert json.loads(fetch(url, TOKEN)[2])["admin"] is True


def test_metrics_hold_ops_and_latency_per_group_and_proxy(cluster: Cluster) -> None:
    def points() -> list[dict[str, Any]]:
        body = cluster.dash.get("/api/v1/metrics?seconds=60")
        pts = [p for p in body["points"] if p["proxies"].get("proxy-0", {}).get("ops")]
        return pts if len(pts) >= 2 else []

    pts = until(points, 15, "chart points with proxy ops")
    last = pts[-1]
    assert set(last["groups"]) >= {"1", "2"}
    assert all(g["latency_ms"] is not None and g["latency_ms"] >= 0
               for g in last["groups"].values())
    assert last["proxies"]["proxy-0"]["latency_ms"] is not None
    assert pts == sorted(pts, key=lambda p: p["t"])
    status, body = cluster.dash.call("GET", "/api/v1/metrics?seconds=abc")
    assert status == 400 and "seconds" in body["error"]


def test_slot_stats_count_keys_and_ops_per_slot(cluster: Cluster) -> None:
    stats = until(lambda: (s := cluster.dash.get("/api/v1/slots/stats?sample_seconds=0.5"))
                  and s["ops"] and sum(s["ops"]) > 0 and s, 20, "per-slot ops")
    assert stats["slots"] == 1024 and len(stats["keys"]) == 1024 and len(stats["ops"]) == 1024
    masters = sum(g["health"]["keys"] for g in cluster.dash.get("/api/v1/topology")["groups"])
    assert abs(sum(stats["keys"]) - masters) <= masters * 0.2 + 50  # traffic keeps writing


def test_event_stream_sends_snapshots(cluster: Cluster) -> None:
    snap = first_snapshot(cluster.dash.url)
    assert snap["overview"]["slots"] == 1024
    assert {g["id"] for g in snap["overview"]["groups"]} >= {1, 2}
    assert snap["migrations"]["status"] in ("idle", "running", "paused")
    assert "groups" in snap["point"] and "proxies" in snap["point"]


def test_openapi_lists_the_page_endpoints(cluster: Cluster) -> None:
    paths = cluster.dash.get("/api/openapi.json")["paths"]
    for p in ["/", "/ui/{name}", "/api/v1/auth", "/api/v1/metrics", "/api/v1/slots/stats",
              "/api/v1/events"]:
        assert "get" in paths[p], p
        assert "security" not in paths[p]["get"]


def test_open_event_stream_does_not_hold_up_shutdown(tmp_path: Path) -> None:
    dash = DashboardProcess(tmp_path, slots=1024,
                         store={"kind": "file", "path": str(tmp_path / "store")}).start()
    try:
        resp = Http(dash.url, None).stream("/api/v1/events")
        assert resp.readline().startswith(b"retry:")
        assert dash.process is not None
        # SIGTERM, then SIGKILL after 15 s. The dashboard ends open streams on shutdown; if the
        # stream held it up, aiohttp would wait its 60 s shutdown timeout and SIGKILL (-9)
        # would end it. Exit code 0 is the dashboard's own clean exit.
        rc = dash.process.stop(timeout=15.0)
        assert rc == 0, f"exit {rc} with a stream open"
        assert resp.read() is not None  # the stream ended cleanly (no hang)
    finally:
        dash.stop()
