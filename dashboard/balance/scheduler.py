"""The auto-balancer's loop in the dashboard (I/O): on the leader only, one round per interval.

Each round gathers an `Observation` (topology, stale proxies, group health, per-slot ops/s,
keys and bytes, hot keys), lets the pure `core.Scheduler` decide, queues the moves through
`Migrator.start_many` (the normal migration path: batches, throttles, fencing) and stores the
state a new leader needs (settings; the moves of the last hour and cool-down; the slots it
queued; the rounds' history). A standby serves the stored status.

Unhealthy groups come from the dashboard's health poller (a group is unhealthy when its master
is unreachable, not a master, or not polled yet) and from the topology (a group whose state is
not "active", e.g. "promoting" during a planned master switch). Groups failing over are read
from the control plane's `failing_over` attribute (a collection of group ids, empty when
absent): whatever runs failovers sets it for the time a group's master changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from slotcore.ranges import parse_ranges

from ..control.plane import ControlPlane
from ..control.proxies import ProxyRegistry
from ..errors import ApiError, Conflict, InvalidRequest, StoreFailure
from ..migrate.migrator import Migrator
from ..model.records import Topology
from ..observe.health import HealthMonitor, group_health
from ..store.base import Store, StoreError
from ..store.keys import Keys
from .core import Decision, Observation, Scheduler
from .measure import HotKeyView, InfoSpread, OpsSampler, SlotSizes
from .settings import Settings, SettingsError

log = logging.getLogger(__name__)


def settings_key(keys: Keys) -> str:
    return f"{keys.root}/autobalance/settings"


def state_key(keys: Keys) -> str:
    return f"{keys.root}/autobalance/state"


class AutoBalancer:
    def __init__(self, plane: ControlPlane, proxies: ProxyRegistry, migrator: Migrator,
                 health: HealthMonitor, store: Store, keys: Keys,
                 initial: dict[str, Any] | None = None, sizes: SlotSizes | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.plane = plane
        self.proxies = proxies
        self.migrator = migrator
        self.health = health
        self.store = store
        self.keys = keys
        self.settings = Settings().update(dict(initial or {}))
        self.sizes: SlotSizes = sizes or InfoSpread()
        self.ops = OpsSampler(proxies.client)
        self.hot = HotKeyView(proxies.client)
        self.core = Scheduler()
        self.clock = clock
        self.wake = asyncio.Event()
        self.error: str | None = None
        self.last_round_at: float | None = None

    # -- store -----------------------------------------------------------------------------------

    async def load(self) -> None:
        """A new leader's take-over: the stored settings and state win over the config."""
        topo = self.plane.current()
        try:
            entry = await self.store.get(settings_key(self.keys))
            if entry is not None:
                self.settings = Settings().update(
                    {k: v for k, v in entry.value.items() if k in Settings.names()})
            entry = await self.store.get(state_key(self.keys))
            if entry is not None and topo is not None:
                self.core.load_json(entry.value, topo.nslots)
        except (StoreError, SettingsError, ValueError) as e:
            log.warning("auto-balance settings/state not loaded: %s", e)
        self.ops.reset()
        self.core.reset_measurements()
        self.wake.set()

    async def _save_state(self) -> None:
        try:
            await self.store.put(state_key(self.keys), self.core.to_json())
        except StoreError as e:
            log.warning("auto-balance state not stored: %s", e)

    async def update(self, data: dict[str, Any]) -> dict[str, Any]:
        """Change settings (leader only); SettingsError -> 400 in the API."""
        self.plane.require_leader()
        try:
            new = self.settings.update(data)
        except SettingsError as e:
            raise InvalidRequest(str(e)) from None
        try:
            await self.store.put(settings_key(self.keys), new.to_json())
        except StoreError as e:
            raise StoreFailure(f"auto-balance settings not stored: {e}") from None
        if new.enabled and not self.settings.enabled:
            # a fresh window and fresh averages: rates from long ago say nothing
            self.ops.reset()
            self.core.reset_measurements()
        self.settings = new
        self.wake.set()
        return new.to_json()

    # -- the loop --------------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            await self.plane.leading.wait()
            if self.settings.enabled:
                try:
                    await self.round()
                    self.error = None
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # a bug or store trouble: shown, retried next round
                    self.error = str(e) or type(e).__name__
                    log.exception("auto-balance round failed")
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.settings.interval
                                       if self.settings.enabled else 1.0)

    async def observe(self, topo: Topology) -> Observation:
        records = self.proxies.records()
        live = {m.id for m in self.proxies.members()}
        stale = [f"proxy {r.id} (admin {r.admin}) is {r.state}, not heard from recently"
                 for r in records if r.id not in live]
        stale += [b for b in self.proxies.batch_blockers()
                  if not any(b.startswith(f"proxy {r.id} ") for r in records
                             if r.id not in live)]
        failing = set(getattr(self.plane, "failing_over", None) or ())
        health = group_health(topo, self.health.servers)
        unhealthy: dict[int, str] = {}
        for gid, g in topo.groups.items():
            if gid in failing:
                unhealthy[gid] = "is failing over"
            elif g.state != "active":  # e.g. "promoting": its slots are locked for a switch
                unhealthy[gid] = f"is {g.state}"
            elif not g.master:
                if gid in topo.owner:
                    unhealthy[gid] = "has no master"
            elif not health[str(gid)]["ok"]:
                m = next((s for s in health[str(gid)]["servers"] if s["addr"] == g.master), {})
                why = m.get("error") or (f"role {m.get('role')}" if m.get("reachable") else
                                         "unreachable")
                unhealthy[gid] = f"is unhealthy (master {g.master}: {why})"
        ops_task = asyncio.create_task(self.ops.sample(records, topo.nslots))
        keys, mem, errors = await self.sizes.sizes(topo)
        ops = await ops_task
        hot = await self.hot.hot_keys(records, topo.nslots, ops) if ops else None
        owner = list(topo.owner)
        for s, m in topo.migrations.items():
            owner[s] = m.target
        return Observation(
            now=self.clock(), owner=owner,
            weights={g.id: g.weight for g in topo.groups.values() if g.master},
            ops=ops, keys=keys, memory=mem, migrating=set(topo.migrations), stale=stale,
            unhealthy=unhealthy, ops_expected=bool(records), hot_keys=hot, errors=errors)

    async def round(self) -> Decision:
        topo = self.plane.require_leader()
        obs = await self.observe(topo)
        settings = self.settings
        decision = self.core.round(obs, settings)
        if decision.moves and not settings.dry_run:
            by_target: dict[int, list[int]] = {}
            for s, _, dst in decision.moves:
                by_target.setdefault(dst, []).append(s)
            ours = set(self.core.ours)

            def nothing_else_moving(t: Topology) -> Topology:
                # Checked inside the change, under the plane's lock: an operator's migration
                # queued while this round measured means the round must not act.
                theirs = set(t.migrations) - ours
                if theirs:
                    raise Conflict(f"an operator's migration started meanwhile ({len(theirs)} "
                                   "slots)")
                return t

            try:
                # start_many re-checks staleness and commits every move in ONE change.
                out = await self.migrator.start_many(
                    sorted((slots, dst) for dst, slots in by_target.items()),
                    before=nothing_else_moving)
                queued = parse_ranges(out["queued"], topo.nslots) if out.get("queued") else []
                self.core.started(decision, obs.now, queued)
                log.info("auto-balance: %s (epoch %s)", decision.record["reason"],
                         out.get("epoch"))
            except ApiError as e:  # a proxy went stale meanwhile, a push failed: next round
                self.core.start_failed(decision, str(e))
        self.last_round_at = obs.now
        await self._save_state()
        return decision

    # -- the view --------------------------------------------------------------------------------

    async def status(self, rounds: int = 20) -> dict[str, Any]:
        """Settings, state and the last rounds; a standby reads them from the store."""
        settings, history, log_ = self.settings, self.core.history, self.core.log
        leading = self.plane.leading.is_set()
        if not leading:
            with contextlib.suppress(StoreError, SettingsError, ValueError):
                entry = await self.store.get(settings_key(self.keys))
                if entry is not None:
                    settings = Settings.from_json(entry.value)
                entry = await self.store.get(state_key(self.keys))
                if entry is not None:
                    history = entry.value.get("history", [])
                    log_ = entry.value.get("log", [])
        now = self.clock()
        return {
            "enabled": settings.enabled, "dry_run": settings.dry_run,
            "settings": settings.to_json(),
            "leader": leading,
            "error": self.error,
            "moved_last_hour": sum(int(e["count"]) for e in log_ if now - e["at"] < 3600),
            "rounds": history[-rounds:][::-1],
        }

    async def close(self) -> None:
        await self.hot.close()
