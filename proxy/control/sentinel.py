"""A standalone proxy following Redis Sentinel itself (no dashboard), as predixy does.

Config `sentinels: [host:port, ...]`, and each group's name as the sentinels monitor it
(`sentinel_master_names: {gid: name}`, else `sentinel_master_name_format`, default
"slotproxy-g{gid}"). With a dashboard the dashboard is the only authority on masters and the
config refuses `sentinels` (proxy.config.check_sentinel).

* **Polls.** At start (before the proxy serves), after every reconnect to a sentinel, and after
  every `+switch-master` event, the proxy asks every sentinel `SENTINEL MASTER <name>` and
  `SENTINEL REPLICAS <name>` for each group. Among the sentinels that answer, the master with
  the highest `config-epoch` wins (a sentinel raises it only for a failover a majority of
  sentinels authorised, so the newest configuration is never outvoted by sentinels that have
  not heard of it yet); among equal epochs, the address most of them give. A group's master
  never goes back to an older config epoch.
* **Events.** Every sentinel connection subscribes to `+switch-master`; an event for one of our
  names triggers a poll of that group, so an event missed during a disconnect is caught by the
  poll after the reconnect.
* **Re-pointing.** A new master (or a changed replica list) becomes a new slot map (epoch + 1)
  applied like a pushed one: `Router.apply` re-points the group (routing.router).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import hiredis

from slotcore.addr import join_addr, split_addr
from slotcore.resp import pack_command
from slotcore.slotmap import GroupSpec, SlotMap

from ..config import SentinelConfig

log = logging.getLogger("slotproxy.sentinel")

ApplySlotMap = Callable[[SlotMap], Awaitable[None]]


class SentinelError(Exception):
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class MasterAnswer:
    """One sentinel's view of one master."""

    addr: str
    config_epoch: int
    replicas: tuple[str, ...] = ()


def flat_pairs(items: Any) -> dict[str, str]:
    """A Sentinel reply's flat [k, v, k, v, ...] array (RESP2) or map (RESP3) as a dict."""
    if isinstance(items, dict):
        pairs = items.items()
    elif isinstance(items, list):
        pairs = zip(items[::2], items[1::2], strict=False)
    else:
        return {}
    return {_s(k): _s(v) for k, v in pairs}


def _s(v: Any) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


def decide(answers: list[MasterAnswer]) -> MasterAnswer | None:
    """The master to follow from what the reachable sentinels say (see the module doc)."""
    if not answers:
        return None
    top = max(a.config_epoch for a in answers)
    newest = [a for a in answers if a.config_epoch == top]
    addr, _ = Counter(a.addr for a in newest).most_common(1)[0]
    replicas: list[str] = []
    for a in newest:
        if a.addr == addr:
            replicas += [r for r in a.replicas if r not in replicas and r != addr]
    return MasterAnswer(addr, top, tuple(replicas))


def repoint(sm: SlotMap, gid: int, master: str, replicas: tuple[str, ...]) -> SlotMap | None:
    """`sm` with group `gid` served by `master` (its replicas `replicas`, plus those the map
    already lists, the old master among them), one epoch later; None when nothing changes."""
    g = sm.groups.get(gid)
    if g is None:
        return None
    merged = [r for r in (*replicas, *g.replicas, g.master) if r != master]
    reps = tuple(dict.fromkeys(merged))
    if g.master == master and set(reps) == set(g.replicas):
        return None
    groups = {**sm.groups, gid: GroupSpec(gid, master, reps)}
    return dataclasses.replace(sm, groups=groups, epoch=sm.epoch + 1)


class SentinelLink:
    """One connection to a sentinel: commands, then Pub/Sub messages."""

    def __init__(self, addr: str, cfg: SentinelConfig) -> None:
        self.addr = addr
        self.cfg = cfg
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.parser = hiredis.Reader()

    async def connect(self) -> None:
        host, port = split_addr(self.addr)
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection(host, port), self.cfg.timeout)
        if self.cfg.password:
            args = ([self.cfg.username] if self.cfg.username else []) + [self.cfg.password]
            await self.command("AUTH", *args)

    async def read(self, timeout: float | None) -> Any:
        assert self.reader is not None
        while True:
            reply = self.parser.gets()
            if reply is not False:
                if isinstance(reply, hiredis.ReplyError):
                    raise SentinelError(str(reply))
                return reply
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                raise ConnectionError(f"sentinel {self.addr} closed the connection")
            self.parser.feed(data)

    async def command(self, *args: Any) -> Any:
        assert self.writer is not None
        self.writer.write(pack_command(*args))
        return await self.read(self.cfg.timeout)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
            self.writer = None


async def ask_master(link: SentinelLink, name: str) -> MasterAnswer | None:
    """This sentinel's view of master `name` (None: it does not monitor it)."""
    try:
        master = flat_pairs(await link.command("SENTINEL", "MASTER", name))
    except SentinelError:
        return None  # "ERR No such master with that name"
    if "ip" not in master or "port" not in master:
        return None
    replicas: list[str] = []
    with contextlib.suppress(SentinelError):
        for item in await link.command("SENTINEL", "REPLICAS", name) or []:
            r = flat_pairs(item)
            if "ip" in r and "port" in r:
                replicas.append(join_addr(r["ip"], int(r["port"])))
    try:
        epoch = int(master.get("config-epoch", "0"))
    except ValueError:
        epoch = 0
    return MasterAnswer(join_addr(master["ip"], int(master["port"])), epoch, tuple(replicas))


