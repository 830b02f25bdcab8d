"""The migration executor: drives batches of slots through the state machine and moves keys.

It runs on the leader only, as one background task. Each step looks at the STORED topology (so
a restarted dashboard simply continues where the store says the batch is):

* no batch in progress and slots pending: refuse to start while a registered proxy has not been
  heard from within `fence_timeout` (status "blocked", naming it); else pick up to
  `max_concurrent_slots` pending slots, pre-scan their sources (keys, bytes, big keys: reported
  before anything moves), then pending -> preparing (persist, push LOCKED to every proxy);
* preparing -> prepared (persist, push again: after a restart this re-confirms every proxy acked);
* prepared -> migrating (persist, push MIGRATING; the big keys found are fenced in the same map);
* migrating: one mover per source group. Fenced big keys are copied in chunks first, each
  followed by an unfence push; then SCAN passes with batched MIGRATE until a full pass moved
  every key it found of a slot without error (SCAN returns every key present for the whole pass
  and no proxy creates keys of a migrating slot on the source, so the source then holds none);
  those slots go migrating -> finished (persist, push: owner = target) -> cleared.

Every transition is ONE `ControlPlane.change` for the whole batch: persist, push to every proxy,
and if any proxy does not acknowledge, the previous map is pushed back (rollback) and the slots
stay where they were with the error shown; the step is retried.

A source or target that goes down pauses its slots (status "paused: source ... unreachable")
and the mover retries every second until it is back -- or until a failover names a new master:
every pass re-reads the groups' masters and a pass whose source or target changed is abandoned
and restarted against the new one. A source that failed over has its migrating slots relocked
in the failover's own change (`failover.relock_source`), and the keys its promoted replica still
holds although the target has them are deleted before the slots move again (`failover.dedupe`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import replace
from typing import Any

from slotcore.keyslot import key_slot
from slotcore.ranges import format_ranges

from ..control.plane import ControlPlane
from ..control.proxies import ProxyRegistry
from ..errors import Conflict
from ..model import migration as mig
from ..model.records import Topology
from ..store.base import Store, StoreError
from .bigkeys import copy_big_key
from .failover import dedupe, relock_source
from .mover import LatencyProbe, MovePass, PassResult, ServerDown, Settings, Throttle, prescan
from .pacing import PaceController
from .proxylat import ProxyLatencyWatch

log = logging.getLogger(__name__)


class SlotProgress:
    __slots__ = (
        "bytes_moved",
        "bytes_total",
        "error",
        "finished_at",
        "keys_moved",
        "keys_total",
        "started_at",
    )

    def __init__(self) -> None:
        self.keys_total: int | None = None
        self.bytes_total: int | None = None
        self.keys_moved = 0
        self.bytes_moved = 0
        self.error: str | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None


class Migrator:
    """Runs the migrations the topology records; built from the plane (every change goes
    through it), the proxy registry (which proxies block a batch) and the store (settings)."""

    def __init__(self, plane: ControlPlane, proxies: ProxyRegistry, store: Store,
                 settings_key: str, settings: Settings | None = None) -> None:
        self.plane = plane
        self.proxies = proxies
        self.store = store
        self.settings_key = settings_key
        self.settings = settings or Settings()
        self.progress: dict[int, SlotProgress] = {}
        self.big_keys: dict[bytes, dict[str, Any]] = {}
        self.status = "idle"
        self.error: str | None = None
        self.wake = asyncio.Event()
        self.window: deque[tuple[float, int]] = deque()  # (time, keys moved) for the rate
        self.keys_moved = 0
        self.bytes_moved = 0
        self.slots_done = 0
        self.started_at: float | None = None
        self._prescanned: tuple[frozenset[int], float] | None = None
        self._retry_at = 0.0  # after a batch could not be started (push refused): back off
        # Slots relocked by a source's failover: deduped against their target before they
        # migrate again. A new leader does it for every prepared slot (it cannot know why).
        self._dedupe: set[int] = set()
        self._relocked = asyncio.Event()
        self.failovers_seen = 0
        self.pace: dict[int, PaceController] = {}  # source group -> its mover's pace
        # The proxies' p99 per group (the pace's view of the clients), and its figures from
        # before the current migration started (taken when its first batch starts).
        self.watch = ProxyLatencyWatch(proxies)
        self.client_baseline: dict[str, float] = {}
        self._fenced_cache: tuple[Any, frozenset[bytes]] = ((), frozenset())

    # -- settings --------------------------------------------------------------------------------

    async def load_settings(self) -> None:
        with contextlib.suppress(StoreError, ValueError):
            entry = await self.store.get(self.settings_key)
            if entry is not None:
                self.settings.update({k: v for k, v in entry.value.items()
                                      if k in Settings.FIELDS})

    async def update_settings(self, data: dict[str, Any]) -> dict[str, Any]:
        self.settings.update(data)  # ValueError -> 400 in the API
        try:
            await self.store.put(self.settings_key, self.settings.to_json())
        except StoreError as e:
            log.warning("migration settings not persisted: %s", e)
        self.wake.set()
        return self.settings.to_json()

    # -- failover of a source or target group (the sentinel watcher calls these) --------------

    def relock(self, topo: Topology, gid: int) -> Topology:
        """Part of the change recording group `gid`'s new master: its migrating slots go back
        to prepared (LOCKED) and are deduped before they migrate again."""
        new, slots = relock_source(topo, gid)
        self._dedupe.update(slots)
        return new

    def failed_over(self, gid: int, old: str, new: str) -> None:
        """Group `gid`'s new master is in force: abandon passes against the old one."""
        self.failovers_seen += 1
        self._relocked.set()
        self.wake.set()

    async def after_take_over(self) -> None:
        topo = self.plane.current()
        if topo is not None:
            self._dedupe.update(mig.in_state(topo, "prepared"))

    async def _dedupe_prepared(self, topo: Topology) -> None:
        todo = [s for s in mig.in_state(topo, "prepared") if s in self._dedupe]
        by_source: dict[int, dict[int, str]] = {}
        for s in todo:
            m = topo.migrations[s]
            by_source.setdefault(m.source, {})[s] = topo.groups[m.target].master or ""
        for gid, targets in by_source.items():
            source = topo.groups[gid].master or ""
            self.status, self.error = "running", None
            removed = await dedupe(source, targets, topo.nslots, self.settings.batch_size)
            log.warning("slots %s: %d keys the new source %s still held (moved before the "
                        "failover) deleted, their target has them", format_ranges(sorted(targets)),
                        removed, source)
            self._dedupe.difference_update(targets)

    # -- the loop --------------------------------------------------------------------------------

    async def run(self) -> None:
        watch = asyncio.create_task(self._watch_loop())
        try:
            await self._run()
        finally:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)

    async def _watch_loop(self) -> None:
        """Read the proxies' latency: every `proxy_poll_ms` while slots move (fed to each
        source's pace), about once a second otherwise (the quiet figures a migration starts
        from)."""
        while True:
            s = self.settings
            interval = s.proxy_poll_ms / 1000
            topo = self.plane.current()
            if not interval or not s.adaptive or topo is None or not self.plane.leading.is_set():
                await asyncio.sleep(1.0)
                continue
            self.watch.groups.window = s.proxy_window_ms / 1000
            moving = bool(topo.migrations)
            try:
                figures = await self.watch.poll(quiet=not moving)
            except Exception as e:  # the pace then goes on with what it had
                log.debug("reading the proxies' latency failed: %s", e)
                figures = {}
            if moving:
                self._feed_paces(topo, figures)
            await asyncio.sleep(interval if moving else max(interval, 1.0))

    def _feed_paces(self, topo: Topology, figures: dict[str, float]) -> None:
        """Each moving source's pace gets the p99 of its own group and of its targets'."""
        groups: dict[int, set[str]] = {}
        for m in topo.migrations.values():
            if m.state == "migrating":
                groups.setdefault(m.source, {str(m.source)}).add(str(m.target))
        for gid, names in groups.items():
            pace = self.pace.get(gid)
            if pace is None:
                continue
            pace.on_client_latency(time.monotonic(), {
                g: (figures.get(g), self.client_baseline.get(g)) for g in sorted(names)})

    async def _run(self) -> None:
        while True:
            await self.plane.leading.wait()
            try:
                progressed = await self.step()
            except asyncio.CancelledError:
                raise
            except ServerDown as e:
                self.status, self.error = "paused", str(e)
                progressed = False
            except Exception as e:  # PushFailed, store trouble, standby: shown and retried
                self.error = str(e)
                log.warning("migration step failed: %s", e)
                progressed = False
            if not progressed:
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), 1.0)

    def _topo(self) -> Topology:
        topo = self.plane.current()
        assert topo is not None
        return topo

    async def step(self) -> bool:
        topo = self._topo()
        batch = mig.current_batch(topo)
        if not batch:
            if topo.fenced:  # left over from a cancelled or crashed big-key copy
                await self.plane.change(lambda t: replace(t, fenced=()))
                return True
            return await self._start_batch(topo)
        states = {topo.migrations[s].state for s in batch}
        self.status, self.error = "running", None
        if "preparing" in states:
            await self._transition("preparing", "prepared")
        elif "prepared" in states:
            big = [k for k, b in self.big_keys.items()
                   if b["slot"] in topo.migrations and not b.get("moved")]
            await self._dedupe_prepared(topo)
            await self._transition("prepared", "migrating", fence=big)
        elif "migrating" in states:
            await self._move(topo)
        if "finished" in {m.state for m in self._topo().migrations.values()}:
            await self._clear()
        return True

    async def _start_batch(self, topo: Topology) -> bool:
        pending = mig.in_state(topo, "pending")
        if not pending:
            self.status = "idle"
            self.client_baseline = {}  # the next migration starts from the figures before it
            return False
        if self.settings.paused:
            self.status = "paused"
            self.error = "paused by the operator (`proxyctl migrate resume`)"
            return False
        stale = self.proxies.batch_blockers()
        if stale:
            self.status = "blocked"
            self.error = ("not starting a batch: " + "; ".join(stale) + ". Make sure a dead "
                          "proxy is stopped, then `proxyctl proxy remove ID --force`")
            return False
        if time.monotonic() < self._retry_at:
            return False
        batch = mig.next_batch(topo, self.settings.max_concurrent_slots)
        self.status, self.error = "scanning", None
        if self.started_at is None:
            self.started_at = time.time()
        if not self.client_baseline:  # the first batch: nothing has loaded the servers yet
            self.client_baseline = self.watch.baseline(max_age=10.0)
            if self.client_baseline:
                log.info("clients' p99 before the migration (the proxies' figures): %s",
                         ", ".join(f"group {g} {v * 1000:.3f} ms"
                                   for g, v in sorted(self.client_baseline.items())))
        key = frozenset(batch)
        if not (self._prescanned and self._prescanned[0] == key
                and time.monotonic() - self._prescanned[1] < 120):
            await self._prescan(topo, batch)
            self._prescanned = (key, time.monotonic())
        try:
            await self._transition("pending", "preparing", only=batch)
        except Exception:
            self._retry_at = time.monotonic() + 3.0  # a proxy refused: do not hammer it
            raise
        self._prescanned = None
        return True

    async def _prescan(self, topo: Topology, batch: list[int]) -> None:
        by_source: dict[int, set[int]] = {}
        for s in batch:
            by_source.setdefault(topo.migrations[s].source, set()).add(s)
            self.progress.setdefault(s, SlotProgress())
        results = await asyncio.gather(*(
            prescan(topo.groups[gid].master or "", slots, topo.nslots, self.settings)
            for gid, slots in by_source.items()), return_exceptions=True)
        for (gid, slots), res in zip(by_source.items(), results, strict=True):
            if isinstance(res, BaseException):
                for s in slots:
                    self.progress[s].error = f"pre-scan of group {gid} failed: {res}"
                if isinstance(res, ServerDown):
                    raise res
                raise RuntimeError(f"pre-scan of group {gid}: {res}")
            for s in slots:
                p = self.progress[s]
                p.keys_total = res.keys.get(s, 0)
                p.bytes_total = res.bytes.get(s, 0)
            for key, size, slot in res.big:
                self.big_keys[key] = {"key": key, "bytes": size, "slot": slot,
                                      "group": gid, "moved": False}
                log.warning("big key %r (%d bytes) in slot %d of group %d: it will be copied "
                            "in chunks under a fence", key[:80], size, slot, gid)

    async def _transition(self, frm: str, to: str, only: list[int] | None = None,
                          fence: list[bytes] | None = None) -> list[int]:
        moved: list[int] = []

        def apply(t: Topology) -> Topology:
            slots = [s for s, m in t.migrations.items() if m.state == frm
                     and (only is None or s in only)]
            moved[:] = slots
            new = mig.advance(t, slots, to)
            if fence:
                new = mig.fence(new, [k for k in fence
                                      if self.big_keys[k]["slot"] in set(slots)])
            return new

        now = time.time()
        try:
            await self.plane.change(apply)
        except Exception as e:
            for s in moved:
                self.progress.setdefault(s, SlotProgress()).error = \
                    f"{frm} -> {to} not acknowledged, kept {frm}: {e}"
            raise
        for s in moved:
            p = self.progress.setdefault(s, SlotProgress())
            p.error = None
            if to == "preparing":
                p.started_at = now
        if moved:
            log.info("slots %s: %s -> %s", format_ranges(sorted(moved)), frm, to)
        return moved

    async def _clear(self) -> None:
        done: list[int] = []

        def apply(t: Topology) -> Topology:
            done[:] = mig.in_state(t, "finished")
            return mig.clear(t, done)

        await self.plane.change(apply)
        now = time.time()
        for s in done:
            p = self.progress.setdefault(s, SlotProgress())
            p.finished_at = now
        self.slots_done += len(done)

    # -- moving keys -------------------------------------------------------------------------------

    async def _move(self, topo: Topology) -> None:
        sources: dict[int, list[int]] = {}
        for s in mig.in_state(topo, "migrating"):
            sources.setdefault(topo.migrations[s].source, []).append(s)
        self._relocked.clear()
        loops = [asyncio.create_task(self._source_loop(gid)) for gid in sources]
        relocked = asyncio.create_task(self._relocked.wait())
        try:
            await asyncio.wait([*loops, relocked], return_when=asyncio.FIRST_COMPLETED)
            while not relocked.done() and not all(t.done() for t in loops):
                await asyncio.wait([*loops, relocked], return_when=asyncio.FIRST_COMPLETED)
        finally:
            # A failover relocked slots: stop every pass (each is restartable, MIGRATE is
            # atomic) so the relocked ones are deduped and released at once.
            for t in [*loops, relocked]:
                t.cancel()
            results = await asyncio.gather(*loops, relocked, return_exceptions=True)
        for r in results:
            if isinstance(r, Exception):
                raise r

    def _masters_of(self, gid: int) -> tuple[str, dict[int, str]]:
        topo = self._topo()
        return (topo.groups[gid].master or "",
                {s: topo.groups[m.target].master or "" for s, m in topo.migrations.items()
                 if m.source == gid and m.state == "migrating"})

    async def _until_masters_change(self, gid: int, seen: tuple[str, dict[int, str]]) -> None:
        """Return once the source's or a target's master differs from `seen` (a failover)."""
        while True:
            await asyncio.sleep(0.1)
            source, mine = self._masters_of(gid)
            if source != seen[0] or any(mine.get(s, t) != t for s, t in seen[1].items()):
                return

    async def _source_loop(self, gid: int) -> None:
        """Move everything leaving group `gid` until none of its migrating slots is left."""
        throttle = Throttle(lambda: self.settings.keys_per_sec)
        # One pace per source for all its passes and batches of this migration (what it
        # learnt carries over); its latency baseline is taken before its first key moves.
        pace = self.pace.get(gid)
        if pace is None:
            pace = self.pace[gid] = PaceController(self.settings.pace_limits(),
                                                   start=self.settings.batch_size)
        probe: LatencyProbe | None = None
        try:
            while True:
                topo = self._topo()
                mine = {s: topo.groups[m.target].master or ""
                        for s, m in topo.migrations.items()
                        if m.source == gid and m.state == "migrating"}
                if not mine or not self.plane.leading.is_set():
                    return
                source = topo.groups[gid].master or ""
                if probe is None or probe.conn.addr != source:
                    if probe is not None:  # a failover: the new master's own baseline
                        await probe.close()
                        pace.baseline = None
                    probe = LatencyProbe(source)
                pace.set_limits(self.settings.pace_limits())  # changeable while running
                result = await self._source_pass(topo, gid, source, mine, throttle, pace, probe)
                if result is not None:
                    await self._after_pass(topo, mine, result)
        finally:
            if probe is not None:
                await probe.close()

    async def _source_pass(self, topo: Topology, gid: int, source: str, mine: dict[int, str],
                           throttle: Throttle, pace: PaceController,
                           probe: LatencyProbe) -> PassResult | None:
        """One pass over `source` (None: it is down, the slots are paused for a second; or
        its or a target's master changed under it, a failover: the caller starts over)."""
        try:
            await self._copy_fenced(topo, source, set(mine))
            if self.settings.adaptive and pace.baseline is None:
                pace.set_baseline(await probe.baseline())
                log.info("group %d: source latency baseline %.3f ms", gid,
                         (pace.baseline or 0) * 1000)

            def on_big(k: bytes, size: int, slot: int) -> Any:
                return self._big(k, size, slot, source, mine[slot])

            mover = MovePass(source, mine, topo.nslots, self.settings, self._moved, on_big,
                             fenced=self._fenced_keys,
                             throttle=throttle, pace=pace, probe=probe)
            result = await self._run_pass(mover, gid, (source, dict(mine)))
            if result is None:
                log.warning("group %d or a target failed over: restarting the pass against "
                            "the new master", gid)
            return result
        except ServerDown as e:
            for s in mine:
                self.progress.setdefault(s, SlotProgress()).error = f"paused: {e}"
            log.warning("slots %s paused: %s", format_ranges(sorted(mine)), e)
            await asyncio.sleep(1.0)
            return None

    async def _after_pass(self, topo: Topology, mine: dict[int, str],
                          result: PassResult) -> None:
        for s, err in result.failed.items():
            self.progress.setdefault(s, SlotProgress()).error = err
        fenced_slots = {key_slot(bytes.fromhex(k), topo.nslots) for k in self._topo().fenced}
        done = [s for s in mine if s not in result.failed and s not in fenced_slots]
        for s in done:
            self.progress.setdefault(s, SlotProgress()).error = None
        if done:
            await self._finish(done)
        elif result.failed:
            await asyncio.sleep(0.5)

    async def _run_pass(self, mover: MovePass, gid: int, seen: tuple[str, dict[int, str]]
                        ) -> Any:
        """The pass, or None if a master changed under it (it is cancelled then)."""
        work = asyncio.create_task(mover.run(self._unpaused))
        change = asyncio.create_task(self._until_masters_change(gid, seen))
        try:
            await asyncio.wait([work, change], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (work, change):
                t.cancel()
            await asyncio.gather(work, change, return_exceptions=True)
        if not work.cancelled() and work.exception() is None:
            return work.result()
        if not work.cancelled() and work.exception() is not None:
            if change.done() and not change.cancelled():
                return None  # it failed because its server went away: the change says why
            raise work.exception()  # type: ignore[misc]
        return None

    async def _finish(self, slots: list[int]) -> None:
        try:
            await self._transition("migrating", "finished", only=slots)
            await self._clear()
        except Exception as e:
            log.warning("finishing slots %s failed (retrying): %s", format_ranges(slots), e)
            await asyncio.sleep(1.0)

    def _moved(self, slot: int, keys: int, nbytes: int) -> None:
        p = self.progress.get(slot)
        if p is None:
            p = self.progress[slot] = SlotProgress()
        p.keys_moved += keys
        p.bytes_moved += nbytes
        self.keys_moved += keys
        self.bytes_moved += nbytes
        now = time.monotonic()
        if self.window and now - self.window[-1][0] < 0.2:
            t, k = self.window[-1]
            self.window[-1] = (t, k + keys)
        else:
            self.window.append((now, keys))
        while self.window and now - self.window[0][0] > 5.0:
            self.window.popleft()

    def _fenced_keys(self) -> frozenset[bytes]:
        """The fenced keys, raw (the mover asks once per SCAN page)."""
        fenced = self._topo().fenced
        if not fenced:
            return frozenset()
        cached = self._fenced_cache
        if cached[0] is not fenced:
            cached = self._fenced_cache = (fenced, frozenset(bytes.fromhex(k) for k in fenced))
        return cached[1]

    async def _unpaused(self) -> None:
        while self.settings.paused:
            self.status = "paused"
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), 1.0)
        if self.status == "paused":
            self.status = "running"

    async def _copy_fenced(self, topo: Topology, source: str, slots: set[int]) -> None:
        """Copy the fenced big keys of these slots (fenced with the MIGRATING push)."""
        for hexkey in list(topo.fenced):
            key = bytes.fromhex(hexkey)
            slot = key_slot(key, topo.nslots)
            if slot not in slots:
                continue
            target = topo.groups[topo.migrations[slot].target].master or ""
            await self._copy_one(key, slot, source, target)
            await self.plane.change(lambda t, k=key: mig.unfence(t, [k]))

    async def _big(self, key: bytes, size: int, slot: int, source: str, target: str) -> None:
        """A big key met during a pass: fence it on every proxy, copy it in chunks, unfence."""
        info = self.big_keys.setdefault(key, {"key": key, "bytes": size, "slot": slot,
                                              "moved": False})
        info["bytes"] = size
        await self.plane.change(lambda t: mig.fence(t, [key]))
        try:
            await self._copy_one(key, slot, source, target)
        finally:
            await self.plane.change(lambda t: mig.unfence(t, [key]))

    async def _copy_one(self, key: bytes, slot: int, source: str, target: str) -> None:
        await self._unpaused()
        info = self.big_keys.setdefault(key, {"key": key, "slot": slot, "moved": False})
        stats = await copy_big_key(source, target, key, self._topo().nslots, self.settings,
                                   still_leader=self.plane.leading.is_set)
        info.update({k: v for k, v in stats.items() if k != "moved"})
        if stats["moved"]:
            info["moved"] = True
            self._moved(slot, 1, int(info.get("bytes") or 0))
            log.info("big key %r moved in %d chunks (longest command %.1f ms)", key[:80],
                     stats["chunks"], stats["max_stall_ms"])

    # -- commands from the API ---------------------------------------------------------------------

    async def start(self, slots: list[int], target: int) -> dict[str, Any]:
        out = await self.start_many([(slots, target)])
        return {**out, "to": target}

    async def start_many(self, moves: list[tuple[list[int], int]],
                         before: Any = None) -> dict[str, Any]:
        """Queue several (slots, target) moves in ONE change (`before` runs first, e.g. to set
        a drained group's weight)."""
        stale = self.proxies.stale()
        if stale:
            raise Conflict("refusing to start a migration: " + "; ".join(stale)
                           + ". Make sure a dead proxy is stopped, then `proxyctl proxy "
                           "remove ID --force`")
        queued: list[int] = []

        def apply(t: Topology) -> Topology:
            queued.clear()
            new = before(t) if before is not None else t
            for slots, target in moves:
                new, q = mig.start(new, slots, target)
                queued.extend(q)
            return new

        topo = await self.plane.change(apply)
        if self.started_at is None or not self._active(topo, exclude=queued):
            self.started_at = time.time()
            self.keys_moved = self.bytes_moved = self.slots_done = 0
            self.window.clear()
            self.pace = {}
            self.client_baseline = {}  # taken again before its first batch
            self.progress = {s: p for s, p in self.progress.items() if s in topo.migrations}
            self.big_keys = {k: v for k, v in self.big_keys.items() if not v.get("moved")}
        for s in queued:
            self.progress[s] = SlotProgress()
        self.wake.set()
        return {"epoch": topo.epoch, "queued": format_ranges(sorted(queued)) if queued else "",
                "count": len(queued)}

    @staticmethod
    def _active(topo: Topology, exclude: list[int]) -> bool:
        ex = set(exclude)
        return any(s not in ex for s in topo.migrations)

    async def cancel(self) -> dict[str, Any]:
        out: dict[str, list[int]] = {}

        def apply(t: Topology) -> Topology:
            new, cancelled, going = mig.cancel(t)
            out["cancelled"], out["going"] = cancelled, going
            return new

        topo = await self.plane.change(apply)
        for s in out["cancelled"]:
            self.progress.pop(s, None)
        self.wake.set()
        return {"epoch": topo.epoch, "cancelled": format_ranges(out["cancelled"]),
                "finishing": format_ranges(out["going"])}

    # -- the view ----------------------------------------------------------------------------------

    def rate(self) -> float:
        if len(self.window) < 2:
            return 0.0
        span = max(self.window[-1][0] - self.window[0][0], 0.5)
        return sum(k for _, k in list(self.window)[1:]) / span

    def view(self, topo: Topology) -> dict[str, Any]:
        slots = []
        remaining = 0
        totals = [p.keys_total for p in self.progress.values() if p.keys_total]
        per_slot = (sum(totals) / len(totals)) if totals else 0
        for s, m in sorted(topo.migrations.items()):
            p = self.progress.get(s) or SlotProgress()
            total = p.keys_total if p.keys_total is not None else None
            left = (max(0, total - p.keys_moved) if total is not None else per_slot)
            remaining += int(left)
            slots.append({"slot": s, "state": m.state, "from": m.source, "to": m.target,
                          "keys_total": total, "keys_moved": p.keys_moved,
                          "bytes_total": p.bytes_total, "bytes_moved": p.bytes_moved,
                          "error": p.error})
        rate = self.rate()
        states: dict[str, int] = {}
        for m in topo.migrations.values():
            states[m.state] = states.get(m.state, 0) + 1
        return {
            # With nothing left to move, a batch that was running or being pre-scanned when it
            # was cancelled is over: the status says so at once, not when the pre-scan ends.
            "status": (self.status if topo.migrations or self.status not in ("running", "scanning")
                       else "idle"),
            "error": self.error,
            "settings": self.settings.to_json(),
            "states": states,
            "slots": slots,
            "slots_done": self.slots_done,
            "keys_moved": self.keys_moved,
            "bytes_moved": self.bytes_moved,
            "rate_keys_per_sec": round(rate, 1),
            "eta_seconds": round(remaining / rate, 1) if rate > 0 and topo.migrations else None,
            "started_at": self.started_at,
            "fenced": [bytes.fromhex(k).decode("utf-8", "backslashreplace")
                       for k in topo.fenced],
            "big_keys": [{**{k: v for k, v in b.items() if k != "key"},
                          "key": b["key"].decode("utf-8", "backslashreplace")}
                         for b in self.big_keys.values()],
            # per source group: the batch size and rest the adaptive pace chose (pacing.py)
            "pace": {str(gid): p.view() for gid, p in sorted(self.pace.items())},
            # the proxies' p99 per group: the last quiet window's, and the baseline the
            # current migration started from (the pace's client loop compares with it)
            "client_p99_ms": {
                "quiet": {g: round(v * 1000, 3)
                          for g, v in sorted(self.watch.baseline(max_age=10.0).items())},
                "baseline": {g: round(v * 1000, 3)
                             for g, v in sorted(self.client_baseline.items())}},
        }
