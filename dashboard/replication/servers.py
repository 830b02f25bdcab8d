"""Replicas that replicate: `group add-server` / `group create` issue REPLICAOF, `remove-server
--detach` issues REPLICAOF NO ONE, `group config` applies the loss-window knobs to a master.

The order of every operation keeps the topology and the servers agreeing:

1. the pure rule (`model.changes`) is checked against the topology in force, so a request the
   topology refuses never touches a server;
2. the server is checked (reachable; not the master of other replicas; no data of its own that
   REPLICAOF would discard, unless `force`) -- nothing has changed if this refuses;
3. `CONFIG SET masterauth` / `masteruser` (when the dashboard has backend credentials), then
   `REPLICAOF master`;
4. the topology change is committed and pushed; if that fails, a REPLICAOF that changed the
   server is undone (`REPLICAOF NO ONE`), so a refused change leaves no replica behind.

Adding returns at once with the replica's sync state and the master's offset at the moment
REPLICAOF was issued; `sync()` (GET .../servers/{addr}/sync?offset=N) reports progress until
the replica has reached that offset -- every write acknowledged before the add is then on it.
proxyctl polls it, printing progress. One lock serialises these operations and promotions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from redis.exceptions import AuthenticationError, RedisError, ResponseError

from slotcore.addr import split_addr

from ..config import BackendAuth
from ..control.plane import ControlPlane
from ..errors import Conflict, DashboardError
from ..model import changes as topo_ops
from ..model import replication as rep
from ..model.records import Topology
from ..observe.redisconn import connect

log = logging.getLogger(__name__)


class BackendFailed(DashboardError):
    """A redis server could not be reached or refused a command the change needs."""

    status = 502


class Servers:
    """Short-lived redis-py connections to the groups' servers, with the backend credentials."""

    def __init__(self, auth: BackendAuth, timeout: float = 2.0) -> None:
        self.auth = auth
        self.timeout = timeout

    @contextlib.asynccontextmanager
    async def open(self, addr: str) -> AsyncIterator[Any]:
        conn = connect(addr, timeout=self.timeout, connect_timeout=self.timeout,
                       password=self.auth.password, username=self.auth.username, protocol=2,
                       retry=False)
        try:
            yield conn
        finally:
            with contextlib.suppress(Exception):
                await conn.aclose()

    async def call(self, addr: str, *args: Any, what: str = "") -> Any:
        """One command; any failure is BackendFailed naming the server and the command."""
        try:
            async with self.open(addr) as conn, asyncio.timeout(self.timeout * 2):
                return await conn.execute_command(*args)
        except (TimeoutError, RedisError, OSError) as e:
            cmd = what or " ".join(str(a) for a in args[:3])
            raise BackendFailed(f"server {addr}: {cmd} failed: "
                                f"{str(e) or type(e).__name__}") from None

    async def info(self, addr: str) -> dict[str, Any]:
        """INFO replication plus the key count (`keys`), parsed."""
        try:
            async with self.open(addr) as conn, asyncio.timeout(self.timeout * 2):
                info = dict(await conn.info("replication"))
                info["keys"] = int(await conn.dbsize())
                return info
        except (AuthenticationError, ResponseError) as e:  # it answered: not "unreachable"
            raise BackendFailed(f"server {addr} refused the dashboard: {e} (the dashboard's "
                                "backend.password / backend.username)") from None
        except (TimeoutError, RedisError, OSError) as e:
            raise BackendFailed(f"server {addr} unreachable: "
                                f"{str(e) or type(e).__name__}") from None

    async def replicate(self, addr: str, master: str | None) -> None:
        """REPLICAOF master (credentials first), or REPLICAOF NO ONE for None."""
        if master is None:
            await self.call(addr, "REPLICAOF", "NO", "ONE")
            return
        if self.auth.password is not None:
            await self.call(addr, "CONFIG", "SET", "masterauth", self.auth.password,
                            what="CONFIG SET masterauth")
        if self.auth.username is not None:
            await self.call(addr, "CONFIG", "SET", "masteruser", self.auth.username,
                            what="CONFIG SET masteruser")
        host, port = split_addr(master)
        await self.call(addr, "REPLICAOF", host, str(port))

    async def configure(self, addr: str, knobs: dict[str, str]) -> None:
        for name, value in sorted(knobs.items()):
            await self.call(addr, "CONFIG", "SET", name, value)


