"""The workers' observability documents, merged into one (sans-IO: the supervisor's admin API
fetches them, these pure functions add them up).

* `merge_expositions`: every worker's Prometheus text as one exposition, each sample labelled
  `worker="<index>"`. A family's `# HELP`/`# TYPE` appear once and its samples stay
  contiguous (the text format requires it), in first-appearance order. Totals are a query away:
  `sum without(worker) (rate(slotproxy_commands_total[1m]))`.
* `merge_latency`: the fixed-bucket histograms of `/api/latency` added bucket by bucket.
* `merge_slowlog`: every worker's slow log, newest first, each entry with its `worker`.
* `merge_hotkeys`: one `/api/hotkeys` report in the proxy's own shape, so the dashboard's
  cluster merge (which adds proxies' reports up the same way) reads it unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import generate_latest

from ..observe import histogram

WINDOWS = ("current", "previous")
STATES = ("starting", "ready", "backoff", "failed", "stopped")  # supervisor.Worker.state
# The samples of a histogram/summary/counter family carry its name plus one of these.
_SUFFIXES = ("", "_bucket", "_sum", "_count", "_created", "_total", "_info")


# ------------------------------------------------------------------ /metrics
def with_label(line: str, label: str) -> str:
    """A sample line with `label` (`name="value"`) first among its labels."""
    brace = line.find("{")
    space = line.find(" ")
    if brace != -1 and (space == -1 or brace < space):
        rest = line[brace + 1:]
        sep = "" if rest.startswith("}") else ","
        return f"{line[:brace + 1]}{label}{sep}{rest}"
    if space == -1:
        raise ValueError(f"not a sample line: {line!r}")
    return f"{line[:space]}{{{label}}}{line[space:]}"


def _sample_name(line: str) -> str:
    end = len(line)
    for sep in ("{", " "):
        i = line.find(sep)
        if i != -1:
            end = min(end, i)
    return line[:end]


def _belongs(sample: str, family: str) -> bool:
    return any(sample == family + s for s in _SUFFIXES)


class _Family:
    __slots__ = ("header", "kinds", "samples")

    def __init__(self) -> None:
        self.header: list[str] = []
        self.kinds: set[str] = set()
        self.samples: list[str] = []


def merge_expositions(texts: Iterable[tuple[int, str]], own: str = "") -> str:
    """One text exposition from (worker index, exposition) pairs; `own` (the supervisor's
    series, unlabelled) goes first. Families keep their first-appearance order."""
    families: dict[str, _Family] = {}

    def add(text: str, label: str | None) -> None:
        current: str | None = None
        for line in text.splitlines():
            if not line.strip():
                continue
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    current = parts[2]
                    fam = families.setdefault(current, _Family())
                    if parts[1] not in fam.kinds:  # once, from the first text that has it
                        fam.kinds.add(parts[1])
                        fam.header.append(line)
                continue  # other comments carry nothing
            name = _sample_name(line)
            if current is None or not _belongs(name, current):
                current = name  # an untyped sample: its own family
            families.setdefault(current, _Family()).samples.append(
                line if label is None else with_label(line, label))

    add(own, None)
    for index, text in texts:
        add(text, f'worker="{index}"')
    out: list[str] = []
    for fam in families.values():
        out.extend(fam.header)
        out.extend(fam.samples)
    return "\n".join(out) + "\n" if out else ""


def supervisor_series(views: Sequence[dict[str, Any]]) -> str:
    """The supervisor's own series: workers by state, restarts by worker."""
    p = "slotproxy_"
    states = GaugeMetricFamily(p + "workers", "Worker processes by state (workers: N)",
                               labels=["state"])
    for state in STATES:
        states.add_metric([state], sum(1 for v in views if v["state"] == state))
    restarts = CounterMetricFamily(p + "worker_restarts", "Restarts of each worker process",
                                   labels=["worker"])
    for v in views:
        restarts.add_metric([str(v["index"])], v["restarts"])

    class Own:
        def collect(self) -> Iterable[Any]:
            return [states, restarts]

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Own())  # type: ignore[arg-type]
    return generate_latest(registry).decode()


# ------------------------------------------------------------------ /api/latency
def _add_timings(into: dict[str, dict[str, Any]], name: str, t: dict[str, Any]) -> None:
    acc = into.get(name)
    if acc is None:
        into[name] = {"count": t["count"], "failed": t["failed"], "sum_us": t["sum_us"],
                      "buckets": list(t["buckets"])}
        return
    if len(acc["buckets"]) != len(t["buckets"]):
        raise ValueError(f"{name}: workers report different histogram buckets")
    acc["count"] += t["count"]
    acc["failed"] += t["failed"]
    acc["sum_us"] += t["sum_us"]
    acc["buckets"] = [a + b for a, b in zip(acc["buckets"], t["buckets"], strict=True)]


