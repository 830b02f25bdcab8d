"""The supervisor's admin API: the same routes as a proxy's (proxy/control/admin.py), answered
for all its workers.

GET  /api/info    the proxy's identity (the supervisor's pid) and every worker's state
GET  /api/stats   totals across workers (`aggregate.total_stats`) plus `workers`: each one's
                  state and its own stats (?slots=1: with per-slot ops, summed in the total)
GET  /api/slots   the slot map in force
PUT  /api/slots   apply a slot map in every worker; 200 only once all of them applied it
GET  /metrics     every worker's series labelled worker="<index>" in one exposition, plus the
                  supervisor's own (slotproxy_workers by state, slotproxy_worker_restarts);
                  totals: `sum without(worker) (...)`
GET  /api/latency the workers' histograms added up, per command and per group
GET  /api/slowlog the workers' slow logs merged newest first, each entry with its `worker`
                  (?count=N after merging; admin token)
GET  /api/hotkeys one report over the workers' samples, in a proxy's shape (?limit=N)

The merged routes count the synced workers that answer: one restarting or not answering is
left out (it is in /api/info's `workers` with its state).
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from aiohttp import web

from slotcore.contract import PROXY_HOTKEYS, PROXY_LATENCY, PROXY_METRICS, PROXY_SLOWLOG
from slotcore.slotmap import SlotMap, StaleSlotMap

from ..config import ProxyConfig
from ..control.admin import (
    BadQuery,
    _error,
    add_observe_routes,
    add_proxy_routes,
    authorized,
    hotkeys_limit,
    slowlog_count,
    start_tcp,
)
from ..observe.metrics import CONTENT_TYPE
from .errors import WorkerError
from .merge import (
    merge_expositions,
    merge_hotkeys,
    merge_latency,
    merge_slowlog,
    supervisor_series,
)


class Supervised(Protocol):
    """What the admin API needs of the supervisor (supervisor.py)."""

    cfg: ProxyConfig
    slotmap: SlotMap | None

    @property
    def epoch(self) -> int: ...
    def identity(self) -> dict[str, Any]: ...
    async def stats(self, slots: bool = False) -> dict[str, Any]: ...
    async def apply(self, slotmap: SlotMap) -> None: ...
    async def collect(self, path: str, text: bool = False) -> list[tuple[int, Any]]: ...
    def worker_views(self) -> list[dict[str, Any]]: ...


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

    async def get_metrics(self, request: web.Request) -> web.Response:
        texts = await self.sup.collect(PROXY_METRICS, text=True)
        body = merge_expositions(texts, supervisor_series(self.sup.worker_views()))
        resp = web.Response(body=body.encode())
        resp.headers["Content-Type"] = CONTENT_TYPE  # with its version= parameter
        return resp

    async def get_latency(self, request: web.Request) -> web.Response:
        docs = [d for _, d in await self.sup.collect(PROXY_LATENCY)]
        try:
            merged = merge_latency(docs, self.sup.cfg.resolved_proxy_id())
        except (KeyError, TypeError, ValueError) as e:
            return _error(502, f"workers' latency reports do not add up: {e}")
        return web.json_response(merged)

    async def get_slowlog(self, request: web.Request) -> web.Response:
        # The arguments of clients' commands: admin token, as on a proxy.
        if not authorized(request, self.sup.cfg.admin_token):
            return _error(401, "missing or wrong admin token")
        try:
            count = slowlog_count(request)
        except BadQuery as e:
            return _error(400, str(e))
        # Each worker's newest `count` hold the newest `count` of all of them.
        docs = await self.sup.collect(f"{PROXY_SLOWLOG}?count={count}")
        try:
            merged = merge_slowlog(docs, count, self.sup.cfg.resolved_proxy_id())
        except (KeyError, TypeError) as e:
            return _error(502, f"workers' slow logs do not merge: {e}")
        return web.json_response(merged)

    async def get_hotkeys(self, request: web.Request) -> web.Response:
        try:
            limit = hotkeys_limit(request)
        except BadQuery as e:
            return _error(400, str(e))
        # Whole reports (at most `hotkeys.capacity` keys each): see merge_hotkeys.
        reports = await self.sup.collect(PROXY_HOTKEYS)
        try:
            merged = merge_hotkeys(reports, limit)
        except (KeyError, TypeError) as e:
            return _error(502, f"workers' hot keys do not merge: {e}")
        return web.json_response(merged)

    async def start(self) -> None:
        assert self.sup.cfg.admin_listen is not None
        app = web.Application()
        add_proxy_routes(app, self)
        add_observe_routes(app, self)
        self.runner = web.AppRunner(app, access_log=None)
        self.port = await start_tcp(self.runner, *self.sup.cfg.admin_listen)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
