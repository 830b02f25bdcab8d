"""Pure topology changes: validate a request against a `Topology` and build the next one.

No I/O and no epoch handling: every function returns a new Topology with the same epoch, and
the caller (`control.plane.ControlPlane.change`) bumps the epoch, commits and pushes. Each
refusal is a `dashboard.errors.RequestRefused` subclass whose class says which HTTP status it
maps to and whose message names the offending group, server or slots, so an operator can act on
it without reading logs.
"""

from __future__ import annotations

from dataclasses import replace

from slotcore.addr import join_addr, split_addr
from slotcore.ranges import format_ranges, parse_ranges

from ..errors import Conflict, InvalidRequest, NotFound
from .records import MAX_GROUP_ID, GroupRecord, Topology

__all__ = [  # the errors are re-exported: callers of the rules catch what the rules raise
    "Conflict",
    "InvalidRequest",
    "NotFound",
    "add_server",
    "assign_slots",
    "check_addr",
    "check_gid",
    "create_group",
    "even_assignment",
    "group_view",
    "parse_assignments",
    "remove_group",
    "remove_server",
    "switch_master",
    "unassign_slots",
]


def check_addr(addr: object) -> str:
    """A server or proxy address "host:port"; returns it normalised (stripped)."""
    if not isinstance(addr, str):
        raise InvalidRequest(f"address must be a string 'host:port', not {addr!r}")
    try:
        host, port = split_addr(addr)
    except ValueError:
        host, port = "", 0
    if not port:  # port 0 is a listen address ("any port"), never a server's
        raise InvalidRequest(f"bad address {addr!r}: expected 'host:port'")
    return join_addr(host, port)


def check_gid(gid: object) -> int:
    if isinstance(gid, bool) or not isinstance(gid, int | str):
        raise InvalidRequest(f"group id must be an integer, not {gid!r}")
    try:
        value = int(gid)
    except ValueError:
        raise InvalidRequest(f"group id must be an integer, not {gid!r}") from None
    if not 1 <= value <= MAX_GROUP_ID:
        raise InvalidRequest(f"group id {value} outside 1-{MAX_GROUP_ID}")
    return value


def _group(topo: Topology, gid: int) -> GroupRecord:
    group = topo.groups.get(gid)
    if group is None:
        raise NotFound(f"unknown group {gid}")
    return group


def _owner_of(topo: Topology, addr: str) -> int | None:
    for group in topo.groups.values():
        if addr in group.servers:
            return group.id
    return None


def _with_group(topo: Topology, group: GroupRecord) -> Topology:
    return replace(topo, groups={**topo.groups, group.id: group})


def create_group(topo: Topology, gid: int | None = None, master: str | None = None,
                 replicas: list[str] | tuple[str, ...] = ()) -> Topology:
    """Add a group; with no id, the smallest free one is used."""
    if gid is None:
        gid = next(i for i in range(1, MAX_GROUP_ID + 2) if i not in topo.groups)
        if gid > MAX_GROUP_ID:
            raise Conflict(f"all {MAX_GROUP_ID} group ids are in use")
    gid = check_gid(gid)
    if gid in topo.groups:
        raise Conflict(f"group {gid} already exists")
    if replicas and not master:
        raise InvalidRequest("a group with replicas needs a master")
    new = _with_group(topo, GroupRecord(id=gid))
    if master:
        new = add_server(new, gid, master, "master")
    for addr in replicas:
        new = add_server(new, gid, addr, "replica")
    return new


def remove_group(topo: Topology, gid: int) -> Topology:
    _group(topo, gid)
    owned = topo.slots_of(gid)
    if owned:
        raise Conflict(f"group {gid} still owns slots {format_ranges(owned)}; "
                       "assign them to another group first")
    if any(gid in (m.source, m.target) for m in topo.migrations.values()):
        raise Conflict(f"group {gid} takes part in a slot migration")
    groups = dict(topo.groups)
    del groups[gid]
    return replace(topo, groups=groups)


def add_server(topo: Topology, gid: int, addr: str, role: str | None = None) -> Topology:
    """Add `addr` to group `gid`; role "master", "replica", or None (master if it has none)."""
    group = _group(topo, gid)
    addr = check_addr(addr)
    other = _owner_of(topo, addr)
    if other is not None:
        raise Conflict(f"server {addr} already belongs to group {other}")
    if role is None:
        role = "replica" if group.master else "master"
    if role == "master":
        if group.master:
            # Replacing a master of a live group is a promotion (`group promote`), not an add.
            raise Conflict(f"group {gid} already has master {group.master}")
        return _with_group(topo, replace(group, master=addr))
    if role == "replica":
        if not group.master:
            raise Conflict(f"group {gid} has no master yet; add the master first")
        return _with_group(topo, replace(group, replicas=(*group.replicas, addr)))
    raise InvalidRequest(f"role must be 'master' or 'replica', not {role!r}")


