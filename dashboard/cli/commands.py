"""proxyctl's commands: argument parsing and one function per command (output in `render.py`,
HTTP in `client.py`). A thin client of the dashboard REST API, never the store.

    proxyctl status
    proxyctl group add [GID] [--master ADDR] [--replica ADDR ...]
    proxyctl group remove GID | add-server GID ADDR [--role R] | remove-server GID ADDR
    proxyctl group promote GID ADDR [--timeout S] | config GID [NAME VALUE ...]
    proxyctl group remove-server GID ADDR --detach      (REPLICAOF NO ONE on it too)
    proxyctl slots assign RANGE GROUP [--force]
    proxyctl proxy list | remove ID [--force]
    proxyctl migrate SLOTS --to GROUP [--watch]     e.g. proxyctl migrate 0-1023,2048 --to 2
    proxyctl migrate [status] [--watch] | cancel | pause | resume
    proxyctl migrate set [--batch-size N] [--keys-per-sec N] [--max-slots N] [...]
    proxyctl rebalance [--dry-run] [--load] [--weight GID=W ...] [--watch]
    proxyctl group drain GID [--dry-run] [--watch] | weight GID W
    proxyctl group add GID --master ADDR --rebalance
    proxyctl autobalance on [--tolerance 10 --quiet 30s --max-slots-per-hour 2000 ...]
    proxyctl autobalance off | status [--rounds N]
    proxyctl up [--groups 3] [--proxies 1] [--replicas N] [--dir .cluster]

Exit codes: 0 ok, 1 the dashboard refused or failed the request, 2 bad usage,
3 the dashboard is unreachable. `--json` prints the API's JSON for scripts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from slotcore.contract import TOKEN_ENV, resolve_token

from .autobalance import add_parser as add_autobalance
from .client import DASHBOARD_ENV, DEFAULT_DASHBOARD, EXIT_USAGE, ApiClient, CliError
from .render import (
    render_migrations,
    render_plan,
    render_proxies,
    render_status,
    render_sync,
    table,
)

# -- commands ----------------------------------------------------------------------------------


def cmd_status(c: ApiClient, a: argparse.Namespace) -> tuple[Any, str]:
    topo = c.get("/api/v1/topology")
    return topo, render_status(topo)


def cmd_group_list(c: ApiClient, a: argparse.Namespace) -> tuple[Any, str]:
    data = c.get("/api/v1/groups")
    rows = [[g["id"], g["master"], ",".join(g["replicas"]), g["state"], g["slots"],
             g["slot_count"]] for g in data["groups"]]
    return data, table(["GROUP", "MASTER", "REPLICAS", "STATE", "SLOTS", "#"], rows)


def _replication_body(a: argparse.Namespace) -> dict[str, Any]:
    return {"force": a.force, "replicate": not a.no_replicate}


def cmd_group_add(c: ApiClient, a: argparse.Namespace) -> tuple[Any, str]:
    body: dict[str, Any] = {"replicas": a.replica or [], **_replication_body(a)}
    if a.gid is not None:
        body["id"] = a.gid
    if a.master:
        body["master"] = a.master
    data = c.call("POST", "/api/v1/groups", body)
    gid = data["group"]["id"]
    text = f"group {gid} created (epoch {data['epoch']})"
    if data.get("sync") and a.wait > 0:
        print(text, flush=True)
        for addr, sync in data["sync"].items():
            text = wait_sync(c, gid, addr, sync, a.wait, a)
    if getattr(a, "rebalance", False):
        print(text, flush=True)
        a.dry_run, a.load, a.weight = False, False, []
        return _rebalance(c, a)
    return data, text


def cmd_group_remove(c: ApiClient, a: argparse.Namespace) -> tuple[Any, str]:
    data = c.call("DELETE", f"/api/v1/groups/{a.gid}")
    return data, f"group {a.gid} removed (epoch {data['epoch']})"


def cmd_group_add_server(c: ApiClient, a: argparse.Namespace) -> tuple[Any, str]:
    body = {"addr": a.addr, **({"role": a.role} if a.role else {}), **_replication_body(a)}
    data = c.call("POST", f"/api/v1/groups/{a.gid}/servers", body)
    g = data["group"]
    role = "master" if g["master"] == a.addr else "replica"
    text = f"{a.addr} added to group {a.gid} as {role} (epoch {data['epoch']})"
    if data.get("sync") and a.wait > 0:
        print(text, flush=True)
        text = wait_sync(c, a.gid, a.addr, data["sync"], a.wait, a)
    return data, text


def wait_sync(c: ApiClient, gid: int, addr: str, sync: dict[str, Any], wait: float,
              a: argparse.Namespace, interval: float = 0.2) -> str:
    """Poll the replica's sync state, printing each new progress line, until it reached the
    master's offset of the moment it was added, or `wait` seconds passed (exit code 1: it
    stays in the group and keeps syncing)."""
    out = sys.stderr if getattr(a, "json", False) else sys.stdout
    target = sync.get("target_offset")
    path = f"/api/v1/groups/{gid}/servers/{addr}/sync" + (
        f"?offset={target}" if target is not None else "")
    deadline = time.monotonic() + wait
    last = None
    while True:
        state = c.get(path)
        line = render_sync(state)
        if line != last:
            print(line, file=out, flush=True)
            last = line
        if state.get("in_sync"):
            return f"{addr} in sync with {state['master']} at offset {state['offset']}"
        if time.monotonic() >= deadline:
            raise CliError(f"{addr} not in sync after {wait:g}s ({state['state']}); it stays "
                           "in the group and keeps syncing: follow it with `proxyctl status`")
        time.sleep(interval)


def cmd_group_remove_server(c: ApiClient, a: argparse.Namespace) -> tuple[Any, str]:
    path = f"/api/v1/groups/{a.gid}/servers/{a.addr}" + ("?detach=1" if a.detach else "")
    data = c.call("DELETE", path)
    tail = "; detached (REPLICAOF NO ONE: a master now)" if a.detach else ""
    return data, f"{a.addr} removed from group {a.gid} (epoch {data['epoch']}){tail}"


def cmd_group_promote(c: ApiClient, a: argparse.Namespace) -> tuple[Any, str]:
    body: dict[str, Any] = {"addr": a.addr}
    if a.promote_timeout is not None:
        body["timeout"] = a.promote_timeout
    if not getattr(a, "json", False):
        print(f"locking group {a.gid}'s slots, waiting for {a.addr} to catch up ...",
              flush=True)
    # The call lasts as long as the catch-up may (the dashboard bounds it), plus the pushes.
    c.timeout = max(c.timeout, (a.promote_timeout or 0) + 60)
    data = c.call("POST", f"/api/v1/groups/{a.gid}/promote", body)
    lines = [f"{data['master']} is now the master of group {a.gid} (was {data['old_master']}; "
             f"offset {data['offset']}, writes held {data['seconds']:.2f}s, epoch "
             f"{data['epoch']})"]
    lines += [f"warning: {w}" for w in data.get("warnings") or ()]
    return data, "\n".join(lines)


def cmd_group_config(c: ApiClient, a: argparse.Namespace) -> tuple[Any, str]:
    words = a.settings or []
    if len(words) % 2:
        raise CliError("usage: proxyctl group config GID [NAME VALUE ...]  (e.g. "
                       "min-replicas-to-write 1 min-replicas-max-lag 10)", EXIT_USAGE)
    if not words:
        data = c.get(f"/api/v1/groups/{a.gid}")
    else:
        body = dict(zip(words[0::2], words[1::2], strict=True))
        data = c.call("PUT", f"/api/v1/groups/{a.gid}/config"
                      + ("?force=1" if a.force else ""), body)["group"]
    config = data.get("config") or {}
    return data, (f"group {a.gid}: " + ", ".join(f"{k} {v}" for k, v in sorted(config.items()))
                  if config else f"group {a.gid}: no settings (Redis defaults)")


def cmd_slots_assign(c: ApiClient, a: argparse.Namespace) -> tuple[Any, str]:
    data = c.call("POST", "/api/v1/slots/assign",
                  {"assign": [{"slots": a.range, "group": a.group}], "force": a.force})
    return data, f"slots {a.range} assigned to group {a.group} (epoch {data['epoch']})"


def cmd_slots_show(c: ApiClient, a: argparse.Namespace) -> tuple[Any, str]:
    data = c.get("/api/v1/slots")
    rows = [[f"{s}-{e}" if s != e else s, e - s + 1, g] for s, e, g in data["ranges"]]
    text = table(["SLOTS", "#", "GROUP"], rows)
    return data, f"{text}\nunassigned: {data['unassigned'] or 'none'}"


def cmd_proxy_list(c: ApiClient, a: argparse.Namespace) -> tuple[Any, str]:
    data = c.get("/api/v1/proxies")
    return data, render_proxies(data["proxies"])


def cmd_proxy_remove(c: ApiClient, a: argparse.Namespace) -> tuple[Any, str]:
    data = c.call("DELETE", f"/api/v1/proxies/{a.id}" + ("?force=1" if a.force else ""))
    return data, (f"proxy {a.id} removed (a live proxy registers again with its next "
                  "heartbeat)")


# -- migration ---------------------------------------------------------------------------------


def watch(c: ApiClient, interval: float = 1.0) -> tuple[Any, str]:
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


def cmd_migrate(c: ApiClient, a: argparse.Namespace) -> tuple[Any, str]:
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


def _rebalance(c: ApiClient, a: argparse.Namespace, drain: list[int] | None = None
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


def cmd_rebalance(c: ApiClient, a: argparse.Namespace) -> tuple[Any, str]:
    return _rebalance(c, a)


def cmd_group_drain(c: ApiClient, a: argparse.Namespace) -> tuple[Any, str]:
    return _rebalance(c, a, drain=[a.gid])


def cmd_group_weight(c: ApiClient, a: argparse.Namespace) -> tuple[Any, str]:
    data = c.call("PUT", f"/api/v1/groups/{a.gid}/weight", {"weight": a.weight})
    return data, f"group {a.gid} weight {a.weight} (epoch {data['epoch']})"


def cmd_up(c: ApiClient, a: argparse.Namespace) -> int:
    """Runs in the foreground until Ctrl-C; prints its own output."""
    from .up import run_up  # imported only here: `up` pulls in yaml and the process helpers
    return run_up(a)


# -- argument parsing --------------------------------------------------------------------------


def replication_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wait", type=float, default=60.0, metavar="S",
                   help="wait up to S seconds for replicas to be in sync, printing progress "
                        "(default 60; 0 = do not wait)")
    p.add_argument("--force", action="store_true",
                   help="make a server that holds keys, or replicates from another master, a "
                        "replica anyway (ITS DATA IS REPLACED)")
    p.add_argument("--no-replicate", action="store_true",
                   help="only record replicas (their replication is configured outside "
                        "slotproxy, e.g. `replicaof` in their config)")


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
    p.add_argument("--replica", metavar="ADDR", action="append",
                   help="replica (repeatable): made to replicate (REPLICAOF) the master")
    replication_args(p)
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
            "add a server: master if the group has none, else a replica (REPLICAOF the "
            "master, then wait until it is in sync, showing progress)")
    p.add_argument("gid", type=int)
    p.add_argument("addr", help="host:port")
    p.add_argument("--role", choices=["master", "replica"])
    replication_args(p)
    p = add(gsub, "remove-server", cmd_group_remove_server, "remove a server from a group")
    p.add_argument("gid", type=int)
    p.add_argument("addr", help="host:port")
    p.add_argument("--detach", action="store_true",
                   help="also REPLICAOF NO ONE on it (without: a replica keeps replicating)")
    p = add(gsub, "promote", cmd_group_promote,
            "make a replica the group's master with no acknowledged write lost (its slots "
            "are held while the replica catches up; the old master becomes its replica)")
    p.add_argument("gid", type=int)
    p.add_argument("addr", help="host:port of a replica of the group")
    p.add_argument("--wait-timeout", dest="promote_timeout", type=float, metavar="S",
                   help="seconds the replica may take to catch up (default: the dashboard's "
                        "promote_timeout); longer holds the group's requests longer")
    p = add(gsub, "config", cmd_group_config,
            "show or set the group's min-replicas-to-write / min-replicas-max-lag (applied to "
            "its master, and to every master it gets later)")
    p.add_argument("gid", type=int)
    p.add_argument("settings", nargs="*", metavar="NAME VALUE")
    p.add_argument("--force", action="store_true",
                   help="set min-replicas-to-write even if the master has too few replicas "
                        "online now (it then refuses writes until they connect)")

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

    add_autobalance(add, sub)

    p = add(sub, "up", cmd_up, "run a complete local cluster in the foreground until Ctrl-C")
    p.add_argument("--groups", type=int, default=3, help="redis groups (default 3)")
    p.add_argument("--proxies", type=int, default=1, help="proxies (default 1)")
    p.add_argument("--replicas", type=int, default=0,
                   help="replicas per group, replicating from its master (default 0)")
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
    token = resolve_token(explicit=getattr(args, "token", None))
    as_json = getattr(args, "json", False)
    client = ApiClient(url, token, getattr(args, "timeout", 15.0))
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
