"""The dashboard's control loop: leadership, the topology cache, changes and proxy pushes.

How a change happens (`Dashboard.change`), under one lock so changes are serial:

1. the pure function from `topology.py` builds the next Topology, epoch + 1;
2. it is committed to the store with CAS (fenced by the leader lock);
3. it is pushed to EVERY registered proxy in parallel and each must acknowledge;
4. if any proxy fails, the change is ROLLED BACK: the previous content is committed again with
   a still newer epoch (proxies never accept a lower epoch, so a rollback is a roll *forward*
   to the old content) and pushed to every proxy that answers; the error names the failed
   proxies. A proxy that was unreachable catches up by itself -- its heartbeat reply carries
   the current epoch, which is newer than anything it may have applied.

Committing before pushing (not after) means no proxy can ever hold an epoch the store has not
seen, so a dashboard that crashes mid-change restarts with the store's map, pushes it to all
proxies (`_take_over`) and everyone converges on it. If the store was lost and proxies are
ahead of it anyway, `_reconcile` lifts the epoch above theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from slotcore.ranges import format_ranges

from . import topology as topo_ops
from .config import DashboardConfig
from .health import HealthMonitor, group_health
from .models import ProxyRecord, Topology
from .proxies import ProxyClient, PushResult
from .store import CasConflict, NotLeader, Store, StoreError

log = logging.getLogger(__name__)


class DashboardError(Exception):
    status = 500


class StandbyError(DashboardError):
    """This dashboard does not hold the leader lock: mutations go to the leader."""

    status = 503


class StoreFailure(DashboardError):
    status = 503


class ConcurrentChange(DashboardError):
    status = 409


class PushFailed(DashboardError):
    """Some proxies did not acknowledge a change; it was rolled back."""

    status = 502

    def __init__(self, failed: dict[str, PushResult], proxies: dict[str, ProxyRecord],
                 epoch: int, rollback_failed: dict[str, PushResult],
                 rollback_error: str | None = None) -> None:
        self.failed = failed
        self.epoch = epoch
        names = "; ".join(f"proxy {pid} (admin {proxies[pid].admin}): {r.error}"
                          for pid, r in sorted(failed.items()))
        if rollback_error:
            tail = f"rolling back ALSO failed ({rollback_error}): check `proxyctl status`"
        else:
            tail = (f"the change was rolled back (epoch {epoch} carries the previous "
                    "topology); remove a dead proxy (make sure it is stopped) with "
                    "`proxyctl proxy remove ID --force`")
        lagging = sorted(set(rollback_failed) - set(failed))
        if lagging:
            tail += (f"; proxies {', '.join(lagging)} did not take the rollback yet and catch "
                     "up with their next heartbeat")
        super().__init__(f"{len(failed)} proxy(ies) did not acknowledge the change: "
                         f"{names}; {tail}")
        self.rollback_failed = rollback_failed


class Dashboard:
    def __init__(self, cfg: DashboardConfig, store: Store) -> None:
        self.cfg = cfg
        self.store = store
        self.keys = cfg.keys
        self.client = ProxyClient(cfg.admin_token, cfg.push_timeout)
        self.health = HealthMonitor(lambda: self._topo, cfg.health_interval, cfg.health_timeout)
        self.info = {"id": cfg.ident, "url": cfg.url, "pid": os.getpid(),
                     "started": time.time()}
        self.role = "starting"
        self.leading = asyncio.Event()  # set while leader with state loaded
        self._lock = asyncio.Lock()
        self._topo: Topology | None = None
        self._topo_rev = 0
        self._proxies: dict[str, ProxyRecord] = {}
        self._last_seen: dict[str, float] = {}
        self._forced: dict[str, float] = {}  # proxy id -> when it was removed unreachable
        self._tasks: set[asyncio.Task[Any]] = set()
        self._syncing: set[str] = set()
        self._last_leader: dict[str, Any] | None = None
        self.proxy_stats: dict[str, dict[str, Any]] = {}
        from .migrator import Migrator
        self.migrator = Migrator(self)
        if cfg.migration:
            self.migrator.settings.update(dict(cfg.migration))

    # -- leadership ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Campaign, lead until the lock is lost, campaign again; forever (cancel to stop)."""
        while True:
            try:
                await self._term()
            except Exception:  # a bug must not leave a dashboard silently never leading
                log.exception("leadership loop failed; starting over")
                self.leading.clear()
                with contextlib.suppress(StoreError):
                    await self.store.resign()
                await asyncio.sleep(1)

    async def _term(self) -> None:
        """One term: campaign, take over, lead until the lock is lost."""
        while True:
            self.role = "standby"
            watcher = asyncio.create_task(self._watch_leader())
            try:
                await self.store.campaign(self.keys.leader, self.info)
            finally:
                watcher.cancel()
            try:
                async with self._lock:
                    await self._take_over()
            except (StoreError, DashboardError) as e:
                log.error("taking over as leader failed: %s; retrying", e)
                await self.store.resign()
                await asyncio.sleep(1)
                continue
            self.role = "leader"
            self.leading.set()
            log.info("leading cluster %r at epoch %d", self.cfg.cluster, self._topo_epoch())
            await self.store.leader_lost.wait()
            self.leading.clear()
            self.role = "standby"
            log.error("lost the leader lock; now standby")

    async def _take_over(self) -> None:
        """Load the state a previous leader left and make every proxy agree with it."""
        entry = await self.store.get(self.keys.topology)
        if entry is None:
            # Epoch 1, not 0: a fresh proxy is at 0, so even the empty map is news to it.
            topo = replace(Topology.empty(self.cfg.slots), epoch=1)
            self._topo_rev = await self.store.put(self.keys.topology, topo.to_json(), expect=0)
        else:
            topo = Topology.from_json(entry.value)
            self._topo_rev = entry.revision
            if topo.nslots != self.cfg.slots:
                log.warning("store holds a %d-slot topology; config says %d: the store wins",
                            topo.nslots, self.cfg.slots)
        self._topo = topo
        self._proxies = {}
        for e in await self.store.list(self.keys.proxies):
            rec = ProxyRecord.from_json(e.value)
            self._proxies[rec.id] = rec
        if self._proxies:
            results = await self._push(list(self._proxies.values()), topo)
            await self._reconcile(results)
        await self.migrator.load_settings()

    async def _watch_leader(self) -> None:
        """While standby: keep the leader's identity at hand for error messages."""
        while True:
            await self.leader()
            await asyncio.sleep(1.0)

    def _require_leader(self) -> Topology:
        if not self.leading.is_set() or not self.store.is_leader or self._topo is None:
            raise StandbyError(f"dashboard {self.info['id']} is a standby, not the leader"
                               + self._leader_hint())
        return self._topo

    def _leader_hint(self) -> str:
        leader = self._last_leader
        return f"; the leader is {leader.get('id')} at {leader.get('url')}" if leader else ""

    async def leader(self) -> dict[str, Any] | None:
        try:
            self._last_leader = await self.store.leader(self.keys.leader)
        except StoreError:
            self._last_leader = None
        return self._last_leader

    def _topo_epoch(self) -> int:
        return self._topo.epoch if self._topo else 0

    # -- commits and pushes --------------------------------------------------------------------

    async def _commit(self, topo: Topology) -> None:
        try:
            self._topo_rev = await self.store.put(self.keys.topology, topo.to_json(),
                                                  expect=self._topo_rev)
        except NotLeader as e:
            self.leading.clear()
            raise StandbyError(f"not committed: {e}") from None
        except CasConflict as e:
            raise ConcurrentChange(f"the topology changed underneath this dashboard ({e}); "
                                   "retry") from None
        except StoreError as e:
            raise StoreFailure(f"store write failed, nothing changed: {e}") from None
        self._topo = topo

    async def _push(self, proxies: list[ProxyRecord], topo: Topology) -> dict[str, PushResult]:
        results = await self.client.push_all(proxies, topo.slot_map().to_json())
        for pid, r in results.items():
            rec = self._proxies.get(pid)
            if rec is None:
                continue
            new = (replace(rec, state="online", epoch=r.epoch or 0, error=None) if r.ok
                   else replace(rec, state="unreachable", error=r.error))
            self._proxies[pid] = new
            if (new.state, new.error) != (rec.state, rec.error):
                await self._save_proxy(new)
        return results

    async def _save_proxy(self, rec: ProxyRecord) -> None:
        rec = replace(rec, last_seen=max(rec.last_seen, self._last_seen.get(rec.id, 0.0)))
        with contextlib.suppress(StoreError):  # proxy records are advisory: never fail on them
            await self.store.put(self.keys.proxy(rec.id), rec.to_json())

    async def _reconcile(self, results: dict[str, PushResult]) -> None:
        """Proxies refusing our map as stale are ahead of the store: jump past their epoch."""
        stale = [self._proxies[pid] for pid, r in results.items() if r.stale]
        if not stale or self._topo is None:
            return
        infos = await asyncio.gather(*(self.client.info(p) for p in stale))
        ahead = max((int(i.get("epoch", 0)) for i in infos if i), default=0)
        if ahead >= self._topo.epoch:
            log.warning("proxies are at epoch %d, store at %d: re-publishing above them",
                        ahead, self._topo.epoch)
            await self._commit(replace(self._topo, epoch=ahead + 1))
            await self._push(list(self._proxies.values()), self._topo)

    async def change(self, fn: Callable[[Topology], Topology]) -> Topology:
        """Apply a pure change, commit it, push it to every proxy or roll it back."""
        async with self._lock:
            old = self._require_leader()
            new = replace(fn(old), epoch=old.epoch + 1)
            await self._commit(new)
            proxies = list(self._proxies.values())
            if not proxies:
                return new
            results = await self._push(proxies, new)
            failed = {pid: r for pid, r in results.items() if not r.ok}
            if not failed:
                return new
            rollback = replace(old, epoch=new.epoch + 1)
            try:
                await self._commit(rollback)
            except DashboardError as e:
                raise PushFailed(failed, self._proxies, new.epoch, {}, str(e)) from None
            back = await self._push(proxies, rollback)
            log.error("change rolled back to epoch %d: proxies %s failed", rollback.epoch,
                      ", ".join(sorted(failed)))
            raise PushFailed(failed, self._proxies, rollback.epoch,
                             {pid: r for pid, r in back.items() if not r.ok})

    # -- proxies -------------------------------------------------------------------------------

    def register(self, proxy_id: str, addr: str, admin: str) -> int:
        """A proxy's registration or heartbeat; returns the current epoch.

        The push to a new (or changed, or lagging) proxy runs in the background, so the proxy's
        request returns at once even while a change holds the lock.
        """
        topo = self._require_leader()
        self._last_seen[proxy_id] = time.time()
        rec = self._proxies.get(proxy_id)
        lagging = (rec is None or (rec.addr, rec.admin) != (addr, admin)
                   or rec.state != "online" or rec.epoch < topo.epoch)
        if lagging and proxy_id not in self._syncing:
            self._syncing.add(proxy_id)
            self._spawn(self._sync_proxy(proxy_id, addr, admin))
        return topo.epoch

    async def _sync_proxy(self, proxy_id: str, addr: str, admin: str) -> None:
        try:
            async with self._lock:
                topo = self._require_leader()
                now = time.time()
                rec = self._proxies.get(proxy_id) or ProxyRecord(
                    id=proxy_id, addr=addr, admin=admin, registered=now)
                if (rec.addr, rec.admin) != (addr, admin):
                    rec = replace(rec, addr=addr, admin=admin, state="pending", registered=now)
                self._proxies[proxy_id] = rec
                if rec.state == "pending":
                    await self._save_proxy(rec)
                    log.info("proxy %s registered (clients %s, admin %s)", proxy_id, addr, admin)
                results = await self._push([rec], topo)
                await self._reconcile(results)
        except DashboardError as e:
            log.warning("syncing proxy %s failed: %s", proxy_id, e)
        finally:
            self._syncing.discard(proxy_id)

    def stale_proxies(self) -> list[str]:
        """Registered proxies not heard from within fence_timeout (they block new batches)."""
        now = time.time()
        out = []
        for rec in sorted(self._proxies.values(), key=lambda r: r.id):
            seen = max(rec.last_seen, self._last_seen.get(rec.id, 0.0))
            if now - seen > self.cfg.fence_timeout:
                age = f"{now - seen:.0f}s ago" if seen else "never"
                out.append(f"proxy {rec.id} (admin {rec.admin}) last seen {age}, more than "
                           f"fence_timeout {self.cfg.fence_timeout:g}s")
        return out

    def batch_blockers(self) -> list[str]:
        """Why no migration batch may start now: stale proxies, and a proxy force-removed less
        than fence_timeout ago (if it is in fact still running, cut off from us, it stops
        serving slots in transit only after fence_timeout without contact)."""
        out = self.stale_proxies()
        now = time.time()
        for pid, at in sorted(self._forced.items()):
            if now - at < self.cfg.fence_timeout:
                out.append(f"proxy {pid} was force-removed {now - at:.0f}s ago: waiting "
                           f"fence_timeout {self.cfg.fence_timeout:g}s")
        return out

    async def remove_proxy(self, proxy_id: str, force: bool = False) -> ProxyRecord:
        async with self._lock:
            self._require_leader()
            rec = self._proxies.get(proxy_id)
            if rec is None:
                raise topo_ops.NotFound(f"unknown proxy {proxy_id!r}")
            if await self.client.info(rec) is None:
                if not force:
                    raise topo_ops.Conflict(
                        f"proxy {proxy_id} (admin {rec.admin}) cannot be reached; a proxy that "
                        "is still running with an old slot map could write keys the migration "
                        "has moved: make sure it is stopped, then remove it with force")
                self._forced[proxy_id] = time.time()
            try:
                await self.store.delete(self.keys.proxy(proxy_id))
            except NotLeader as e:
                raise StandbyError(str(e)) from None
            except StoreError as e:
                raise StoreFailure(f"store write failed: {e}") from None
            del self._proxies[proxy_id]
            self._last_seen.pop(proxy_id, None)
            log.info("proxy %s removed", proxy_id)
            return rec

    async def rebalance(self, mode: str = "count", dry_run: bool = True,
                        weights: dict[int, float] | None = None, drain: list[int] = (),
                        sample_seconds: float = 1.0, tolerance: float = 0.05) -> dict[str, Any]:
        """Plan (and unless dry_run, start) a rebalance; see rebalance.py for the algorithms."""
        from . import rebalance as rb
        from .load import measure
        topo = self._require_leader()
        w = {g.id: g.weight for g in topo.groups.values() if g.master}
        for gid, value in (weights or {}).items():
            if gid not in topo.groups:
                raise topo_ops.NotFound(f"unknown group {gid}")
            w[gid] = float(value)
        for gid in drain:
            if gid not in topo.groups:
                raise topo_ops.NotFound(f"unknown group {gid}")
            w[gid] = 0.0
        owner = list(topo.owner)
        for s, m in topo.migrations.items():
            owner[s] = m.target
        frozen = sorted(topo.migrations)
        measured = None
        try:
            if mode == "load":
                measured = await measure(topo, self.client, list(self._proxies.values()),
                                         sample_seconds)
                metrics = {k: measured[k] for k in ("keys", "memory", "ops") if measured[k]}
                load = rb.combine_loads(topo.nslots, metrics)
                plan = rb.plan_load(owner, w, load, frozen, tolerance)
            elif mode == "count":
                plan = rb.plan_count(owner, w, frozen)
            else:
                raise topo_ops.InvalidRequest(f"mode must be 'count' or 'load', not {mode!r}")
        except rb.PlanError as e:
            raise topo_ops.Conflict(str(e)) from None
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
            raise topo_ops.InvalidRequest("weight must be >= 0")

        def apply(t: Topology) -> Topology:
            group = t.groups.get(gid)
            if group is None:
                raise topo_ops.NotFound(f"unknown group {gid}")
            return replace(t, groups={**t.groups, gid: replace(group, weight=weight)})

        return await self.change(apply)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def poll_proxy_stats(self) -> None:
        """Every health interval: each proxy's clients and ops/s, for `status` (leader only)."""
        while True:
            await asyncio.sleep(self.cfg.health_interval)
            if not self.leading.is_set():
                continue
            proxies = list(self._proxies.values())
            stats = await asyncio.gather(*(self.client.stats(p) for p in proxies))
            self.proxy_stats = {p.id: {"clients": s.get("clients"),
                                       "ops_per_sec": s.get("ops_per_sec"),
                                       "commands": s.get("commands")}
                                for p, s in zip(proxies, stats, strict=True) if s}

    # -- views (served by leader and standby alike) ----------------------------------------------

    async def topology(self) -> Topology:
        if self.leading.is_set() and self._topo is not None:
            return self._topo
        try:
            entry = await self.store.get(self.keys.topology)
        except StoreError as e:
            raise StoreFailure(f"store unreachable: {e}") from None
        topo = Topology.from_json(entry.value) if entry else Topology.empty(self.cfg.slots)
        self._topo = topo  # a standby polls health for what it shows, too
        return topo

    async def proxies(self) -> list[dict[str, Any]]:
        if self.leading.is_set():
            records = list(self._proxies.values())
        else:
            try:
                records = [ProxyRecord.from_json(e.value)
                           for e in await self.store.list(self.keys.proxies)]
            except StoreError as e:
                raise StoreFailure(f"store unreachable: {e}") from None
        now = time.time()
        out = []
        for rec in sorted(records, key=lambda r: r.id):
            seen = max(rec.last_seen, self._last_seen.get(rec.id, 0.0))
            view = rec.to_json()
            view["last_seen"] = seen
            view["stale"] = now - seen > self.cfg.proxy_stale_after
            view["stats"] = self.proxy_stats.get(rec.id)
            out.append(view)
        return out

    async def overview(self) -> dict[str, Any]:
        topo = await self.topology()
        health = group_health(topo, self.health.servers)
        groups = []
        for gid in sorted(topo.groups):
            groups.append({**topo_ops.group_view(topo, gid), "health": health[str(gid)]})
        unassigned = [s for s, g in enumerate(topo.owner) if g == 0]
        return {
            "dashboard": {**self.info, "role": self.role, "leader": await self.leader(),
                          "cluster": self.cfg.cluster},
            "epoch": topo.epoch,
            "slots": topo.nslots,
            "groups": groups,
            "ranges": [list(r) for r in topo.ranges()],
            "unassigned": format_ranges(unassigned),
            "migrations": {str(s): m.to_json() for s, m in sorted(topo.migrations.items())},
            "proxies": await self.proxies(),
        }

    # -- lifecycle -----------------------------------------------------------------------------

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.leading.clear()
        await self.client.close()
        await self.health.close()
        await self.store.close()  # resigns: a standby takes over at once
