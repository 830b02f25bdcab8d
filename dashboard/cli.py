"""proxyctl: the operator's CLI, a thin client of the dashboard REST API (never the store).

    proxyctl status
    proxyctl group add [GID] [--master ADDR] [--replica ADDR ...]
    proxyctl group remove GID | add-server GID ADDR [--role R] | remove-server GID ADDR
    proxyctl slots assign RANGE GROUP [--force]
    proxyctl proxy list | remove ID
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
    return data, f"group {data['group']['id']} created (epoch {data['epoch']})"


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
    data = c.call("DELETE", f"/api/v1/proxies/{a.id}")
    return data, (f"proxy {a.id} removed (a live proxy registers again with its next "
                  "heartbeat)")


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
