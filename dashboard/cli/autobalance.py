"""`proxyctl autobalance on [FLAGS] | off | status [--rounds N]`: the command, its flags (one
per setting, checked here with the dashboard's own rules before anything is sent) and its
rendering."""

from __future__ import annotations

import argparse
import time
from typing import Any

from ..balance.settings import Settings, SettingsError, format_duration
from .client import EXIT_USAGE, ApiClient, CliError
from .render import table

# (flag, setting, help); every value is sent as typed and checked by Settings.update
FLAGS: tuple[tuple[str, str, str], ...] = (
    ("--interval", "interval", "time between rounds, also the ops/s window (e.g. 10s)"),
    ("--weights", "weights", "what load means: memory=W,keys=W,ops=W (e.g. ops=2,keys=0)"),
    ("--tolerance", "tolerance", "act when a group is more than this %% off its target"),
    ("--aim", "aim", "plans aim for this share of the tolerance (hysteresis, 0.05-1)"),
    ("--quiet", "quiet", "a group must be out of tolerance this long first (e.g. 30s)"),
    ("--smoothing", "smoothing", "half-life of the ops/s moving average (e.g. 1m, 0 = off)"),
    ("--max-slots-per-hour", "max_slots_per_hour", "slots moved in any hour at most"),
    ("--cooldown", "cooldown", "a slot that moved stays this long (e.g. 30m)"),
    ("--window", "window", "maintenance window, UTC: '02:00-05:00', 'sat,sun 01:00-06:00'; "
                           "'none' = always"),
    ("--hot-share", "hot_share", "move a slot carrying more than this %% of its group's fair "
                                 "ops/s share (0 = off)"),
    ("--hot-key-share", "hot_key_share", "report (never move) a hot slot when one key "
                                         "carries this %% of it"),
    ("--history", "history", "rounds kept in the store"),
)


def add_parser(add: Any, sub: Any) -> None:
    """Register `autobalance` with commands.build_parser's `add` helper."""
    p = add(sub, "autobalance", cmd_autobalance,
            "keep groups even by themselves: `autobalance on [--tolerance 10 --quiet 30s "
            "...]`, `autobalance off`, `autobalance status`")
    p.add_argument("action", choices=["on", "off", "status"], nargs="?", default="status")
    p.add_argument("--dry-run", action=argparse.BooleanOptionalAction, default=None,
                   help="on: plan and report only, move nothing (--no-dry-run: move)")
    for flag, _, help_ in FLAGS:
        p.add_argument(flag, default=None, help=help_)
    p.add_argument("--rounds", type=int, default=10, help="status: rounds shown (default 10)")


def settings_body(a: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for flag, name, _ in FLAGS:
        value = getattr(a, flag[2:].replace("-", "_"))
        if value is not None:
            body[name] = value
    if a.dry_run is not None:
        body["dry_run"] = a.dry_run
    try:
        Settings().update(body)
    except SettingsError as e:
        raise CliError(f"autobalance: {e}", EXIT_USAGE) from None
    return body


def cmd_autobalance(c: ApiClient, a: argparse.Namespace) -> tuple[Any, str]:
    body = settings_body(a)
    if a.action == "status":
        if body:
            raise CliError("autobalance status takes no settings: use `autobalance on "
                           "--tolerance ...`", EXIT_USAGE)
        if not 0 <= a.rounds <= 1000:
            raise CliError("--rounds: from 0 to 1000", EXIT_USAGE)
        data = c.get(f"/api/v1/autobalance?rounds={a.rounds}")
        return data, render_autobalance(data)
    if a.action == "off" and body:
        raise CliError("autobalance off takes no settings", EXIT_USAGE)
    data = c.call("PUT", "/api/v1/autobalance", {**body, "enabled": a.action == "on"})
    s = data["settings"]
    text = ("auto-balance on" + (" (dry run: plans only)" if s["dry_run"] else "")
            + ": " + describe(s)) if s["enabled"] else "auto-balance off"
    return data, text


def describe(s: dict[str, Any]) -> str:
    w = s["weights"]
    return (f"tolerance {s['tolerance']:g}% (aim {s['aim'] * s['tolerance']:g}%), quiet "
            f"{format_duration(s['quiet'])}, every {format_duration(s['interval'])}, "
            f"at most {s['max_slots_per_hour']} slots/hour, cool-down "
            f"{format_duration(s['cooldown'])}, weights memory={w['memory']:g} "
            f"keys={w['keys']:g} ops={w['ops']:g}, smoothing {format_duration(s['smoothing'])}"
            f", hot slot {s['hot_share']:g}%, window {s['window'] or 'always'}")


def _clock(ts: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) if ts else "-"


def render_autobalance(data: dict[str, Any]) -> str:
    s = data["settings"]
    state = ("on" + (" (dry run)" if s["dry_run"] else "")) if s["enabled"] else "off"
    lines = [f"auto-balance: {state}" + ("" if data.get("leader") else
                                         "  (this dashboard is a standby: stored state)"),
             f"settings: {describe(s)}",
             f"moved in the last hour: {data['moved_last_hour']} of {s['max_slots_per_hour']}"
             " slots"]
    if data.get("error"):
        lines.append(f"last round failed: {data['error']}")
    rounds = data.get("rounds") or []
    if not rounds:
        lines.append("no rounds yet" + ("" if s["enabled"] else " (switch it on with "
                                        "`proxyctl autobalance on`)"))
        return "\n".join(lines)
    lines += ["", table(["ROUND", "TIME", "ACTED", "IMBALANCE", "REASON"], [
        [r["round"] if r.get("repeat", 1) == 1 else f"{r['round']} (x{r['repeat']})",
         _clock(r["at"]), "yes" if r.get("acted") else "no", f"{r.get('imbalance', 0):.1f}%",
         r.get("reason")] for r in rounds])]
    last = rounds[0]
    if last.get("groups"):
        after = (last.get("plan") or {}).get("after") or {}
        rows = []
        for gid, g in last["groups"].items():
            dev = g["deviation"]
            a = after.get(gid)
            rows.append([gid, g["slots"], f"{g['load']:.1f}%", f"{g['target']:.1f}%",
                         f"{dev:+.1f}%" if dev is not None else "drain",
                         f"{g['out_for']:.0f}s" if g.get("out_for") is not None else "-",
                         f"{a['deviation']:+.1f}%" if a and a["deviation"] is not None
                         else "-"])
        lines += ["", f"round {last['round']} per group:",
                  table(["GROUP", "SLOTS", "LOAD", "TARGET", "DEVIATION", "OUT FOR",
                         "AFTER PLAN"], rows)]
    plan = last.get("plan")
    if plan and plan.get("moves"):
        lines += [f"plan: {plan['slots']} slots",
                  table(["FROM", "TO", "#", "SLOTS"],
                        [[m["from"], m["to"], m["count"], m["slots"]] for m in plan["moves"]])]
    for h in last.get("hot_slots") or []:
        lines.append(f"hot slot {h['slot']} (group {h['group']}, {h['ops']} ops/s, "
                     f"{h['share']}% of its fair share): "
                     + (f"moved to group {h['moved_to']}" if "moved_to" in h else h["note"]))
    for h in last.get("hot_keys") or []:
        lines.append(f"hot key {h['key']!r} in slot {h['slot']} (group {h['group']}) carries "
                     f"{h['share']}% of the slot's ops/s: {h['note']}")
    for e in last.get("errors") or []:
        lines.append(f"measurement: {e}")
    return "\n".join(lines)
