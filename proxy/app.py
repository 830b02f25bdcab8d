"""The composition root: builds every part of a proxy process, starts and stops them in order.

Start-up: bind the listener (the address is known and taken), start the admin API, get a slot
map (from the config, or from the dashboard), load the command table (from a backend's own
COMMAND reply, so its key specs route every command it knows; else the built-in table), then
serve. Shutdown (SIGTERM/SIGINT): stop accepting, stop reading from clients, let every request
already read get its reply written, close clients, close backends — bounded by
`shutdown_timeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import hiredis

from slotcore.addr import join_addr
from slotcore.resp import pack_command
from slotcore.slotmap import SlotMap

from . import __version__
from .backend.conn import new_flusher
from .backend.pool import BackendPool
from .blocking import Blocking
from .client.connection import select_hot_path
from .client.context import ClientRegistry, Services
from .commands.table import CommandTable
from .config import ProxyConfig
from .control.sentinel import SentinelFollower
from .fanout.scan import MoveLog
from .observe.hotkeys import HotKeys
from .observe.meter import Meter
from .observe.slowlog import SlowLog
from .observe.stats import OpsSampler, new_stats
from .routing.replica_health import ReplicaHealth
from .routing.replicas import ReplicaReads
from .routing.router import Router
from .routing.transit import Transit
from .server import Listener

if TYPE_CHECKING:
    from .control.admin import AdminServer
    from .control.agent import DashboardAgent

log = logging.getLogger("slotproxy")

HOUSEKEEPING_INTERVAL = 0.25  # stalled backends, the dashboard fence, held requests


def build_services(cfg: ProxyConfig, *, fence_enabled: bool | None = None,
                   clock: Callable[[], float] = time.monotonic) -> Services:
    """The data path's parts (stats, flusher, pools, transit, router, blocking), wired, on the
    running loop; nothing is bound or connected yet. `fence_enabled` defaults to "has a dashboard";
    `clock` is the transit fence's clock (in-process tests pass their own)."""
    loop = asyncio.get_running_loop()
    # Compiled or pure-Python hot path, before any connection exists (proxy._accel).
    select_hot_path(cfg.use_accelerator)
    stats = new_stats(nslots=cfg.slots, started=loop.time(), started_wall=time.time(),
                      meter=Meter(cfg.metrics, cfg.latency_sample_every,
                                  SlowLog(cfg.slowlog_log_slower_than, cfg.slowlog_max_len)))
    flusher = new_flusher(loop)
    pool = BackendPool(cfg.backend, flusher, stats)
    if fence_enabled is None:
        fence_enabled = bool(cfg.dashboard)
    transit = Transit(cfg.migration, pool.plain_lane, fence_enabled=fence_enabled, clock=clock)
    router = Router(cfg.slots, pool, transit, ReplicaReads(cfg.reads, pool))
    blocking = Blocking(cfg, router, pool, loop)
    router.on_drained(blocking.on_swap)
    moves = MoveLog()

    def record_moves() -> None:  # SCAN's guarantee across migrations (fanout/scan.py)
        sm = router.slotmap
        if sm is not None:
            moves.record(sm.epoch, sm.owner, {g: s.master for g, s in sm.groups.items()},
                         sm.transit)

    router.on_swap(record_moves)
    return Services(
        cfg=cfg, table=CommandTable.builtin(), router=router, pool=pool, stats=stats,
        flusher=flusher, clients=ClientRegistry(cfg.limits.max_clients, stats), loop=loop,
        blocking=blocking, host=cfg.listen[0], port=cfg.listen[1], moves=moves,
        hotkeys=HotKeys(cfg.hotkeys),
    )


