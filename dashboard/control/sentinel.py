"""Automatic failover with Redis Sentinel: the sentinels detect a dead master and elect its
replacement (as Codis uses them); the dashboard keeps them watching every group's master and
writes the masters they elect into the topology, which is pushed to every proxy.

Two halves:

* the sans-IO core -- `parse_masters`, `needs_roles`, `decide` -- turns what the sentinels
  answered (and, where they disagree with the topology, what the servers themselves say their
  role is) into a `Plan`: the groups whose master changed, and the SENTINEL commands that make
  every sentinel monitor exactly the groups' masters with the configured settings;
* `SentinelWatcher`, the driver: redis-py asyncio clients to every sentinel, a subscription to
  `+switch-master` (and the failover's earlier steps, `EVENTS`) on each -- an event only
  triggers a poll, it is never trusted alone -- and the poll itself, after every (re)connect
  and every `poll_interval` (0.2 s while a master is down), so a missed event (dashboard
  restarting, a dropped subscription) is never a missed failover.

Safety rules of the core (why each exists):

* a failover is followed only when the address with the newest `config-epoch` is named by at
  least max(quorum, a majority of the reachable sentinels), that address is a replica of the
  group in the topology, and the server itself says it is a master: one confused sentinel, or a
  sentinel that still remembers a master from before a manual promotion, cannot flip a group;
* a sentinel whose master differs from the topology's is re-pointed (SENTINEL REMOVE + MONITOR)
  only when the topology's master says it is a master and the sentinel's one says it is a
  replica -- that is a promotion the dashboard made -- and only when every configured sentinel
  answers: a re-monitored sentinel restarts at config-epoch 0, and one left behind with the
  old, higher epoch would talk the others back to the old master through its hello messages;
* the sentinel leading a failover (elected by a majority in its epoch) is followed before it
  finishes, as soon as the replica it selected (flag "promoted") itself says it is a master;
  otherwise nothing is done for a group while a sentinel reports a failover in progress for it,
  nor while the group is in state "promoting" (a manual promotion owns it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from slotcore.addr import join_addr, split_addr

from ..errors import DashboardError
from ..model.changes import switch_master
from ..model.records import GroupRecord, Topology
from .plane import ControlPlane

log = logging.getLogger(__name__)

# Each wakes a poll: the end of a failover, and the steps before it (a master down, a leader
# elected, its replica selected and promoted) so the poll follows the failover as it happens.
EVENTS = ("+switch-master", "+odown", "+elected-leader", "+selected-slave",
          "+failover-state-send-slaveof-noone", "+promoted-slave")


@dataclass(frozen=True, slots=True)
class Settings:
    """What every sentinel is told for every group (from `config.SentinelConfig`)."""

    quorum: int = 2
    down_after_ms: int = 5000
    failover_timeout_ms: int = 60000
    auth_pass: str | None = None
    auth_user: str | None = None
    prefix: str = "slotproxy-default-g"


@dataclass(frozen=True, slots=True)
class MasterView:
    """One sentinel's view of one monitored master (SENTINEL MASTERS + get-master-addr)."""

    name: str
    addr: str                 # get-master-addr-by-name: the promoted replica once reconfiguring
    config_epoch: int = 0
    flags: tuple[str, ...] = ()
    quorum: int = 0
    down_after_ms: int = 0
    failover_timeout_ms: int = 0
    replicas: int = 0
    other_sentinels: int = 0
    # During a failover this sentinel leads: the replica it selected (flag "promoted").
    promoted: str | None = None

    @property
    def failing_over(self) -> bool:
        return "failover_in_progress" in self.flags or "promoted" in self.flags

    def to_json(self) -> dict[str, Any]:
        return {"addr": self.addr, "config_epoch": self.config_epoch, "flags": list(self.flags),
                "quorum": self.quorum, "down_after_ms": self.down_after_ms,
                "failover_timeout_ms": self.failover_timeout_ms, "replicas": self.replicas,
                "other_sentinels": self.other_sentinels, "promoted": self.promoted}


@dataclass(slots=True)
class SentinelReport:
    """What one sentinel answered in one poll (masters: only the names with our prefix)."""

    addr: str
    reachable: bool
    error: str | None = None
    masters: dict[str, MasterView] = field(default_factory=dict)
    polled_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Action:
    """One command for one sentinel: ("MONITOR", name, ip, port, quorum), ("SET", ...), ..."""

    sentinel: str
    args: tuple[str, ...]
    why: str


