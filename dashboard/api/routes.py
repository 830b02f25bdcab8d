"""The REST API's endpoint table and its handlers.

Conventions: every response is JSON; errors are a real HTTP status with {"error": "..."};
every non-GET call needs `Authorization: Bearer <admin_token>`; reads need no token (they are
what monitoring and `proxyctl status` use). The endpoint table below is also the source of the
OpenAPI description (`openapi.py`), so the two cannot drift apart.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from slotcore.contract import DASHBOARD_REGISTER, DASHBOARD_SLOTMAP
from slotcore.ranges import format_ranges, parse_ranges

from ..control.plane import ControlPlane
from ..errors import InvalidRequest, NotFound
from ..model import changes as topo_ops
from ..model import replication as rep
from ..model.records import Topology
from ..observe.health import group_health
from ..observe.overview import overview
from ..ui import STATIC
from . import openapi
from .services import (
    AUTOBALANCE,
    CONFIG,
    HEALTH,
    LIVE,
    MIGRATOR,
    PLANE,
    PROMOTER,
    REBALANCER,
    REPLICATION,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _plane(request: web.Request) -> ControlPlane:
    return request.app[PLANE]


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidRequest("request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidRequest("request body must be a JSON object")
    return data


def _gid(request: web.Request) -> int:
    return topo_ops.check_gid(request.match_info["gid"])


def _changed(topo: Topology, **extra: Any) -> dict[str, Any]:
    return {"epoch": topo.epoch, **extra}


# -- handlers ----------------------------------------------------------------------------------


async def get_topology(request: web.Request) -> web.Response:
    return web.json_response(await overview(request.app[PLANE], request.app[HEALTH]))


async def list_groups(request: web.Request) -> web.Response:
    topo = await _plane(request).topology()
    return web.json_response({"epoch": topo.epoch, "groups": [
        topo_ops.group_view(topo, gid) for gid in sorted(topo.groups)]})


async def get_group(request: web.Request) -> web.Response:
    topo = await _plane(request).topology()
    gid = _gid(request)
    view = topo_ops.group_view(topo, gid)
    view["health"] = group_health(topo, request.app[HEALTH].servers)[str(gid)]
    return web.json_response(view)


async def create_group(request: web.Request) -> web.Response:
    body = await _body(request)
    replicas = body.get("replicas") or []
    if not isinstance(replicas, list):
        raise InvalidRequest("'replicas' must be a list of 'host:port'")
    gid = body.get("id")
    if gid is not None:
        gid = topo_ops.check_gid(gid)
    topo, created, sync = await request.app[REPLICATION].create_group(
        gid, body.get("master"), replicas, force=_flag(body, "force", False),
        replicate=_flag(body, "replicate", True))
    return web.json_response(_changed(topo, group=topo_ops.group_view(topo, created),
                                      sync=sync), status=201)


def _flag(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise InvalidRequest(f"'{name}' must be true or false")
    return value


def _query_flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "") in ("1", "true", "yes")


async def delete_group(request: web.Request) -> web.Response:
    gid = _gid(request)
    topo = await _plane(request).change(lambda t: topo_ops.remove_group(t, gid))
    return web.json_response(_changed(topo, removed=gid))


async def add_server(request: web.Request) -> web.Response:
    """A replica is made to replicate (REPLICAOF) before it is recorded; the reply carries
    its sync state, which GET .../servers/{addr}/sync follows (see replication/servers.py)."""
    gid = _gid(request)
    body = await _body(request)
    if "addr" not in body:
        raise InvalidRequest("'addr' (host:port) is required")
    topo, sync = await request.app[REPLICATION].add_server(
        gid, body["addr"], body.get("role"), force=_flag(body, "force", False),
        replicate=_flag(body, "replicate", True))
    return web.json_response(_changed(topo, group=topo_ops.group_view(topo, gid), sync=sync),
                             status=201)


async def remove_server(request: web.Request) -> web.Response:
    gid = _gid(request)
    addr = request.match_info["addr"]
    detach = _query_flag(request, "detach")
    topo = await request.app[REPLICATION].remove_server(gid, addr, detach=detach)
    return web.json_response(_changed(topo, group=topo_ops.group_view(topo, gid),
                                      detached=detach))


async def server_sync(request: web.Request) -> web.Response:
    gid = _gid(request)
    raw = request.query.get("offset")
    try:
        target = int(raw) if raw not in (None, "") else None
    except ValueError:
        raise InvalidRequest("'offset' must be an integer replication offset") from None
    return web.json_response(await request.app[REPLICATION].sync(
        gid, request.match_info["addr"], target))


async def promote(request: web.Request) -> web.Response:
    gid = _gid(request)
    body = await _body(request)
    if "addr" not in body:
        raise InvalidRequest("'addr' (host:port of a replica of the group) is required")
    timeout = body.get("timeout")
    if timeout is not None and (isinstance(timeout, bool)
                                or not isinstance(timeout, int | float) or timeout <= 0):
        raise InvalidRequest("'timeout' must be a number of seconds > 0")
    return web.json_response(await request.app[PROMOTER].promote(
        gid, body["addr"], None if timeout is None else float(timeout)))


async def group_config(request: web.Request) -> web.Response:
    gid = _gid(request)
    knobs = rep.parse_knobs(await _body(request))
    topo = await request.app[REPLICATION].set_config(gid, knobs,
                                                     force=_query_flag(request, "force"))
    return web.json_response(_changed(topo, group=topo_ops.group_view(topo, gid)))


async def get_slots(request: web.Request) -> web.Response:
    topo = await _plane(request).topology()
    unassigned = [s for s, g in enumerate(topo.owner) if g == 0]
    return web.json_response({
        "epoch": topo.epoch, "slots": topo.nslots,
        "ranges": [list(r) for r in topo.ranges()],
        "unassigned": format_ranges(unassigned),
        "migrations": {str(s): m.to_json() for s, m in sorted(topo.migrations.items())},
    })


async def assign_slots(request: web.Request) -> web.Response:
    body = await _body(request)
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise InvalidRequest("'force' must be true or false")

    def apply(t: Topology) -> Topology:
        return topo_ops.assign_slots(t, topo_ops.parse_assignments(t, body.get("assign")), force)

    topo = await _plane(request).change(apply)
    return web.json_response(_changed(topo, ranges=[list(r) for r in topo.ranges()]))


async def get_slotmap(request: web.Request) -> web.Response:
    plane = _plane(request)
    topo = await plane.topology()
    # The leader adds the live proxies (what it pushes); a standby does not know them.
    return web.json_response(plane.slot_map_json(topo) if plane.leading.is_set()
                             else topo.slot_map().to_json())


async def list_proxies(request: web.Request) -> web.Response:
    return web.json_response({"proxies": await _plane(request).proxy_views()})


async def register_proxy(request: web.Request) -> web.Response:
    body = await _body(request)
    pid = body.get("id")
    if not isinstance(pid, str) or not pid or len(pid) > 200 or "/" in pid:
        raise InvalidRequest("'id' must be a non-empty string without '/'")
    if not body.get("admin"):
        raise InvalidRequest(f"proxy {pid}: 'admin' is required (the dashboard pushes "
                                      "slot maps there; configure admin_listen on the proxy)")
    addr = topo_ops.check_addr(body.get("addr"))
    admin = topo_ops.check_addr(body.get("admin"))
    plane = _plane(request)
    epoch = plane.register(pid, addr, admin)
    return web.json_response({"epoch": epoch, "members": plane.members_digest()})


async def remove_proxy(request: web.Request) -> web.Response:
    force = request.query.get("force", "") in ("1", "true", "yes")
    rec = await _plane(request).remove_proxy(request.match_info["proxy_id"], force=force)
    return web.json_response({"removed": rec.id})


# -- migration and rebalance -------------------------------------------------------------------


async def get_migrations(request: web.Request) -> web.Response:
    topo = await _plane(request).topology()
    return web.json_response({"epoch": topo.epoch, **request.app[MIGRATOR].view(topo)})


async def start_migration(request: web.Request) -> web.Response:
    body = await _body(request)
    topo = _plane(request).require_leader()
    if "slots" not in body or "to" not in body:
        raise InvalidRequest("'slots' (e.g. \"0-1023,2048\") and 'to' (group id) "
                                      "are required")
    try:
        slots = parse_ranges(str(body["slots"]), topo.nslots)
    except ValueError as e:
        raise InvalidRequest(str(e)) from None
    target = topo_ops.check_gid(body["to"])
    return web.json_response(await request.app[MIGRATOR].start(slots, target), status=201)


async def cancel_migration(request: web.Request) -> web.Response:
    _plane(request).require_leader()
    return web.json_response(await request.app[MIGRATOR].cancel())


async def migration_settings(request: web.Request) -> web.Response:
    body = await _body(request)
    _plane(request).require_leader()
    try:
        settings = await request.app[MIGRATOR].update_settings(body)
    except ValueError as e:
        raise InvalidRequest(str(e)) from None
    return web.json_response({"settings": settings})


async def rebalance(request: web.Request) -> web.Response:
    body = await _body(request)
    dry_run = body.get("dry_run", True)
    mode = body.get("mode", "count")
    weights = body.get("weights") or {}
    drain = body.get("drain") or []
    if not isinstance(dry_run, bool):
        raise InvalidRequest("'dry_run' must be true or false")
    if not isinstance(weights, dict) or not isinstance(drain, list):
        raise InvalidRequest("'weights' must be {gid: weight}, 'drain' a list of gids")
    try:
        w = {topo_ops.check_gid(g): float(v) for g, v in weights.items()}
    except (TypeError, ValueError):
        raise InvalidRequest("weights must be numbers") from None
    out = await request.app[REBALANCER].rebalance(
        mode=mode, dry_run=dry_run, weights=w, drain=[topo_ops.check_gid(g) for g in drain],
        sample_seconds=float(body.get("sample_seconds", 1.0)),
        tolerance=float(body.get("tolerance", 0.05)))
    return web.json_response(out)


async def set_weight(request: web.Request) -> web.Response:
    gid = _gid(request)
    body = await _body(request)
    weight = body.get("weight")
    if isinstance(weight, bool) or not isinstance(weight, int | float):
        raise InvalidRequest("'weight' must be a number >= 0")
    topo = await request.app[REBALANCER].set_weight(gid, float(weight))
    return web.json_response(_changed(topo, group=topo_ops.group_view(topo, gid)))


async def get_health(request: web.Request) -> web.Response:
    topo = await _plane(request).topology()
    return web.json_response({"groups": group_health(topo, request.app[HEALTH].servers)})


# -- auto-balance (dashboard/balance/) ---------------------------------------------------------


async def get_autobalance(request: web.Request) -> web.Response:
    try:
        rounds = int(request.query.get("rounds", 20))
    except ValueError:
        raise InvalidRequest("'rounds' must be a whole number") from None
    if not 0 <= rounds <= 1000:
        raise InvalidRequest("'rounds' must be from 0 to 1000")
    return web.json_response(await request.app[AUTOBALANCE].status(rounds))


async def set_autobalance(request: web.Request) -> web.Response:
    body = await _body(request)
    settings = await request.app[AUTOBALANCE].update(body)
    return web.json_response({"settings": settings})


# -- what the web page needs (dashboard/ui/) ---------------------------------------------------


def _seconds(request: web.Request, name: str, default: float, top: float) -> float:
    try:
        value = float(request.query.get(name, default))
    except ValueError:
        raise InvalidRequest(f"'{name}' must be a number of seconds") from None
    return min(max(value, 0.0), top)


async def check_auth(request: web.Request) -> web.Response:
    """A GET (no token needed to call it) telling the page whether its token is the admin's."""
    token = request.app[CONFIG].admin_token
    given = request.headers.get("Authorization", "").encode()
    admin = bool(token) and hmac.compare_digest(given, f"Bearer {token}".encode())
    return web.json_response({"admin": admin, "token_configured": bool(token)})