def merge_latency(docs: Sequence[dict[str, Any]], proxy_id: str) -> dict[str, Any]:
    """One `/api/latency` document: per command and per group, buckets, counts and sums
    added (every worker runs the same code, so the bucket bounds agree)."""
    bounds = next((d["bounds_us"] for d in docs), list(histogram.BOUNDS_US))
    for d in docs:
        if d["bounds_us"] != bounds:
            raise ValueError("workers report different histogram bounds")
    commands: dict[str, dict[str, Any]] = {}
    groups: dict[str, dict[str, Any]] = {}
    for d in docs:
        for name, t in d["commands"].items():
            _add_timings(commands, name, t)
        for gid, t in d["groups"].items():
            _add_timings(groups, gid, t)
    return {"proxy_id": proxy_id, "bounds_us": bounds,
            "sample_every": max((d["sample_every"] for d in docs), default=0),
            "commands": commands, "groups": groups}


# ------------------------------------------------------------------ /api/slowlog
def merge_slowlog(docs: Sequence[tuple[int, dict[str, Any]]], count: int,
                  proxy_id: str) -> dict[str, Any]:
    """Every worker's slow log, newest first (by time, then id), each entry with `worker`;
    `count` entries (negative: all). `length` and `max_len` are the workers' sums (the
    supervisor's log is theirs together)."""
    entries = [{**e, "worker": index} for index, d in docs for e in d["entries"]]
    entries.sort(key=lambda e: (e["time"], e["id"]), reverse=True)
    return {
        "proxy_id": proxy_id,
        "slower_than_us": next((d["slower_than_us"] for _, d in docs), None),
        "max_len": sum(d["max_len"] for _, d in docs),
        "length": sum(d["length"] for _, d in docs),
        "entries": entries if count < 0 else entries[:count],
    }


# ------------------------------------------------------------------ /api/hotkeys
def _merge_window(picked: Sequence[tuple[int, dict[str, Any]]],
                  limit: int | None) -> dict[str, Any]:
    """One window of one report from the workers' same window. An unlisted key had at most
    that worker's `floor` there: it is added to the count and, as it is unproven, to the
    error, so `count - error` stays the proven lower bound (the workers' summed)."""
    rows: dict[str, dict[str, Any]] = {}
    listed: dict[str, set[int]] = {}
    for index, w in picked:
        for k in w["keys"]:
            row = rows.get(k["key"])
            if row is None:
                row = rows[k["key"]] = {"key": k["key"], "count": 0, "error": 0,
                                        "slot": k["slot"], "group": k["group"]}
                listed[k["key"]] = set()
            row["count"] += k["count"]
            row["error"] += k["error"]
            if row["group"] is None:
                row["group"] = k["group"]
            listed[k["key"]].add(index)
    for key, row in rows.items():
        unlisted = sum(w["floor"] for index, w in picked if index not in listed[key])
        row["count"] += unlisted
        row["error"] += unlisted
    keys = sorted(rows.values(), key=lambda r: (-r["count"], r["error"], r["key"]))
    first = picked[0][1]
    return {
        "start": first["start"], "end": first["end"],
        "samples": sum(w["samples"] for _, w in picked),
        "requests": sum(w["requests"] for _, w in picked),
        "floor": sum(w["floor"] for _, w in picked),
        "keys": keys if limit is None else keys[:limit],
        "workers": [index for index, _ in picked],
    }


def merge_hotkeys(reports: Sequence[tuple[int, dict[str, Any]]],
                  limit: int | None = None) -> dict[str, Any]:
    """One `/api/hotkeys` report from the workers' complete reports (asked without a limit:
    a key cut from one worker's list would otherwise miss its count there). Each window is
    the latest start the workers report under that name; a worker is counted in it with
    whichever of its windows has that start (at a window boundary one worker may have rotated
    and another not yet), and left out when it has none."""
    on = [(i, r) for i, r in reports if r.get("enabled", True)]
    first = on[0][1] if on else (reports[0][1] if reports else {})
    out: dict[str, Any] = {
        "enabled": bool(on),
        "sample_rate": first.get("sample_rate"), "capacity": first.get("capacity"),
        "window": first.get("window"),
        "now": max((r["now"] for _, r in reports), default=None),
    }
    for name in WINDOWS:
        starts = [r[name]["start"] for _, r in on if r.get(name)]
        if not starts:
            out[name] = None
            continue
        target = max(starts)
        picked = []
        for index, r in on:
            w = next((r[n] for n in WINDOWS if r.get(n) and r[n]["start"] == target), None)
            if w is not None:
                picked.append((index, w))
        out[name] = _merge_window(picked, limit)
    return out
