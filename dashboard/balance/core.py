"""The auto-balancer's decisions (sans-IO): one `Scheduler.round()` per measurement.

A round is handed what was observed (`Observation`: owners, weights, per-slot ops/s, keys and
memory, which slots migrate, stale proxies, unhealthy groups, hot keys) and the clock, and says
what to move and why. Nothing here sleeps or reads a clock, so every rule is tested with an
injected time:

1. smooth: per-slot ops/s go through an exponential moving average (half-life `smoothing`);
   a slot's average does not change when the slot moves, so a move never looks like a burst;
2. measure: each group's load (weighted shares of memory, keys and ops/s) against its target
   (its weight's share); a group is out of tolerance when it is more than `tolerance` % above
   or below its target, and since when is remembered;
3. guards, in order: outside the maintenance window, an operator's migration running, our own
   previous moves still running, a stale proxy, an unhealthy (or failing-over) group, nothing
   measured yet or a measurement incomplete: the round records the imbalance and the reason,
   and moves nothing;
4. act only when a group has been out of tolerance (or a slot hot) for longer than `quiet`;
5. plan: hot-slot relief first (a slot above `hot_share` % of its group's fair ops/s share goes
   to the least loaded group if that makes the hottest side cooler; one whose ops are one key
   is reported, never moved), then the load planner (`model/rebalance.plan_load`) down to
   `aim` x tolerance, never touching migrating or cooling-down slots and never using the
   reverse of a group pair used within the cool-down: two rounds cannot undo each other;
6. the per-hour budget bounds the moves of each round by what the last hour left.

The state that must outlive a leader (moves of the last hour or cool-down, the slots we queued,
the rounds' history) has a JSON form the scheduler stores; the moving averages and "out of
tolerance since" are rebuilt by a new leader (it re-measures for a quiet period before acting).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from slotcore.ranges import format_ranges, parse_ranges

from ..model import rebalance as rb
from .settings import Settings

HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class Observation:
    now: float                                  # unix time of the measurement
    owner: Sequence[int]                        # effective owner per slot (migrating: target)
    weights: Mapping[int, float]                # groups that can hold slots (have a master)
    ops: Sequence[float] | None = None          # ops/s per slot over the last window
    keys: Sequence[float] | None = None         # keys per slot (measured or estimated)
    memory: Sequence[float] | None = None       # bytes per slot (measured or estimated)
    migrating: Collection[int] = ()             # slots with a migration in the topology
    stale: Sequence[str] = ()                   # why proxies count as stale
    unhealthy: Mapping[int, str] = field(default_factory=dict)  # gid -> why
    ops_expected: bool = False                  # proxies exist: ops/s should be measured
    hot_keys: Mapping[int, tuple[str, float]] | None = None  # slot -> (key, share of its ops)
    errors: Sequence[str] = ()                  # measurement problems (shown, not fatal)


@dataclass(slots=True)
class Decision:
    moves: list[tuple[int, int, int]]           # (slot, from, to) to start now
    record: dict[str, Any]                      # what the history shows for this round


class Scheduler:
    def __init__(self) -> None:
        self.ewma: list[float] | None = None
        self.ewma_at = 0.0
        self.out_since: dict[int, float] = {}
        self.hot_since: dict[int, float] = {}
        self.log: list[dict[str, Any]] = []     # {"at", "slots": ranges, "pairs", "count"}
        self.ours: set[int] = set()             # slots we queued that may still migrate
        self.history: list[dict[str, Any]] = []
        self.rounds = 0

    # -- persistence -----------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {"log": self.log, "ours": format_ranges(sorted(self.ours)),
                "history": self.history, "rounds": self.rounds}

    def load_json(self, data: dict[str, Any], nslots: int) -> None:
        self.log = [e for e in data.get("log", []) if isinstance(e, dict) and "at" in e]
        self.ours = set(parse_ranges(data["ours"], nslots)) if data.get("ours") else set()
        self.history = list(data.get("history", []))
        self.rounds = int(data.get("rounds", 0))
        self.reset_measurements()

    def reset_measurements(self) -> None:
        """Forget the averages and clocks (a new leader, or switched on again): measure afresh
        for a quiet period before acting."""
        self.ewma, self.out_since, self.hot_since = None, {}, {}

    # -- what the log says -------------------------------------------------------------------------

    def _prune(self, now: float, settings: Settings) -> None:
        keep = max(HOUR, settings.cooldown)
        self.log = [e for e in self.log if now - e["at"] < keep]

    def used_this_hour(self, now: float) -> int:
        return sum(int(e["count"]) for e in self.log if now - e["at"] < HOUR)

    def cooling(self, now: float, settings: Settings, nslots: int) -> set[int]:
        out: set[int] = set()
        for e in self.log:
            if now - e["at"] < settings.cooldown and e.get("slots"):
                out.update(parse_ranges(e["slots"], nslots))
        return out

    def blocked_pairs(self, now: float, settings: Settings) -> set[tuple[int, int]]:
        """The reverse of every group pair used within the cool-down."""
        return {(int(b), int(a)) for e in self.log if now - e["at"] < settings.cooldown
                for a, b in e.get("pairs", [])}

    # -- one round -----------------------------------------------------------------------------

    def _smooth(self, obs: Observation, settings: Settings) -> list[float] | None:
        if obs.ops is None:
            return self.ewma
        ops = [max(0.0, float(x)) for x in obs.ops]
        if self.ewma is None or len(self.ewma) != len(ops) or settings.smoothing <= 0:
            self.ewma = ops
        else:
            dt = max(0.0, obs.now - self.ewma_at)
            a = 1.0 - math.pow(0.5, dt / settings.smoothing)
            self.ewma = [e + a * (x - e) for e, x in zip(self.ewma, ops, strict=True)]
        self.ewma_at = obs.now
        return self.ewma

    def round(self, obs: Observation, settings: Settings) -> Decision:
        """Decide one round. Mutates the in-memory state (averages, out-of-tolerance clocks,
        history); call `started` once the moves are queued, or `start_failed`."""
        now = obs.now
        self.rounds += 1
        self._prune(now, settings)
        nslots = len(obs.owner)
        ops = self._smooth(obs, settings)
        metrics = {k: v for k, v in (("memory", obs.memory), ("keys", obs.keys), ("ops", ops))
                   if v is not None}
        load = rb.combine_loads(nslots, metrics, settings.weights)
        measured = any(x > 0 for x in load)
        groups, out = self._imbalance(obs, load, settings) if measured else ({}, set())
        for g in list(self.out_since):
            if g not in out:
                del self.out_since[g]
        for g in out:
            self.out_since.setdefault(g, now)
        hot = self._hot_slots(obs, ops, settings)
        for s in list(self.hot_since):
            if s not in hot:
                del self.hot_since[s]
        for s in hot:
            self.hot_since.setdefault(s, now)
        self.ours &= set(obs.migrating)
        rec: dict[str, Any] = {
            "round": self.rounds, "at": now, "acted": False, "dry_run": settings.dry_run,
            "groups": {str(g): {**v, "out_for": (round(now - self.out_since[g], 1)
                                                 if g in self.out_since else None)}
                       for g, v in sorted(groups.items())},
            "imbalance": max((abs(v["deviation"]) for v in groups.values()
                              if v["deviation"] is not None), default=0.0),
            "budget": {"used": self.used_this_hour(now), "limit": settings.max_slots_per_hour},
            "plan": None, "hot_slots": [], "hot_keys": [], "errors": list(obs.errors)}

        def done(reason: str, moves: list[tuple[int, int, int]] | None = None) -> Decision:
            rec["reason"] = reason
            self._remember(rec)
            del self.history[:-settings.history]
            return Decision(moves or [], rec)

        window = settings.window_obj()
        if window is not None and not window.contains(now):
            return done(f"outside the maintenance window ({window} UTC)")
        theirs = set(obs.migrating) - self.ours
        if theirs:
            return done(f"an operator's migration is running ({len(theirs)} slots: "
                        f"{_short(theirs)}): waiting for it to end")
        if self.ours:
            return done(f"moving the previous plan: {len(self.ours)} slots left")
        if obs.stale:
            return done("a proxy is stale: " + "; ".join(obs.stale))
        if obs.unhealthy:
            return done("; ".join(f"group {g} {why}" for g, why in sorted(obs.unhealthy.items())))
        if obs.errors:
            return done("measurement incomplete: " + "; ".join(obs.errors))
        if obs.ops_expected and settings.weights.get("ops", 0) > 0 and ops is None:
            return done("measuring ops/s: the first window is not over")
        if not measured:
            return done("nothing measured yet (no keys, memory or ops/s)")
        ready = [g for g in out if now - self.out_since[g] >= settings.quiet]
        hot_ready = [s for s in hot if now - self.hot_since[s] >= settings.quiet]
        if not out and not hot:
            return done(f"balanced: every group within {settings.tolerance:g} %")
        if not ready and not hot_ready:
            waiting = sorted({*out} - set(ready))
            return done(f"quiet period: group(s) {', '.join(map(str, waiting))} out of "
                        f"tolerance for less than {settings.quiet:g}s" if waiting else
                        f"quiet period: hot slot(s) {_short(hot)} for less than "
                        f"{settings.quiet:g}s")
        budget = settings.max_slots_per_hour - self.used_this_hour(now)
        if budget <= 0:
            return done(f"hourly budget spent: {self.used_this_hour(now)} of "
                        f"{settings.max_slots_per_hour} slots moved in the last hour")
        frozen = set(obs.migrating) | self.cooling(now, settings, nslots)
        forbidden = self.blocked_pairs(now, settings)
        owner = list(obs.owner)
        hot_moves = self._relieve(obs, ops, hot_ready, owner, frozen, forbidden, budget,
                                  settings, rec)
        for s, src, dst in hot_moves:
            owner[s] = dst
            frozen.add(s)
            forbidden.add((dst, src))
        frozen.update(h["slot"] for h in rec["hot_keys"])
        try:
            plan = rb.plan_load(owner, obs.weights, load, frozen,
                                tolerance=settings.tolerance / 100 * settings.aim,
                                max_moves=budget - len(hot_moves), relative=True,
                                forbidden=forbidden) if ready else None
        except rb.PlanError as e:
            return done(f"cannot plan: {e}")
        moves = _merge(hot_moves, plan.moves if plan else [])
        if not moves and not ready:
            notes = [f"slot {h['slot']}: {h['note']}" for h in rec["hot_slots"]]
            notes += [f"slot {h['slot']}: hot key {h['key']!r}" for h in rec["hot_keys"]]
            return done("hot slot(s) not moved: " + "; ".join(notes))
        if not moves:
            return done("out of tolerance, but no allowed move helps (slots cooling down: "
                        f"{len(self.cooling(now, settings, nslots))}, reverse pairs blocked: "
                        f"{len(forbidden)})" + ("; hot key(s) reported" if rec["hot_keys"]
                                                 else ""))
        after = list(obs.owner)
        for s, _, dst in moves:
            after[s] = dst
        rec["plan"] = {"slots": len(moves), "moves": rb.Plan("load", moves).grouped(),
                       "after": {str(g): v for g, v in
                                 sorted(self._shares(after, obs.weights, load).items())}}
        if settings.dry_run:
            return done(f"dry run: would move {len(moves)} slots")
        return done(f"moving {len(moves)} slots", moves)

    def started(self, decision: Decision, now: float, queued: Collection[int]) -> None:
        """The decision's moves were queued with the migrator."""
        moves = [m for m in decision.moves if m[0] in set(queued)]
        if not decision.moves:
            return
        if moves:
            self.log.append({"at": now, "slots": format_ranges(sorted(s for s, _, _ in moves)),
                             "pairs": sorted({(a, b) for _, a, b in moves}),
                             "count": len(moves)})
        self.ours.update(s for s, _, _ in moves)
        decision.record["acted"] = True
        decision.record["reason"] = f"started {len(moves)} slots"
        decision.record["budget"]["used"] = self.used_this_hour(now)
        self.out_since.clear()  # after acting, a fresh quiet period before the next plan
        self.hot_since.clear()

    def start_failed(self, decision: Decision, error: str) -> None:
        decision.record["reason"] = f"planned {len(decision.moves)} slots, start refused: {error}"

    # -- parts -----------------------------------------------------------------------------------

    def _shares(self, owner: Sequence[int], weights: Mapping[int, float],
                load: Sequence[float]) -> dict[int, dict[str, Any]]:
        total = sum(load) or 1.0
        wsum = sum(w for w in weights.values() if w > 0) or 1.0
        gload = dict.fromkeys(weights, 0.0)
        slots = dict.fromkeys(weights, 0)
        for s, g in enumerate(owner):
            if g in gload:
                gload[g] += load[s]
                slots[g] += 1
        out = {}
        for g, w in weights.items():
            share, target = gload[g] / total, w / wsum
            dev = (share - target) / target * 100 if target > 0 else None
            out[g] = {"slots": slots[g], "load": round(share * 100, 2),
                      "target": round(target * 100, 2),
                      "deviation": round(dev, 2) if dev is not None else None}
        return out

    def _imbalance(self, obs: Observation, load: Sequence[float], settings: Settings
                   ) -> tuple[dict[int, dict[str, Any]], set[int]]:
        groups = self._shares(obs.owner, obs.weights, load)
        out = {g for g, v in groups.items()
               if (v["deviation"] is None and v["slots"] > 0)
               or (v["deviation"] is not None and abs(v["deviation"]) > settings.tolerance)}
        return groups, out

    def _hot_slots(self, obs: Observation, ops: Sequence[float] | None,
                   settings: Settings) -> list[int]:
        """Slots above hot_share % of their group's fair share of the ops/s, hottest first."""
        if ops is None or settings.hot_share <= 0:
            return []
        total = sum(ops)
        wsum = sum(w for w in obs.weights.values() if w > 0)
        if total <= 0 or wsum <= 0:
            return []
        limit = {g: settings.hot_share / 100 * total * w / wsum
                 for g, w in obs.weights.items() if w > 0}
        hot = [s for s, g in enumerate(obs.owner) if g in limit and ops[s] > limit[g]]
        return sorted(hot, key=lambda s: (-ops[s], s))

    def _relieve(self, obs: Observation, ops: Sequence[float] | None, hot: list[int],
                 owner: list[int], frozen: set[int], forbidden: set[tuple[int, int]],
                 budget: int, settings: Settings, rec: dict[str, Any]
                 ) -> list[tuple[int, int, int]]:
        """Hot-slot relief: each hot slot to the least loaded group (by ops/s against its
        fair share) when that leaves the hotter of the two cooler than the source is now."""
        if not hot or ops is None:
            return []
        total = sum(ops)
        eligible = {g: w for g, w in obs.weights.items() if w > 0}
        wsum = sum(eligible.values())
        fair = {g: total * w / wsum for g, w in eligible.items()}
        gops = dict.fromkeys(eligible, 0.0)
        for s, g in enumerate(owner):
            if g in gops:
                gops[g] += ops[s]
        moves: list[tuple[int, int, int]] = []
        for s in hot:
            src, x = owner[s], ops[s]
            entry = {"slot": s, "group": src, "ops": round(x, 1),
                     "share": round(x / fair[src] * 100, 1) if fair.get(src) else None}
            key = (obs.hot_keys or {}).get(s)
            if key is not None and key[1] * 100 >= settings.hot_key_share:
                rec["hot_keys"].append({"slot": s, "group": src, "key": key[0],
                                        "share": round(key[1] * 100, 1),
                                        "note": "one key carries the slot's load: it cannot "
                                                "be split, so the slot is not moved"})
                continue
            if s in frozen:
                rec["hot_slots"].append({**entry, "note": "migrating or cooling down"})
                continue
            if len(moves) >= budget:
                rec["hot_slots"].append({**entry, "note": "hourly budget spent"})
                continue
            dests = sorted((g for g in eligible if g != src and (src, g) not in forbidden),
                           key=lambda g: (gops[g] / fair[g], g))
            if src not in fair or not dests:
                rec["hot_slots"].append({**entry, "note": "no group to take it"})
                continue
            dst = dests[0]
            if (gops[dst] + x) / fair[dst] >= gops[src] / fair[src]:
                rec["hot_slots"].append({**entry, "note": "no group can take it without "
                                                          "becoming hotter than its owner"})
                continue
            moves.append((s, src, dst))
            gops[src] -= x
            gops[dst] += x
            owner[s] = dst
            rec["hot_slots"].append({**entry, "moved_to": dst})
        return moves

    def _remember(self, rec: dict[str, Any]) -> None:
        """Append to the history; a round that repeats the last one's decision (same reason,
        nothing done) updates it instead, so a quiet cluster does not flush the history."""
        last = self.history[-1] if self.history else None
        if (last is not None and not last.get("acted") and not rec["acted"]
                and last.get("reason") == rec["reason"] and last.get("plan") == rec["plan"]):
            rec["repeat"] = int(last.get("repeat", 1)) + 1
            rec["first_at"] = last.get("first_at", last["at"])
            self.history[-1] = rec
        else:
            self.history.append(rec)


def _merge(first: list[tuple[int, int, int]], then: list[tuple[int, int, int]]
           ) -> list[tuple[int, int, int]]:
    """Moves of two plans made one after the other, as one (slot, from, to) list."""
    out = {s: (a, b) for s, a, b in first}
    for s, a, b in then:
        src = out[s][0] if s in out else a
        if src == b:
            out.pop(s, None)
        else:
            out[s] = (src, b)
    return sorted((s, a, b) for s, (a, b) in out.items())


def _short(slots: Collection[int]) -> str:
    text = format_ranges(sorted(slots))
    return text if len(text) <= 60 else text[:57] + "..."
