"""Keeps a proxy registered with the dashboard and on the dashboard's latest slot map.

On start the proxy registers (id, client address, admin address) and waits until it has a slot
map — pushed by the dashboard to the admin API, or fetched here — before serving clients.
Afterwards it re-registers every `HEARTBEAT_INTERVAL` seconds; the reply carries the
dashboard's topology epoch, and a proxy that is behind (it missed a push while partitioned, or
the dashboard restarted) fetches the map itself. While the dashboard is unreachable the proxy
keeps serving with the last map it had.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import aiohttp

from slotcore.contract import DASHBOARD_REGISTER, DASHBOARD_SLOTMAP, HEARTBEAT_INTERVAL
from slotcore.members import digest
from slotcore.slotmap import SlotMap

from ..routing.router import Router

log = logging.getLogger("slotproxy.agent")


class MapHolder(Protocol):
    """What the agent reads of whoever holds the map: a Router, or a worker supervisor."""

    @property
    def slotmap(self) -> SlotMap | None: ...
    @property
    def epoch(self) -> int: ...
    @property
    def online(self) -> bool: ...


class DashboardAgent:
    def __init__(self, urls: str, token: str | None, router: Router | MapHolder,
                 apply: Callable[[SlotMap], Awaitable[None]],
                 identity: Callable[[], dict],
                 on_contact: Callable[[], None] | None = None) -> None:
        # Several URLs (leader and standbys): heartbeats go to the first that answers, so they
        # follow a dashboard failover.
        self.urls = [u.strip().rstrip("/") for u in urls.split(",") if u.strip()]
        self.urls = [u if "://" in u else "http://" + u for u in self.urls]
        self.base = self.urls[0]
        self.token = token
        self.router = router
        self.apply = apply
        self.identity = identity
        # The dashboard was heard from: the proxy's fence (a supervisor tells its workers).
        self.on_contact = on_contact or router.transit.touch_contact  # type: ignore[union-attr]
        self.session: aiohttp.ClientSession | None = None
        self.task: asyncio.Task[None] | None = None
        self.last_ok = 0.0
        self.last_error = ""

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        self.task = asyncio.get_running_loop().create_task(self._loop())

    async def wait_online(self) -> None:
        """Block until the proxy has a slot map (pushed or fetched)."""
        while not self.router.online:
            await asyncio.sleep(0.05)

    async def heartbeat(self) -> None:
        errors = []
        for url in [self.base] + [u for u in self.urls if u != self.base]:
            try:
                await self._heartbeat(url)
                self.base = url
                return
            except Exception as e:  # try the next dashboard (a standby may have taken over)
                errors.append(f"{url}: {str(e) or type(e).__name__}")
        raise RuntimeError("; ".join(errors))

    async def _heartbeat(self, base: str) -> None:
        assert self.session is not None
        identity = self.identity()
        body_out = {k: identity[k] for k in ("id", "addr", "admin", "epoch")}
        async with self.session.post(f"{base}{DASHBOARD_REGISTER}",
                                     json=body_out, headers=self._headers()) as resp:
            body = await resp.json(content_type=None)
            if resp.status != 200:
                raise RuntimeError(f"register refused: HTTP {resp.status} {body}")
        epoch = int(body.get("epoch", 0))
        router = self.router
        self.on_contact()
        # A dashboard that lists the proxies says which list it has; a proxy that missed a
        # membership push (same epoch) fetches the map to catch up.
        members = body.get("members")
        stale_members = (members is not None and router.slotmap is not None
                         and members != digest(router.slotmap.proxies))
        if epoch > router.epoch or not router.online or stale_members:
            async with self.session.get(f"{base}{DASHBOARD_SLOTMAP}") as resp:
                if resp.status == 200:
                    slotmap = SlotMap.from_json(await resp.json(content_type=None))
                    if slotmap.epoch >= router.epoch and slotmap.groups:
                        await self.apply(slotmap)
                        log.info("caught up with the dashboard: epoch %d", slotmap.epoch)
        self.last_ok = asyncio.get_running_loop().time()

    async def _loop(self) -> None:
        while True:
            try:
                await self.heartbeat()
                if self.last_error:
                    log.info("dashboard %s reachable again", self.base)
                self.last_error = ""
            except asyncio.CancelledError:
                raise
            except Exception as e:  # network errors of any kind: keep serving, retry
                msg = str(e) or type(e).__name__
                if msg != self.last_error:
                    log.warning("dashboard %s: %s (serving with slot map epoch %d)",
                                self.base, msg, self.router.epoch)
                self.last_error = msg
            await asyncio.sleep(HEARTBEAT_INTERVAL if self.router.online else 0.2)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None
        if self.session is not None:
            await self.session.close()
            self.session = None
