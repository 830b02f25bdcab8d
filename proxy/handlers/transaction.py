"""MULTI EXEC DISCARD WATCH UNWATCH (the queuing itself is `client.modes.transaction`).

EXEC runs the transaction on the group that owns its slot, atomically, as one burst
`MULTI, cmd1 .. cmdN, EXEC` written in one synchronous step (nothing interleaves on that
connection): the client gets only EXEC's reply, which passes through (per-command errors inside
it, or the backend's own EXECABORT when it refused a command at queue time).

* Without WATCH the burst goes on the client's shared lane of the owning group.
* WATCH leases a backend connection of the client's own (`backend.dedicated`, kind `watch`,
  bounded by `backend.max_leased` per address); the WATCH and later the burst run there, and the
  connection is returned (UNWATCH) after EXEC/DISCARD/UNWATCH/RESET/disconnect. Other commands
  of a watching client keep using the shared lanes; to keep them in order with the leased
  connection, WATCH and a watched EXEC wait until every reply owed before them is in, and the
  commands after them wait for their reply (`Client.defer`, `Client.barrier`).

Slot migration (docs/architecture.md, "Transactions"): EXEC of a slot that is locked waits for
the next map (or -TRYAGAIN after migration.lock_timeout), of a migrating slot pulls the
transaction's keys to the target first (the on-access MIGRATE) and runs there; a WATCH
remembers the slot's route generation, and EXEC answers nil (as if the keys were modified)
when the slot changed owner or entered/left transit since.
"""

from __future__ import annotations

from collections.abc import Callable

from slotcore.resp import OK, pack_command

from ..backend.conn import BackendConn
from ..client.context import Client
from ..client.modes.normal import NORMAL
from ..client.modes.transaction import UNWATCH, TransactionMode
from ..client.reply import Gather, ReplySlot
from ..errors import (
    CLUSTERDOWN,
    CROSSSLOT,
    DISCARD_WITHOUT_MULTI,
    EXEC_NIL,
    EXEC_WITHOUT_MULTI,
    EXECABORT,
    MULTI_NESTED,
    WATCH_IN_MULTI,
    lease_limit,
    not_in_mode,
)
from ..observe.stats import ProxyStats
from ..routing.groups import RoutedGroup
from ..routing.keys import common_slot

MULTI_CMD = pack_command(b"MULTI")
EXEC_CMD = pack_command(b"EXEC")
_NILS = frozenset(EXEC_NIL.values())


def _mode(c: Client) -> TransactionMode | None:
    mode = c.mode
    return mode if isinstance(mode, TransactionMode) else None


def _in_multi(c: Client, refusal: bytes) -> TransactionMode | None:
    """The client's transaction if it is inside MULTI; else None, `refusal` answered."""
    mode = _mode(c)
    if mode is None or not mode.in_multi:
        c.reply(refusal)
        return None
    return mode


def _new_mode(c: Client) -> TransactionMode:
    lim = c.services.cfg.limits
    mode = TransactionMode(lim.max_queued, lim.max_queued_bytes, c.services.router.mask)
    c.set_mode(mode)
    return mode


def multi(c: Client, argv: list[bytes]) -> None:
    mode = _mode(c)
    if mode is None:
        if c.mode is not NORMAL:  # another mode let MULTI through (RESP3 subscribed): no mixing
            c.reply(not_in_mode("multi", c.mode.name))
            return
        mode = _new_mode(c)
    elif mode.in_multi:
        c.reply(MULTI_NESTED)
        return
    mode.in_multi = True
    c.services.stats.txn_multi += 1
    c.reply(OK)


def discard(c: Client, argv: list[bytes]) -> None:
    mode = _in_multi(c, DISCARD_WITHOUT_MULTI)
    if mode is None:
        return
    c.services.stats.txn_discarded += 1
    mode.finish(c)
    c.reply(OK)


def unwatch(c: Client, argv: list[bytes]) -> None:
    # Inside MULTI, UNWATCH is queued like any command (as in Redis); this is the outside case.
    mode = _mode(c)
    if mode is not None:
        mode.unwatch(c)
    c.reply(OK)


def watch(c: Client, argv: list[bytes]) -> None:
    mode = _mode(c)
    if mode is not None and mode.in_multi:
        c.reply(WATCH_IN_MULTI)
        return
    services = c.services
    router = services.router
    keys = argv[1:]
    slot = common_slot(keys, router.nslots)
    if slot is None or (mode is not None and mode.slot is not None and mode.slot != slot):
        c.reply(CROSSSLOT)
        return
    if c.defer(argv):  # everything the client sent before must execute before the WATCH
        return
    if mode is None:
        mode = _new_mode(c)
    mode.slot = slot
    waiter = _WatchDone(c, mode, c.expect())
    packed = pack_command(*argv)
    proto = c.state.proto
    dedicated = services.pool.dedicated

    def run(g: RoutedGroup) -> None:
        if c.closed:
            return
        if mode.lease is None and not mode.watch_lost:
            lease = dedicated.lease(g.master, proto, dedicated.watch)
            if lease is None:
                waiter.resolve(lease_limit(g.master, dedicated.in_use(g.master, dedicated.watch)))
                return
            mode.lease = lease
            mode.watch_gen = router.slot_gen[slot]
        lease = mode.lease
        if (lease is None or lease.broken or lease.addr != g.master
                or router.slot_gen[slot] != mode.watch_gen):
            mode.watch_lost = True  # the slot moved since the first WATCH: EXEC answers nil
            waiter.resolve(OK)
            return
        lease.send(packed, waiter)

    router.call(c, c.state.lane, slot, list(keys), waiter, run)
    c.barrier()  # later commands run after the WATCH did


