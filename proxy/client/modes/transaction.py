"""A connection inside MULTI, or holding WATCHed keys: per-connection transaction state.

Entered by WATCH or MULTI (`handlers.transaction`), left by EXEC, DISCARD, UNWATCH (outside
MULTI), RESET or disconnect; the mode then goes back to the plain one. The fast path is off.

Inside MULTI the proxy queues each command itself and answers `+QUEUED`, checking what Redis
checks while queuing (unknown command, arity) plus the proxy's own rules: every key of the
transaction and its WATCHed keys in ONE slot (else `-CROSSSLOT`, as Redis Cluster), no
command whose state lives in the proxy (SELECT, CLIENT, HELLO ...), the queue bound. A refused
command flags the transaction and EXEC answers `-EXECABORT`. MULTI, EXEC, DISCARD, WATCH, QUIT
and RESET are not queued (as in Redis's processCommand) and run as themselves.

Outside MULTI (WATCH only), every other command runs as usual on the shared lanes; the WATCH and
the EXEC run on `lease`, a backend connection of the client's own (see handlers.transaction).
"""

from __future__ import annotations

from binascii import crc_hqx

from slotcore.keyslot import hash_tag

from ...backend.dedicated import DedicatedConn
from ...commands.hidden import CHECKED as HIDDEN_CHECKED
from ...commands.hidden import hidden_key_error
from ...commands.policy import Route
from ...commands.table import CommandSpec
from ...errors import (
    CROSSSLOT,
    QUEUED,
    not_in_multi,
    not_supported,
    queue_limit,
    unknown_subcommand,
    wrong_args,
)
from ..context import Client, Mode
from .normal import NORMAL

# Not queued inside MULTI: they act on the transaction itself (Redis's processCommand list).
NOT_QUEUED = frozenset({"exec", "discard", "multi", "watch", "quit", "reset"})
# Answered by the proxy outside MULTI, but stateless: inside MULTI they are queued and run on
# the transaction's group like any command, so their replies sit inside EXEC's array
# (UNWATCH inside MULTI is queued too, as in Redis: harmless on the backend).
KEYLESS_QUEUED = frozenset({"ping", "echo", "time", "unwatch"})

LOCAL = Route.LOCAL
UNSUPPORTED = Route.UNSUPPORTED


class TransactionMode(Mode):
    name = "transaction"
    fast_path = False

    def __init__(self, max_queued: int, max_queued_bytes: int, mask: int) -> None:
        self.max_queued = max_queued
        self.max_queued_bytes = max_queued_bytes
        self.mask = mask
        self.in_multi = False
        self.queue: list[bytes] = []  # packed commands, in order
        self.queued_bytes = 0
        self.keys: list[bytes] = []  # every key of the queued commands (the migration pull)
        self.slot: int | None = None  # the one slot of the transaction's keys and watches
        self.dirty = False  # a command was refused while queuing: EXEC answers EXECABORT
        self.lease: DedicatedConn | None = None  # the WATCH connection
        self.watch_gen = 0  # Router.slot_gen[slot] when the first WATCH ran
        self.watch_lost = False  # the watch cannot be trusted any more: EXEC answers nil

    @property
    def multi(self) -> int:  # type: ignore[override]
        return len(self.queue) if self.in_multi else -1

    @property
    def watching(self) -> bool:
        return self.lease is not None or self.watch_lost

    # ------------------------------------------------------------------ queuing
    def intercept(self, client: Client, spec: CommandSpec, argv: list[bytes],
                  packed: bytes) -> bool:
        if not self.in_multi:
            return False
        name = spec.name
        base = name.partition("|")[0]
        if base in NOT_QUEUED:
            return False
        route = spec.route
        n = len(argv)
        if spec.subcommands is not None and route is not LOCAL:
            return self._refuse(client, wrong_args(name) if n < 2
                                else unknown_subcommand(name, argv[1]))
        if not spec.check_arity(n):
            return self._refuse(client, wrong_args(name))
        if route is LOCAL:
            if base not in KEYLESS_QUEUED:
                return self._refuse(client, not_in_multi(name))
            keys: list[bytes] = []
        elif route is UNSUPPORTED and not ("blocking" in spec.flags and spec.has_keys):
            # Blocking commands with keys are fine here: inside MULTI they never block.
            return self._refuse(client, not_supported(name, spec.reason))
        else:
            keys = [argv[1]] if spec.key1 else spec.keys(argv)
        if keys:
            mask = self.mask
            slot = self.slot
            for k in keys:
                s = crc_hqx(hash_tag(k) if 0x7B in k else k, 0) & mask
                if slot is None:
                    slot = s
                elif s != slot:
                    return self._refuse(client, CROSSSLOT)
            self.slot = slot
            self.keys.extend(keys)
            if name in HIDDEN_CHECKED:
                # SORT BY/GET patterns outside the slot: refused at queue time (EXECABORT),
                # where Redis Cluster fails the command inside EXEC's reply.
                err = hidden_key_error(name, argv, mask)
                if err is not None:
                    return self._refuse(client, err)
        if len(self.queue) >= self.max_queued or (
                self.queued_bytes + len(packed) > self.max_queued_bytes):
            # Past the bound the queue is dropped at once (memory), and EXEC aborts.
            self.queue.clear()
            self.keys.clear()
            self.queued_bytes = 0
            return self._refuse(client, queue_limit(self.max_queued, self.max_queued_bytes))
        self.queue.append(packed)
        self.queued_bytes += len(packed)
        client.services.stats.txn_queued += 1
        client.reply(QUEUED)
        return True

    def _refuse(self, client: Client, raw: bytes) -> bool:
        client.reply(raw)
        self.dirty = True
        return True

    def rejected(self, client: Client) -> None:
        if self.in_multi:
            self.dirty = True

    # ------------------------------------------------------------------ leaving
    def end_multi(self) -> None:
        """Forget the queued commands (EXEC, DISCARD)."""
        self.in_multi = False
        self.queue = []
        self.keys = []
        self.queued_bytes = 0
        self.dirty = False
        if not self.watching:
            self.slot = None

    def take_lease(self) -> DedicatedConn | None:
        """Detach the WATCH connection (its caller returns it to the pool)."""
        lease, self.lease = self.lease, None
        self.watch_lost = False
        if not self.in_multi:
            self.slot = None
        return lease

    def give_back_lease(self, client: Client) -> None:
        """Return the WATCH connection (if any) to the pool, cleaned with UNWATCH."""
        lease = self.take_lease()
        if lease is not None:
            client.services.pool.dedicated.release(lease, UNWATCH)

    def unwatch(self, client: Client) -> None:
        self.give_back_lease(client)
        if not self.in_multi:
            client.set_mode(NORMAL)

    def finish(self, client: Client) -> None:
        """EXEC/DISCARD done: back to the plain mode, the WATCH connection returned."""
        self.end_multi()
        self.unwatch(client)

    def leave(self, client: Client) -> None:
        if self.in_multi:
            client.services.stats.txn_discarded += 1
        self.end_multi()
        self.give_back_lease(client)


UNWATCH = b"*1\r\n$7\r\nUNWATCH\r\n"
