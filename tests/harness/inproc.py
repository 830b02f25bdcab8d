"""In-process servers for the dashboard API tests, in the test's own event loop: the real
dashboard app (`DashboardServer`) and a contract-level proxy admin API (`ContractProxy`).

`ContractProxy` implements the proxy admin contract the dashboard pushes to (GET /api/info,
GET/PUT /api/slots with epoch rules, bearer auth) and validates every map it receives with the
real `slotcore.slotmap.SlotMap`. It stands in for the proxy's control plane only; the
integration tests of the whole system run real `python -m proxy` processes (`ProxyProcess`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from dashboard.api.services import PLANE
from dashboard.app import create_app
from dashboard.config import DashboardConfig, StoreConfig
from dashboard.control.plane import ControlPlane
from dashboard.store.base import Store
from slotcore.slotmap import SlotMap

from .http import TOKEN, AsyncHttp
from .procs import free_port


class ContractProxy:
    def __init__(self, proxy_id: str, token: str | None = TOKEN) -> None:
        self.id = proxy_id
        self.token = token
        self.port = free_port()
        self.addr = f"127.0.0.1:{free_port()}"
        self.slotmap: SlotMap | None = None
        self.pushes: list[int] = []
        self.runner: web.AppRunner | None = None

    @property
    def admin(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def epoch(self) -> int:
        return self.slotmap.epoch if self.slotmap else 0

    async def _info(self, request: web.Request) -> web.Response:
        return web.json_response({"id": self.id, "addr": self.addr, "admin": self.admin,
                                  "epoch": self.epoch, "online": self.slotmap is not None,
                                  "version": "contract", "pid": 0, "started": time.time()})

    async def _get_slots(self, request: web.Request) -> web.Response:
        if self.slotmap is None:
            return web.json_response({"error": "no slot map"}, status=404)
        return web.json_response(self.slotmap.to_json())

    async def _put_slots(self, request: web.Request) -> web.Response:
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"error": "bad token"}, status=401)
        try:
            new = SlotMap.from_json(await request.json())
        except (ValueError, KeyError, TypeError) as e:
            return web.json_response({"error": f"invalid map: {e}"}, status=400)
        if new.epoch < self.epoch:
            return web.json_response({"error": f"stale epoch {new.epoch} < {self.epoch}"},
                                     status=409)
        self.slotmap = new
        self.pushes.append(new.epoch)
        return web.json_response({"epoch": new.epoch})

    async def start(self) -> ContractProxy:
        app = web.Application()
        app.router.add_get("/api/info", self._info)
        app.router.add_get("/api/slots", self._get_slots)
        app.router.add_put("/api/slots", self._put_slots)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def register(self, dashboard_url: str, token: str | None = TOKEN) -> dict[str, Any]:
        status, body = await AsyncHttp(dashboard_url, token).call(
            "POST", "/api/v1/proxies/register",
            {"id": self.id, "addr": self.addr, "admin": self.admin})
        assert status == 200, body
        return body


class DashboardServer:
    """The real dashboard app, served on a free port in this event loop."""

    def __init__(self, store: Store | None = None, store_cfg: StoreConfig | None = None,
                 **cfg: Any) -> None:
        self.port = free_port()
        cfg.setdefault("admin_token", TOKEN)
        cfg.setdefault("health_interval", 0.2)
        cfg.setdefault("push_timeout", 1.0)
        self.cfg = DashboardConfig(listen=("127.0.0.1", self.port),
                                   store=store_cfg or StoreConfig(), **cfg)
        self.store = store
        self.runner: web.AppRunner | None = None
        self.app: web.Application | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, wait_leader: bool = True) -> DashboardServer:
        self.app = create_app(self.cfg, self.store)
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        if wait_leader:
            await asyncio.wait_for(self.app[PLANE].leading.wait(), 10)
        return self

    @property
    def dashboard(self) -> ControlPlane:
        assert self.app is not None
        return self.app[PLANE]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