class _WatchDone:
    """WATCH's reply slot: a WATCH that failed before any connection was leased leaves the
    client as it was (not watching)."""

    __slots__ = ("client", "mode", "slot")

    def __init__(self, client: Client, mode: TransactionMode, slot: ReplySlot) -> None:
        self.client = client
        self.mode = mode
        self.slot = slot

    def resolve(self, raw: bytes) -> None:
        mode = self.mode
        if (raw[:1] == b"-" and mode.lease is None and not mode.watch_lost
                and not mode.in_multi and self.client.mode is mode):
            mode.unwatch(self.client)
        self.slot.resolve(raw)


class _ExecDone:
    """EXEC's reply slot, plus what to do once it is known (return the WATCH connection)."""

    __slots__ = ("after", "slot")

    def __init__(self, slot: ReplySlot, after: Callable[[], None] | None) -> None:
        self.slot = slot
        self.after = after

    def resolve(self, raw: bytes) -> None:
        after, self.after = self.after, None
        if after is not None:
            after()
        self.slot.resolve(raw)


def _exec_merge(stats: ProxyStats) -> Callable[[list[bytes]], bytes]:
    def merge(parts: list[bytes]) -> bytes:
        first = parts[0]
        if first[:1] == b"-":  # MULTI itself failed (backend down): say why
            return first
        last = parts[-1]
        if last[:1] != b"-" and any(p[:1] == b"-" for p in parts[1:-1]):
            last = EXECABORT  # the backend refused a command at queue time
        if last[:10] == b"-EXECABORT":
            stats.txn_aborted += 1
        elif last in _NILS:
            stats.txn_watch_failed += 1
        return last
    return merge


def burst(conn: BackendConn, queue: list[bytes], waiter: _ExecDone, stats: ProxyStats) -> None:
    """MULTI, the queued commands, EXEC: one synchronous step on one connection."""
    n = len(queue)
    gather = Gather(waiter, n + 2, _exec_merge(stats))  # type: ignore[arg-type]
    conn.send(MULTI_CMD, gather.part(0))
    for i, packed in enumerate(queue, 1):
        conn.send(packed, gather.part(i))
    conn.send(EXEC_CMD, gather.part(n + 1))
    stats.txn_exec += 1


def exec_(c: Client, argv: list[bytes]) -> None:
    mode = _in_multi(c, EXEC_WITHOUT_MULTI)
    if mode is None:
        return
    services = c.services
    stats = services.stats
    if mode.dirty:
        stats.txn_aborted += 1
        mode.finish(c)
        c.reply(EXECABORT)
        return
    router = services.router
    lane = c.state.lane
    queue, keys, slot = mode.queue, mode.keys, mode.slot
    if mode.watching:
        if c.defer(argv):  # commands sent before EXEC on the shared lanes execute first
            return
        lease = mode.lease
        if (mode.watch_lost or lease is None or lease.broken or slot is None
                or lease.proto != c.state.proto or router.slot_gen[slot] != mode.watch_gen):
            stats.txn_watch_failed += 1
            mode.finish(c)
            c.reply(EXEC_NIL[c.state.proto])
            return
        mode.end_multi()
        mode.take_lease()
        c.set_mode(NORMAL)
        dedicated = services.pool.dedicated
        done = _ExecDone(c.expect(), lambda: dedicated.release(lease, UNWATCH))
        # The slot's route is the one the WATCH saw (same generation): owned by the leased
        # connection's group, or migrating to it (then the queued keys are pulled first).
        router.call(c, lane, slot, keys, done,
                    lambda g: _run(c, done, lambda: burst(lease, queue, done, stats)))
        c.barrier()  # later commands on the shared lanes run after the EXEC did
        return
    mode.finish(c)
    done = _ExecDone(c.expect(), None)
    if slot is None:  # no key at all: any group
        group = router.any_group()
        if group is None:
            done.resolve(CLUSTERDOWN)
        else:
            burst(group.lanes[lane], queue, done, stats)
        return
    stats.slot_ops[slot] += 1
    router.call(c, lane, slot, keys, done,
                lambda g: _run(c, done, lambda: burst(g.lanes[lane], queue, done, stats)))


def _run(c: Client, done: _ExecDone, send: Callable[[], None]) -> None:
    # A transaction held (locked slot) or pulled (migrating slot) runs later: not at all if
    # its client went away meanwhile, as Redis discards the transaction of a closed client.
    if c.closed:
        done.resolve(EXECABORT)
    else:
        send()


HANDLERS = {
    "multi": multi,
    "exec": exec_,
    "discard": discard,
    "watch": watch,
    "unwatch": unwatch,
}