class SentinelFollower:
    """Polls and subscribes to the sentinels; applies a new map when a group's master moves."""

    def __init__(self, cfg: SentinelConfig, gids: Callable[[], list[int]],
                 current: Callable[[], SlotMap | None], apply: ApplySlotMap) -> None:
        self.cfg = cfg
        self.gids = gids
        self.current = current
        self.apply = apply
        self.epochs: dict[int, int] = {}  # gid -> config epoch of the master we follow
        self.tasks: list[asyncio.Task[None]] = []
        self._poll_lock = asyncio.Lock()
        self.polls = 0
        self.events = 0
        self.connected: set[str] = set()

    async def start(self) -> None:
        """One poll (bounded by the sentinel timeout), then a watcher per sentinel."""
        await self.poll()
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self._watch(a)) for a in self.cfg.addrs]

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self.tasks = []

    async def initial(self, sm: SlotMap) -> SlotMap:
        """`sm` (the configured map) re-pointed as the sentinels say, before it is applied."""
        staged = [sm]

        async def stage(new: SlotMap) -> None:
            staged[0] = new

        current, apply = self.current, self.apply
        self.current, self.apply = (lambda: staged[0]), stage
        try:
            await self.poll(list(sm.groups))
        finally:
            self.current, self.apply = current, apply
        return staged[0]

    # ------------------------------------------------------------------ polls
    async def _ask_one(self, addr: str, names: dict[int, str]) -> dict[int, MasterAnswer]:
        link = SentinelLink(addr, self.cfg)
        out: dict[int, MasterAnswer] = {}
        try:
            await link.connect()
            for gid, name in names.items():
                answer = await ask_master(link, name)
                if answer is not None:
                    out[gid] = answer
        except (OSError, TimeoutError, SentinelError, ConnectionError) as e:
            log.debug("sentinel %s: %s", addr, e)
        finally:
            await link.close()
        return out

    async def poll(self, gids: list[int] | None = None) -> None:
        """Ask every sentinel about `gids` (default: every group) and follow what they say."""
        async with self._poll_lock:
            names = {gid: self.cfg.master_name(gid) for gid in (gids or self.gids())}
            views = await asyncio.gather(*(self._ask_one(a, names) for a in self.cfg.addrs))
            self.polls += 1
            if not any(views):
                log.warning("no sentinel of %s answered about %s", ",".join(self.cfg.addrs),
                            ", ".join(names.values()))
                return
            for gid in names:
                chosen = decide([v[gid] for v in views if gid in v])
                if chosen is None:
                    continue
                try:
                    await self._follow(gid, chosen)
                except Exception:  # e.g. a newer map pushed meanwhile: the next poll retries
                    log.exception("sentinels: could not re-point group %d to %s", gid,
                                  chosen.addr)

    async def _follow(self, gid: int, chosen: MasterAnswer) -> None:
        if chosen.config_epoch < self.epochs.get(gid, -1):
            return  # never back to an older configuration
        sm = self.current()
        if sm is None:
            return
        new = repoint(sm, gid, chosen.addr, chosen.replicas)
        if new is not None:
            old = sm.groups[gid].master
            if old != chosen.addr:
                log.warning("sentinels: group %d (%s) master is %s (was %s), config epoch %d",
                            gid, self.cfg.master_name(gid), chosen.addr, old,
                            chosen.config_epoch)
            await self.apply(new)
        self.epochs[gid] = chosen.config_epoch  # once in force

    # ------------------------------------------------------------------ events
    async def _watch(self, addr: str) -> None:
        backoff = 0.1
        while True:
            link = SentinelLink(addr, self.cfg)
            try:
                await link.connect()
                await link.command("SUBSCRIBE", "+switch-master")
                self.connected.add(addr)
                backoff = 0.1
                await self.poll()  # anything missed while we were not subscribed
                while True:
                    msg = await link.read(None)
                    if isinstance(msg, list) and len(msg) == 3 and msg[0] == b"message":
                        await self._event(_s(msg[2]))
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, SentinelError, ConnectionError) as e:
                if addr in self.connected:
                    log.warning("sentinel %s: connection lost (%s); reconnecting", addr, e)
            finally:
                self.connected.discard(addr)
                await link.close()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.cfg.reconnect_max)

    async def _event(self, text: str) -> None:
        """`+switch-master <name> <old ip> <old port> <new ip> <new port>`."""
        parts = text.split()
        if not parts:
            return
        by_name = {self.cfg.master_name(gid): gid for gid in self.gids()}
        gid = by_name.get(parts[0])
        if gid is None:
            return
        self.events += 1
        log.info("sentinel event +switch-master %s", text)
        await self.poll([gid])
