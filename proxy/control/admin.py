"""The proxy's small admin HTTP API: the only way into a proxy from the control plane.

GET  /api/info    identity, addresses, epoch, whether it has a slot map
GET  /api/stats   clients, commands, ops/s, per-group backend counters (?slots=1: ops per slot)
GET  /api/slots   the slot map in force (slotcore.slotmap.SlotMap JSON)
PUT  /api/slots   switch to a new slot map (token required when one is configured)
GET  /api/slowlog the proxy's slow log, newest first (?count=N, default all)
GET  /api/latency the latency histograms by command and by group (fixed power-of-two buckets)
GET  /metrics     Prometheus text format (proxy.observe.metrics)
GET  /api/hotkeys the sampled top-k keys of the current and the last window (?limit=N)

A worker process (`workers: N`, proxy/workers/) serves the same API on a private Unix socket,
to its supervisor only, plus POST /api/contact: the supervisor heard from the dashboard (the
worker's fence against a lost dashboard counts from there).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Protocol

from aiohttp import web

from slotcore.contract import (
    PROXY_HOTKEYS,
    PROXY_INFO,
    PROXY_LATENCY,
    PROXY_METRICS,
    PROXY_SLOTS,
    PROXY_SLOWLOG,
    PROXY_STATS,
)
from slotcore.slotmap import SlotMap, StaleSlotMap

from .. import __version__
from ..client.context import Services
from ..observe import histogram
from ..observe.meter import Timings
from ..observe.metrics import CONTENT_TYPE, exposition
from ..report import stats_json

ApplySlotMap = Callable[[SlotMap], Awaitable[None]]
Identity = Callable[[], dict]
WORKER_CONTACT = "/api/contact"


def authorized(request: web.Request, token: str | None) -> bool:
    """The request carries `Authorization: Bearer <token>` (anything goes without a token)."""
    if not token:
        return True
    header = request.headers.get("Authorization", "")
    return header.startswith("Bearer ") and hmac.compare_digest(header[7:], token)


class AdminServer:
    def __init__(self, services: Services, apply: ApplySlotMap, identity: Identity,
                 unix_path: str | None = None) -> None:
        self.services = services
        self.apply = apply
        self.identity = identity
        self.unix_path = unix_path  # a worker's control socket instead of admin_listen
        self.runner: web.AppRunner | None = None
        self.port = 0

    def _authorized(self, request: web.Request) -> bool:
        return authorized(request, self.services.cfg.admin_token)

    async def post_contact(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(401, "missing or wrong admin token")
        self.services.router.transit.touch_contact()
        return web.json_response({"epoch": self.services.router.epoch})

    async def get_info(self, request: web.Request) -> web.Response:
        return web.json_response(self.identity())

    async def get_stats(self, request: web.Request) -> web.Response:
        stats = stats_json(self.services)
        if request.query.get("slots") in ("1", "true"):
            # Cumulative ops per slot since start: the dashboard's load-aware rebalance input.
            stats["slot_ops"] = list(self.services.stats.slot_ops)
        return web.json_response(stats)

    async def get_metrics(self, request: web.Request) -> web.Response:
        body = exposition(self.services, __version__)
        resp = web.Response(body=body)
        resp.headers["Content-Type"] = CONTENT_TYPE  # with its version= parameter
        return resp

    async def get_latency(self, request: web.Request) -> web.Response:
        meter = self.services.stats.meter

        def one(t: Timings) -> dict:
            return {"count": t.count, "failed": t.failed, "sum_us": t.sum_ns // 1000,
                    "buckets": list(t.buckets)}

        return web.json_response({
            "proxy_id": self.services.cfg.resolved_proxy_id(),
            "bounds_us": list(histogram.BOUNDS_US),
            "sample_every": meter.every if meter.enabled else 0,
            "commands": {name: one(t) for name, t in meter.commands.items()},
            "groups": {gid: one(t) for gid, t in meter.groups.items()},
        })

    async def get_slowlog(self, request: web.Request) -> web.Response:
        # The arguments of clients' commands (values included): admin token, as Redis's
        # SLOWLOG is an admin command.
        if not self._authorized(request):
            return _error(401, "missing or wrong admin token")
        try:
            count = slowlog_count(request)
        except BadQuery as e:
            return _error(400, str(e))
        log = self.services.stats.meter.slowlog
        return web.json_response({
            "proxy_id": self.services.cfg.resolved_proxy_id(),
            "slower_than_us": log.slower_than, "max_len": log.max_len, "length": len(log),
            "entries": [e.to_json() for e in log.get(count)],
        })

    async def get_slots(self, request: web.Request) -> web.Response:
        sm = self.services.router.slotmap
        if sm is None:
            return _error(404, "this proxy has no slot map yet")
        return web.json_response(sm.to_json())

    async def put_slots(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(401, "missing or wrong admin token")
        router = self.services.router
        try:
            body = await request.json()
            slotmap = SlotMap.from_json(body)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            return _error(400, f"invalid slot map: {e}")
        if router.slotmap is not None and slotmap.epoch < router.epoch:
            return _error(409, f"stale epoch {slotmap.epoch}: proxy is at epoch {router.epoch}")
        try:
            await self.apply(slotmap)
        except StaleSlotMap as e:  # lost a race with a newer push, or another slot count
            return _error(409 if "stale" in str(e) else 400, str(e))
        except ValueError as e:  # e.g. a group address that is not host:port
            return _error(400, f"invalid slot map: {e}")
        return web.json_response({"epoch": router.epoch})

    async def get_hotkeys(self, request: web.Request) -> web.Response:
        try:
            limit = hotkeys_limit(request)
        except BadQuery as e:
            return _error(400, str(e))
        router = self.services.router

        def group_of(slot: int) -> int | None:
            # The slot's owner in the map in force (a slot in transit: as the map lists it).
            sm = router.slotmap
            gid = sm.owner[slot] if sm is not None and slot < len(sm.owner) else 0
            return gid or None

        return web.json_response(self.services.hotkeys.report(limit, group_of))

    async def start(self) -> None:
        app = web.Application()
        add_proxy_routes(app, self)
        add_observe_routes(app, self)
        self.runner = web.AppRunner(app, access_log=None)
        if self.unix_path is not None:
            app.router.add_post(WORKER_CONTACT, self.post_contact)
            await self.runner.setup()
            await web.UnixSite(self.runner, self.unix_path).start()
            return
        assert self.services.cfg.admin_listen is not None
        self.port = await start_tcp(self.runner, *self.services.cfg.admin_listen)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


class ProxyRoutes(Protocol):
    """The four handlers of a proxy's admin API (a proxy's, or a worker supervisor's)."""

    async def get_info(self, request: web.Request) -> web.Response: ...
    async def get_stats(self, request: web.Request) -> web.Response: ...
    async def get_slots(self, request: web.Request) -> web.Response: ...
    async def put_slots(self, request: web.Request) -> web.Response: ...


