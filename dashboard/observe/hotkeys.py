"""The cluster's hot keys: every proxy's sampled top-k of one window, added up (I/O + a pure
merge).

Each proxy reports Space-Saving counters already scaled to requests (proxy/observe/hotkeys.py),
for windows aligned to the wall clock, so the same window on every proxy covers the same
interval. For a key, summed over the proxies that answered:

* `count`  -- the sum of the listed counts (each an over-estimate of that proxy's count);
* `lower`  -- the sum of (count - error): the key had at least this many requests;
* `upper`  -- `count` plus, for every proxy that did not list the key, that proxy's `floor`
  (its smallest count once its summary is full: an unlisted key had at most that many there).

The figures are estimates from 1-in-N sampling on top of that (the bounds are exact for the
samples, not for the requests). The group is the key's slot owner in the current topology.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..control.proxies import ProxyClient
from ..model.records import ProxyRecord, Topology

WINDOWS = ("current", "previous")


def merge(reports: dict[str, dict[str, Any]], owner: tuple[int, ...] | list[int],
          window: str = "current", group: int | None = None,
          limit: int = 50) -> dict[str, Any]:
    """One cluster top list from the proxies' `/api/hotkeys` reports (proxy id -> report)."""
    if window not in WINDOWS:
        raise ValueError(f"window must be one of {', '.join(WINDOWS)}")
    # The window every proxy agrees on: the latest start any proxy reports (a proxy whose
    # clock is a little behind still has it as its current one, or its previous one).
    starts = [r[window]["start"] for r in reports.values() if r.get(window)]
    target = max(starts) if starts else None
    picked: dict[str, dict[str, Any]] = {}
    missing: list[str] = []
    for pid, rep in sorted(reports.items()):
        w = next((rep[name] for name in WINDOWS
                  if rep.get(name) and rep[name]["start"] == target), None)
        if w is None:
            missing.append(pid)
        else:
            picked[pid] = w
    rows: dict[str, dict[str, Any]] = {}
    for pid, w in picked.items():
        for k in w["keys"]:
            row = rows.setdefault(k["key"], {"key": k["key"], "slot": k["slot"], "count": 0,
                                             "lower": 0, "error": 0, "proxies": []})
            row["count"] += k["count"]
            row["error"] += k["error"]
            row["lower"] += k["count"] - k["error"]
            row["proxies"].append(pid)
    requests = sum(w["requests"] for w in picked.values())
    out_rows = []
    for row in rows.values():
        slot = row["slot"]
        row["group"] = (owner[slot] or None) if 0 <= slot < len(owner) else None
        if group is not None and row["group"] != group:
            continue
        listed = set(row["proxies"])
        row["upper"] = row["count"] + sum(w["floor"] for pid, w in picked.items()
                                          if pid not in listed)
        row["share"] = round(row["count"] / requests, 4) if requests else 0.0
        out_rows.append(row)
    out_rows.sort(key=lambda r: (-r["count"], r["lower"] * -1, r["key"]))
    first = next(iter(picked.values()), None)
    return {
        "window": window,
        "start": target,
        "end": first["end"] if first else None,
        "group": group,
        "requests": requests,  # estimated requests with a key, over the proxies listed
        "proxies": sorted(picked),
        "missing": missing,  # proxies that did not answer or report another window
        "keys": out_rows[:limit],
    }


async def cluster_hotkeys(client: ProxyClient, proxies: list[ProxyRecord], topo: Topology,
                          window: str = "current", group: int | None = None,
                          limit: int = 50) -> dict[str, Any]:
    """Ask every registered proxy for its hot keys and merge them (GET /api/v1/hotkeys)."""
    got = await asyncio.gather(*(client.hotkeys(p) for p in proxies))
    reports = {p.id: r for p, r in zip(proxies, got, strict=True)
               if r is not None and r.get("enabled", True)}
    out = merge(reports, topo.owner, window, group, limit)
    out["missing"] = sorted(set(out["missing"]) | {p.id for p, r in zip(proxies, got,
                                                                       strict=True)
                                                   if r is None})
    out["disabled"] = sorted(p.id for p, r in zip(proxies, got, strict=True)
                             if r is not None and not r.get("enabled", True))
    return out