async def get_metrics(request: web.Request) -> web.Response:
    live = request.app[LIVE]
    seconds = _seconds(request, "seconds", 600, 600)
    return web.json_response({"interval": live.interval, "points": live.history(seconds)})


async def get_slot_stats(request: web.Request) -> web.Response:
    sample = _seconds(request, "sample_seconds", 1.0, 5.0)
    return web.json_response(await request.app[LIVE].slot_stats(max(sample, 0.2)))


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: a `snapshot` event about once a second until either side leaves."""
    live = request.app[LIVE]
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                       "Cache-Control": "no-cache",
                                       "X-Accel-Buffering": "no"})
    await resp.prepare(request)
    q = live.subscribe()
    try:
        await resp.write(b"retry: 2000\n\n")
        message = live.snapshot  # None only in the first second after startup
        while not live.closed:
            if message is not None:
                await resp.write(f"event: snapshot\ndata: {message}\n\n".encode())
            message = await q.get()
            if message is None:  # shutdown
                break
    except (ConnectionResetError, ConnectionError):
        pass  # the page went away
    finally:
        live.unsubscribe(q)
    return resp


_ASSET_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml",
                ".html": "text/html", ".txt": "text/plain", ".png": "image/png"}


def _asset(name: str) -> web.FileResponse:
    path = STATIC / name
    # Flat directory, plain names only: nothing outside dashboard/ui/static can be named.
    if (not name or name.startswith(".") or "/" in name or "\\" in name
            or path.suffix not in _ASSET_TYPES or not path.is_file()):
        raise NotFound(f"no such file: /ui/{name}")
    # no-cache = revalidate (ETag/Last-Modified): an upgraded dashboard serves its new page.
    return web.FileResponse(path, headers={"Cache-Control": "no-cache",
                                           "Content-Type": _ASSET_TYPES[path.suffix]})


async def index(request: web.Request) -> web.FileResponse:
    return _asset("index.html")


async def ui_asset(request: web.Request) -> web.FileResponse:
    return _asset(request.match_info["name"])


async def get_openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi.spec(ENDPOINTS))


# -- endpoint table ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One HTTP method and path of the API, its handler and what the OpenAPI document says."""

    method: str
    path: str
    handler: Handler
    summary: str
    body: str | None = None  # name of the request schema in openapi.SCHEMAS

    @property
    def needs_token(self) -> bool:
        return self.method != "GET"


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("GET", "/", index, "The web page (HTML; read-only until logged in with the token)"),
    Endpoint("GET", "/ui/{name}", ui_asset, "The web page's own JS, CSS and icons (no CDN)"),
    Endpoint("GET", "/api/openapi.json", get_openapi, "This OpenAPI description"),
    Endpoint("GET", "/api/v1/topology", get_topology,
          "Overview: dashboard role and leader, epoch, groups with slots and health, proxies"),
    Endpoint("GET", "/api/v1/groups", list_groups, "All groups with their slot ranges"),
    Endpoint("POST", "/api/v1/groups", create_group, "Create a group", "GroupCreate"),
    Endpoint("GET", "/api/v1/groups/{gid}", get_group, "One group, with server health"),
    Endpoint("DELETE", "/api/v1/groups/{gid}", delete_group,
          "Delete a group (refused while it owns slots)"),
    Endpoint("POST", "/api/v1/groups/{gid}/servers", add_server,
          "Add a server (master if the group has none, else replica: REPLICAOF the master, "
          "then recorded; the reply's `sync` starts its sync state)", "ServerAdd"),
    Endpoint("DELETE", "/api/v1/groups/{gid}/servers/{addr}", remove_server,
          "Remove a server (a master only when the group owns no slots); ?detach=1 also "
          "issues REPLICAOF NO ONE on it (without, a replica keeps replicating)"),
    Endpoint("GET", "/api/v1/groups/{gid}/servers/{addr}/sync", server_sync,
          "A replica's sync state: connecting, syncing (bytes read), catching-up, in-sync "
          "(its offset reached ?offset=N, default the master's offset now)"),
    Endpoint("POST", "/api/v1/groups/{gid}/promote", promote,
          "Switch the group's master to one of its replicas with no acknowledged write lost: "
          "lock its slots, wait for the replica to catch up, REPLICAOF, push, unlock",
          "Promote"),
    Endpoint("PUT", "/api/v1/groups/{gid}/config", group_config,
          "Set min-replicas-to-write / min-replicas-max-lag on the group's master (CONFIG "
          "SET), kept for every master it gets later; refused when the master has too few "
          "replicas online to meet it, unless ?force=1", "GroupConfig"),
    Endpoint("GET", "/api/v1/slots", get_slots, "Slot ranges per group and migration state"),
    Endpoint("POST", "/api/v1/slots/assign", assign_slots,
          "Assign slot ranges to groups without moving data (refused while migrating)",
          "SlotAssign"),
    Endpoint("GET", DASHBOARD_SLOTMAP, get_slotmap,
          "The current slot map as proxies consume it (no auth)"),
    Endpoint("GET", "/api/v1/proxies", list_proxies, "Registered proxies"),
    Endpoint("POST", DASHBOARD_REGISTER, register_proxy,
          "Proxy registration and heartbeat; replies with the current epoch", "ProxyRegister"),
    Endpoint("DELETE", "/api/v1/proxies/{proxy_id}", remove_proxy,
          "Forget a proxy; one that cannot be reached only with ?force=1 (make sure it is "
          "stopped: a live proxy with an old map could write moved keys)"),
    Endpoint("GET", "/api/v1/migrations", get_migrations,
          "Migration status: per-slot state, keys/bytes moved, rate, ETA, big keys, settings"),
    Endpoint("POST", "/api/v1/migrations", start_migration,
          "Queue slots to migrate to a group (pending; batches start by themselves)",
          "MigrationStart"),
    Endpoint("POST", "/api/v1/migrations/cancel", cancel_migration,
          "Stop new slots: pending/locked slots stay on their source, migrating ones finish"),
    Endpoint("PUT", "/api/v1/migrations/settings", migration_settings,
          "Change throttling and limits while running (batch_size, keys_per_sec, ...)",
          "MigrationSettings"),
    Endpoint("POST", "/api/v1/rebalance", rebalance,
          "Plan (dry_run, the default) or start a rebalance by slot count or measured load",
          "Rebalance"),
    Endpoint("PUT", "/api/v1/groups/{gid}/weight", set_weight,
          "Set a group's rebalance weight (0 = drain)", "GroupWeight"),
    Endpoint("GET", "/api/v1/health", get_health, "Per-group server health and stats"),
    Endpoint("GET", "/api/v1/autobalance", get_autobalance,
          "Auto-balance: settings, slots moved in the last hour and the last ?rounds=20 "
          "rounds (measured imbalance per group, plan, why it acted or did not)"),
    Endpoint("PUT", "/api/v1/autobalance", set_autobalance,
          "Switch auto-balance on/off and change its settings (validated; stored)",
          "AutoBalanceSettings"),
    Endpoint("GET", "/api/v1/auth", check_auth,
          "Whether the request's bearer token is the admin token (the web page's login)"),
    Endpoint("GET", "/api/v1/metrics", get_metrics,
          "Chart points, one a second for up to ?seconds=600: ops/s and PING latency (ms) per "
          "group master and per proxy"),
    Endpoint("GET", "/api/v1/slots/stats", get_slot_stats,
          "Keys, memory and ops/s per slot (SCAN or sampling of every group, plus proxy slot "
          "counters over ?sample_seconds=1); cached for 5 s"),
    Endpoint("GET", "/api/v1/events", events,
          "Server-sent events: a `snapshot` about once a second with {overview, migrations, "
          "point} (the bodies of /topology, /migrations and one /metrics point)"),
)