def add_proxy_routes(app: web.Application, h: ProxyRoutes) -> None:
    app.router.add_get(PROXY_INFO, h.get_info)
    app.router.add_get(PROXY_STATS, h.get_stats)
    app.router.add_get(PROXY_SLOTS, h.get_slots)
    app.router.add_put(PROXY_SLOTS, h.put_slots)


class ObserveRoutes(Protocol):
    async def get_slowlog(self, request: web.Request) -> web.Response: ...
    async def get_latency(self, request: web.Request) -> web.Response: ...
    async def get_metrics(self, request: web.Request) -> web.Response: ...
    async def get_hotkeys(self, request: web.Request) -> web.Response: ...


def add_observe_routes(app: web.Application, h: ObserveRoutes) -> None:
    """The observability routes: a proxy's own figures, or a supervisor's merged over its
    workers (proxy.workers.admin)."""
    app.router.add_get(PROXY_SLOWLOG, h.get_slowlog)
    app.router.add_get(PROXY_LATENCY, h.get_latency)
    app.router.add_get(PROXY_METRICS, h.get_metrics)
    app.router.add_get(PROXY_HOTKEYS, h.get_hotkeys)


class BadQuery(ValueError):
    """A query parameter that does not parse: its text is the 400 reply's error."""


def slowlog_count(request: web.Request) -> int:
    """?count=N of GET /api/slowlog (default -1: every entry)."""
    raw = request.query.get("count", "-1")
    try:
        return int(raw)
    except ValueError:
        raise BadQuery(f"count: expected an integer, got {raw!r}") from None


def hotkeys_limit(request: web.Request) -> int | None:
    """?limit=N of GET /api/hotkeys (default: the whole list)."""
    raw = request.query.get("limit")
    if raw is None:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise BadQuery("limit must be a positive integer")
    return int(raw)


async def start_tcp(runner: web.AppRunner, host: str, port: int) -> int:
    """Serve `runner` on host:port; returns the port bound (0 picks a free one)."""
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    sockets = site._server.sockets if site._server else []
    return sockets[0].getsockname()[1] if sockets else port


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