class Replication:
    """The replication operations of the API; built from the plane and the server access."""

    def __init__(self, plane: ControlPlane, servers: Servers) -> None:
        self.plane = plane
        self.servers = servers
        self.lock = asyncio.Lock()  # replication changes and promotions, one at a time

    # -- attaching -----------------------------------------------------------------------------

    async def _check_master(self, gid: int, master: str) -> dict[str, Any]:
        info = await self.servers.info(master)
        if info.get("role") != "master":
            raise Conflict(f"master {master} of group {gid} reports role "
                           f"{info.get('role')!r} (replicating from "
                           f"{rep.master_of(info)}): fix the group's master first")
        return info

    async def _check_replica(self, gid: int, master: str, addr: str, force: bool) -> bool:
        """Whether REPLICAOF would change `addr` (False: it already replicates from master);
        refuses what would destroy data or another replication setup."""
        info = await self.servers.info(addr)
        current = rep.master_of(info)
        if current == master:
            return False
        if info.get("role") == "master" and int(info.get("connected_slaves") or 0):
            raise Conflict(f"server {addr} is the master of {info['connected_slaves']} "
                           "replica(s): refusing to make it a replica of group "
                           f"{gid}'s master {master}")
        if force:
            return True
        if current is not None:
            raise Conflict(f"server {addr} replicates from {current}, not from group {gid}'s "
                           f"master {master}; pass force to re-point it (its data is replaced)")
        if info.get("keys"):
            raise Conflict(f"server {addr} holds {info['keys']} keys that REPLICAOF would "
                           f"replace with group {gid}'s data; pass force to do it anyway")
        return True

    async def _attach(self, gid: int, master: str, addrs: list[str], force: bool
                      ) -> tuple[dict[str, Any], list[str]]:
        """REPLICAOF master on each of `addrs`; returns ({addr: sync state}, changed addrs).
        On any refusal or failure the ones already changed are detached again."""
        minfo = await self._check_master(gid, master)
        needed = [a for a in addrs if await self._check_replica(gid, master, a, force)]
        changed: list[str] = []
        try:
            for addr in addrs:
                await self.servers.replicate(addr, master)
                if addr in needed:
                    changed.append(addr)
        except BaseException:
            await self._undo(changed)
            raise
        offset = int(minfo.get("master_repl_offset") or 0)
        states = {a: {"state": "connecting", "master": master, "target_offset": offset}
                  for a in addrs}
        for a in addrs:
            log.info("server %s replicating from %s (group %d, master offset %d)", a, master,
                     gid, offset)
        return states, changed

    async def _undo(self, changed: list[str]) -> None:
        for addr in changed:
            try:
                await self.servers.replicate(addr, None)
            except BackendFailed as e:
                log.error("undoing REPLICAOF on %s failed: %s", addr, e)

    async def _commit_or_undo(self, fn: Any, changed: list[str]) -> Topology:
        try:
            return await self.plane.change(fn)
        except BaseException:
            await self._undo(changed)
            raise

    async def add_server(self, gid: int, addr: str, role: str | None, *, force: bool = False,
                         replicate: bool = True) -> tuple[Topology, dict[str, Any] | None]:
        """`group add-server`: a replica starts replicating before it is recorded."""
        async with self.lock:
            topo = self.plane.require_leader()
            addr = topo_ops.check_addr(addr)
            after = topo_ops.add_server(topo, gid, addr, role)  # refusals before any I/O
            group = after.groups[gid]
            if addr == group.master:
                if group.config:
                    await self.servers.configure(addr, group.config)
                return await self.plane.change(
                    lambda t: topo_ops.add_server(t, gid, addr, role)), None
            sync: dict[str, Any] | None = None
            changed: list[str] = []
            if replicate:
                master = group.master or ""
                states, changed = await self._attach(gid, master, [addr], force)
                sync = states[addr]
            new = await self._commit_or_undo(
                lambda t: topo_ops.add_server(t, gid, addr, role), changed)
            return new, sync

    async def create_group(self, gid: int | None, master: str | None, replicas: list[str], *,
                           force: bool = False, replicate: bool = True
                           ) -> tuple[Topology, int, dict[str, Any]]:
        """`group create` with replicas: they all replicate before the group is recorded."""
        async with self.lock:
            topo = self.plane.require_leader()
            replicas = [topo_ops.check_addr(a) for a in replicas]
            after = topo_ops.create_group(topo, gid, master, replicas)
            created = next(iter(set(after.groups) - set(topo.groups)))
            states: dict[str, Any] = {}
            changed: list[str] = []
            if replicas and replicate:
                states, changed = await self._attach(created, after.groups[created].master
                                                     or "", replicas, force)
            new = await self._commit_or_undo(
                lambda t: topo_ops.create_group(t, created, master, replicas), changed)
            return new, created, states

    async def remove_server(self, gid: int, addr: str, *, detach: bool = False) -> Topology:
        """`group remove-server`; with `detach`, REPLICAOF NO ONE once it is out of the group
        (without, it keeps replicating: e.g. to re-add it later without a full sync)."""
        async with self.lock:
            topo = self.plane.require_leader()
            addr = topo_ops.check_addr(addr)
            topo_ops.remove_server(topo, gid, addr)  # refusals before any I/O
            if detach:
                await self.servers.info(addr)  # unreachable: refused, nothing changed
            new = await self.plane.change(lambda t: topo_ops.remove_server(t, gid, addr))
            if detach:
                try:
                    await self.servers.replicate(addr, None)
                except BackendFailed as e:
                    raise BackendFailed(f"{addr} was removed from group {gid} (epoch "
                                        f"{new.epoch}) but REPLICAOF NO ONE failed: {e}; "
                                        "run it on the server by hand") from None
                log.info("server %s removed from group %d and detached (a master now)",
                         addr, gid)
            return new

    async def sync(self, gid: int, addr: str, target: int | None = None) -> dict[str, Any]:
        """Where replica `addr` of group `gid` is: connecting, syncing (bytes), catching up,
        in sync (its offset reached `target`, default the master's offset now)."""
        topo = await self.plane.topology()
        addr = topo_ops.check_addr(addr)
        group = topo.groups.get(gid)
        if group is None:
            raise topo_ops.NotFound(f"unknown group {gid}")
        if addr not in group.replicas:
            raise topo_ops.NotFound(f"server {addr} is not a replica of group {gid}")
        master = group.master or ""
        minfo: dict[str, Any] | None
        try:
            minfo = await self.servers.info(master)
        except BackendFailed:
            minfo = None
        out = rep.sync_state(master, minfo, await self.servers.info(addr), target)
        return {"group": gid, "addr": addr, **out}

    # -- group settings ------------------------------------------------------------------------

    async def set_config(self, gid: int, knobs: dict[str, str], force: bool = False
                         ) -> Topology:
        """`group config`: CONFIG SET on the master first (a master that refuses changes
        nothing), then record them so every promoted master gets them too. A
        min-replicas-to-write the master cannot meet right now is refused without `force`:
        it would answer every write -NOREPLICAS from the moment it is set."""
        async with self.lock:
            topo = self.plane.require_leader()
            after = rep.set_config(topo, gid, knobs)
            group = after.groups[gid]
            master = group.master or ""
            if not force:
                short = rep.replicas_short(await self.servers.info(master), group.config)
                if short:
                    raise Conflict(f"group {gid}: {short}; add replicas first, or pass force "
                                   "(the master then refuses writes until they connect)")
            await self.servers.configure(master, knobs)
            return await self.plane.change(lambda t: rep.set_config(t, gid, knobs))

    async def apply_settings(self, gid: int) -> bool:
        """Apply group `gid`'s recorded settings to its current master (after any master
        change the dashboard did not make itself, e.g. a failover); False if it has none."""
        group = self.plane.require_leader().groups.get(gid)
        if group is None or not group.master or not group.config:
            return False
        await self.servers.configure(group.master, group.config)
        return True
