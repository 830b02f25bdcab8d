"""The dashboard's client of the proxies' admin API: push slot maps, read their state.

Pushes go to every proxy in parallel, each with its own timeout, and the outcome is reported
per proxy (never "the first error wins"), so the operator is told exactly which proxies failed.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from .models import ProxyRecord


@dataclass(frozen=True, slots=True)
class PushResult:
    proxy_id: str
    ok: bool
    epoch: int | None = None
    error: str | None = None
    stale: bool = False  # the proxy refused because it already has a newer epoch


class ProxyClient:
    def __init__(self, token: str | None, timeout: float = 3.0) -> None:
        self.token = token
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
            self._session = aiohttp.ClientSession(
                headers=headers, timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def push(self, proxy: ProxyRecord, slotmap: dict[str, Any]) -> PushResult:
        url = f"http://{proxy.admin}/api/slots"
        try:
            async with self._http().put(url, json=slotmap) as resp:
                text = await resp.text()
                try:
                    body = json.loads(text) if text else {}
                except json.JSONDecodeError:
                    body = {"error": text[:200]}
                if resp.status == 200:
                    epoch = body.get("epoch") if isinstance(body, dict) else None
                    return PushResult(proxy.id, True, epoch=int(
                        epoch if isinstance(epoch, int) else slotmap["epoch"]))
                error = (body.get("error") if isinstance(body, dict) else None) or text[:200]
                return PushResult(proxy.id, False, error=f"HTTP {resp.status}: {error}",
                                  stale=resp.status == 409)
        except TimeoutError:
            return PushResult(proxy.id, False,
                              error=f"no answer from {proxy.admin} within {self.timeout:g}s")
        except aiohttp.ClientError as e:
            return PushResult(proxy.id, False, error=f"cannot reach {proxy.admin}: {e}")

    async def push_all(self, proxies: list[ProxyRecord],
                       slotmap: dict[str, Any]) -> dict[str, PushResult]:
        results = await asyncio.gather(*(self.push(p, slotmap) for p in proxies))
        return {r.proxy_id: r for r in results}

    async def info(self, proxy: ProxyRecord) -> dict[str, Any] | None:
        """GET /api/info, or None when the proxy does not answer properly."""
        return await self._get(proxy, "/api/info")

    async def stats(self, proxy: ProxyRecord) -> dict[str, Any] | None:
        """GET /api/stats (clients, commands, ops/s), or None."""
        return await self._get(proxy, "/api/stats")

    async def _get(self, proxy: ProxyRecord, path: str) -> dict[str, Any] | None:
        try:
            async with self._http().get(f"http://{proxy.admin}{path}") as resp:
                if resp.status != 200:
                    return None
                data = await resp.json(content_type=None)
                return data if isinstance(data, dict) else None
        except (TimeoutError, aiohttp.ClientError, json.JSONDecodeError):
            return None