class ProxyApp:
    def __init__(self, cfg: ProxyConfig) -> None:
        self.cfg = cfg
        self.services = build_services(cfg)
        router = self.services.router
        self.listener = Listener(self.services)
        # The HTTP stack (aiohttp, ~15 MiB of RSS) is imported only by a proxy that serves the
        # admin API or follows a dashboard: a standalone proxy runs without it.
        self.admin: AdminServer | None = None
        self.agent: DashboardAgent | None = None
        if cfg.admin_listen is not None:
            from .control.admin import AdminServer
            self.admin = AdminServer(self.services, self.apply_slot_map, self.identity)
        if cfg.dashboard:
            from .control.agent import DashboardAgent
            self.agent = DashboardAgent(cfg.dashboard, cfg.admin_token, router,
                                        self.apply_slot_map, self.registration)
        self.blocking = self.services.blocking
        # Reads from replicas: the proxy checks its groups' replicas itself (with or without a
        # dashboard); a standalone proxy may follow the sentinels for failovers.
        self.replica_health = ReplicaHealth(router.reads, cfg.backend, self.services.flusher)
        self.sentinel = (SentinelFollower(cfg.sentinel, lambda: list(router.groups),
                                          lambda: router.slotmap, self.apply_slot_map)
                         if cfg.sentinel.addrs and not cfg.dashboard else None)
        self._chores: list[asyncio.Task[None]] = []
        self._stopping = False
        self.serving = False  # accepting clients (a worker's supervisor waits for it)

    # ------------------------------------------------------------------ identity
    def identity(self) -> dict:
        """Who this proxy is, as the admin API's /api/info says it."""
        s = self.services
        admin = (join_addr(self.cfg.admin_listen[0], self.admin.port)
                 if self.admin is not None and self.cfg.admin_listen is not None else None)
        return {
            "id": self.cfg.resolved_proxy_id(),
            "version": __version__,
            "addr": join_addr(s.host, s.port),
            "admin": admin,
            "pid": os.getpid(),
            "started": s.stats.started_wall,
            "epoch": s.router.epoch,
            "online": s.router.online,
        }

    def registration(self) -> dict:
        """What the proxy registers with the dashboard: clients reach it at `advertise`."""
        me = self.identity()
        if self.cfg.advertise:
            me["addr"] = self.cfg.advertise
        return me

    # ------------------------------------------------------------------ start
    async def start(self) -> None:
        cfg = self.cfg
        s = self.services
        await self.listener.bind()
        if self.admin is not None:
            await self.admin.start()
        await self._initial_map()
        await self._load_command_table()
        router = s.router
        self._chores.append(s.loop.create_task(self.replica_health.run(
            lambda: [(g.master, g.replicas) for g in router.groups.values()], s.loop_time)))
        if self.sentinel is not None:
            await self.sentinel.start()
        self._chores.append(s.loop.create_task(self._housekeeping()))
        self._chores.append(s.loop.create_task(self._ops_sampler()))
        await self.listener.serve()
        self.serving = True
        groups = s.router.groups
        log.info(
            "slotproxy %s listening on %s:%d, %d slots, %d groups (%s), command table: %s "
            "(%d commands)%s",
            __version__, s.host, s.port, cfg.slots, len(groups),
            ", ".join(f"{g.gid}={g.master}" for g in groups.values()) or "none yet",
            s.table_source, s.table.count(),
            f", admin on {cfg.admin_listen[0]}:{self.admin.port}" if self.admin and
            cfg.admin_listen else "",
        )

    async def _initial_map(self) -> None:
        """Get the first slot map: from the config, or from the dashboard (a worker process
        overrides this: its supervisor pushes it)."""
        cfg = self.cfg
        if cfg.slot_map is not None:
            slotmap = cfg.slot_map
            if self.sentinel is not None:
                # Who is master now, before the first request is served (a configured master
                # may have failed over while the proxy was down).
                slotmap = await self.sentinel.initial(slotmap)
            await self.apply_slot_map(slotmap, wait_connect=cfg.backend.connect_timeout)
        if self.agent is not None:
            await self.agent.start()
            log.info("waiting for a slot map from the dashboard at %s", cfg.dashboard)
            await self.agent.wait_online()
            await self.wait_backends()

    async def wait_backends(self) -> None:
        await asyncio.gather(*(c.wait_up(self.cfg.backend.connect_timeout)
                               for c in self.services.pool.all_conns()))

    async def apply_slot_map(self, slotmap: SlotMap, wait_connect: float = 0.0) -> None:
        router = self.services.router
        current = router.slotmap
        if current is not None and slotmap.epoch == current.epoch and slotmap == current:
            # The same routing, pushed again because the proxies' list changed (CLUSTER SLOTS
            # describes them): swap the map object only, nothing is re-routed or drained.
            router.slotmap = slotmap
            router.transit.touch_contact()
            return
        await router.apply(slotmap, wait_connect=wait_connect)

    async def _load_command_table(self) -> None:
        """Build the command table from a backend's COMMAND reply; fall back to the built-in."""
        s = self.services
        if self.cfg.command_table != "backend":
            return
        for group in s.router.groups.values():
            conn = group.lanes[0]
            if not conn.up:
                continue
            try:
                raw = await conn.probe(pack_command(b"COMMAND"), 5.0)
                reader = hiredis.Reader()
                reader.feed(raw)
                reply = reader.gets()
                if not isinstance(reply, list):
                    raise ValueError(f"unexpected COMMAND reply {raw[:60]!r}")
                s.table = CommandTable.from_command_reply(reply)
                s.table_source = f"backend {conn.addr}"
                info = await conn.probe(pack_command(b"INFO", b"server"), 5.0)
                for line in info.split(b"\r\n"):
                    if line.startswith(b"redis_version:"):
                        s.backend_version = line.split(b":", 1)[1].decode()
                return
            except (TimeoutError, ValueError, hiredis.ProtocolError) as e:
                log.warning("could not read COMMAND from %s (%s); trying the next group",
                            conn.addr, e)
        log.warning("no backend answered COMMAND: using the built-in command table")

    # ------------------------------------------------------------------ chores
    async def _housekeeping(self) -> None:
        s = self.services
        transit = s.router.transit
        while True:
            await asyncio.sleep(HOUSEKEEPING_INTERVAL)
            s.pool.check_stalls(time.monotonic())
            transit.check_fence()
            if transit.held:
                transit.expire_held(s.loop_time())
            if self.blocking.calls:
                self.blocking.check_clients()
                if self.blocking.held:
                    self.blocking.expire(s.loop_time())

    async def _ops_sampler(self) -> None:
        s = self.services
        sampler = OpsSampler(s.stats, s.loop_time())
        while True:
            await asyncio.sleep(1.0)
            sampler.sample(s.loop_time())

    # ------------------------------------------------------------------ stop
    async def stop(self) -> None:
        """Graceful shutdown: stop accepting, answer what was read, then close everything."""
        if self._stopping:
            return
        self._stopping = True
        s = self.services
        log.info("shutting down: %d clients, draining in-flight requests", len(s.clients))
        if self.agent is not None:
            await self.agent.stop()
        if self.sentinel is not None:
            await self.sentinel.stop()
        # Blocked clients get their timeout reply now rather than hold the drain up.
        self.blocking.unblock_all()
        await self.listener.shutdown(self.cfg.shutdown_timeout)
        for t in self._chores:
            t.cancel()
        for t in self._chores:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if self.admin is not None:
            await self.admin.stop()
        await self.replica_health.close()
        await s.pool.close()
        await self.listener.wait_closed()
        log.info("stopped")