@dataclass(slots=True)
class Plan:
    follow: dict[int, str] = field(default_factory=dict)    # gid -> its new master
    actions: list[Action] = field(default_factory=list)
    notes: dict[int, str] = field(default_factory=dict)     # gid -> why nothing was done
    agreed: dict[int, str] = field(default_factory=dict)    # gid -> the sentinels' master


# -- names -------------------------------------------------------------------------------------


def master_name(prefix: str, gid: int) -> str:
    return f"{prefix}{gid}"


def gid_of(prefix: str, name: str) -> int | None:
    """The group a monitored name belongs to, or None for names that are not ours."""
    m = re.fullmatch(re.escape(prefix) + r"([1-9][0-9]*)", name)
    return int(m.group(1)) if m else None


# -- parsing the sentinels' replies (pure) ------------------------------------------------------


def _text(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _pairs(flat: Iterable[Any]) -> dict[str, str]:
    items = [_text(x) for x in flat]
    return dict(zip(items[0::2], items[1::2], strict=False))


def _entry(entry: Any) -> dict[str, str]:
    """One SENTINEL MASTERS entry: a flat field/value list, or the dict redis-py makes of it."""
    d = entry if isinstance(entry, dict) else _pairs(entry)
    return {_text(k): _text(v) for k, v in d.items()}


def _int(d: dict[str, str], key: str) -> int:
    try:
        return int(d.get(key, 0))
    except ValueError:
        return 0


def promoted_of(replicas: Any) -> str | None:
    """The replica a SENTINEL REPLICAS reply flags "promoted" (selected by a leader), if any."""
    for entry in replicas or ():
        d = _entry(entry)
        if "promoted" in d.get("flags", "").split(","):
            return join_addr(d.get("ip", ""), _int(d, "port"))
    return None


def parse_masters(reply: Any, addrs: dict[str, Any], prefix: str,
                  promoted: dict[str, str | None] | None = None) -> dict[str, MasterView]:
    """SENTINEL MASTERS (a list of flat field/value lists) plus the get-master-addr-by-name
    answer per name (`addrs`: name -> [ip, port] or None) -> our masters' views; `promoted`:
    name -> the replica a failover this sentinel leads selected."""
    out: dict[str, MasterView] = {}
    for entry in reply or ():
        d = _entry(entry)
        name = d.get("name", "")
        if gid_of(prefix, name) is None:
            continue
        got = addrs.get(name)
        if got:
            addr = join_addr(_text(got[0]), int(got[1]))
        else:
            addr = join_addr(d.get("ip", ""), _int(d, "port"))
        out[name] = MasterView(
            name=name, addr=addr, config_epoch=_int(d, "config-epoch"),
            flags=tuple(f for f in d.get("flags", "").split(",") if f),
            quorum=_int(d, "quorum"), down_after_ms=_int(d, "down-after-milliseconds"),
            failover_timeout_ms=_int(d, "failover-timeout"), replicas=_int(d, "num-slaves"),
            other_sentinels=_int(d, "num-other-sentinels"),
            promoted=(promoted or {}).get(name))
    return out


# -- the decision core (pure) --------------------------------------------------------------------


def failing_over(reports: Iterable[SentinelReport], prefix: str) -> set[int]:
    """The groups some sentinel sees down (subjectively or objectively) or is failing over."""
    out: set[int] = set()
    for r in reports:
        for name, v in r.masters.items():
            gid = gid_of(prefix, name)
            if gid is not None and ("s_down" in v.flags or "o_down" in v.flags
                                    or v.failing_over):
                out.add(gid)
    return out


def _translate(addr: str, aliases: dict[str, str]) -> str:
    """A sentinel names servers by IP; the topology may use host names: map back to those."""
    return aliases.get(addr, addr)


def _candidate(group: GroupRecord, views: list[MasterView], aliases: dict[str, str]
               ) -> tuple[str, int, int] | None:
    """(address, config epoch, sentinels naming it) of the newest answer, or None."""
    if not views:
        return None
    best = max(views, key=lambda v: v.config_epoch)
    addr = _translate(best.addr, aliases)
    count = sum(1 for v in views if _translate(v.addr, aliases) == addr)
    return addr, best.config_epoch, count


def needs_roles(topo: Topology, reports: list[SentinelReport], settings: Settings,
                aliases: dict[str, str]) -> set[str]:
    """The servers whose own role `decide` must know: wherever a sentinel and the topology
    disagree about a group's master, both of the masters they name."""
    out: set[str] = set()
    for gid, group in topo.groups.items():
        if not group.master:
            continue
        name = master_name(settings.prefix, gid)
        for r in reports:
            v = r.masters.get(name) if r.reachable else None
            if v is not None and _translate(v.addr, aliases) != group.master:
                out.update((group.master, _translate(v.addr, aliases)))
            if v is not None and v.promoted:
                out.add(_translate(v.promoted, aliases))
    return out


def _settings_args(settings: Settings, view: MasterView | None, with_auth: bool
                   ) -> list[str]:
    args: list[str] = []
    if view is None or view.quorum != settings.quorum:
        args += ["quorum", str(settings.quorum)]
    if view is None or view.down_after_ms != settings.down_after_ms:
        args += ["down-after-milliseconds", str(settings.down_after_ms)]
    if view is None or view.failover_timeout_ms != settings.failover_timeout_ms:
        args += ["failover-timeout", str(settings.failover_timeout_ms)]
    if with_auth and settings.auth_pass:
        args += ["auth-pass", settings.auth_pass]
    if with_auth and settings.auth_user:
        args += ["auth-user", settings.auth_user]
    return args


def _monitor(sentinel: str, name: str, addr: str, settings: Settings, why: str) -> list[Action]:
    host, port = split_addr(addr)
    out = [Action(sentinel, ("MONITOR", name, host, str(port), str(settings.quorum)), why)]
    extra = _settings_args(settings, None, with_auth=True)
    out.append(Action(sentinel, ("SET", name, *extra), "settings of a new monitor"))
    return out


def decide(topo: Topology, reports: list[SentinelReport], settings: Settings,
           roles: dict[str, str | None], aliases: dict[str, str] | None = None,
           authed: set[tuple[str, str]] | None = None, configured: int | None = None) -> Plan:
    """What to do now. `roles`: addr -> "master"/"slave"/None (unreachable) for the servers
    `needs_roles` named; `authed`: (sentinel, name) pairs already given auth-pass/auth-user;
    `configured`: how many sentinels there are (default: as many as reported)."""
    aliases = aliases or {}
    authed = authed or set()
    configured = len(reports) if configured is None else configured
    plan = Plan()
    up = [r for r in reports if r.reachable]
    all_up = len(up) == configured
    needed = max(settings.quorum, len(up) // 2 + 1)
    for gid, group in sorted(topo.groups.items()):
        name = master_name(settings.prefix, gid)
        if not group.master:
            continue
        views = [v for r in up if (v := r.masters.get(name)) is not None]
        cand = _candidate(group, views, aliases)
        if cand is not None and cand[2] >= needed:
            plan.agreed[gid] = cand[0]
        if group.state == "promoting":
            plan.notes[gid] = "a manual promotion is in progress"
            continue
        leading = [v for v in views if v.failing_over and v.promoted]
        if leading:
            # The sentinel that won this failover's election (a majority voted for it in its
            # epoch) selected a replica and sent it REPLICAOF NO ONE: once that server says
            # it is a master, follow at once -- the sentinel itself confirms the promotion
            # only at its next INFO of it (up to a second later).
            addr = _translate(leading[0].promoted or "", aliases)
            if addr in group.replicas and roles.get(addr) == "master":
                plan.follow[gid] = addr
                continue
        if any(v.failing_over for v in views):
            plan.notes[gid] = "a sentinel reports a failover in progress"
            continue
        if cand is not None and cand[0] != group.master:
            addr, epoch, count = cand
            if epoch > 0 and count >= needed and roles.get(addr) == "master":
                if addr in group.replicas:
                    plan.follow[gid] = addr
                    continue
                plan.notes[gid] = (f"the sentinels elected {addr}, which is not a server of "
                                   f"group {gid}: add it (`proxyctl group add-server {gid} "
                                   f"{addr}`) and the dashboard follows")
                continue
        for r in up:
            view = r.masters.get(name)
            if view is None:
                plan.actions += _monitor(r.addr, name, group.master, settings,
                                         f"group {gid} is not monitored")
                continue
            seen = _translate(view.addr, aliases)
            if seen != group.master:
                # Positively a replica now, not merely unreachable: an elected master the
                # dashboard cannot reach for a moment must not be undone.
                if roles.get(group.master) == "master" and roles.get(seen) == "slave":
                    if not all_up:
                        plan.notes[gid] = (f"sentinel {r.addr} still watches {seen}; it is "
                                           "re-pointed once every sentinel answers")
                        continue
                    plan.actions.append(Action(r.addr, ("REMOVE", name),
                                               f"group {gid}'s master is now {group.master}"))
                    plan.actions += _monitor(r.addr, name, group.master, settings,
                                             f"group {gid}'s master is now {group.master}")
                else:
                    plan.notes[gid] = (f"sentinel {r.addr} says the master is {seen}, the "
                                       f"topology {group.master}: waiting for agreement")
                continue
            extra = _settings_args(settings, view, with_auth=(r.addr, name) not in authed)
            if extra:
                plan.actions.append(Action(r.addr, ("SET", name, *extra), "settings differ"))
    for r in up:
        for name in r.masters:
            gid = gid_of(settings.prefix, name)
            group = topo.groups.get(gid) if gid is not None else None
            if group is None or not group.master:
                plan.actions.append(Action(r.addr, ("REMOVE", name),
                                           f"group {gid} no longer exists or has no master"))
    return plan


# -- the driver ----------------------------------------------------------------------------------


def _redis(addr: str, password: str | None, username: str | None, timeout: float | None,
           connect_timeout: float, **kw: Any) -> aioredis.Redis:
    """A client that fails at once: redis-py's default retries a refused connection ten times
    with backoff (seconds), and a dead master is exactly what a failover is about."""
    host, port = split_addr(addr)
    return aioredis.Redis(host=host, port=port, password=password, username=username,
                          socket_timeout=timeout, socket_connect_timeout=connect_timeout,
                          retry=Retry(NoBackoff(), 0), **kw)


def _role(info: dict[str, Any]) -> str | None:
    role = info.get("role")
    return str(role) if role else None


class SentinelWatcher:
    """Runs on the leader: keeps every sentinel monitoring every group and follows failovers.

    `adjust(topo, gid)` is applied in the same change as the new master (the migrator relocks
    the slots leaving a failed-over group there); `after(gid, old, new)` runs once it is in force.
    """

    def __init__(self, plane: ControlPlane, addrs: Iterable[str], settings: Settings, *,
                 password: str | None = None, username: str | None = None,
                 backend_password: str | None = None, backend_user: str | None = None,
                 poll_interval: float = 1.0, timeout: float = 1.0,
                 adjust: Callable[[Topology, int], Topology] | None = None,
                 after: Callable[[int, str, str], None] | None = None) -> None:
        self.plane = plane
        self.addrs = list(addrs)
        self.settings = settings
        self.password = password
        self.username = username
        self.backend_password = backend_password
        self.backend_user = backend_user
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.adjust = adjust
        self.after = after
        self.reports: dict[str, SentinelReport] = {a: SentinelReport(a, False, "not polled yet")
                                                   for a in self.addrs}
        self.plan = Plan()
        self.events = 0            # +switch-master messages received
        self.polls = 0
        self.last_error: str | None = None
        self.wake = asyncio.Event()
        self._clients: dict[str, aioredis.Redis] = {}
        self._authed: set[tuple[str, str]] = set()
        self._subscribed: dict[str, bool] = dict.fromkeys(self.addrs, False)
        self._aliases: dict[str, str] = {}
        self._aliases_at = 0.0
        self._aliases_for: set[str] = set()

    @property
    def enabled(self) -> bool:
        return bool(self.addrs)

    def _client(self, addr: str) -> aioredis.Redis:
        c = self._clients.get(addr)
        if c is None:
            c = _redis(addr, self.password, self.username, self.timeout, self.timeout)
            self._clients[addr] = c
        return c

    # -- the loop ---------------------------------------------------------------------------------

    async def run(self) -> None:
        if not self.enabled:
            return
        while True:
            await self.plane.leading.wait()
            subs = [asyncio.create_task(self._subscribe(a), name=f"sentinel-sub-{a}")
                    for a in self.addrs]
            try:
                while self.plane.leading.is_set():
                    try:
                        await self.step()
                    except asyncio.CancelledError:
                        raise
                    except Exception as e:  # shown in the API, retried next round
                        self.last_error = str(e) or type(e).__name__
                        log.warning("sentinel reconcile failed: %s", self.last_error)
                    # While a master is down or the sentinels disagree, poll quickly.
                    interval = self._interval()
                    self.wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.wake.wait(), interval)
            finally:
                for t in subs:
                    t.cancel()
                await asyncio.gather(*subs, return_exceptions=True)

    def _interval(self) -> float:
        views = [v for r in self.reports.values() for v in r.masters.values()]
        if any(v.promoted for v in views):
            return 0.05  # REPLICAOF NO ONE is on its way to the selected replica
        if self.plan.notes or self.plan.follow or any(
                "s_down" in v.flags or "o_down" in v.flags or v.failing_over for v in views):
            return min(0.2, self.poll_interval)
        return self.poll_interval

    async def _subscribe(self, addr: str) -> None:
        """+switch-master on one sentinel; every (re)connect and every event wakes a poll."""
        backoff = 0.2
        while True:
            # socket_timeout None: a subscription is quiet for as long as nothing fails over.
            conn = _redis(addr, self.password, self.username, None, self.timeout,
                          health_check_interval=5)
            pubsub = conn.pubsub()
            try:
                await pubsub.subscribe(*EVENTS)
                self._subscribed[addr] = True
                backoff = 0.2
                self.wake.set()  # reconnected: poll, an event may have been missed meanwhile
                while True:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                    if msg is not None and msg.get("type") == "message":
                        channel = _text(msg["channel"])
                        if channel == "+switch-master":
                            self.events += 1
                        log.log(logging.INFO if channel == "+switch-master" else logging.DEBUG,
                                "sentinel %s: %s %s", addr, channel, _text(msg["data"]))
                        self.wake.set()
            except (RedisError, OSError) as e:
                log.debug("sentinel %s subscription lost: %s", addr, e)
            finally:
                self._subscribed[addr] = False
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                with contextlib.suppress(Exception):
                    await conn.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def step(self) -> Plan:
        topo = self.plane.require_leader()
        results = await asyncio.gather(*(self._poll(a) for a in self.addrs))
        self.reports = {r.addr: r for r in results}
        self.polls += 1
        self.plane.failing_over = failing_over(results, self.settings.prefix)
        aliases = await self._resolve(topo)
        reports = list(results)
        roles = await self._roles(needs_roles(topo, reports, self.settings, aliases))
        plan = decide(topo, reports, self.settings, roles, aliases, self._authed,
                      configured=len(self.addrs))
        self.plan = plan
        for gid, addr in plan.follow.items():
            await self._follow(gid, addr)
        for action in plan.actions:
            await self._act(action)
        self.last_error = None
        return plan

    async def _poll(self, addr: str) -> SentinelReport:
        c = self._client(addr)
        try:
            async with asyncio.timeout(self.timeout * 3):
                masters = await c.execute_command("SENTINEL", "MASTERS")
                ours = [n for n in (_entry(e).get("name", "") for e in masters or ())
                        if gid_of(self.settings.prefix, n) is not None]
                pipe = c.pipeline(transaction=False)
                for n in ours:
                    pipe.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", n)
                got = await pipe.execute(raise_on_error=False) if ours else []
        except (TimeoutError, RedisError, OSError) as e:
            return SentinelReport(addr, False, str(e) or type(e).__name__, polled_at=time.time())
        answers = {n: (a if isinstance(a, list | tuple) else None)
                   for n, a in zip(ours, got, strict=True)}
        promoted: dict[str, str | None] = {}
        busy = [n for n in ours if "failover_in_progress" in next(
            (_entry(e).get("flags", "") for e in masters if _entry(e).get("name") == n), "")]
        for n in busy:  # only while a failover runs: which replica its leader selected
            with contextlib.suppress(TimeoutError, RedisError, OSError):
                async with asyncio.timeout(self.timeout * 2):
                    promoted[n] = promoted_of(
                        await c.execute_command("SENTINEL", "REPLICAS", n))
        return SentinelReport(addr, True, None,
                              parse_masters(masters, answers, self.settings.prefix, promoted),
                              polled_at=time.time())

    async def _resolve(self, topo: Topology) -> dict[str, str]:
        """ip:port -> the topology's spelling, for servers named by host name (cached 30 s)."""
        servers = {a for g in topo.groups.values() for a in g.servers}
        if time.monotonic() - self._aliases_at < 30 and servers == self._aliases_for:
            return self._aliases
        loop = asyncio.get_running_loop()
        out: dict[str, str] = {}
        for addr in servers:
            host, port = split_addr(addr)
            try:
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError:
                continue
            for info in infos:
                ip = join_addr(str(info[4][0]), port)
                if ip != addr:
                    out[ip] = addr
        self._aliases, self._aliases_at, self._aliases_for = out, time.monotonic(), servers
        return out

    async def _roles(self, addrs: set[str]) -> dict[str, str | None]:
        async def one(addr: str) -> str | None:
            c = _redis(addr, self.backend_password, self.backend_user, self.timeout,
                       self.timeout)
            try:
                async with asyncio.timeout(self.timeout * 2):
                    return _role(await c.info("replication"))
            except (TimeoutError, RedisError, OSError):
                return None
            finally:
                with contextlib.suppress(Exception):
                    await c.aclose()

        addrs_l = sorted(addrs)
        got = await asyncio.gather(*(one(a) for a in addrs_l))
        return dict(zip(addrs_l, got, strict=True))

    async def _follow(self, gid: int, addr: str) -> None:
        old: list[str] = []

        def apply(t: Topology) -> Topology:
            group = t.groups.get(gid)
            if group is None:
                return t
            old[:] = [group.master or ""]
            new = switch_master(t, gid, addr)
            return self.adjust(new, gid) if self.adjust is not None else new

        topo = self.plane.require_leader()
        group = topo.groups.get(gid)
        if group is None or group.master == addr:
            return
        log.info("group %d: the sentinels' new master is %s; recording it", gid, addr)
        try:
            await self.plane.change(apply)
        except DashboardError as e:
            # Rolled back (a proxy did not acknowledge) or refused: the next poll retries.
            log.error("recording group %d's new master %s failed: %s", gid, addr, e)
            raise
        previous = old[0] if old else ""
        self.plane.record_failover(gid, previous, addr)
        log.warning("group %d failed over: master %s -> %s (recorded and pushed)", gid,
                    previous, addr)
        if self.after is not None:
            self.after(gid, previous, addr)

    async def _act(self, action: Action) -> None:
        c = self._client(action.sentinel)
        try:
            async with asyncio.timeout(self.timeout * 3):
                await c.execute_command("SENTINEL", *action.args)
        except (TimeoutError, RedisError, OSError) as e:
            msg = str(e) or type(e).__name__
            if action.args[0] == "REMOVE" and "No such master" in msg:
                return
            log.warning("sentinel %s: SENTINEL %s failed: %s", action.sentinel,
                        " ".join(_redact(action.args)), msg)
            return
        name = action.args[1]
        no_auth = not self.settings.auth_pass and not self.settings.auth_user
        if action.args[0] == "SET" and ("auth-pass" in action.args or no_auth):
            self._authed.add((action.sentinel, name))
        if action.args[0] == "REMOVE":
            self._authed.discard((action.sentinel, name))
        log.info("sentinel %s: SENTINEL %s (%s)", action.sentinel,
                 " ".join(_redact(action.args)), action.why)

    async def promoted(self, gid: int, old: str, new: str) -> None:
        """A manual promotion recorded a new master: re-point the sentinels at once."""
        self.wake.set()

    # -- the view ---------------------------------------------------------------------------------

    def view(self, topo: Topology | None) -> dict[str, Any]:
        groups: dict[str, Any] = {}
        for gid in sorted(topo.groups) if topo else ():
            name = master_name(self.settings.prefix, gid)
            groups[str(gid)] = {
                "name": name,
                "sentinels_say": {a: (r.masters[name].addr if name in r.masters else None)
                                  for a, r in self.reports.items() if r.reachable},
                "agreed": self.plan.agreed.get(gid),
                "note": self.plan.notes.get(gid),
            }
        return {
            "enabled": self.enabled,
            "sentinels": [{"addr": a, "reachable": r.reachable, "error": r.error,
                           "subscribed": self._subscribed.get(a, False),
                           "polled_at": r.polled_at,
                           "masters": {n: v.to_json() for n, v in sorted(r.masters.items())}}
                          for a, r in self.reports.items()],
            "groups": groups,
            "settings": {"quorum": self.settings.quorum,
                         "down_after_ms": self.settings.down_after_ms,
                         "failover_timeout_ms": self.settings.failover_timeout_ms,
                         "master_prefix": self.settings.prefix},
            "failovers": self.plane.failovers,
            "history": list(self.plane.failover_log),
            "events": self.events,
            "error": self.last_error,
        }

    async def close(self) -> None:
        for c in self._clients.values():
            with contextlib.suppress(Exception):
                await c.aclose()
        self._clients.clear()


def _redact(args: tuple[str, ...]) -> list[str]:
    out = list(args)
    for i, a in enumerate(out[:-1]):
        if a == "auth-pass":
            out[i + 1] = "***"
    return out
