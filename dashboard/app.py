"""The composition root: `create_app` builds every part of the dashboard from the config, wires
them together and runs their background work in aiohttp's cleanup_ctx.

Build order (each part gets only what it uses):
store -> proxy registry -> control plane -> migrator -> rebalancer -> health -> replication
(add/remove servers, group settings) -> promoter -> auto-balancer -> live feed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from .api.middleware import auth_middleware, errors_middleware
from .api.routes import ENDPOINTS
from .api.services import (
    AUTOBALANCE,
    CONFIG,
    HEALTH,
    LIVE,
    MIGRATOR,
    PLANE,
    PROMOTER,
    PROXIES,
    REBALANCER,
    REPLICATION,
    STORE,
)
from .balance.measure import InfoSpread
from .balance.scheduler import AutoBalancer
from .config import DashboardConfig
from .control.plane import ControlPlane
from .control.proxies import ProxyClient, ProxyRegistry
from .migrate.migrator import Migrator
from .migrate.rebalancer import Rebalancer
from .observe.health import HealthMonitor
from .observe.live import Live
from .replication.promote import Promoter
from .replication.servers import Replication, Servers
from .store.base import Store


def create_app(cfg: DashboardConfig, store: Store | None = None) -> web.Application:
    """The dashboard app. Its background work (leadership, health polling) lives in cleanup_ctx."""
    app = web.Application(middlewares=[errors_middleware, auth_middleware(cfg.admin_token)])
    store = store if store is not None else cfg.store.open()
    keys = cfg.keys
    proxies = ProxyRegistry(store, keys, ProxyClient(cfg.admin_token, cfg.push_timeout),
                            stale_after=cfg.proxy_stale_after,
                            fence_timeout=cfg.fence_timeout,
                            stats_interval=cfg.health_interval)
    plane = ControlPlane(store, keys, proxies, ident=cfg.ident, url=cfg.url,
                         cluster=cfg.cluster, nslots=cfg.slots)
    migrator = Migrator(plane, proxies, store, keys.migration_settings)
    if cfg.migration:
        migrator.settings.update(dict(cfg.migration))
    # A new leader reads the settings an operator last stored (before it starts leading).
    plane.on_take_over(migrator.load_settings)
    health = HealthMonitor(plane.current, cfg.health_interval, cfg.health_timeout,
                           password=cfg.backend.password, username=cfg.backend.username)
    replication = Replication(plane, Servers(cfg.backend, timeout=max(cfg.health_timeout, 2.0)))
    app[CONFIG] = cfg
    app[STORE] = store
    app[PROXIES] = proxies
    app[PLANE] = plane
    app[MIGRATOR] = migrator
    app[REBALANCER] = Rebalancer(plane, proxies, migrator)
    app[HEALTH] = health
    app[REPLICATION] = replication
    app[PROMOTER] = Promoter(plane, replication, timeout=cfg.promote_timeout,
                             max_timeout=cfg.max_wait)
    autobalance = AutoBalancer(plane, proxies, migrator, health, store, keys,
                               initial=dict(cfg.autobalance),
                               sizes=InfoSpread(timeout=max(cfg.health_timeout, 2.0),
                                                password=cfg.backend.password,
                                                username=cfg.backend.username))
    plane.on_take_over(autobalance.load)
    app[AUTOBALANCE] = autobalance
    app[LIVE] = Live(plane, proxies, health, migrator,
                     interval=min(1.0, cfg.health_interval * 2))
    for e in ENDPOINTS:
        app.router.add_route(e.method, e.path, e.handler)
    app.on_shutdown.append(_end_streams)
    app.cleanup_ctx.append(_background)
    return app


async def _end_streams(app: web.Application) -> None:
    # on_shutdown runs before aiohttp waits for open requests: without this an open page's
    # event stream would hold the dashboard's exit for the whole shutdown timeout.
    app[LIVE].shutdown()


async def _background(app: web.Application) -> AsyncIterator[None]:
    plane = app[PLANE]
    tasks = [asyncio.create_task(plane.run(), name="leadership"),
             asyncio.create_task(app[MIGRATOR].run(), name="migrator"),
             asyncio.create_task(app[HEALTH].run(), name="health"),
             asyncio.create_task(app[PROXIES].poll_stats(plane.leading), name="proxy-stats"),
             asyncio.create_task(app[LIVE].run(), name="live"),
             asyncio.create_task(app[PROMOTER].run(), name="promotions"),
             asyncio.create_task(plane.watch_members(), name="members"),
             asyncio.create_task(app[AUTOBALANCE].run(), name="autobalance")]
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await app[LIVE].close()
    await plane.close()
    await app[PROXIES].close()
    await app[HEALTH].close()
    await app[AUTOBALANCE].close()
    await app[STORE].close()  # resigns: a standby takes over at once
