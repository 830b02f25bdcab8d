"""Rebalancing: measure (load mode), plan with the pure planners of `model/rebalance.py`, and
unless it is a dry run, queue the moves with the migrator in one change.

The plan works on the effective owners (a migrating slot counts for its target) and never moves
a slot that is already migrating.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..control.plane import ControlPlane
from ..control.proxies import ProxyRegistry
from ..errors import Conflict, InvalidRequest, NotFound
from ..model import rebalance as rb
from ..model.records import Topology
from ..observe.load import measure
from .migrator import Migrator


class Rebalancer:
    def __init__(self, plane: ControlPlane, proxies: ProxyRegistry, migrator: Migrator) -> None:
        self.plane = plane
        self.proxies = proxies
        self.migrator = migrator

    async def rebalance(self, mode: str = "count", dry_run: bool = True,
                        weights: dict[int, float] | None = None, drain: list[int] = (),
                        sample_seconds: float = 1.0, tolerance: float = 0.05) -> dict[str, Any]:
        """Plan (and unless dry_run, start) a rebalance; see model/rebalance.py."""
        topo = self.plane.require_leader()
        w = {g.id: g.weight for g in topo.groups.values() if g.master}
        for gid, value in (weights or {}).items():
            if gid not in topo.groups:
                raise NotFound(f"unknown group {gid}")
            w[gid] = float(value)
        for gid in drain:
            if gid not in topo.groups:
                raise NotFound(f"unknown group {gid}")
            w[gid] = 0.0
        owner = list(topo.owner)
        for s, m in topo.migrations.items():
            owner[s] = m.target
        frozen = sorted(topo.migrations)
        measured = None
        try:
            if mode == "load":
                measured = await measure(topo, self.proxies.client, self.proxies.records(),
                                         sample_seconds)
                metrics = {k: measured[k] for k in ("keys", "memory", "ops") if measured[k]}
                load = rb.combine_loads(topo.nslots, metrics)
                plan = rb.plan_load(owner, w, load, frozen, tolerance)
            elif mode == "count":
                plan = rb.plan_count(owner, w, frozen)
            else:
                raise InvalidRequest(f"mode must be 'count' or 'load', not {mode!r}")
        except rb.PlanError as e:
            raise Conflict(str(e)) from None
        out: dict[str, Any] = {"dry_run": dry_run, "weights": {str(g): v for g, v in
                                                               sorted(w.items())},
                               "plan": plan.to_json()}
        if measured is not None:
            out["measured"] = {"keys": round(sum(measured["keys"])),
                               "memory": round(sum(measured["memory"])),
                               "ops_per_sec": (round(sum(measured["ops"]), 1)
                                               if measured["ops"] else None),
                               "errors": measured["errors"]}
        if dry_run:
            return out
        by_target: dict[int, list[int]] = {}
        for s, _, dst in plan.moves:
            by_target.setdefault(dst, []).append(s)

        def set_weights(t: Topology) -> Topology:
            groups = dict(t.groups)
            for gid in drain:
                groups[gid] = replace(groups[gid], weight=0.0)
            return replace(t, groups=groups)

        if by_target or drain:
            out["started"] = await self.migrator.start_many(
                [(slots, dst) for dst, slots in sorted(by_target.items())], before=set_weights)
        return out

    async def set_weight(self, gid: int, weight: float) -> Topology:
        if weight < 0:
            raise InvalidRequest("weight must be >= 0")

        def apply(t: Topology) -> Topology:
            group = t.groups.get(gid)
            if group is None:
                raise NotFound(f"unknown group {gid}")
            return replace(t, groups={**t.groups, gid: replace(group, weight=weight)})

        return await self.plane.change(apply)
