"""Blocking commands: BLPOP BRPOP BLMOVE BRPOPLPUSH BLMPOP BZPOPMIN BZPOPMAX BZMPOP, XREAD BLOCK,
XREADGROUP BLOCK, and WAIT.

* A blocking command runs on a **dedicated** backend connection of its key's group, leased from
  `backend.dedicated.DedicatedPool` as kind `blocking` (not drained by a map swap, CLIENT ID
  asked; bounded per backend: `backend.max_dedicated`; over it the
  client gets `BLOCKED_LIMIT`). Shared connections stay request/reply only, so their stall
  detection never sees a blocked command. The backend parses and validates the command and its
  timeout itself, so every reply and error is Redis's own.
* The client's later commands wait in its backlog (`Client.hold_later_commands`) and run once
  the blocking reply is written, in order, as on Redis.
* A client that disconnects while blocked closes its dedicated connection: the backend drops
  the blocked client at once and pops nothing for it.
* `CLIENT UNBLOCK <proxy id> [TIMEOUT|ERROR]` becomes `CLIENT UNBLOCK <backend id> ...` on the
  backend the client blocks on (sent on a shared lane); its `:1`/`:0` is passed through.
* **Slot migration.** After every slot-map swap (`Router.on_drained`) each blocked call
  whose slot is no longer served by the backend it blocks on (owned elsewhere, migrating to
  another group, or locked) is unblocked there with `CLIENT UNBLOCK id TIMEOUT`. If the reply
  is the timeout's null, nothing was popped: the command is issued again under the current map
  with the remaining timeout (held while the slot is locked, its keys pulled with the on-access
  MIGRATE first while it is migrating, then on a dedicated connection of the new owner). If the
  old owner had already served it, that reply is the client's: nothing is re-issued, so an
  element is never lost nor delivered twice.
* **WAIT** counts replicas that acknowledged *this client's* writes. Through the proxy those
  writes went over shared connections of possibly several groups, so WAIT runs, once every
  earlier reply of the client is in, on a dedicated connection to **every** group: first an
  atomic no-op write (a script that sets and deletes one proxy-owned key, so the connection's
  replication offset covers everything the group executed before it), then WAIT itself. The
  reply is the smallest count over the groups: "at least N replicas of every group hold all
  your earlier writes" — never an over-count.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterable

from slotcore.resp import ProtocolError, encode_error, encode_int, pack_command, parse_reply

from .backend.dedicated import DedicatedConn, DedicatedPool
from .backend.pool import BackendPool
from .client.context import Client
from .client.modes.blocked import BlockedMode
from .client.reply import ReplySlot
from .commands.policy import block_option_at
from .commands.table import CommandSpec
from .config import ProxyConfig
from .dispatch import slot_of_keys
from .errors import CLUSTERDOWN, UNBLOCKED, blocked_limit, tryagain
from .routing.router import Router

log = logging.getLogger("slotproxy.blocking")

# What a blocked command replies when it times out (or is unblocked with TIMEOUT): Redis 7
# answers a null array for lists, sorted sets and streams alike; BLMOVE's null bulk for safety.
NULLS = frozenset({b"*-1\r\n", b"_\r\n", b"$-1\r\n"})

SECONDS, MILLIS = 1, 2
# Where the timeout is (BLOCK's value for XREAD/XREADGROUP is found by scanning).
_TIMEOUT_AT = {"blpop": -1, "brpop": -1, "bzpopmin": -1, "bzpopmax": -1, "brpoplpush": -1,
               "blmove": -1, "blmpop": 1, "bzmpop": 1}

# WAIT's no-op write: a key the proxy owns, set and deleted atomically (nobody ever sees it).
_WAIT_KEY = b"__slotproxy:wait__"
_NOOP_WRITE = pack_command(
    b"EVAL", b"redis.call('set', KEYS[1], '1') redis.call('del', KEYS[1])", b"1", _WAIT_KEY)

NEW, PULLING, HELD, BLOCKED, DONE = range(5)


def failover_timeout(slot: int, wait: float) -> bytes:
    # The call was not served; TRYAGAIN tells cluster clients (and people) to retry it.
    return encode_error(f"TRYAGAIN slot {slot}: its master went away and no failover "
                        f"re-pointed it within {wait:g} s (backend.failover_wait); nothing "
                        "was served, retry")


def timeout_position(name: str, argv: list[bytes]) -> tuple[int, int] | None:
    """(index of the timeout argument, its unit), or None if there is none to find."""
    i = _TIMEOUT_AT.get(name)
    if i is not None:
        return (i % len(argv), SECONDS) if len(argv) > 1 else None
    j = block_option_at(name, argv)
    if j is None or j + 1 >= len(argv):
        return None
    return (j + 1, MILLIS)


def parse_timeout(raw: bytes, unit: int) -> float | None:
    """The timeout in seconds, or None for "forever" (0) or a value the backend will refuse
    (the backend answers those itself, with Redis's own text)."""
    try:
        t = float(raw) if unit == SECONDS else int(raw) / 1000.0
    except ValueError:
        return None
    if not (0 < t < 1e12):
        return None
    return t


class _Ignore:
    __slots__ = ()

    def resolve(self, raw: bytes) -> None:
        pass


_IGNORE = _Ignore()


class _Pulled:
    """The on-access MIGRATE of a re-issued call's keys is done: block on the target."""

    __slots__ = ("call", "dst")

    def __init__(self, call: BlockedCall, dst: str) -> None:
        self.call = call
        self.dst = dst

    def resolve(self, raw: bytes) -> None:
        call = self.call
        if call.state != PULLING:
            return
        if call.user_unblock is not None:
            call.deliver(call.user_reply())
        elif raw[:1] == b"+":  # +OK (moved) or +NOKEY (nothing to move)
            call.block_on(self.dst)
        else:
            why = raw[1:].strip().decode(errors="replace")
            call.deliver(tryagain(call.slot, f"could not move its keys ({why})"))


class _UnblockReply:
    """Reply to the proxy's own CLIENT UNBLOCK for a migration: `:0` means the backend had not
    blocked the command yet (or just served it): try again shortly while it is still owed."""

    __slots__ = ("call", "conn")

    def __init__(self, call: BlockedCall, conn: DedicatedConn) -> None:
        self.call = call
        self.conn = conn

    def resolve(self, raw: bytes) -> None:
        call = self.call
        if raw != b":1\r\n" and call.state == BLOCKED and call.moving and call.conn is self.conn:
            call.reg.loop.call_later(0.02, call.send_unblock)


def dollar_positions(argv: list[bytes]) -> list[tuple[int, bytes]]:
    """XREAD's `$` IDs: (argv index of the ID, its stream key)."""
    for i in range(1, len(argv)):
        if argv[i].lower() == b"streams":
            n = (len(argv) - i - 1) // 2
            return [(i + 1 + n + j, argv[i + 1 + j]) for j in range(n)
                    if argv[i + 1 + n + j] == b"$"]
    return []


class _LastId:
    """XINFO STREAM's last-generated-id on the old owner, asked just before the unblock."""

    __slots__ = ("call", "index")

    def __init__(self, call: BlockedCall, index: int) -> None:
        self.call = call
        self.index = index

    def resolve(self, raw: bytes) -> None:
        call = self.call
        last: bytes | None = None
        if raw[:1] == b"*":
            try:
                fields = parse_reply(raw)
            except ProtocolError:
                fields = None
            if isinstance(fields, list):
                for k, v in zip(fields[::2], fields[1::2], strict=False):
                    if k == b"last-generated-id" and isinstance(v, bytes):
                        last = v
        if last is not None:
            call.last_ids[self.index] = last
        call.pending_ids -= 1
        if call.pending_ids == 0 and call.parked is not None:
            raw, call.parked = call.parked, None
            call.resolve(raw)


class BlockedCall:
    """One client's blocking command, from dispatch to its reply."""

    def __init__(self, reg: Blocking, client: Client, name: str, argv: list[bytes],
                 packed: bytes, keys: list[bytes], slot: int, reply: ReplySlot) -> None:
        self.reg = reg
        self.client = client
        self.name = name
        self.argv = argv
        self.packed = packed
        self.keys = keys
        self.slot = slot
        self.reply = reply
        self.state = NEW
        self.conn: DedicatedConn | None = None
        self.addr: str | None = None
        self.moving = False  # a CLIENT UNBLOCK for a migration is in flight
        # A CLIENT UNBLOCK was sent for the current connection: it may still arrive after the
        # reply, so the connection is closed rather than reused (it could unblock the next
        # client leasing it).
        self.unblock_sent = False
        self.user_unblock: bytes | None = None  # TIMEOUT/ERROR asked while not on a backend
        self.held_since = 0.0
        # Held because the connection to its master was lost while blocked (failover): it is
        # re-issued by the next map swap or once that server is reachable again.
        self.lost = False
        # XREAD ... $ moving: the streams' last IDs on the old owner replace `$` when it is
        # re-issued, so an entry added in between still wakes it.
        self.last_ids: dict[int, bytes] = {}
        self.pending_ids = 0
        self.parked: bytes | None = None  # the old owner's reply, waiting for those IDs
        self.timeout_at = timeout_position(name, argv)
        t = parse_timeout(argv[self.timeout_at[0]], self.timeout_at[1]) \
            if self.timeout_at else None
        self.deadline = reg.loop.time() + t if t is not None else None

    # ------------------------------------------------------------------ routing
    def issue(self) -> None:
        """Send the command under the map in force (first time, or re-issued)."""
        reg = self.reg
        router = reg.router
        slot = self.slot
        g = router.by_slot[slot]
        if g is not None:
            self.block_on(g.master)
            return
        transit = router.transit
        ts = transit.admit(slot, self.keys)
        if isinstance(ts, bytes):
            self.deliver(ts)
        elif ts is None:  # locked (or a key fenced): re-issued under the next map
            if self.state != HELD:
                self.state = HELD
                self.held_since = reg.loop.time()
            reg.held.add(self)
        else:
            # Migrating: pull the keys to the target first (as every request does), on a RESP2
            # lane since the proxy reads the reply.
            self.state = PULLING
            src = ts.src.lanes[reg.pool.plain_lane(0)]
            src.send(transit.migrate_command(ts, self.keys), _Pulled(self, ts.dst.master))

    def block_on(self, addr: str) -> None:
        reg = self.reg
        dedicated = reg.dedicated
        conn = dedicated.lease(addr, self.client.state.proto, dedicated.blocking)
        if conn is None:
            self.deliver(blocked_limit(addr, dedicated.blocking.limit))
            return
        self.state = BLOCKED
        self.conn = conn
        self.addr = addr
        conn.send(self.packed, self)
        if reg.target(self.slot, self.keys) != addr:  # the map moved on while we pulled keys
            self.move()

    def move(self) -> None:
        """Unblock on the backend it blocks on, to re-issue it where the slot is now."""
        if self.state != BLOCKED or self.moving:
            return
        self.moving = True
        if self.name == "xread" and self.conn is not None:
            # Asked while the XREAD is still blocked there, on the lane the unblock then takes:
            # no entry after these IDs existed (else it would have been served).
            lane = self.reg.pool.lanes(self.conn.addr)[0]
            for index, key in dollar_positions(self.argv):
                self.pending_ids += 1
                lane.send(pack_command(b"XINFO", b"STREAM", key), _LastId(self, index))
        self.send_unblock()

    def send_unblock(self, how: bytes = b"TIMEOUT") -> None:
        conn = self.conn
        if self.state != BLOCKED or conn is None:
            return
        if conn.backend_id is None:
            conn.on_id = self.send_unblock  # still connecting: as soon as its id is known
            return
        self.unblock_sent = True
        lane = self.reg.pool.lanes(conn.addr)[0]
        lane.send(pack_command(b"CLIENT", b"UNBLOCK", conn.backend_id, how),
                  _UnblockReply(self, conn))

    # ------------------------------------------------------------------ replies
    def resolve(self, raw: bytes) -> None:
        """The reply on the dedicated connection."""
        if self.state != BLOCKED:
            return
        if self.pending_ids:
            self.parked = raw  # read before the XINFO replies: wait for them
            return
        conn = self.conn
        self.conn = None
        if conn is not None:
            # After a CLIENT UNBLOCK it is closed: the unblock may still arrive and would
            # unblock the next client leasing it.
            self.reg.dedicated.release(conn, None if self.unblock_sent else b"")
        self.unblock_sent = False
        if conn is not None and conn.lost and raw[:1] == b"-" and self.reg.may_fail_over(self):
            # The master went away with the call blocked on it: nothing was served (a served
            # call has its reply), so wait for the group to be re-pointed (or the server to
            # be back) and issue it again there, instead of failing a call that can go on.
            self.moving = False
            self.lost = True
            self.state = HELD
            self.held_since = self.reg.loop.time()
            self.reg.held.add(self)
            log.info("client %s: %s blocked on %s, which went away: held for a failover",
                     self.client.state.addr, self.name, conn.addr)
            return
        if self.moving:
            self.moving = False
            if raw in NULLS:
                # Nothing was popped on the old owner.
                if self.user_unblock is not None:
                    raw = self.user_reply()
                else:
                    remaining = self.remaining()
                    if remaining is None or remaining > 0:
                        self.rewrite(remaining)
                        self.state = NEW
                        self.issue()
                        return
        self.deliver(raw)

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - self.reg.loop.time()

    def rewrite(self, remaining: float | None) -> None:
        """The command again, with the timeout left."""
        argv = list(self.argv)
        for index, last in self.last_ids.items():
            argv[index] = last
        self.last_ids = {}
        if remaining is not None and self.timeout_at is not None:
            i, unit = self.timeout_at
            if unit == SECONDS:
                argv[i] = b"%.3f" % max(remaining, 0.001)
            else:
                argv[i] = b"%d" % max(1, math.ceil(remaining * 1000))
        self.argv = argv
        self.packed = pack_command(*argv)

    def user_reply(self) -> bytes:
        if self.user_unblock == b"ERROR":
            return UNBLOCKED
        return b"_\r\n" if self.client.state.proto == 3 else b"*-1\r\n"

    def deliver(self, raw: bytes) -> None:
        if self.state == DONE:
            return
        self.state = DONE
        self.reg.forget(self)
        self.reply.resolve(raw)

    def abort(self) -> None:
        """The client went away: close its dedicated connection, pop nothing more for it."""
        if self.state == DONE:
            return
        self.state = DONE
        self.reg.forget(self)
        conn, self.conn = self.conn, None
        if conn is not None:
            self.reg.dedicated.release(conn, None)

    # ------------------------------------------------------------------ CLIENT UNBLOCK
    def unblock(self, requester: Client, how: bytes) -> None:
        conn = self.conn
        if self.state == BLOCKED and not self.moving and conn is not None \
                and conn.backend_id is not None:
            # On the backend: its own answer (:1, or :0 if it has just been served).
            self.unblock_sent = True
            lane = self.reg.pool.lanes(conn.addr)[0]
            lane.send(pack_command(b"CLIENT", b"UNBLOCK", conn.backend_id, how),
                      requester.expect())
            return
        self.user_unblock = how
        if self.state == HELD:
            self.deliver(self.user_reply())
        elif self.state == BLOCKED and not self.moving:  # connecting: its id is not known yet
            self.moving = True
            self.send_unblock()
        requester.reply(encode_int(1))


class WaitCall:
    """WAIT numreplicas timeout on every group (see the module docstring)."""

    def __init__(self, reg: Blocking, client: Client, argv: list[bytes],
                 reply: ReplySlot) -> None:
        self.reg = reg
        self.client = client
        self.packed = pack_command(*argv)
        self.reply = reply
        self.conns: list[DedicatedConn] = []
        self.unblock_sent = False
        self.parts: list[bytes | None] = []
        self.left = 0
        self.done = False

    def start(self) -> None:
        reg = self.reg
        groups = list(reg.router.groups.values())
        if not groups:
            self.finish(CLUSTERDOWN)
            return
        dedicated = reg.dedicated
        for g in groups:
            conn = dedicated.lease(g.master, 2, dedicated.blocking)
            if conn is None:
                self.finish(blocked_limit(g.master, dedicated.blocking.limit))
                return
            self.conns.append(conn)
        self.parts = [None] * len(self.conns)
        self.left = len(self.conns)
        for i, conn in enumerate(self.conns):
            part = _WaitPart(self, i)
            conn.send(_NOOP_WRITE, _NoopCheck(part))
            conn.send(self.packed, part)

    def part_done(self, i: int, raw: bytes) -> None:
        if self.done:
            return
        self.parts[i] = raw
        self.left -= 1
        if self.left:
            return
        errors = [p for p in self.parts if p is None or p[:1] != b":"]
        if errors:
            self.finish(errors[0] or UNBLOCKED)
        else:
            self.finish(encode_int(min(int(p[1:]) for p in self.parts if p is not None)))

    def finish(self, raw: bytes) -> None:
        if self.done:
            return
        self.done = True
        self.release(None if self.unblock_sent else b"")
        self.reg.forget(self)
        self.reply.resolve(raw)

    def release(self, clean: bytes | None) -> None:
        conns, self.conns = self.conns, []
        for conn in conns:
            self.reg.dedicated.release(conn, clean)

    def abort(self) -> None:
        if self.done:
            return
        self.done = True
        self.reg.forget(self)
        self.release(None)

    def unblock(self, requester: Client, how: bytes) -> None:
        sent = 0
        for conn in self.conns:
            if conn.backend_id is not None:
                lane = self.reg.pool.lanes(conn.addr)[0]
                lane.send(pack_command(b"CLIENT", b"UNBLOCK", conn.backend_id, how), _IGNORE)
                sent += 1
                self.unblock_sent = True
        requester.reply(encode_int(1 if sent else 0))


class _WaitPart:
    __slots__ = ("call", "failed", "i")

    def __init__(self, call: WaitCall, i: int) -> None:
        self.call = call
        self.i = i
        self.failed: bytes | None = None

    def resolve(self, raw: bytes) -> None:
        # Without the no-op write WAIT would count from offset 0: an over-count, never given.
        self.call.part_done(self.i, self.failed if self.failed is not None else raw)


class _NoopCheck:
    __slots__ = ("part",)

    def __init__(self, part: _WaitPart) -> None:
        self.part = part

    def resolve(self, raw: bytes) -> None:
        if raw[:1] == b"-":
            self.part.failed = raw


class Blocking:
    """Every blocked call of the process: by client id, and those held for a locked slot."""

    def __init__(self, cfg: ProxyConfig, router: Router, pool: BackendPool,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.cfg = cfg
        self.router = router
        self.pool = pool
        self.dedicated: DedicatedPool = pool.dedicated
        self.loop = loop
        self.calls: dict[int, BlockedCall | WaitCall] = {}
        self.held: set[BlockedCall] = set()
        self.total = 0  # blocking commands started (INFO)

    @property
    def blocked_clients(self) -> int:
        return len(self.calls)

    # ------------------------------------------------------------------ entry points
    def start(self, client: Client, spec: CommandSpec, argv: list[bytes], packed: bytes) -> None:
        """A blocking command from dispatch (route BLOCKING, or XREAD/XREADGROUP with BLOCK)."""
        name = spec.name
        if name == "wait":
            self.start_wait(client, argv, packed)
            return
        keys = spec.keys(argv)
        # Without a key (malformed: BLMPOP 0 0 ...) nothing can block; the backend answers.
        slot = slot_of_keys(client, keys, packed)
        if slot is None:
            return
        client.services.stats.slot_ops[slot] += 1
        self.total += 1
        call = BlockedCall(self, client, name, argv, packed, keys, slot, client.expect())
        self._enter(client, call)
        call.issue()

    def start_wait(self, client: Client, argv: list[bytes], packed: bytes) -> None:
        if client.fifo:
            # WAIT covers every earlier write: run it once all of their replies are in.
            client.run_after_replies(argv, packed)
            return
        self.total += 1
        call = WaitCall(self, client, argv, client.expect())
        self._enter(client, call)
        call.start()

    def _enter(self, client: Client, call: BlockedCall | WaitCall) -> None:
        self.calls[client.state.id] = call
        client.set_mode(BlockedMode(client.mode, call))
        client.hold_later_commands()

    def forget(self, call: BlockedCall | WaitCall) -> None:
        client = call.client
        if self.calls.get(client.state.id) is call:
            del self.calls[client.state.id]
        if isinstance(call, BlockedCall):
            self.held.discard(call)
        mode = client.mode
        if isinstance(mode, BlockedMode) and mode.call is call:
            client.set_mode(mode.previous)

    def unblock(self, requester: Client, client_id: int, how: bytes) -> None:
        """CLIENT UNBLOCK <proxy client id> TIMEOUT|ERROR."""
        call = self.calls.get(client_id)
        if call is None:
            requester.reply(encode_int(0))
        else:
            call.unblock(requester, how)

    # ------------------------------------------------------------------ slot map swaps
    def target(self, slot: int, keys: Iterable[bytes]) -> str | None:
        """The backend a blocking command on `slot` should block on now (None: held)."""
        router = self.router
        g = router.by_slot[slot]
        if g is not None:
            return g.master
        ts = router.transit.admit(slot, keys)
        if ts is None or isinstance(ts, bytes):
            return None
        return ts.dst.master  # migrating: writes go to the target once the keys are pulled

    def may_fail_over(self, call: BlockedCall) -> bool:
        """Whether a call whose master went away should wait for a failover: its group has
        replicas to promote, or the proxy follows sentinels (else the error is final)."""
        g = self.router.groups.get(self.router.slotmap.owner[call.slot]) \
            if self.router.slotmap is not None else None
        return bool(self.cfg.sentinel.addrs or (g is not None and g.replicas))

    def on_swap(self) -> None:
        """Called by the router after each slot-map swap (never on the request path)."""
        if not self.calls:
            return
        moved = 0
        for call in list(self.calls.values()):
            if isinstance(call, BlockedCall) and call.state == BLOCKED and not call.moving \
                    and self.target(call.slot, call.keys) != call.addr:
                call.move()
                moved += 1
        held, self.held = self.held, set()
        for call in held:
            if call.state == HELD:
                if call.lost:  # its master went away: again, with the timeout left
                    call.lost = False
                    call.rewrite(call.remaining())
                call.issue()
        if moved or held:
            log.info("slot map swap: %d blocked clients moved, %d held ones re-issued",
                     moved, len(held))

    def expire(self, now: float) -> None:
        """Housekeeping: held calls whose timeout passed get the timeout's reply; those held
        longer than migration.lock_timeout get -TRYAGAIN, as held requests do."""
        limit = self.cfg.migration.lock_timeout
        for call in list(self.held):
            if call.deadline is not None and now >= call.deadline:
                call.deliver(b"_\r\n" if call.client.state.proto == 3 else b"*-1\r\n")
            elif call.lost and now - call.held_since > self.cfg.backend.failover_wait:
                call.deliver(failover_timeout(call.slot, self.cfg.backend.failover_wait))
            elif now - call.held_since > limit and not call.lost:
                call.deliver(tryagain(call.slot, "locked too long"))
            elif call.lost and (addr := self.target(call.slot, call.keys)) is not None \
                    and self.pool.lanes(addr)[0].up:
                # Its master is reachable again (restarted, or the map moved it elsewhere).
                self.held.discard(call)
                call.lost = False
                call.state = NEW
                call.rewrite(call.remaining())
                call.issue()

    def check_clients(self) -> None:
        """Housekeeping: a blocked client whose reading is paused (its backlog is full) would
        not see its own disconnect; ask the kernel, and free its dedicated connection."""
        for call in list(self.calls.values()):
            client = call.client
            if not client.reading and not client.closed and client.peer_closed():
                log.info("blocked client %s went away", client.state.addr)
                client.close_now()

    def unblock_all(self) -> None:
        """Shutdown: every blocked client gets its timeout reply (nothing popped is lost)."""
        for call in list(self.calls.values()):
            if isinstance(call, BlockedCall):
                call.user_unblock = b"TIMEOUT"
                if call.state == HELD:
                    call.deliver(call.user_reply())
                elif call.state == BLOCKED and not call.moving:
                    call.moving = True
                    call.send_unblock()
            else:
                call.unblock_sent = True
                for conn in call.conns:
                    if conn.backend_id is not None:
                        self.pool.lanes(conn.addr)[0].send(
                            pack_command(b"CLIENT", b"UNBLOCK", conn.backend_id, b"TIMEOUT"),
                            _IGNORE)
