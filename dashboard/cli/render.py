"""How proxyctl prints things: tables, sizes, ages, progress bars and one renderer per view."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from slotcore.addr import split_addr
from slotcore.contract import TOKEN_ENV

from .client import DASHBOARD_ENV


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [["-" if c in (None, "") else str(c) for c in r]
                                            for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in cells)


def human_bytes(n: int | None) -> str:
    if not n:
        return "-"
    value = float(n)
    for unit in ("B", "K", "M", "G", "T"):
        if value < 1024 or unit == "T":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return str(n)


def ago(ts: float | None) -> str:
    if not ts:
        return "never"
    secs = max(0.0, time.time() - ts)
    return f"{secs:.0f}s ago" if secs < 120 else f"{secs / 60:.0f}m ago"


def render_status(topo: dict[str, Any]) -> str:
    d = topo["dashboard"]
    leader = d.get("leader") or {}
    lines = [f"dashboard {d.get('url')}  {d['role']}  id {d.get('id')}  cluster "
             f"{d.get('cluster')}" + (f"  (leader: {leader.get('url')})"
                                      if d["role"] != "leader" and leader else ""),
             f"epoch {topo['epoch']}  slots {topo['slots']}  unassigned: "
             f"{topo['unassigned'] or 'none'}", ""]
    rows = []
    for g in topo["groups"]:
        h = g.get("health", {})
        servers = {s["addr"]: s for s in h.get("servers", [])}
        master = servers.get(g["master"] or "", {})
        status = "ok" if h.get("ok") else ("down" if master.get("reachable") is False
                                           else "no-master" if not g["master"] else "unknown")
        replicas = []
        for r in g["replicas"]:
            rs = servers.get(r, {})
            mark = "" if rs.get("reachable") and rs.get("role") == "replica" else "(!)"
            replicas.append(r + mark)
        rows.append([g["id"], g["master"], ",".join(replicas), g["slots"], g["slot_count"],
                     status if g.get("state", "active") == "active" else g["state"],
                     h.get("keys"), human_bytes(h.get("used_memory")), h.get("ops_per_sec")])
    lines.append(table(["GROUP", "MASTER", "REPLICAS", "SLOTS", "#", "HEALTH", "KEYS", "MEM",
                        "OPS/S"], rows) if rows else "no groups")
    if any("(!)" in str(r[2]) for r in rows):
        lines.append("(!) replica unreachable or not replicating")
    repl = render_replication(topo["groups"])
    if repl:
        lines += ["", repl]
    lines.append("")
    lines.append(render_proxies(topo["proxies"]))
    return "\n".join(lines)


def render_replication(groups: list[dict[str, Any]]) -> str:
    """One row per replica: its link to the master and how far behind it is."""
    rows = []
    for g in groups:
        for s in (g.get("health") or {}).get("servers", []):
            if s.get("expected_role") != "replica":
                continue
            r = s.get("replication") or {}
            link = r.get("link") or ("down" if s.get("reachable") is False else "unknown")
            if r.get("replica_of"):
                link += f" ({r['replica_of']})"
            lag_s = r.get("lag_seconds")
            rows.append([g["id"], s["addr"], g["master"], link,
                         r.get("lag_bytes"), f"{lag_s}s" if lag_s is not None else None,
                         r.get("offset")])
    if not rows:
        return ""
    return table(["GROUP", "REPLICA", "OF", "LINK", "LAG BYTES", "LAG", "OFFSET"], rows)


def render_sync(state: dict[str, Any]) -> str:
    """A replica's sync progress as one line (proxyctl prints each new one)."""
    name = state.get("state")
    head = f"{state.get('addr')}: {name}"
    if name == "syncing":
        read, total = state.get("sync_read_bytes") or 0, state.get("sync_total_bytes")
        return (f"{head} (full sync: {bar(read, total)} {human_bytes(read)} of "
                f"{human_bytes(total)})" if total else
                f"{head} (full sync: {human_bytes(read) if read else '0B'} received)")
    if name == "catching-up":
        behind = (state.get("target_offset") or 0) - (state.get("offset") or 0)
        return f"{head} ({behind} bytes behind offset {state.get('target_offset')})"
    if name == "not-replicating":
        return f"{head} (replicates from {state.get('replica_of') or 'nobody: a master'})"
    if name == "in-sync":
        return f"{head} (offset {state.get('offset')})"
    return f"{head} (link {state.get('link')})"


def render_proxies(proxies: list[dict[str, Any]]) -> str:
    if not proxies:
        return "no proxies"
    rows = []
    for p in proxies:
        stats = p.get("stats") or {}
        rows.append([p["id"], p["addr"], p["admin"],
                     p["state"] + (" (stale)" if p.get("stale") else ""), p["epoch"],
                     ago(p.get("last_seen")), stats.get("clients"), stats.get("ops_per_sec"),
                     p.get("error")])
    return table(["PROXY", "ADDR", "ADMIN", "STATE", "EPOCH", "LAST SEEN", "CLIENTS", "OPS/S",
                  "ERROR"], rows)


