"""Replication facts and rules, as pure functions (INFO dicts in, facts out; no I/O).

Everything the dashboard decides about replicas is computed here from parsed `INFO replication`
replies (redis-py's `info()` form: `slave0` already split into a dict, numbers as ints; the raw
"ip=...,port=...,offset=..." string form is accepted too), so it is tested without a server:

* `replica_link`: what health shows per replica -- link status, lag in bytes (the master's
  `master_repl_offset` minus the offset the replica last acknowledged, from the master's
  `slaveN:` line) and in seconds (that line's `lag=`, else the replica's
  `master_last_io_seconds_ago`);
* `sync_state`: how far a replica being attached has got (connecting, full sync with bytes
  read, catching up, in sync with a target offset);
* `promote_check` / the group config knobs: what may be promoted and what may be set.

Offsets are Redis' replication offsets: bytes of the master's replication stream. Two servers
agree on them across a promotion (PSYNC2), which is what makes "caught up" checkable.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from slotcore.addr import join_addr, split_addr
from slotcore.ranges import format_ranges

from ..errors import Conflict, InvalidRequest, NotFound
from .records import GroupRecord, Topology

# The group-level settings `group config` accepts, applied with CONFIG SET to the group's
# master (and to every newly promoted one): the knobs that bound asynchronous replication's
# loss window. name -> (lowest, highest) value.
KNOBS: dict[str, tuple[int, int]] = {
    "min-replicas-to-write": (0, 1 << 16),
    "min-replicas-max-lag": (0, 1 << 31),
}

SYNC_STATES = ("not-replicating", "connecting", "syncing", "catching-up", "in-sync")


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _entry(value: Any) -> dict[str, Any] | None:
    """One `slaveN` value of a master's INFO as a dict (redis-py parses it; raw text too)."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and "=" in value:
        out: dict[str, Any] = {}
        for part in value.split(","):
            k, _, v = part.partition("=")
            out[k] = int(v) if v.lstrip("-").isdigit() else v
        return out
    return None


def replica_entries(master_info: dict[str, Any]) -> list[dict[str, Any]]:
    """The master's `slave0`, `slave1`, ... lines, in order."""
    names = sorted((int(k[5:]), k) for k in master_info
                   if k.startswith("slave") and k[5:].isdigit())
    return [e for _, k in names if (e := _entry(master_info[k])) is not None]


def find_entry(master_info: dict[str, Any], addr: str) -> dict[str, Any] | None:
    """The master's line for the replica at `addr`: same ip and port, else the only line with
    that port (a replica listed by hostname in the topology is reported by its IP)."""
    host, port = split_addr(addr)
    entries = replica_entries(master_info)
    for e in entries:
        if str(e.get("ip")) == host and _int(e.get("port")) == port:
            return e
    same_port = [e for e in entries if _int(e.get("port")) == port]
    return same_port[0] if len(same_port) == 1 else None


def master_of(info: dict[str, Any]) -> str | None:
    """"host:port" a replica replicates from (None for a master)."""
    if info.get("role") not in ("slave", "replica") or not info.get("master_host"):
        return None
    return join_addr(str(info["master_host"]), _int(info.get("master_port")))


def replica_link(master: str | None, master_info: dict[str, Any] | None, addr: str,
                 replica_info: dict[str, Any] | None) -> dict[str, Any]:
    """Health of one replica: {"link", "lag_bytes", "lag_seconds", "offset"} (None = unknown).

    `link` is "up"/"down" as the replica reports `master_link_status`, "wrong-master" when it
    replicates from another server than the group's master, "not-replicating" when it is a
    master itself, None when it could not be polled."""
    out: dict[str, Any] = {"link": None, "lag_bytes": None, "lag_seconds": None,
                           "offset": None}
    if replica_info is not None:
        if replica_info.get("role") == "master":
            out["link"] = "not-replicating"
            return out
        if master and master_of(replica_info) != master:
            out["link"] = "wrong-master"
            out["replica_of"] = master_of(replica_info)
            return out
        out["link"] = replica_info.get("master_link_status")
        out["offset"] = _int(replica_info.get("slave_repl_offset"), 0)
        io = _int(replica_info.get("master_last_io_seconds_ago"), -1)
        out["lag_seconds"] = io if io >= 0 else None
        if _int(replica_info.get("master_sync_in_progress")):
            out["link"] = "syncing"
    entry = find_entry(master_info, addr) if master_info else None
    if entry is not None and master_info is not None:
        out["lag_bytes"] = max(0, _int(master_info.get("master_repl_offset"))
                               - _int(entry.get("offset")))
        if "lag" in entry:
            out["lag_seconds"] = _int(entry.get("lag"))
        if out["link"] is None:  # the replica itself was not polled: the master's view
            out["link"] = "up" if entry.get("state") == "online" else str(entry.get("state"))
    return out