def switch_master(topo: Topology, gid: int, addr: str) -> Topology:
    """Record `addr` as group `gid`'s master (a failover or a promotion that already happened
    on the servers): it leaves the replicas, the old master stays in the group as a replica.
    `addr` must already be a server of the group: a master from nowhere is refused."""
    group = _group(topo, gid)
    addr = check_addr(addr)
    if addr == group.master:
        return topo
    if addr not in group.replicas:
        raise Conflict(f"server {addr} is not a replica of group {gid}")
    replicas = [r for r in group.replicas if r != addr]
    if group.master:
        replicas.insert(0, group.master)
    return _with_group(topo, replace(group, master=addr, replicas=tuple(replicas)))


def remove_server(topo: Topology, gid: int, addr: str) -> Topology:
    group = _group(topo, gid)
    addr = check_addr(addr)
    if addr in group.replicas:
        return _with_group(topo, replace(group, replicas=tuple(
            r for r in group.replicas if r != addr)))
    if addr != group.master:
        raise NotFound(f"server {addr} is not in group {gid}")
    owned = topo.slots_of(gid)
    if owned:
        raise Conflict(f"cannot remove master {addr}: group {gid} owns slots "
                       f"{format_ranges(owned)}")
    if group.replicas:
        raise Conflict(f"cannot remove master {addr} of group {gid} while it has replicas")
    return _with_group(topo, replace(group, master=None))


def parse_assignments(topo: Topology, items: object) -> list[tuple[list[int], int]]:
    """Validate [{"slots": "0-99,200", "group": 1}, ...] into (slots, gid) pairs.

    Overlaps *within* one request are refused: the result would depend on the order.
    """
    if not isinstance(items, list) or not items:
        raise InvalidRequest("'assign' must be a non-empty list of {slots, group}")
    out: list[tuple[list[int], int]] = []
    seen: dict[int, int] = {}
    for item in items:
        if not isinstance(item, dict) or "slots" not in item or "group" not in item:
            raise InvalidRequest(f"bad assignment {item!r}: expected {{slots, group}}")
        try:
            slots = parse_ranges(str(item["slots"]), topo.nslots)
        except ValueError as e:
            raise InvalidRequest(str(e)) from None
        gid = check_gid(item["group"])
        overlap = [s for s in slots if s in seen]
        if overlap:
            raise InvalidRequest(f"overlapping ranges: slots {format_ranges(overlap)} "
                                 "appear more than once")
        seen.update(dict.fromkeys(slots, gid))
        out.append((slots, gid))
    return out


def assign_slots(topo: Topology, assignments: list[tuple[list[int], int]],
                 force: bool = False) -> Topology:
    """Initial assignment: give slots to groups without moving data.

    Refused while any slot is migrating (the migration owns those slots' routing). Slots that
    already belong to a *different* group are refused unless `force`: reassigning them without
    moving keys makes those keys invisible, which is only right when the group is empty.
    """
    if topo.migrations:
        raise Conflict("slot assignment refused while slots are migrating: "
                       + format_ranges(sorted(topo.migrations)))
    owner = list(topo.owner)
    for slots, gid in assignments:
        group = _group(topo, gid)
        if not group.master:
            raise Conflict(f"group {gid} has no master; add a server first")
        taken = [s for s in slots if owner[s] not in (0, gid)]
        if taken and not force:
            by = sorted({owner[s] for s in taken})
            raise Conflict(f"slots {format_ranges(taken)} already belong to group(s) "
                           f"{', '.join(map(str, by))}; use force to reassign without "
                           "moving data")
        for s in slots:
            owner[s] = gid
    return replace(topo, owner=tuple(owner))


def unassign_slots(topo: Topology, slots: list[int]) -> Topology:
    if topo.migrations:
        raise Conflict("slot changes refused while slots are migrating")
    owner = list(topo.owner)
    for s in slots:
        owner[s] = 0
    return replace(topo, owner=tuple(owner))


def even_assignment(nslots: int, gids: list[int]) -> list[dict[str, object]]:
    """All slots spread evenly over `gids` as contiguous ranges (the API's request form)."""
    gids = sorted(gids)
    out: list[dict[str, object]] = []
    for i, gid in enumerate(gids):
        lo = nslots * i // len(gids)
        hi = nslots * (i + 1) // len(gids) - 1
        if hi >= lo:
            out.append({"slots": f"{lo}-{hi}", "group": gid})
    return out


def group_view(topo: Topology, gid: int) -> dict[str, object]:
    """A group as the API shows it: the stored fields plus its slots as ranges."""
    group = _group(topo, gid)
    owned = topo.slots_of(gid)
    return {**group.to_json(), "slots": format_ranges(owned), "slot_count": len(owned)}
