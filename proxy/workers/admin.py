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

from slotcore.slotmap import SlotMap, StaleSlotMap

from ..config import ProxyConfig
from ..control.admin import _error, add_proxy_routes, authorized, start_tcp
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
        app = web.Application()
        add_proxy_routes(app, self)
        self.runner = web.AppRunner(app, access_log=None)
        self.port = await start_tcp(self.runner, *self.sup.cfg.admin_listen)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
