"""Latency percentiles per proxy and per group, from the proxies' fixed-bucket histograms.

Each proxy reports its histograms (`GET /api/latency`: power-of-two µs bounds, counts per
bucket); buckets of the same bounds add, so a group's distribution over the fleet is the sum
of every proxy's. Percentiles are bucket-approximate: interpolated inside the bucket the rank
falls in (never off by more than that bucket's width, a factor of two).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from ..control.proxies import ProxyRegistry

QUANTILES = (50.0, 99.0, 99.9)


def percentile(bounds: Sequence[int], counts: Sequence[int], q: float) -> float:
    """The q-th percentile in µs (bucket i holds (bounds[i-1], bounds[i]]; the last bucket is
    over the last bound and answers it)."""
    total = sum(counts)
    if not total:
        return 0.0
    rank = q / 100.0 * total
    seen = 0
    for i, c in enumerate(counts):
        if c and seen + c >= rank:
            if i >= len(bounds):
                return float(bounds[-1])
            lower = bounds[i - 1] if i > 0 else 0
            return lower + (bounds[i] - lower) * max(rank - seen, 0.0) / c
        seen += c
    return float(bounds[-1])


def summary(bounds: Sequence[int], counts: Sequence[int], total_us: int) -> dict[str, Any]:
    n = sum(counts)
    return {"count": n, "mean_us": round(total_us / n, 1) if n else 0.0,
            **{f"p{q:g}": round(percentile(bounds, counts, q), 1) for q in QUANTILES}}


def _add(into: list[int], counts: Sequence[int]) -> None:
    for i, c in enumerate(counts[: len(into)]):
        into[i] += c


async def latency_view(proxies: ProxyRegistry) -> dict[str, Any]:
    """{"proxies": {id: summary}, "groups": {gid: summary}, "unreachable": [ids]}."""
    records = proxies.records()
    reports = await asyncio.gather(*(proxies.client.latency(r) for r in records))
    by_proxy: dict[str, Any] = {}
    groups: dict[str, tuple[list[int], list[int]]] = {}  # gid -> (counts, [sum_us])
    bounds: list[int] = []
    unreachable = []
    for rec, rep in zip(records, reports, strict=True):
        if not rep or "bounds_us" not in rep:
            unreachable.append(rec.id)
            continue
        bounds = rep["bounds_us"]
        width = len(bounds) + 1
        counts, total = [0] * width, 0
        for t in rep.get("commands", {}).values():
            _add(counts, t["buckets"])
            total += t["sum_us"]
        by_proxy[rec.id] = {**summary(bounds, counts, total),
                            "sample_every": rep.get("sample_every")}
        for gid, t in rep.get("groups", {}).items():
            acc = groups.setdefault(gid, ([0] * width, [0]))
            _add(acc[0], t["buckets"])
            acc[1][0] += t["sum_us"]
    return {"bounds_us": bounds, "proxies": by_proxy,
            "groups": {g: summary(bounds, c, s[0]) for g, (c, s) in sorted(groups.items())},
            "unreachable": unreachable}
