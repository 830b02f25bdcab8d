"""proxyctl: the operator's CLI, a thin client of the dashboard REST API (never the store).

    proxyctl status
    proxyctl group add [GID] [--master ADDR] [--replica ADDR ...]
    proxyctl group remove GID | add-server GID ADDR [--role R] | remove-server GID ADDR
    proxyctl slots assign RANGE GROUP [--force]
    proxyctl proxy list | remove ID [--force]
    proxyctl migrate SLOTS --to GROUP [--watch]     e.g. proxyctl migrate 0-1023,2048 --to 2
    proxyctl migrate [status] [--watch] | cancel | pause | resume
    proxyctl migrate set [--batch-size N] [--keys-per-sec N] [--max-slots N] [...]
    proxyctl rebalance [--dry-run] [--load] [--weight GID=W ...] [--watch]
    proxyctl group drain GID [--dry-run] [--watch] | weight GID W
    proxyctl group add GID --master ADDR --rebalance
    proxyctl up [--groups 3] [--proxies 1] [--dir .cluster]

Exit codes: 0 ok, 1 the dashboard refused or failed the request, 2 bad usage,
3 the dashboard is unreachable. `--json` prints the API's JSON for scripts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

DEFAULT_DASHBOARD = "http://127.0.0.1:18080"
DASHBOARD_ENV = "SLOTPROXY_DASHBOARD"
TOKEN_ENV = "SLOTPROXY_ADMIN_TOKEN"

EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.code = code


class Client:
    """Synchronous JSON-over-HTTP client (stdlib only: the CLI must start fast)."""

    def __init__(self, url: str, token: str | None, timeout: float = 15.0) -> None:
        self.url = url.rstrip("/")
        if "://" not in self.url:
            self.url = "http://" + self.url
        self.token = token
        self.timeout = timeout

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token and method != "GET":
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            try:
                message = json.loads(e.read()).get("error") or e.reason
            except (ValueError, AttributeError):
                message = e.reason
            hint = ""
            if e.code == 401 and not self.token:
                hint = f" (pass --token or set {TOKEN_ENV})"
            raise CliError(f"{method} {path}: HTTP {e.code}: {message}{hint}") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise CliError(f"dashboard {self.url} unreachable: {reason}",
                           EXIT_UNREACHABLE) from None

    def get(self, path: str) -> Any:
        return self.call("GET", path)


# -- output ------------------------------------------------------------------------------------


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
                     status, h.get("keys"), human_bytes(h.get("used_memory")),
                     h.get("ops_per_sec")])
    lines.append(table(["GROUP", "MASTER", "REPLICAS", "SLOTS", "#", "HEALTH", "KEYS", "MEM",
                        "OPS/S"], rows) if rows else "no groups")
    if any("(!)" in str(r[2]) for r in rows):
        lines.append("(!) replica unreachable or not replicating")
    lines.append("")
    lines.append(render_proxies(topo["proxies"]))
    return "\n".join(lines)


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


# -- commands ----------------------------------------------------------------------------------


def cmd_status(c: Client, a: argparse.Namespace) -> tuple[Any, str]:
    topo = c.get("/api/v1/topology")
    return topo, render_status(topo)


def cmd_group_list(c: Client, a: argparse.Namespace) -> tuple[Any, str]:
    data = c.get("/api/v1/groups")
    rows = [[g["id"], g["master"], ",".join(g["replicas"]), g["state"], g["slots"],
             g["slot_count"]] for g in data["groups"]]
    return data, table(["GROUP", "MASTER", "REPLICAS", "STATE", "SLOTS", "#"], rows)


def cmd_group_add(c: Client, a: argparse.Namespace) -> tuple[Any, str]:
    body: dict[str, Any] = {"replicas": a.replica or []}
    if a.gid is not None:
        body["id"] = a.gid
    if a.master:
        body["master"] = a.master
    data = c.call("POST", "/api/v1/groups", body)
    text = f"group {data['group']['id']} created (epoch {data['epoch']})"
    if getattr(a, "rebalance", False):
        print(text, flush=True)
        a.dry_run, a.load, a.weight = False, False, []
        return _rebalance(c, a)
    return data, text


def cmd_group_remove(c: Client, a: argparse.Namespace) -> tuple[Any, str]:
    data = c.call("DELETE", f"/api/v1/groups/{a.gid}")
    return data, f"group {a.gid} removed (epoch {data['epoch']})"


def cmd_group_add_server(c: Client, a: argparse.Namespace) -> tuple[Any, str]:
    body = {"addr": a.addr, **({"role": a.role} if a.role else {})}
    data = c.call("POST", f"/api/v1/groups/{a.gid}/servers", body)
    g = data["group"]
    role = "master" if g["master"] == a.addr else "replica"
    return data, f"{a.addr} added to group {a.gid} as {role} (epoch {data['epoch']})"


def cmd_group_remove_server(c: Client, a: argparse.Namespace) -> tuple[Any, str]:
    data = c.call("DELETE", f"/api/v1/groups/{a.gid}/servers/{a.addr}")
    return data, f"{a.addr} removed from group {a.gid} (epoch {data['epoch']})"


def cmd_slots_assign(c: Client, a: argparse.Namespace) -> tuple[Any, str]:
    data = c.call("POST", "/api/v1/slots/assign",
                  {"assign": [{"slots": a.range, "group": a.group}], "force": a.force})
    return data, f"slots {a.range} assigned to group {a.group} (epoch {data['epoch']})"


def cmd_slots_show(c: Client, a: argparse.Namespace) -> tuple[Any, str]:
    data = c.get("/api/v1/slots")
    rows = [[f"{s}-{e}" if s != e else s, e - s + 1, g] for s, e, g in data["ranges"]]
    text = table(["SLOTS", "#", "GROUP"], rows)
    return data, f"{text}\nunassigned: {data['unassigned'] or 'none'}"


def cmd_proxy_list(c: Client, a: argparse.Namespace) -> tuple[Any, str]:
    data = c.get("/api/v1/proxies")
    return data, render_proxies(data["proxies"])


def cmd_proxy_remove(c: Client, a: argparse.Namespace) -> tuple[Any, str]:
    data = c.call("DELETE", f"/api/v1/proxies/{a.id}" + ("?force=1" if a.force else ""))
    return data, (f"proxy {a.id} removed (a live proxy registers again with its next "
                  "heartbeat)")


# -- migration ---------------------------------------------------------------------------------


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


def watch(c: Client, interval: float = 1.0) -> tuple[Any, str]:
    """Redraw the progress until no slot is left; returns the last status."""
    tty = sys.stdout.isatty()
    last = None
    while True:
        data = c.get("/api/v1/migrations")
        text = render_migrations(data)
        if tty:
            sys.stdout.write("\x1b[H\x1b[2J" + text + "\n")
        else:
            line = text.splitlines()[1] + "  " + text.splitlines()[2]
            if line != last:
                print(line, flush=True)
            last = line
        sys.stdout.flush()
        if not data["slots"]:
            return data, "migration finished: " + text.splitlines()[2]
        time.sleep(interval)


def cmd_migrate(c: Client, a: argparse.Namespace) -> tuple[Any, str]:
    words = a.args
    if not words or words[0] == "status":
        if a.watch:
            return watch(c, a.interval)
        data = c.get("/api/v1/migrations")
        return data, render_migrations(data)
    if words[0] == "cancel":
        data = c.call("POST", "/api/v1/migrations/cancel", {})
        return data, (f"cancelled slots: {data['cancelled'] or 'none'}; slots already "
                      f"migrating finish: {data['finishing'] or 'none'}")
    if words[0] in ("pause", "resume"):
        data = c.call("PUT", "/api/v1/migrations/settings", {"paused": words[0] == "pause"})
        return data, f"migration {'paused' if words[0] == 'pause' else 'resumed'}"
    if words[0] == "set":
        body = {k: v for k, v in (("batch_size", a.batch_size), ("keys_per_sec", a.keys_per_sec),
                                  ("max_concurrent_slots", a.max_slots),
                                  ("big_key_bytes", a.big_key_bytes), ("stall_ms", a.stall_ms),
                                  ("batch_bytes", a.batch_bytes)) if v is not None}
        if not body:
            raise CliError("migrate set: give at least one of --batch-size, --keys-per-sec, "
                           "--max-slots, --big-key-bytes, --stall-ms, --batch-bytes",
                           EXIT_USAGE)
        data = c.call("PUT", "/api/v1/migrations/settings", body)
        return data, "settings: " + ", ".join(f"{k}={v}" for k, v in
                                              sorted(data["settings"].items()))
    if len(words) != 1 or a.to is None:
        raise CliError("usage: proxyctl migrate SLOTS --to GROUP  (e.g. 0-1023,2048 --to 2)",
                       EXIT_USAGE)
    data = c.call("POST", "/api/v1/migrations", {"slots": words[0], "to": a.to})
    text = (f"queued {data['count']} slots ({data['queued'] or 'none'}) to group {a.to} "
            f"(epoch {data['epoch']})")
    if a.watch and data["count"]:
        print(text, flush=True)
        return watch(c, a.interval)
    return data, text


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


def _rebalance(c: Client, a: argparse.Namespace, drain: list[int] | None = None
               ) -> tuple[Any, str]:
    weights = {}
    for item in getattr(a, "weight", None) or []:
        gid, sep, w = item.partition("=")
        if not sep:
            raise CliError(f"--weight {item!r}: expected GID=WEIGHT", EXIT_USAGE)
        weights[gid] = float(w)
    body = {"dry_run": True, "mode": "load" if getattr(a, "load", False) else "count",
            "weights": weights, "drain": drain or []}
    plan = c.call("POST", "/api/v1/rebalance", body)
    if a.dry_run or (not plan["plan"]["moves"] and not drain):
        return plan, render_plan(plan)
    print(render_plan(plan), flush=True)  # shown before it runs
    data = c.call("POST", "/api/v1/rebalance", {**body, "dry_run": False})
    text = f"started: {data.get('started', {}).get('count', 0)} slots queued"
    if a.watch:
        print(text, flush=True)
        return watch(c, 1.0)
    return data, text


def cmd_rebalance(c: Client, a: argparse.Namespace) -> tuple[Any, str]:
    return _rebalance(c, a)


def cmd_group_drain(c: Client, a: argparse.Namespace) -> tuple[Any, str]:
    return _rebalance(c, a, drain=[a.gid])


def cmd_group_weight(c: Client, a: argparse.Namespace) -> tuple[Any, str]:
    data = c.call("PUT", f"/api/v1/groups/{a.gid}/weight", {"weight": a.weight})
    return data, f"group {a.gid} weight {a.weight} (epoch {data['epoch']})"


def cmd_up(c: Client, a: argparse.Namespace) -> int:
    """Runs in the foreground until Ctrl-C; prints its own output."""
    from .localcluster import run_up
    return run_up(a)


# -- argument parsing --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    # Global options are accepted before or after the command: each subparser gets them too,
    # with SUPPRESS defaults so a value given before the command is not reset after it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dashboard", default=argparse.SUPPRESS, metavar="URL",
                        help=f"dashboard URL (env {DASHBOARD_ENV}, default {DEFAULT_DASHBOARD})")
    common.add_argument("--token", default=argparse.SUPPRESS,
                        help=f"admin token (env {TOKEN_ENV})")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print the API's JSON instead of tables")
    common.add_argument("--timeout", type=float, default=argparse.SUPPRESS,
                        help="HTTP timeout in seconds (default 15)")

    parser = argparse.ArgumentParser(
        prog="proxyctl", parents=[common],
        description="Operate a slotproxy cluster through its dashboard's REST API.",
        epilog="exit codes: 0 ok, 1 refused/failed, 2 usage, 3 dashboard unreachable")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(parent: Any, name: str, func: Callable[..., Any], help_: str,
            **kw: Any) -> argparse.ArgumentParser:
        p = parent.add_parser(name, parents=[common], help=help_, description=help_, **kw)
        p.set_defaults(func=func)
        return p

    add(sub, "status", cmd_status, "groups, slot ranges per group, proxies and health")

    group = sub.add_parser("group", help="create, remove and change groups",
                           description="create, remove and change groups")
    gsub = group.add_subparsers(dest="group_command", metavar="ACTION", required=True)
    add(gsub, "list", cmd_group_list, "list groups")
    p = add(gsub, "add", cmd_group_add, "create a group")
    p.add_argument("gid", type=int, nargs="?", help="group id (default: smallest free)")
    p.add_argument("--master", metavar="ADDR", help="master server host:port")
    p.add_argument("--replica", metavar="ADDR", action="append", help="replica (repeatable)")
    p.add_argument("--rebalance", action="store_true",
                   help="then rebalance slots onto it (by count) and start moving them")
    p.add_argument("--watch", action="store_true", help="with --rebalance: draw progress")
    p = add(gsub, "drain", cmd_group_drain,
            "move every slot off a group (weight 0, rebalance), before removing it")
    p.add_argument("gid", type=int)
    p.add_argument("--dry-run", action="store_true", help="only show the plan")
    p.add_argument("--watch", action="store_true", help="draw progress until done")
    p = add(gsub, "weight", cmd_group_weight, "set a group's rebalance weight (0 = drain)")
    p.add_argument("gid", type=int)
    p.add_argument("weight", type=float)
    p = add(gsub, "remove", cmd_group_remove, "delete a group (it must own no slots)")
    p.add_argument("gid", type=int)
    p = add(gsub, "add-server", cmd_group_add_server,
            "add a server: master if the group has none, else replica")
    p.add_argument("gid", type=int)
    p.add_argument("addr", help="host:port")
    p.add_argument("--role", choices=["master", "replica"])
    p = add(gsub, "remove-server", cmd_group_remove_server, "remove a server from a group")
    p.add_argument("gid", type=int)
    p.add_argument("addr", help="host:port")

    slots = sub.add_parser("slots", help="slot assignment", description="slot assignment")
    ssub = slots.add_subparsers(dest="slots_command", metavar="ACTION", required=True)
    p = add(ssub, "assign", cmd_slots_assign,
            "assign slots to a group without moving data (initial assignment)")
    p.add_argument("range", help="slots, e.g. 0-5460 or 0-99,200")
    p.add_argument("group", type=int, help="group id")
    p.add_argument("--force", action="store_true",
                   help="also take slots owned by another group (their keys become invisible)")
    add(ssub, "show", cmd_slots_show, "slot ranges per group")

    proxy = sub.add_parser("proxy", help="registered proxies", description="registered proxies")
    psub = proxy.add_subparsers(dest="proxy_command", metavar="ACTION", required=True)
    add(psub, "list", cmd_proxy_list, "list registered proxies")
    p = add(psub, "remove", cmd_proxy_remove, "forget a proxy (e.g. a dead one)")
    p.add_argument("id", help="proxy id (see `proxyctl proxy list`)")
    p.add_argument("--force", action="store_true",
                   help="remove it even though it cannot be reached: MAKE SURE IT IS STOPPED "
                        "(a live proxy with an old slot map could write keys already moved)")

    p = add(sub, "migrate", cmd_migrate,
            "migrate slots online: `migrate SLOTS --to GROUP`, `migrate [status] --watch`, "
            "`migrate cancel|pause|resume`, `migrate set --keys-per-sec N ...`")
    p.add_argument("args", nargs="*", metavar="SLOTS|status|cancel|pause|resume|set")
    p.add_argument("--to", type=int, metavar="GROUP", help="target group")
    p.add_argument("--watch", action="store_true", help="draw a progress bar until done")
    p.add_argument("--interval", type=float, default=1.0, help="--watch refresh (s)")
    p.add_argument("--batch-size", type=int, help="set: keys per MIGRATE")
    p.add_argument("--keys-per-sec", type=int, help="set: per source group, 0 = unlimited")
    p.add_argument("--max-slots", type=int, help="set: slots per batch")
    p.add_argument("--big-key-bytes", type=int, help="set: chunk-copy keys above this")
    p.add_argument("--stall-ms", type=float, help="set: longest command of a chunk copy")
    p.add_argument("--batch-bytes", type=int, help="set: bytes per MIGRATE")

    p = add(sub, "rebalance", cmd_rebalance,
            "even slots (or measured load with --load) across groups by weight; shows the "
            "plan, then starts it")
    p.add_argument("--dry-run", action="store_true", help="only show the plan")
    p.add_argument("--load", action="store_true",
                   help="weigh slots by measured keys, memory and ops/s")
    p.add_argument("--weight", action="append", metavar="GID=W",
                   help="weight override for this plan (repeatable)")
    p.add_argument("--watch", action="store_true", help="draw progress until done")

    p = add(sub, "up", cmd_up, "run a complete local cluster in the foreground until Ctrl-C")
    p.add_argument("--groups", type=int, default=3, help="redis groups (default 3)")
    p.add_argument("--proxies", type=int, default=1, help="proxies (default 1)")
    p.add_argument("--dir", default=".cluster", help="work dir (default .cluster)")
    p.add_argument("--slots", type=int, default=16384, choices=[16384, 1024])
    p.add_argument("--port", type=int, default=0,
                   help="first proxy port (default: free ports)")
    p.add_argument("--dashboard-port", type=int, default=0,
                   help="dashboard port (default: free port)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    url = getattr(args, "dashboard", None) or os.environ.get(DASHBOARD_ENV) or DEFAULT_DASHBOARD
    token = getattr(args, "token", None) or os.environ.get(TOKEN_ENV) or None
    as_json = getattr(args, "json", False)
    client = Client(url, token, getattr(args, "timeout", 15.0))
    try:
        if args.func is cmd_up:
            return cmd_up(client, args)
        data, text = args.func(client, args)
    except CliError as e:
        if as_json:
            print(json.dumps({"error": str(e)}), file=sys.stderr)
        else:
            print(f"proxyctl: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        return 130
    if as_json:
        print(json.dumps(data, indent=2, sort_keys=True))
    elif text:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
