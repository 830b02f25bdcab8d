"""The proxy process: listener, shared state of all sessions, background chores, shutdown.

Start-up order: connect to the backends, load the command table (from a backend's own COMMAND
reply, so its key specs route every command it knows; else the built-in table), then listen.
Shutdown order (SIGTERM/SIGINT): stop accepting, stop reading from clients, let every request
already read get its reply written, close clients, close backends — bounded by
`shutdown_timeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from itertools import count

import hiredis

from slotcore.resp import pack_command
from slotcore.slotmap import SlotMap

from . import __version__
from .backend import Flusher
from .commands import CommandTable
from .config import ProxyConfig
from .router import Router
from .session import ClientSession

log = logging.getLogger("slotproxy")


class ProxyServer:
    def __init__(self, cfg: ProxyConfig) -> None:
        self.cfg = cfg
        self.loop = asyncio.get_running_loop()
        self.flusher = Flusher(self.loop)
        self.router = Router(cfg.backend, self.flusher, cfg.slots, cfg.migration)
        self.router.fence_enabled = bool(cfg.dashboard)
        self.table: CommandTable = CommandTable.builtin()
        self.table_source = "builtin"
        self.sessions: set[ClientSession] = set()
        # argv[0] as clients spell it → arity, for single-key commands (the inlined fast path).
        # Filled as commands are first seen; a table change clears it.
        self.fast_arity: dict[bytes, int] = {}
        self._ids = count(1)
        self.commands = 0
        self.connections_received = 0
        self.rejected = 0
        self.ops_per_sec = 0.0
        self.started = self.loop.time()
        self.started_wall = time.time()
        self.backend_version = "7.0.0"
        self.port = cfg.listen[1]
        self.host = cfg.listen[0]
        self._server: asyncio.base_events.Server | None = None
        self._chores: list[asyncio.Task[None]] = []
        self._stopping = False
        self.admin = None  # proxy.admin.AdminServer when admin_listen is set
        self.agent = None  # proxy.agent.DashboardAgent when a dashboard is configured

    # ------------------------------------------------------------------ session registry
    def next_client_id(self) -> int:
        return next(self._ids)

    def admit(self, session: ClientSession) -> bool:
        self.connections_received += 1
        if self._stopping or len(self.sessions) >= self.cfg.limits.max_clients:
            self.rejected += 1
            return False
        self.sessions.add(session)
        return True

    def forget(self, session: ClientSession) -> None:
        self.sessions.discard(session)

    def loop_time(self) -> float:
        return self.loop.time()

    # ------------------------------------------------------------------ start
    async def start(self) -> None:
        cfg = self.cfg
        # Bind first (so the address is known and taken) but serve only once routing is ready.
        self._server = await self.loop.create_server(
            lambda: ClientSession(self), cfg.listen[0], cfg.listen[1],
            backlog=cfg.tcp_backlog, reuse_address=True, start_serving=False,
        )
        self.host, self.port = self._server.sockets[0].getsockname()[:2]
        if cfg.admin_listen is not None:
            from .admin import AdminServer

            self.admin = AdminServer(self)
            await self.admin.start()
        if cfg.slot_map is not None:
            await self.apply_slot_map(cfg.slot_map, wait_connect=cfg.backend.connect_timeout)
        if cfg.dashboard:
            from .agent import DashboardAgent

            self.agent = DashboardAgent(self)
            await self.agent.start()
            log.info("waiting for a slot map from the dashboard at %s", cfg.dashboard)
            await self.agent.wait_online()
            await asyncio.gather(*(c.wait_up(cfg.backend.connect_timeout)
                                   for c in self.router.all_conns()))
        await self._load_command_table()
        self.router.start_health()
        self._chores.append(self.loop.create_task(self._ops_sampler()))
        if cfg.idle_timeout:
            self._chores.append(self.loop.create_task(self._idle_sweeper()))
        await self._server.start_serving()
        groups = self.router.groups
        log.info(
            "slotproxy %s listening on %s:%d, %d slots, %d groups (%s), command table: %s "
            "(%d commands)%s",
            __version__, self.host, self.port, cfg.slots, len(groups),
            ", ".join(f"{g.gid}={g.master}" for g in groups.values()) or "none yet",
            self.table_source, self.table.count(),
            f", admin on {cfg.admin_listen[0]}:{self.admin.port}" if self.admin and
            cfg.admin_listen else "",
        )

    async def apply_slot_map(self, slotmap: SlotMap, wait_connect: float = 0.0) -> None:
        await self.router.apply(slotmap, wait_connect=wait_connect)

    async def _load_command_table(self) -> None:
        """Build the command table from a backend's COMMAND reply; fall back to the built-in."""
        if self.cfg.command_table != "backend":
            return
        for group in self.router.groups.values():
            conn = group.conns[0]
            if not conn.up:
                continue
            try:
                raw = await conn.probe(pack_command(b"COMMAND"), 5.0)
                reader = hiredis.Reader()
                reader.feed(raw)
                reply = reader.gets()
                if not isinstance(reply, list):
                    raise ValueError(f"unexpected COMMAND reply {raw[:60]!r}")
                self.table = CommandTable.from_command_reply(reply)
                self.fast_arity.clear()
                self.table_source = f"backend {conn.addr}"
                info = await conn.probe(pack_command(b"INFO", b"server"), 5.0)
                for line in info.split(b"\r\n"):
                    if line.startswith(b"redis_version:"):
                        self.backend_version = line.split(b":", 1)[1].decode()
                return
            except (TimeoutError, ValueError, hiredis.ProtocolError) as e:
                log.warning("could not read COMMAND from %s (%s); trying the next group",
                            conn.addr, e)
        log.warning("no backend answered COMMAND: using the built-in command table")

    # ------------------------------------------------------------------ chores
    async def _ops_sampler(self) -> None:
        last, last_t = self.commands, self.loop.time()
        while True:
            await asyncio.sleep(1.0)
            now = self.loop.time()
            self.ops_per_sec = (self.commands - last) / max(now - last_t, 1e-6)
            last, last_t = self.commands, now

    async def _idle_sweeper(self) -> None:
        timeout = self.cfg.idle_timeout
        seen: dict[ClientSession, tuple[int, float]] = {}
        while True:
            await asyncio.sleep(min(1.0, timeout / 2))
            now = self.loop.time()
            for s in list(self.sessions):
                act, since = seen.get(s, (-1, now))
                if s.activity != act:
                    seen[s] = (s.activity, now)
                elif now - since >= timeout and not s.pending:
                    log.info("client %s idle for %.0fs; closing", s.addr, now - since)
                    s.close_now()
            for s in [s for s in seen if s.closed]:
                del seen[s]

    # ------------------------------------------------------------------ stop
    async def stop(self) -> None:
        """Graceful shutdown: stop accepting, answer what was read, then close everything."""
        if self._stopping:
            return
        self._stopping = True
        log.info("shutting down: %d clients, draining in-flight requests", len(self.sessions))
        if self._server is not None:
            self._server.close()
        if self.agent is not None:
            await self.agent.stop()
        for s in list(self.sessions):
            s.close_after_replies()
        deadline = self.loop.time() + self.cfg.shutdown_timeout
        while self.sessions and self.loop.time() < deadline:
            await asyncio.sleep(0.02)
        for s in list(self.sessions):
            s.close_now()
        for t in self._chores:
            t.cancel()
        for t in self._chores:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if self.admin is not None:
            await self.admin.stop()
        await self.router.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
        log.info("stopped")
