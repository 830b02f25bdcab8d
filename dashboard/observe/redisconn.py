"""Connections to the groups' redis servers, and the one script that sizes keys in bulk.

Shared by the health poller, the load measurement and the key mover, so every redis-py
connection the dashboard opens is built (address, timeouts) in one place.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from slotcore.addr import split_addr

# MEMORY USAGE of each key (-1 when it does not exist): one round trip for a whole scan page.
SIZES_LUA = """
local out = {}
for i, k in ipairs(KEYS) do
  local m = redis.call('MEMORY', 'USAGE', k, 'SAMPLES', 5)
  out[i] = m or -1
end
return out
"""


def connect(addr: str, *, timeout: float = 30, connect_timeout: float = 2,
            password: str | None = None, protocol: int | None = None,
            username: str | None = None, retry: bool = True) -> aioredis.Redis:
    """A redis-py client of the server at "host:port" (connects lazily, on first use).
    `retry=False`: a refused connection fails at once (redis-py retries with backoff by
    default), for callers that report "unreachable" rather than wait."""
    host, port = split_addr(addr)
    extra: dict[str, Any] = {"protocol": protocol} if protocol is not None else {}
    if not retry:
        extra["retry"] = Retry(NoBackoff(), 0)
    return aioredis.Redis(host=host, port=port, password=password, username=username,
                          socket_timeout=timeout,
                          socket_connect_timeout=connect_timeout, **extra)


async def key_sizes(conn: aioredis.Redis, keys: list[bytes]) -> list[int]:
    """MEMORY USAGE of each key, -1 for a key that is gone."""
    if not keys:
        return []
    return [int(x) for x in await conn.eval(SIZES_LUA, len(keys), *keys)]
