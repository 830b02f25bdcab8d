"""The typed keys under which `create_app` (app.py) stores the dashboard's parts."""

from __future__ import annotations

from aiohttp import web

from ..balance.scheduler import AutoBalancer
from ..config import DashboardConfig
from ..control.plane import ControlPlane
from ..control.proxies import ProxyRegistry
from ..migrate.migrator import Migrator
from ..migrate.rebalancer import Rebalancer
from ..observe.health import HealthMonitor
from ..observe.live import Live
from ..replication.promote import Promoter
from ..replication.servers import Replication
from ..store.base import Store

CONFIG = web.AppKey("config", DashboardConfig)
PLANE = web.AppKey("plane", ControlPlane)
HEALTH = web.AppKey("health", HealthMonitor)
MIGRATOR = web.AppKey("migrator", Migrator)
REBALANCER = web.AppKey("rebalancer", Rebalancer)
LIVE = web.AppKey("live", Live)
PROXIES = web.AppKey("proxies", ProxyRegistry)
STORE = web.AppKey("store", Store)
REPLICATION = web.AppKey("replication", Replication)
PROMOTER = web.AppKey("promoter", Promoter)
AUTOBALANCE = web.AppKey("autobalance", AutoBalancer)
