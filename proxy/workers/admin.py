"""The supervisor's admin API: the same routes as a proxy's (proxy/control/admin.py), answered
for all its workers.

GET  /api/info    the proxy's identity (the supervisor's pid) and every worker's state
GET  /api/stats   totals across workers (`aggregate.total_stats`) plus `workers`: each one's
                  state and its own stats (?slots=1: with per-slot ops, summed in the total)
GET  /api/slots   the slot map in force
PUT  /api/slots   apply a slot map in every worker; 200 only once all of them applied it
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from aiohttp import web

from slotcore.contract import PROXY_INFO, PROXY_SLOTS, PROXY_STATS
from slotcore.slotmap import SlotMap, StaleSlotMap

from ..config import ProxyConfig
from ..control.admin import _error, authorized
from .errors import WorkerError


class Supervised(Protocol):
    """What the admin API needs of the supervisor (supervisor.py)."""

    cfg: ProxyConfig
    slotmap: SlotMap | None

    @property
    def epoch(self) -> int: ...
    def identity(self) -> dict[str, Any]: ...
    async def stats(self, slots: bool = False) -> dict[str, Any]: ...
    async def apply(self, slotmap: SlotMap) -> None: ...


class SupervisorAdmin:
    def __init__(self, sup: Supervised) -> None:
        self.sup = sup
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def get_info(self, request: web.Request) -> web.Response:
        return web.json_response(self.sup.identity())

    async def get_stats(self, request: web.Request) -> web.Response:
        slots = request.query.get("slots") in ("1", "true")
        return web.json_response(await self.sup.stats(slots=slots))

    async def get_slots(self, request: web.Request) -> web.Response:
        sm = self.sup.slotmap
        if sm is None:
            return _error(404, "this proxy has no slot map yet")
        return web.json_response(sm.to_json())

    async def put_slots(self, request: web.Request) -> web.Response:
        if not authorized(request, self.sup.cfg.admin_token):
            return _error(401, "missing or wrong admin token")
        try:
            slotmap = SlotMap.from_json(await request.json())
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            return _error(400, f"invalid slot map: {e}")
        try:
            await self.sup.apply(slotmap)
        except StaleSlotMap as e:
            return _error(409 if "stale" in str(e) else 400, str(e))
        except WorkerError as e:  # the dashboard rolls the change back
            return _error(503, str(e))
        return web.json_response({"epoch": self.sup.epoch})

    async def start(self) -> None:
        assert self.sup.cfg.admin_listen is not None
        host, port = self.sup.cfg.admin_listen
        app = web.Application()
        app.router.add_get(PROXY_INFO, self.get_info)
        app.router.add_get(PROXY_STATS, self.get_stats)
        app.router.add_get(PROXY_SLOTS, self.get_slots)
        app.router.add_put(PROXY_SLOTS, self.put_slots)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, port, reuse_address=True)
        await site.start()
        sockets = site._server.sockets if site._server else []
        self.port = sockets[0].getsockname()[1] if sockets else port

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
