"""The slot migration state machine, as pure functions on `Topology` (no I/O, no epochs).

Every slot that moves gets a `SlotMigration` entry in the topology document and walks:

    pending --> preparing --> prepared --> migrating --> finished --> (entry removed)

What the proxies are told in each state is `states.TRANSIT_OF` (pending: normal routing to the
source; preparing/prepared: LOCKED; migrating: MIGRATING; finished: normal routing to the
target, `owner` already switched). The executor (`migrate/migrator.py`) persists a state BEFORE it
pushes the map derived from it, so a restarted dashboard re-pushes exactly what it recorded.
A batch of slots moves through each transition together: one push per transition per batch.

Backwards moves exist only as rollbacks of a push that not every proxy acknowledged (the map
that every proxy had before is pushed again) and as `cancel` of slots that have not started to
move data (pending/preparing/prepared): those go back to their source with nothing moved.
A migrating slot is never cancelled: keys may already live on both sides, so it is finished.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from slotcore.ranges import format_ranges

from ..errors import Conflict, InvalidRequest, NotFound
from .records import SlotMigration, Topology
from .states import ACTIVE, CANCELLABLE, FORWARD, MIGRATION_STATES


def start(topo: Topology, slots: Iterable[int], target: int) -> tuple[Topology, list[int]]:
    """Queue `slots` to move to group `target` (state pending). Returns (topology, queued).

    Slots already on the target are skipped (nothing to move); unassigned slots, slots already
    migrating and a target without a master are refused with a message naming them.
    """
    slots = sorted(set(slots))
    group = topo.groups.get(target)
    if group is None:
        raise NotFound(f"unknown group {target}")
    if not group.master:
        raise Conflict(f"group {target} has no master; add a server first")
    if group.state != "active":
        raise Conflict(f"group {target} is {group.state}")
    unassigned = [s for s in slots if topo.owner[s] == 0]
    if unassigned:
        raise Conflict(f"slots {format_ranges(unassigned)} are not assigned to any group; "
                       "assign them (no data to move) with `proxyctl slots assign`")
    # A group switching masters (`group promote`) holds its slots locked: none leaves it then.
    switching = sorted({topo.owner[s] for s in slots if topo.owner[s] in topo.groups
                        and topo.groups[topo.owner[s]].state != "active"})
    if switching:
        raise Conflict(f"group {switching[0]} is {topo.groups[switching[0]].state}: migrate "
                       "its slots after the promotion ends")
    busy = [s for s in slots if s in topo.migrations]
    if busy:
        raise Conflict(f"slots {format_ranges(busy)} are already migrating")
    queued = [s for s in slots if topo.owner[s] != target]
    migrations = dict(topo.migrations)
    for s in queued:
        migrations[s] = SlotMigration("pending", topo.owner[s], target)
    return replace(topo, migrations=migrations), queued


def in_state(topo: Topology, state: str) -> list[int]:
    return sorted(s for s, m in topo.migrations.items() if m.state == state)


def current_batch(topo: Topology) -> list[int]:
    """Slots already past pending: the batch in progress (resumed after a restart)."""
    return sorted(s for s, m in topo.migrations.items() if m.state in ACTIVE)


def next_batch(topo: Topology, max_slots: int) -> list[int]:
    """The pending slots to start next: lowest slot numbers first, at most `max_slots`, and no
    group both a source and a target within the batch.

    Stock MIGRATE blocks the source until the target answered; two groups migrating to each
    other at once (A->B and B->A, or any cycle) deadlock until the MIGRATE timeout, stalling both
    servers and every client on them. With no group on both sides, the moves form no cycle.
    """
    sources: set[int] = set()
    targets: set[int] = set()
    out: list[int] = []
    for s in in_state(topo, "pending"):
        m = topo.migrations[s]
        if m.source in targets or m.target in sources:
            continue
        sources.add(m.source)
        targets.add(m.target)
        out.append(s)
        if len(out) >= max(1, max_slots):
            break
    return out


def advance(topo: Topology, slots: Iterable[int], state: str) -> Topology:
    """Move `slots` one step forward to `state`; finishing switches the owner to the target."""
    migrations = dict(topo.migrations)
    owner = list(topo.owner)
    for s in slots:
        m = migrations.get(s)
        if m is None:
            raise InvalidRequest(f"slot {s} is not migrating")
        if FORWARD.get(m.state) != state:
            raise InvalidRequest(f"slot {s}: illegal transition {m.state} -> {state}")
        migrations[s] = replace(m, state=state)
        if state == "finished":
            owner[s] = m.target
    return replace(topo, migrations=migrations, owner=tuple(owner))


def clear(topo: Topology, slots: Iterable[int]) -> Topology:
    """Forget finished slots (their owner is the target already; the map does not change)."""
    migrations = dict(topo.migrations)
    for s in slots:
        m = migrations.get(s)
        if m is None or m.state != "finished":
            raise InvalidRequest(f"slot {s} is not finished")
        del migrations[s]
    return replace(topo, migrations=migrations)


def cancel(topo: Topology) -> tuple[Topology, list[int], list[int]]:
    """Stop new slots: drop pending ones, send not-yet-moving ones back to their source.

    Returns (topology, cancelled slots, slots that keep going to the end: migrating/finished).
    """
    migrations = dict(topo.migrations)
    cancelled, going = [], []
    for s, m in sorted(topo.migrations.items()):
        if m.state in CANCELLABLE:
            del migrations[s]
            cancelled.append(s)
        else:
            going.append(s)
    return replace(topo, migrations=migrations), cancelled, going


def fence(topo: Topology, keys: Iterable[bytes]) -> Topology:
    return replace(topo, fenced=tuple(sorted(set(topo.fenced) | {k.hex() for k in keys})))


def unfence(topo: Topology, keys: Iterable[bytes]) -> Topology:
    gone = {k.hex() for k in keys}
    return replace(topo, fenced=tuple(k for k in topo.fenced if k not in gone))


def check_invariants(topo: Topology) -> None:
    """What must hold for every stored topology (used by the tests after every step)."""
    for s, m in topo.migrations.items():
        if m.state not in MIGRATION_STATES:
            raise AssertionError(f"slot {s}: unknown state {m.state}")
        expected = m.target if m.state == "finished" else m.source
        if topo.owner[s] != expected:
            raise AssertionError(f"slot {s} in {m.state}: owner {topo.owner[s]} != {expected}")
        if m.source == m.target:
            raise AssertionError(f"slot {s}: source == target")
    topo.slot_map()  # validates transit against the real proxy SlotMap rules
