"""The rebalance planner: pure functions, no I/O (the per-slot load is measured elsewhere).

Count mode (default) evens the NUMBER of slots across groups, weighted by each group's weight:
group g's quota is its share `weight_g / sum(weights)` of the assigned slots, rounded by largest
remainder (ties to the lower gid). Only groups above their quota give slots away (their highest
numbered ones, as Codis does) and only groups below it receive them, so the plan moves exactly
sum(max(0, count - quota)) slots: the fewest possible for that outcome. A group of weight 0 is
drained: its quota is 0.

Load mode evens a per-slot LOAD instead (`slot_load`, e.g. the mean of each slot's share of
keys, of memory and of ops/s; see `combine_loads`). Groups of weight 0 first give away every
slot; then, repeatedly, the group most above its target load gives to the one most below it the
slot whose load is closest to half their combined gap (the move that shrinks the squared error
most), until every group is within `tolerance` of the mean target or no move helps.

Slots already migrating count for their target and are never moved again. Unassigned slots are
left alone (there is no data to move: `proxyctl slots assign` them).
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from slotcore.ranges import format_ranges


class PlanError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Plan:
    mode: str
    moves: list[tuple[int, int, int]]                       # (slot, from_gid, to_gid)
    before: dict[int, dict[str, float]] = field(default_factory=dict)
    after: dict[int, dict[str, float]] = field(default_factory=dict)

    def grouped(self) -> list[dict[str, Any]]:
        """Moves as [{"from", "to", "slots": "a-b,c", "count"}], for display and the API."""
        pairs: dict[tuple[int, int], list[int]] = {}
        for s, src, dst in self.moves:
            pairs.setdefault((src, dst), []).append(s)
        return [{"from": src, "to": dst, "slots": format_ranges(sorted(slots)),
                 "count": len(slots)} for (src, dst), slots in sorted(pairs.items())]

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "moves": self.grouped(), "slots_moved": len(self.moves),
                "before": {str(g): v for g, v in sorted(self.before.items())},
                "after": {str(g): v for g, v in sorted(self.after.items())}}


def _quotas(total: int, weights: Mapping[int, float]) -> dict[int, int]:
    wsum = sum(weights.values())
    exact = {g: total * w / wsum for g, w in weights.items()}
    quota = {g: int(x) for g, x in exact.items()}
    rest = total - sum(quota.values())
    for g in sorted(weights, key=lambda g: (-(exact[g] - quota[g]), g))[:rest]:
        quota[g] += 1
    return quota


def _check(owner: Sequence[int], weights: Mapping[int, float]) -> dict[int, float]:
    if any(w < 0 for w in weights.values()):
        raise PlanError("group weights must be >= 0")
    eligible = {g: float(w) for g, w in weights.items() if w > 0}
    if not eligible:
        raise PlanError("no group with a weight above 0 (and a master) to hold the slots")
    stray = sorted({g for g in owner if g and g not in weights})
    if stray:
        raise PlanError(f"slots are owned by groups without a weight: {stray}")
    return eligible


def _summary(owner: Sequence[int], gids: Sequence[int],
             load: Sequence[float] | None) -> dict[int, dict[str, float]]:
    out = {g: {"slots": 0, **({"load": 0.0} if load is not None else {})} for g in gids}
    for s, g in enumerate(owner):
        if g in out:
            out[g]["slots"] += 1
            if load is not None:
                out[g]["load"] += load[s]
    if load is not None:
        for v in out.values():
            v["load"] = round(v["load"], 6)
    return out


def plan_count(owner: Sequence[int], weights: Mapping[int, float],
               frozen: Sequence[int] = ()) -> Plan:
    """Even slot counts by weight. `owner[s]` is the effective owner (target of a migrating slot);
    `frozen` slots (already migrating) never move."""
    eligible = _check(owner, weights)
    gids = sorted(weights)
    assigned = [s for s, g in enumerate(owner) if g]
    quota = _quotas(len(assigned), eligible)
    frozen_set = set(frozen)
    by_group: dict[int, list[int]] = {g: [] for g in gids}
    for s in assigned:
        by_group[owner[s]].append(s)
    give: list[tuple[int, int]] = []  # (slot, from)
    for g in gids:
        surplus = len(by_group[g]) - quota.get(g, 0)
        if surplus > 0:
            movable = [s for s in by_group[g] if s not in frozen_set]
            for s in movable[::-1][:surplus]:
                give.append((s, g))
    give.sort()
    moves: list[tuple[int, int, int]] = []
    it = iter(give)
    for g in gids:
        deficit = quota.get(g, 0) - len(by_group[g])
        for _ in range(max(0, deficit)):
            nxt = next(it, None)
            if nxt is None:
                break
            moves.append((nxt[0], nxt[1], g))
    moves.sort()
    after = list(owner)
    for s, _, dst in moves:
        after[s] = dst
    return Plan("count", moves, _summary(owner, gids, None), _summary(after, gids, None))


def plan_load(owner: Sequence[int], weights: Mapping[int, float], slot_load: Sequence[float],
              frozen: Collection[int] = (), tolerance: float = 0.05,
              max_moves: int | None = None, *, relative: bool = False,
              forbidden: Collection[tuple[int, int]] = ()) -> Plan:
    """Even the per-slot load by weight, moving as few slots as the greedy finds.

    `tolerance` is a share of the mean target (the default) or, with `relative`, of each
    group's own target (a group of weight 2 may be off by twice as much load). `max_moves`
    bounds the moves (drains included); `forbidden` (from, to) group pairs are never used,
    e.g. the reverse of moves made recently, so that two plans never undo each other."""
    if len(slot_load) != len(owner):
        raise PlanError(f"slot_load has {len(slot_load)} entries, expected {len(owner)}")
    eligible = _check(owner, weights)
    gids = sorted(weights)
    load = [max(0.0, float(x)) for x in slot_load]
    assigned = [s for s, g in enumerate(owner) if g]
    total = sum(load[s] for s in assigned)
    if total <= 0:
        plan = plan_count(owner, weights, frozen)
        return Plan("load", plan.moves, plan.before, plan.after)
    wsum = sum(eligible.values())
    target = {g: total * eligible.get(g, 0.0) / wsum for g in gids}
    frozen_set = set(frozen)
    cur = list(owner)
    gload = {g: 0.0 for g in gids}
    movable: dict[int, list[tuple[float, int]]] = {g: [] for g in gids}
    for s in assigned:
        gload[owner[s]] += load[s]
        if s not in frozen_set:
            movable[owner[s]].append((load[s], s))
    for v in movable.values():
        v.sort()
    moved: dict[int, tuple[int, int]] = {}

    def move(s: int, src: int, dst: int, x: float) -> None:
        cur[s] = dst
        gload[src] -= x
        gload[dst] += x
        first = moved.get(s, (src, dst))[0]
        if first == dst:
            moved.pop(s, None)
        else:
            moved[s] = (first, dst)

    # 1. drain: groups of weight 0 give away everything, each slot to the neediest group
    #    (zero-load slots by count, so a drained group's empty slots spread evenly too).
    limit = max_moves if max_moves is not None else len(owner)
    counts = {g: sum(1 for s in assigned if cur[s] == g) for g in eligible}
    for g in gids:
        if g in eligible:
            continue
        for x, s in sorted(movable[g], reverse=True):
            if len(moved) >= limit:
                break
            if x > 0:
                dst = min(eligible, key=lambda h: (gload[h] - target[h], h))
            else:
                dst = min(eligible, key=lambda h: (counts[h] / eligible[h], h))
            move(s, g, dst, x)
            counts[dst] += 1
            bisect.insort(movable[dst], (x, s))
        movable[g] = []
    # 2. greedy: largest surplus gives to largest deficit
    slack = {g: tolerance * (target[g] if relative else total / len(eligible)) for g in eligible}
    bad = set(forbidden)
    for _ in range(2 * len(owner)):  # each step shrinks the squared error: this never binds
        if len(moved) >= limit:
            break
        dev = {g: gload[g] - target[g] for g in eligible}
        if all(abs(dev[g]) <= slack[g] for g in eligible):
            break
        step = _best_step(eligible, dev, target if relative else None, movable, bad)
        if step is None:
            break  # no allowed move reduces the squared error
        donor, taker, i = step
        x, s = movable[donor].pop(i)  # by index: O(1) search (a tuple .remove() was linear)
        move(s, donor, taker, x)
        bisect.insort(movable[taker], (x, s))
    moves = sorted((s, src, dst) for s, (src, dst) in moved.items())
    return Plan("load", moves, _summary(owner, gids, load), _summary(cur, gids, load))


def combine_loads(nslots: int, metrics: Mapping[str, Sequence[float]],
                  weights: Mapping[str, float] | None = None) -> list[float]:
    """One load per slot: the mean over metrics (keys, memory, ops) of the slot's share of that
    metric's total, weighted by `weights` (default 1 each); metrics whose total (or weight) is
    0 are left out, so the loads sum to 1 (or are all 0)."""
    out = [0.0] * nslots
    used = 0.0
    for name, values in metrics.items():
        w = 1.0 if weights is None else float(weights.get(name, 0.0))
        total = float(sum(values))
        if total <= 0 or w <= 0:
            continue
        used += w
        scale = w / total
        for s, v in enumerate(values):
            out[s] += v * scale
    return [x / used for x in out] if used else out


def _best_step(eligible: Mapping[int, float], dev: Mapping[int, float],
               target: Mapping[int, float] | None,
               movable: Mapping[int, list[tuple[float, int]]],
               forbidden: set[tuple[int, int]]) -> tuple[int, int, int] | None:
    """The next greedy move: (donor, taker, index in movable[donor]) of the slot whose load is
    closest to half the pair's gap, trying pairs from the most over- and under-loaded groups
    (by share of their own target when `target` is given) down; None if no pair can help."""
    def score(g: int) -> float:
        return dev[g] / target[g] if target else dev[g]

    donors = sorted((g for g in eligible if dev[g] > 0), key=lambda g: (-score(g), g))
    takers = sorted((g for g in eligible if dev[g] < 0), key=lambda g: (score(g), g))
    for donor in donors:
        cands = movable[donor]
        if not cands:
            continue
        for taker in takers:
            if (donor, taker) in forbidden:
                continue
            gap = dev[donor] - dev[taker]
            best_x = gap / 2  # the slot load that shrinks the squared error most
            i = bisect.bisect_left(cands, (best_x, -1))
            near = [j for j in (i - 1, i) if 0 <= j < len(cands)]
            j = min(near, key=lambda j: abs(cands[j][0] - best_x))
            if 0 < cands[j][0] < gap:
                return donor, taker, j
    return None