def sync_state(master: str, master_info: dict[str, Any] | None,
               replica_info: dict[str, Any], target: int | None = None) -> dict[str, Any]:
    """How far a replica attached to `master` has got.

    `target`: the master offset it must reach to count as in sync (by default the master's
    offset in `master_info`); passing the offset the master had when REPLICAOF was issued makes
    "every write acknowledged before the replica was added is on it" the condition, which ends
    even under constant write load."""
    master_offset = _int(master_info.get("master_repl_offset")) if master_info else None
    if target is None:
        target = master_offset
    out: dict[str, Any] = {"master": master, "master_offset": master_offset,
                           "target_offset": target, "offset": None, "link": None,
                           "sync_read_bytes": None, "sync_total_bytes": None}
    if master_of(replica_info) != master:
        out["state"] = "not-replicating"
        out["replica_of"] = master_of(replica_info)
        return out
    out["link"] = replica_info.get("master_link_status")
    out["offset"] = _int(replica_info.get("slave_repl_offset"), 0)
    if _int(replica_info.get("master_sync_in_progress")):
        out["state"] = "syncing"
        out["sync_read_bytes"] = _int(replica_info.get("master_sync_read_bytes"))
        total = _int(replica_info.get("master_sync_total_bytes"), -1)
        out["sync_total_bytes"] = total if total >= 0 else None  # -1: diskless, unknown
    elif out["link"] != "up":
        out["state"] = "connecting"
    elif target is not None and out["offset"] < target:
        out["state"] = "catching-up"
    else:
        out["state"] = "in-sync"
    out["in_sync"] = out["state"] == "in-sync"
    return out


def caught_up(master_info: dict[str, Any], replica_info: dict[str, Any], master: str) -> bool:
    """The replica has processed everything the master had written when `master_info` was
    read (read the master FIRST, then the replica), over a live link from that master."""
    return (master_of(replica_info) == master
            and replica_info.get("master_link_status") == "up"
            and not _int(replica_info.get("master_sync_in_progress"))
            and _int(replica_info.get("slave_repl_offset"), -1)
            >= _int(master_info.get("master_repl_offset")))


# -- rules on the topology -----------------------------------------------------------------------


def _group(topo: Topology, gid: int) -> GroupRecord:
    group = topo.groups.get(gid)
    if group is None:
        raise NotFound(f"unknown group {gid}")
    return group


def migration_touching(topo: Topology, gid: int) -> list[int]:
    return sorted(s for s, m in topo.migrations.items() if gid in (m.source, m.target))


def promote_check(topo: Topology, gid: int, addr: str) -> GroupRecord:
    """Whether `addr` may be promoted to master of group `gid` now; the group, or a refusal."""
    group = _group(topo, gid)
    if addr == group.master:
        raise Conflict(f"server {addr} already is the master of group {gid}")
    if addr not in group.replicas:
        raise NotFound(f"server {addr} is not a replica of group {gid}")
    if group.state != "active":
        raise Conflict(f"group {gid} is {group.state}: another promotion is in progress")
    busy = migration_touching(topo, gid)
    if busy:
        raise Conflict(f"group {gid} takes part in a slot migration (slots "
                       f"{format_ranges(busy)}): promote after it ends, or cancel it")
    return group


def set_state(topo: Topology, gid: int, state: str) -> Topology:
    """Group `gid` in `state` ("promoting": its slots are LOCKED on every proxy)."""
    group = _group(topo, gid)
    return replace(topo, groups={**topo.groups, gid: replace(group, state=state)})


def parse_knobs(body: object) -> dict[str, str]:
    """{"min-replicas-to-write": 1, ...} validated into CONFIG SET values (strings)."""
    if not isinstance(body, dict) or not body:
        raise InvalidRequest("expected an object of settings, e.g. "
                             '{"min-replicas-to-write": 1, "min-replicas-max-lag": 10}')
    out: dict[str, str] = {}
    for name, value in body.items():
        if name not in KNOBS:
            raise InvalidRequest(f"unknown group setting {name!r}: expected one of "
                                 f"{', '.join(KNOBS)}")
        lo, hi = KNOBS[name]
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise InvalidRequest(f"{name}: expected an integer {lo}-{hi}, got {value!r}")
        try:
            number = int(value)
        except ValueError:
            raise InvalidRequest(f"{name}: expected an integer {lo}-{hi}, "
                                 f"got {value!r}") from None
        if not lo <= number <= hi:
            raise InvalidRequest(f"{name}: {number} outside {lo}-{hi}")
        out[name] = str(number)
    return out


def replicas_short(master_info: dict[str, Any], config: dict[str, str]) -> str | None:
    """Why a master with these settings would refuse writes now (too few online replicas
    within `min-replicas-max-lag` seconds, as Redis counts them), or None."""
    need = _int(config.get("min-replicas-to-write"), 0)
    if not need:
        return None
    max_lag = _int(config.get("min-replicas-max-lag"), 10)
    good = [e for e in replica_entries(master_info)
            if e.get("state") == "online" and _int(e.get("lag"), 1 << 30) <= max_lag]
    if len(good) >= need:
        return None
    return (f"min-replicas-to-write {need} needs {need} replica(s) online within "
            f"{max_lag}s of lag, the master has {len(good)}")


def set_config(topo: Topology, gid: int, knobs: dict[str, str]) -> Topology:
    group = _group(topo, gid)
    if not group.master:
        raise Conflict(f"group {gid} has no master; add one first")
    config = {**group.config, **knobs}
    return replace(topo, groups={**topo.groups, gid: replace(group, config=config)})
