"""The control plane: leadership, the topology cache, and every change (commit -> push ->
rollback). Everything else (migrator, rebalancer, API, live feed) goes through its public
methods.

How a change happens (`ControlPlane.change`), under one lock so changes are serial:

1. the pure function from `model/changes.py` builds the next Topology, epoch + 1;
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

Proxy membership (registration, heartbeats, removal) changes under the same lock, because a
proxy that joins mid-change must get the map the change ends with; the bookkeeping itself is
the registry's (`proxies.py`).

Every push also lists the live proxies (`slotcore.members`: proxies answer CLUSTER SLOTS
describing all of them). When that list changes -- a proxy registers, is removed, goes stale --
the same map (same epoch) is pushed again to the live proxies (`_announce`); heartbeat replies
carry the list's digest, so a proxy that missed such a push fetches the map itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from typing import Any

from slotcore.members import digest

from ..errors import (
    ConcurrentChange,
    Conflict,
    DashboardError,
    NotFound,
    PushFailed,
    StandbyError,
    StoreFailure,
)
from ..model.records import ProxyRecord, Topology
from ..store.base import CasConflict, NotLeader, Store, StoreError
from ..store.keys import Keys
from .proxies import ProxyRegistry, PushResult

log = logging.getLogger(__name__)


class ControlPlane:
    def __init__(self, store: Store, keys: Keys, proxies: ProxyRegistry, *, ident: str,
                 url: str, cluster: str, nslots: int) -> None:
        self.store = store
        self.keys = keys
        self.proxies = proxies
        self.cluster = cluster
        self.nslots = nslots  # used only when the store holds no topology yet
        self.info = {"id": ident, "url": url, "pid": os.getpid(), "started": time.time()}
        self.role = "starting"
        self.leading = asyncio.Event()  # set while leader with state loaded
        self._lock = asyncio.Lock()
        self._topo: Topology | None = None
        self._topo_rev = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last_leader: dict[str, Any] | None = None
        self._take_over_hooks: list[Callable[[], Awaitable[None]]] = []
        self._announced: str | None = None  # digest of the proxies' list last pushed to all
        # Automatic failovers recorded (control/sentinel.py): the count is a metric.
        self.failovers = 0
        self.failover_log: deque[dict[str, Any]] = deque(maxlen=50)
        # Groups whose master the sentinels see down or are replacing right now (set by the
        # sentinel watcher each poll): the auto-balancer holds still while this is not empty.
        self.failing_over: set[int] = set()

    def record_failover(self, gid: int, old: str, new: str) -> None:
        """Count a failover the sentinels made, once its new master is committed and pushed."""
        self.failovers += 1
        self.failover_log.append({"time": time.time(), "group": gid, "old": old, "new": new,
                                  "epoch": self._topo_epoch()})

    def on_take_over(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Run `hook` each time this dashboard becomes leader, before it starts leading."""
        self._take_over_hooks.append(hook)

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
            log.info("leading cluster %r at epoch %d", self.cluster, self._topo_epoch())
            await self.store.leader_lost.wait()
            self.leading.clear()
            self.role = "standby"
            log.error("lost the leader lock; now standby")

    async def _take_over(self) -> None:
        """Load the state a previous leader left and make every proxy agree with it."""
        entry = await self.store.get(self.keys.topology)
        if entry is None:
            # Epoch 1, not 0: a fresh proxy is at 0, so even the empty map is news to it.
            topo = replace(Topology.empty(self.nslots), epoch=1)
            self._topo_rev = await self.store.put(self.keys.topology, topo.to_json(), expect=0)
        else:
            topo = Topology.from_json(entry.value)
            self._topo_rev = entry.revision
            if topo.nslots != self.nslots:
                log.warning("store holds a %d-slot topology; config says %d: the store wins",
                            topo.nslots, self.nslots)
        self._topo = topo
        await self.proxies.load()
        records = self.proxies.records()
        if records:
            results = await self._push(records, topo)
            await self._reconcile(results)
        for hook in self._take_over_hooks:
            await hook()

    async def _watch_leader(self) -> None:
        """While standby: keep the leader's identity at hand for error messages."""
        while True:
            await self.leader()
            await asyncio.sleep(1.0)

    def require_leader(self) -> Topology:
        """The topology in force, if this dashboard leads; else StandbyError naming the leader."""
        if not self.leading.is_set() or not self.store.is_leader or self._topo is None:
            raise StandbyError(f"dashboard {self.info['id']} is a standby, not the leader"
                               + self._leader_hint())
        return self._topo

    def _leader_hint(self) -> str:
        leader = self._last_leader
        return f"; the leader is {leader.get('id')} at {leader.get('url')}" if leader else ""

    async def leader(self) -> dict[str, Any] | None:
        """Who holds the leader lock now (None if nobody, or the store cannot say)."""
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

    def slot_map_json(self, topo: Topology) -> dict[str, Any]:
        """What proxies get: the topology's slot map, plus the live proxies (when any)."""
        data = topo.slot_map().to_json()
        members = self.proxies.members()
        if members:
            data["proxies"] = [m.to_json() for m in members]
        return data

    def members_digest(self) -> str:
        """The digest of the live proxies' list (heartbeat replies carry it)."""
        return digest(self.proxies.members())

    async def _push(self, proxies: list[ProxyRecord], topo: Topology) -> dict[str, PushResult]:
        return await self.proxies.push(proxies, self.slot_map_json(topo))

    async def _announce(self) -> None:
        """With the lock held: if the live proxies changed since last announced, push the map
        in force again (same epoch) to every live proxy, so their CLUSTER SLOTS list them all.
        A proxy the push fails for drops out of the list, and the next pass announces that."""
        topo = self._topo
        if topo is None or not self.leading.is_set():
            return
        members = self.proxies.members()
        d = digest(members)
        if d == self._announced:
            return
        self._announced = d
        live = {m.id for m in members}
        targets = [r for r in self.proxies.records() if r.id in live]
        if targets:
            await self._push(targets, topo)

    async def watch_members(self, interval: float = 1.0) -> None:
        """While leading: announce the live proxies whenever they change (a proxy going stale
        changes nothing else, so this is what takes a dead proxy out of CLUSTER SLOTS)."""
        while True:
            await asyncio.sleep(interval)
            if not self.leading.is_set() or self.members_digest() == self._announced:
                continue
            try:
                async with self._lock:
                    await self._announce()
            except (DashboardError, StoreError) as e:
                log.warning("announcing the proxies' list failed: %s", e)

    async def _reconcile(self, results: dict[str, PushResult]) -> None:
        """Proxies refusing our map as stale are ahead of the store: jump past their epoch."""
        if self._topo is None:
            return
        ahead = await self.proxies.ahead_epoch(results)
        if ahead is not None and ahead >= self._topo.epoch:
            log.warning("proxies are at epoch %d, store at %d: re-publishing above them",
                        ahead, self._topo.epoch)
            await self._commit(replace(self._topo, epoch=ahead + 1))
            await self._push(self.proxies.records(), self._topo)

    async def change(self, fn: Callable[[Topology], Topology]) -> Topology:
        """Apply a pure change, commit it, push it to every proxy or roll it back."""
        async with self._lock:
            old = self.require_leader()
            new = replace(fn(old), epoch=old.epoch + 1)
            await self._commit(new)
            proxies = self.proxies.records()
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
                raise PushFailed(failed, self.proxies.by_id(), new.epoch, {}, str(e)) from None
            back = await self._push(proxies, rollback)
            log.error("change rolled back to epoch %d: proxies %s failed", rollback.epoch,
                      ", ".join(sorted(failed)))
            raise PushFailed(failed, self.proxies.by_id(), rollback.epoch,
                             {pid: r for pid, r in back.items() if not r.ok})

    # -- proxy membership ----------------------------------------------------------------------

    def register(self, proxy_id: str, addr: str, admin: str) -> int:
        """A proxy's registration or heartbeat; returns the current epoch.

        The push to a new (or changed, or lagging) proxy runs in the background, so the proxy's
        request returns at once even while a change holds the lock.
        """
        topo = self.require_leader()
        if self.proxies.heard(proxy_id, addr, admin, topo.epoch):
            self._spawn(self._sync_proxy(proxy_id, addr, admin))
        return topo.epoch

    async def _sync_proxy(self, proxy_id: str, addr: str, admin: str) -> None:
        try:
            async with self._lock:
                topo = self.require_leader()
                rec = await self.proxies.enroll(proxy_id, addr, admin)
                if rec.state == "pending":
                    log.info("proxy %s registered (clients %s, admin %s)", proxy_id, addr, admin)
                results = await self._push([rec], topo)
                await self._reconcile(results)
                await self._announce()
        except DashboardError as e:
            log.warning("syncing proxy %s failed: %s", proxy_id, e)
        finally:
            self.proxies.synced(proxy_id)

    async def remove_proxy(self, proxy_id: str, force: bool = False) -> ProxyRecord:
        async with self._lock:
            self.require_leader()
            rec = self.proxies.get(proxy_id)
            if rec is None:
                raise NotFound(f"unknown proxy {proxy_id!r}")
            if not await self.proxies.reachable(rec):
                if not force:
                    raise Conflict(
                        f"proxy {proxy_id} (admin {rec.admin}) cannot be reached; a proxy that "
                        "is still running with an old slot map could write keys the migration "
                        "has moved: make sure it is stopped, then remove it with force")
                self.proxies.mark_forced(proxy_id)
            await self.proxies.remove(proxy_id)
            log.info("proxy %s removed", proxy_id)
            with contextlib.suppress(DashboardError, StoreError):
                await self._announce()
            return rec

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- views (served by leader and standby alike) ----------------------------------------------

    def current(self) -> Topology | None:
        """The last topology this dashboard loaded or committed (no I/O; None before any)."""
        return self._topo

    async def topology(self) -> Topology:
        """The topology in force: the cache while leading, else read from the store."""
        if self.leading.is_set() and self._topo is not None:
            return self._topo
        try:
            entry = await self.store.get(self.keys.topology)
        except StoreError as e:
            raise StoreFailure(f"store unreachable: {e}") from None
        topo = Topology.from_json(entry.value) if entry else Topology.empty(self.nslots)
        self._topo = topo  # a standby polls health for what it shows, too
        return topo

    async def proxy_views(self) -> list[dict[str, Any]]:
        """Every registered proxy as the API shows it (a standby reads them from the store)."""
        return await self.proxies.views(from_store=not self.leading.is_set())

    # -- lifecycle -----------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop background pushes; the caller closes the store (which resigns leadership)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.leading.clear()
