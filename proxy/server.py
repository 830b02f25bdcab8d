"""The client listener: accepts connections into the registry, and closes idle ones."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from .client.connection import new_client
from .client.context import Client, Services
from .dispatch import dispatch

log = logging.getLogger("slotproxy")


class Listener:
    def __init__(self, services: Services, reuse_port: bool = False) -> None:
        self.services = services
        # Worker processes (proxy/workers/) each bind the same port: the kernel spreads new
        # connections over their listening sockets.
        self.reuse_port = reuse_port
        self._server: asyncio.base_events.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def bind(self) -> None:
        """Bind first (so the address is known and taken); serve only once routing is ready."""
        s = self.services
        cfg = s.cfg
        self._server = await s.loop.create_server(
            lambda: new_client(s, dispatch), cfg.listen[0], cfg.listen[1],
            backlog=cfg.tcp_backlog, reuse_address=True, reuse_port=self.reuse_port or None,
            start_serving=False,
        )
        s.host, s.port = self._server.sockets[0].getsockname()[:2]

    async def serve(self) -> None:
        assert self._server is not None
        if self.services.cfg.idle_timeout:
            self._sweeper = self.services.loop.create_task(self._idle_sweeper())
        await self._server.start_serving()

    async def _idle_sweeper(self) -> None:
        timeout = self.services.cfg.idle_timeout
        clients = self.services.clients
        seen: dict[Client, tuple[int, float]] = {}
        while True:
            await asyncio.sleep(min(1.0, timeout / 2))
            now = self.services.loop_time()
            for c in list(clients.clients):
                act, since = seen.get(c, (-1, now))
                if c.state.activity != act:
                    seen[c] = (c.state.activity, now)
                elif now - since >= timeout and not c.fifo:
                    log.info("client %s idle for %.0fs; closing", c.state.addr, now - since)
                    c.close_now()
            for c in [c for c in seen if c.closed]:
                del seen[c]

    async def shutdown(self, timeout: float) -> None:
        """Stop accepting, let every request already read get its reply, then close all."""
        clients = self.services.clients
        clients.accepting = False
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for c in list(clients.clients):
            c.close_after_replies()
        loop = self.services.loop
        deadline = loop.time() + timeout
        while clients.clients and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for c in list(clients.clients):
            c.close_now()

    async def wait_closed(self) -> None:
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
