"""`proxyctl slowlog` / `GET /api/v1/slowlog`: every proxy's slow log and every group
master's own SLOWLOG, merged newest first, each entry naming where it comes from.

A proxy's entry is the client's view (end to end through the proxy, the group it went to);
a server's entry is the time Redis spent executing. Seeing both tells a slow backend command
from a slow path to it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.exceptions import RedisError

from ..control.proxies import ProxyRegistry
from ..model.records import Topology
from .redisconn import connect

MAX_COUNT = 10_000  # entries asked of each source at most


async def _server_log(addr: str, gid: int, count: int, password: str | None) -> dict[str, Any]:
    conn = connect(addr, timeout=3, connect_timeout=2, password=password)
    try:
        raw = await conn.execute_command("SLOWLOG", "GET", count)
    except (RedisError, OSError) as e:
        return {"source": f"group {gid} {addr}", "error": str(e) or type(e).__name__}
    finally:
        await conn.aclose()
    entries = []
    for item in raw or []:
        argv = item[3] if len(item) > 3 and isinstance(item[3], list) else []
        entries.append({
            "id": int(item[0]), "time": int(item[1]), "duration_us": int(item[2]),
            "argv": [a.decode(errors="replace") if isinstance(a, bytes) else str(a)
                     for a in argv],
            "client_addr": _text(item[4]) if len(item) > 4 else "",
            "client_name": _text(item[5]) if len(item) > 5 else "",
            "group": str(gid)})
    return {"source": f"group {gid} {addr}", "kind": "server", "entries": entries}


def _text(v: Any) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


async def _proxy_log(proxies: ProxyRegistry, rec: Any, count: int) -> dict[str, Any]:
    data = await proxies.client.slowlog(rec, count)
    if data is None:
        return {"source": f"proxy {rec.id}", "error": "no answer from its admin API"}
    return {"source": f"proxy {rec.id}", "kind": "proxy", "entries": data.get("entries", [])}


async def merged_slowlog(topo: Topology, proxies: ProxyRegistry, password: str | None,
                         count: int = 10) -> dict[str, Any]:
    """The newest `count` entries over every proxy and every group master (each asked for
    its newest `count`), newest first; sources that did not answer are listed in `errors`."""
    count = max(1, min(count, MAX_COUNT))
    jobs = [_proxy_log(proxies, rec, count) for rec in proxies.records()]
    jobs += [_server_log(g.master, gid, count, password)
             for gid, g in sorted(topo.groups.items()) if g.master]
    parts = await asyncio.gather(*jobs)
    entries: list[dict[str, Any]] = []
    errors = []
    for part in parts:
        if "error" in part:
            errors.append({"source": part["source"], "error": part["error"]})
            continue
        for e in part["entries"]:
            entries.append({**e, "source": part["source"], "kind": part["kind"]})
    # Newest first; within one second, the longer first (ids are per source).
    entries.sort(key=lambda e: (e["time"], e["duration_us"]), reverse=True)
    return {"count": count, "entries": entries[:count], "errors": errors}