def bar(done: float, total: float, width: int = 30) -> str:
    frac = 0.0 if total <= 0 else min(1.0, done / total)
    full = int(frac * width)
    return "[" + "#" * full + "-" * (width - full) + f"] {frac * 100:5.1f}%"


def render_migrations(m: dict[str, Any]) -> str:
    slots = m.get("slots", [])
    states = m.get("states", {})
    total_keys = sum(s["keys_total"] or 0 for s in slots)
    moved_now = sum(s["keys_moved"] for s in slots)
    done = m.get("slots_done", 0)
    all_slots = done + len(slots)
    eta = m.get("eta_seconds")
    lines = [f"migration: {m['status']}" + (f"  ({m['error']})" if m.get("error") else ""),
             f"slots {bar(done, all_slots)}  {done}/{all_slots} done  "
             + ", ".join(f"{k} {v}" for k, v in sorted(states.items())),
             f"keys moved {m['keys_moved']}  bytes {human_bytes(m['bytes_moved'])}  "
             f"rate {m['rate_keys_per_sec']:.0f} keys/s  ETA "
             + (f"{eta:.0f}s" if eta is not None else "-")]
    if total_keys:
        lines.append(f"batch {bar(moved_now, total_keys)}  {moved_now}/{total_keys} keys")
    active = [s for s in slots if s["state"] != "pending" or s.get("error")]
    if active:
        rows = [[s["slot"], s["state"], s["from"], s["to"],
                 f"{s['keys_moved']}/{s['keys_total'] if s['keys_total'] is not None else '?'}",
                 human_bytes(s["bytes_moved"]), s.get("error")] for s in active[:20]]
        lines.append(table(["SLOT", "STATE", "FROM", "TO", "KEYS", "BYTES", "ERROR"], rows))
        if len(active) > 20:
            lines.append(f"... and {len(active) - 20} more")
    pending = states.get("pending", 0)
    if pending:
        lines.append(f"{pending} slots pending")
    big = m.get("big_keys") or []
    if big:
        lines.append("big keys (copied in chunks under a fence):")
        for b in big[:10]:
            lines.append(f"  {b['key']!r} {human_bytes(b.get('bytes'))} slot {b['slot']} "
                         + ("moved" if b.get("moved") else "waiting")
                         + (f", longest command {b['max_stall_ms']:.1f}ms"
                            if b.get("max_stall_ms") else ""))
    return "\n".join(lines)


def render_plan(data: dict[str, Any]) -> str:
    plan = data["plan"]
    rows = [[m["from"], m["to"], m["count"], m["slots"]] for m in plan["moves"]]
    lines = [f"rebalance plan ({plan['mode']} mode): {plan['slots_moved']} slots to move"]
    if rows:
        lines.append(table(["FROM", "TO", "#", "SLOTS"], rows))
    has_load = any("load" in v for v in plan["before"].values())
    grows = []
    for gid, before in plan["before"].items():
        after = plan["after"][gid]
        row = [gid, data["weights"].get(gid), before["slots"], after["slots"]]
        if has_load:
            row += [f"{before['load'] * 100:.1f}%", f"{after['load'] * 100:.1f}%"]
        grows.append(row)
    heads = ["GROUP", "WEIGHT", "SLOTS BEFORE", "SLOTS AFTER"]
    if has_load:
        heads += ["LOAD BEFORE", "LOAD AFTER"]
    lines.append(table(heads, grows))
    if data.get("measured"):
        m = data["measured"]
        lines.append(f"measured: {m['keys']} keys, {human_bytes(m['memory'])}, "
                     f"{m['ops_per_sec'] if m['ops_per_sec'] is not None else '-'} ops/s"
                     + (f" (errors: {'; '.join(m['errors'])})" if m["errors"] else ""))
    if data.get("started"):
        lines.append(f"started: {data['started']['count']} slots queued")
    elif data["dry_run"]:
        lines.append("dry run: nothing started")
    return "\n".join(lines)


# -- proxyctl up ------------------------------------------------------------------------------


def render_cluster(info: dict[str, Any]) -> str:
    lines = [f"slotproxy local cluster is up (work dir {info['dir']})",
             f"  dashboard  {info['dashboard']}"]
    lines += [f"  proxy      {addr}   (redis-cli -p {split_addr(addr)[1]})"
              for addr in info["proxies"]]
    replicas = info.get("replicas") or {}
    lines += [f"  group {gid}    {addr}" + (f"   replicas {', '.join(replicas[gid])}"
                                            if replicas.get(gid) else "")
              for gid, addr in info["groups"].items()]
    lines += ["", "Operate it with:",
              f"  export {DASHBOARD_ENV}={info['dashboard']} {TOKEN_ENV}={info['token']}",
              "  proxyctl status", "", "Ctrl-C stops everything."]
    return "\n".join(lines)
