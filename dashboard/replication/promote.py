"""`group promote G ADDR`: a planned master switch that loses no acknowledged write.

1. Checks, nothing changed yet: ADDR is a replica of G in the topology, no slot migration
   touches G, the master answers as a master, ADDR replicates from it over a live link.
2. Lock: G's state becomes "promoting", which the slot map turns into LOCKED for all of G's
   slots (`Topology.slot_map`, the hold a migrating slot gets while prepared). Every proxy must
   acknowledge, and a proxy acknowledges a map only once every request it sent under the
   previous one is answered: from here no write reaches the old master through a proxy.
3. Wait (bounded by `timeout`) until the replica's processed offset reaches the master's
   offset, read master first: every write the master acknowledged is on the replica.
   Timeout, error or cancel: unlock, nothing else was changed (roll-back).
4. `REPLICAOF NO ONE` on the replica: the point of no return. Then the old master and the other
   replicas are re-pointed to it (`masterauth` first), the group's knobs (min-replicas-*) are
   applied to it, and ONE change records the switch (`model.changes.switch_master`) and unlocks:
   the proxies route G's slots to the new master and release the requests they held.

A dashboard that crashes, or proxies that refuse a push, in the middle leave G "promoting";
`resume` settles it (the leader runs it for such groups): forward when a replica of G already
is a master (nothing was written to it -- G's slots were locked all along -- but it holds every
write), else just unlock. Servers are never switched back once the final push was attempted:
proxies that took that map may have written to the new master.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..control.plane import ControlPlane
from ..errors import DashboardError
from ..model import changes as topo_ops
from ..model import replication as rep
from ..model.records import Topology
from .servers import BackendFailed, Replication

log = logging.getLogger(__name__)


class NotCaughtUp(DashboardError):
    status = 504


class Promoter:
    def __init__(self, plane: ControlPlane, replication: Replication, timeout: float = 5.0,
                 max_timeout: float = 300.0, poll: float = 0.02) -> None:
        self.plane = plane
        self.replication = replication
        self.servers = replication.servers
        self.timeout = timeout
        self.max_timeout = max_timeout
        self.poll = poll
        self._on_switch: list[Callable[[int, str, str], Awaitable[None]]] = []

    def on_switch(self, hook: Callable[[int, str, str], Awaitable[None]]) -> None:
        """Call `hook(gid, new_master, old_master)` after every switch this module records
        (e.g. to tell a failure detector which server is the master now). A hook that fails
        is logged; the switch stands."""
        self._on_switch.append(hook)

    async def promote(self, gid: int, addr: str, timeout: float | None = None) -> dict[str, Any]:
        timeout = self.timeout if timeout is None else min(max(timeout, 0.1), self.max_timeout)
        async with self.replication.lock:
            topo = self.plane.require_leader()
            addr = topo_ops.check_addr(addr)
            group = rep.promote_check(topo, gid, addr)
            old = group.master or ""
            await self._preflight(gid, old, addr)
            started = time.monotonic()  # the group's requests are held from here
            await self.plane.change(lambda t: rep.set_state(
                _recheck(t, gid, addr, old), gid, "promoting"))
            deadline = time.monotonic() + timeout
            log.info("group %d locked for promoting %s (master %s)", gid, addr, old)
            try:
                offset = await self._wait_caught_up(gid, old, addr, deadline, timeout)
            except BaseException as e:
                await self._unlock(gid, f"promotion of {addr} abandoned: {e}")
                raise
            try:
                await self.servers.replicate(addr, None)
            except BaseException as e:
                # It may have run all the same (a lost reply): make it follow the old master
                # again, which is still the master in the topology and on every proxy.
                with contextlib.suppress(BackendFailed):
                    await self.servers.replicate(addr, old)
                await self._unlock(gid, f"promotion of {addr} abandoned: {e}")
                raise
            log.info("group %d: %s is a master at offset %d", gid, addr, offset)
            warnings = await self._repoint(gid, addr, [old, *group.replicas], deadline)
            new = await self._switch(gid, addr, old)
            return {"epoch": new.epoch, "group": topo_ops.group_view(new, gid), "master": addr,
                    "old_master": old, "offset": offset, "warnings": warnings,
                    "seconds": round(time.monotonic() - started, 3)}

    # -- steps ---------------------------------------------------------------------------------

    async def _preflight(self, gid: int, old: str, addr: str) -> None:
        minfo = await self.servers.info(old)
        if minfo.get("role") != "master":
            raise topo_ops.Conflict(f"master {old} of group {gid} reports role "
                                    f"{minfo.get('role')!r}: not promoting")
        rinfo = await self.servers.info(addr)
        if rep.master_of(rinfo) != old:
            raise topo_ops.Conflict(
                f"server {addr} does not replicate from group {gid}'s master {old} (it reports "
                f"{rep.master_of(rinfo) or 'role master'}): re-add it with `group add-server`")
        if rinfo.get("master_link_status") != "up":
            raise topo_ops.Conflict(f"replica {addr} has no live link to {old} "
                                    f"(master_link_status {rinfo.get('master_link_status')}): "
                                    "not promoting a replica that is not in sync")

    async def _wait_caught_up(self, gid: int, old: str, addr: str, deadline: float,
                              timeout: float) -> int:
        """The master's offset once the replica has reached it (read master, then replica)."""
        last = "no answer"
        while True:
            minfo = await self.servers.info(old)
            try:
                rinfo = await self.servers.info(addr)
            except BackendFailed as e:  # a slow replica gets until the deadline
                rinfo, last = None, str(e)
            if rinfo is not None:
                if rep.caught_up(minfo, rinfo, old):
                    return int(minfo.get("master_repl_offset") or 0)
                last = (f"replica offset {rinfo.get('slave_repl_offset')} of master offset "
                        f"{minfo.get('master_repl_offset')}, link "
                        f"{rinfo.get('master_link_status')}")
            if time.monotonic() >= deadline:
                raise NotCaughtUp(f"replica {addr} did not catch up with master {old} of group "
                                  f"{gid} within {timeout:g}s ({last}); rolled back: the group "
                                  "is unlocked and its master unchanged")
            await asyncio.sleep(self.poll)

    async def _repoint(self, gid: int, addr: str, others: list[str], deadline: float
                       ) -> list[str]:
        """The old master and the other replicas follow the new master; the group's knobs go
        to it once enough replicas are connected for it to accept writes."""
        warnings = []
        for other in dict.fromkeys(others):
            if other == addr:
                continue
            try:
                await self.servers.replicate(other, addr)
            except BackendFailed as e:
                warnings.append(f"{other} was not re-pointed to {addr}: {e}")
                log.warning("group %d: %s", gid, warnings[-1])
        group = self.plane.require_leader().groups[gid]
        if group.config:
            need = int(group.config.get("min-replicas-to-write", "0"))
            if need and not await self._replicas_online(addr, need, deadline):
                warnings.append(f"fewer than {need} replica(s) online on {addr} yet: it "
                                "refuses writes (NOREPLICAS) until they connect")
            try:
                await self.servers.configure(addr, group.config)
            except BackendFailed as e:
                warnings.append(f"group settings not applied to {addr}: {e}")
        return warnings

    async def _replicas_online(self, addr: str, need: int, deadline: float) -> bool:
        # At least a few seconds: a re-pointed master does a partial resync, normally at once.
        deadline = max(deadline, time.monotonic() + 3.0)
        while True:
            with contextlib.suppress(BackendFailed):
                info = await self.servers.info(addr)
                online = [e for e in rep.replica_entries(info) if e.get("state") == "online"]
                if len(online) >= need:
                    return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)

    async def _switch(self, gid: int, addr: str, old: str, attempts: int = 3) -> Topology:
        """Record the new master and unlock, in one change; retried, never undone."""
        for attempt in range(1, attempts + 1):
            try:
                new = await self.plane.change(lambda t: rep.set_state(
                    topo_ops.switch_master(t, gid, addr), gid, "active"))
                log.info("group %d: master is now %s (epoch %d)", gid, addr, new.epoch)
                for hook in self._on_switch:
                    try:
                        await hook(gid, addr, old)
                    except Exception:
                        log.exception("a hook after the switch of group %d failed", gid)
                return new
            except DashboardError as e:
                if attempt == attempts:
                    raise DashboardError(
                        f"{addr} is the master of group {gid} on the servers, but the map "
                        f"naming it was not acknowledged: {e}. The group's slots stay locked; "
                        "fix or remove the failing proxy, then the dashboard finishes the "
                        "promotion by itself (or run the promote again)") from None
                await asyncio.sleep(0.5 * attempt)
        raise AssertionError("unreachable")

    async def _unlock(self, gid: int, why: str, attempts: int = 3) -> None:
        for attempt in range(1, attempts + 1):
            try:
                await self.plane.change(lambda t: rep.set_state(t, gid, "active"))
                log.warning("group %d unlocked: %s", gid, why)
                return
            except DashboardError as e:
                log.error("unlocking group %d failed (attempt %d): %s", gid, attempt, e)
                await asyncio.sleep(0.5 * attempt)

    # -- settling interrupted promotions ---------------------------------------------------------

    async def resume(self, gid: int) -> None:
        """Settle a group left "promoting" (see the module doc)."""
        async with self.replication.lock:
            topo = self.plane.require_leader()
            group = topo.groups.get(gid)
            if group is None or group.state != "promoting":
                return
            promoted = await self._promoted_replica(group.master or "", group.replicas)
            if promoted is None:
                await self._unlock(gid, "an interrupted promotion found no promoted replica")
                return
            log.warning("group %d: finishing the interrupted promotion of %s", gid, promoted)
            await self._repoint(gid, promoted, [group.master or "", *group.replicas],
                                time.monotonic() + self.timeout)
            await self._switch(gid, promoted, group.master or "")

    async def _promoted_replica(self, old: str, replicas: tuple[str, ...]) -> str | None:
        """The replica an interrupted promotion made a master, if any: the old master already
        follows it, or its previous replication id (`master_replid2`, kept by PSYNC2 across
        REPLICAOF NO ONE) is the old master's. A replica that is a master for another reason
        (never attached, detached by hand) is not taken for it."""
        try:
            old_info: dict[str, Any] | None = await self.servers.info(old)
        except BackendFailed:
            old_info = None
        found = []
        for r in replicas:
            try:
                info = await self.servers.info(r)
            except BackendFailed:
                continue
            if info.get("role") != "master":
                continue
            if old_info is not None:
                if rep.master_of(old_info) == r or (
                        old_info.get("role") == "master"
                        and str(info.get("master_replid2"))
                        == str(old_info.get("master_replid"))):
                    return r
            elif int(info.get("second_repl_offset") or -1) != -1:
                found.append(r)
        return found[0] if len(found) == 1 else None

    async def run(self, interval: float = 2.0) -> None:
        """While leading: settle promotions this dashboard is not running (its predecessor
        crashed mid-way, or a push failed)."""
        while True:
            await asyncio.sleep(interval)
            topo = self.plane.current()
            if not self.plane.leading.is_set() or topo is None or self.replication.lock.locked():
                continue
            for gid, group in sorted(topo.groups.items()):
                if group.state == "promoting":
                    try:
                        await self.resume(gid)
                    except Exception as e:  # shown in the log, retried next round
                        log.warning("settling the promotion of group %d failed: %s", gid, e)


def _recheck(topo: Topology, gid: int, addr: str, old: str) -> Topology:
    """Inside the change: the topology may have moved since the checks."""
    group = rep.promote_check(topo, gid, addr)
    if group.master != old:
        raise topo_ops.Conflict(f"group {gid}'s master changed to {group.master} meanwhile")
    return topo
