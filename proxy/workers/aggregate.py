"""Totals across worker processes, from each worker's admin-API stats (`report.stats_json`).

`total_stats` is the one place that knows how figures combine, so the admin API, INFO-like
views and the metrics exposition all add workers up the same way. It is generic on purpose: a
counter added to `stats_json` later is summed without a change here. Rules:

* numbers add up (counters, clients, ops/s), except `uptime` (the longest) and `epoch` (the
  lowest: the map every worker has applied), and latency-like figures -- keys ending in `_ms`
  or `_seconds`, or containing `latency` -- where the worst worker's is the total's;
* flags (`up`) are true only if true in every worker;
* mappings (per-group figures) combine key by key; equal-length number lists (`slot_ops`)
  element by element; anything else (a group's master address) is the first worker's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

LOWEST = frozenset({"epoch"})
HIGHEST = frozenset({"uptime"})


def _worst(key: str) -> bool:
    return key in HIGHEST or key.endswith(("_ms", "_seconds")) or "latency" in key


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _combine(key: str, values: list[Any]) -> Any:
    if all(isinstance(v, bool) for v in values):
        return all(values)
    if all(_number(v) for v in values):
        if key in LOWEST:
            return min(values)
        if _worst(key):
            return max(values)
        total = sum(values)
        return round(total, 1) if isinstance(total, float) else total
    if all(isinstance(v, dict) for v in values):
        return total_stats(values)
    if (all(isinstance(v, list) for v in values) and len({len(v) for v in values}) == 1
            and all(_number(x) for v in values for x in v)):
        return [sum(col) for col in zip(*values, strict=True)]
    return values[0]


def total_stats(per_worker: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """One stats document for the whole proxy from its workers' documents."""
    docs = list(per_worker)
    keys: dict[str, None] = {}
    for d in docs:
        keys.update(dict.fromkeys(d))
    return {k: _combine(k, [d[k] for d in docs if k in d]) for k in keys}
