"""The proxy's small admin HTTP API: the only way into a proxy from the control plane.

GET  /api/info    identity, addresses, epoch, whether it has a slot map
GET  /api/stats   clients, commands, ops/s, per-group backend counters
GET  /api/slots   the slot map in force (proxy.slots.SlotMap JSON)
PUT  /api/slots   switch to a new slot map (token required when one is configured)
"""

from __future__ import annotations

import hmac
import json
import os
from typing import TYPE_CHECKING

from aiohttp import web

from slotcore.slotmap import SlotMap

from . import __version__

if TYPE_CHECKING:
    from .server import ProxyServer

SERVER_KEY: web.AppKey[ProxyServer] = web.AppKey("server")


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _authorized(request: web.Request) -> bool:
    token = request.app[SERVER_KEY].cfg.admin_token
    if not token:
        return True
    header = request.headers.get("Authorization", "")
    return header.startswith("Bearer ") and hmac.compare_digest(header[7:], token)


def info_of(server: ProxyServer) -> dict:
    admin = server.admin
    return {
        "id": server.cfg.resolved_proxy_id(),
        "version": __version__,
        "addr": f"{server.host}:{server.port}",
        "admin": f"{server.cfg.admin_listen[0]}:{admin.port}" if admin and server.cfg.admin_listen
        else None,
        "pid": os.getpid(),
        "started": server.started_wall,
        "epoch": server.router.epoch,
        "online": server.router.online,
    }


def stats_of(server: ProxyServer) -> dict:
    router = server.router
    groups = {}
    for g in router.groups.values():
        groups[str(g.gid)] = {
            "master": g.master,
            "up": g.up,
            "requests": sum(c.requests for c in g.conns),
            "errors": sum(c.errors for c in g.conns),
        }
    return {
        "clients": len(server.sessions),
        "commands": server.commands,
        "ops_per_sec": round(server.ops_per_sec, 1),
        "connections_received": server.connections_received,
        "uptime": round(server.loop_time() - server.started, 1),
        "epoch": router.epoch,
        "groups": groups,
    }


async def get_info(request: web.Request) -> web.Response:
    return web.json_response(info_of(request.app[SERVER_KEY]))


async def get_stats(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    stats = stats_of(server)
    if request.query.get("slots") in ("1", "true"):
        # Cumulative ops per slot since start: the dashboard's load-aware rebalance input.
        stats["slot_ops"] = list(server.router.slot_ops)
    return web.json_response(stats)


async def get_slots(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    sm = server.router.slotmap
    if sm is None:
        return _error(404, "this proxy has no slot map yet")
    return web.json_response(sm.to_json())


async def put_slots(request: web.Request) -> web.Response:
    if not _authorized(request):
        return _error(401, "missing or wrong admin token")
    server = request.app[SERVER_KEY]
    try:
        body = await request.json()
        slotmap = SlotMap.from_json(body)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        return _error(400, f"invalid slot map: {e}")
    current = server.router.epoch
    if server.router.slotmap is not None and slotmap.epoch < current:
        return _error(409, f"stale epoch {slotmap.epoch}: proxy is at epoch {current}")
    try:
        await server.apply_slot_map(slotmap)
    except ValueError as e:
        return _error(409 if "stale" in str(e) else 400, str(e))
    return web.json_response({"epoch": server.router.epoch})


def make_app(server: ProxyServer) -> web.Application:
    app = web.Application()
    app[SERVER_KEY] = server
    app.router.add_get("/api/info", get_info)
    app.router.add_get("/api/stats", get_stats)
    app.router.add_get("/api/slots", get_slots)
    app.router.add_put("/api/slots", put_slots)
    return app


class AdminServer:
    def __init__(self, server: ProxyServer) -> None:
        self.server = server
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        assert self.server.cfg.admin_listen is not None
        host, port = self.server.cfg.admin_listen
        self.runner = web.AppRunner(make_app(self.server), access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, port, reuse_address=True)
        await site.start()
        sockets = site._server.sockets if site._server else []
        self.port = sockets[0].getsockname()[1] if sockets else port

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
