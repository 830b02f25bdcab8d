"""The proxies of a cluster as both sides see them: what the dashboard pushes so that every proxy
can answer CLUSTER SLOTS/NODES/SHARDS describing all of them (the "masquerade").

The dashboard adds the live proxies to the slot map it pushes (`SlotMap.proxies`, JSON key
`"proxies": [{"id": ..., "addr": ...}]`, absent when unknown: old dashboards and proxies ignore
it) and a digest of that list to its heartbeat reply (`"members"`), so a proxy that missed a
membership push fetches the map again. Every proxy derives the same answer from the same list:
node ids from proxy ids, and Redis Cluster's 16384 slots spread evenly over the proxies sorted
by id. Every proxy serves every slot, so the spread only spreads clients' load.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

# What a Redis Cluster client hashes keys into, whatever slot count the proxies route by.
CLUSTER_SLOTS = 16384


@dataclass(frozen=True, slots=True)
class ProxyAddr:
    """A live proxy: its id and the address clients reach it at (`host:port`)."""

    id: str
    addr: str

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "addr": self.addr}

    @classmethod
    def from_json(cls, data: Any) -> ProxyAddr:
        if not isinstance(data, dict) or not data.get("id") or not data.get("addr"):
            raise ValueError(f"proxy entry {data!r}: expected {{id, addr}}")
        return cls(str(data["id"]), str(data["addr"]))


def node_id(proxy_id: str) -> str:
    """The 40-hex Redis Cluster node id of a proxy: stable, the same on every proxy."""
    return hashlib.sha1(proxy_id.encode("utf-8", "surrogateescape")).hexdigest()


def canonical(proxies: list[ProxyAddr] | tuple[ProxyAddr, ...]) -> tuple[ProxyAddr, ...]:
    """Sorted by id, one entry per id (the last given wins): the order slots are spread in."""
    by_id = {p.id: p for p in proxies}
    return tuple(by_id[k] for k in sorted(by_id))


def digest(proxies: list[ProxyAddr] | tuple[ProxyAddr, ...]) -> str:
    """A short fingerprint of a proxy list (heartbeat replies carry the dashboard's)."""
    text = json.dumps([[p.id, p.addr] for p in canonical(proxies)], separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def spread(n: int, nslots: int = CLUSTER_SLOTS) -> list[tuple[int, int]]:
    """(start, end) inclusive of the slots node i (0 <= i < n) is said to own: contiguous,
    as even as integer division allows, in node order."""
    return [(nslots * i // n, nslots * (i + 1) // n - 1) for i in range(n)]
