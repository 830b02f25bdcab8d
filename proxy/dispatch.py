"""The one switch on a command's route, after the checks every command goes through.

Order (as Redis's processCommand): unknown command; the mode's say (NOAUTH before AUTH, and
what later modes keep for themselves); unknown subcommand of a container; refused commands;
arity; then the route. The connection's inlined fast path is the only other way a command is
served, and it serves only what this switch would send to `keyed` unchanged.
"""

from __future__ import annotations

from slotcore.keyslot import key_slot

from .client.context import Client
from .commands.hidden import CHECKED as HIDDEN_CHECKED
from .commands.hidden import hidden_key_error
from .commands.policy import Route, is_blocking_call
from .commands.table import CommandSpec
from .errors import (
    CLUSTERDOWN,
    CROSSSLOT,
    not_supported,
    unknown_command,
    unknown_subcommand,
    wrong_args,
)
from .fanout.split import split
from .handlers import HANDLERS
from .routing.groups import RoutedGroup
from .routing.keys import common_slot
from .routing.replicas import REPLICA, no_replica_error

KEYED = Route.KEYED
SPLIT = Route.SPLIT
LOCAL = Route.LOCAL
BLOCKING = Route.BLOCKING


def dispatch(client: Client, argv: list[bytes], packed: bytes) -> None:
    spec = client.services.table.lookup(argv)
    if spec is None:
        client.reply(unknown_command(argv))
        client.mode.rejected(client)
        return
    client.state.cmd = spec.name  # CLIENT LIST's cmd=
    if client.mode.intercept(client, spec, argv, packed):
        return
    execute(client, spec, argv, packed)


def execute(client: Client, spec: CommandSpec, argv: list[bytes], packed: bytes) -> None:
    route = spec.route
    if spec.subcommands is not None and route is not LOCAL:
        # The table resolved the container itself: its subcommand is missing or unknown
        # (local containers such as CLIENT parse their own subcommands).
        client.reply(wrong_args(spec.name) if len(argv) < 2
                     else unknown_subcommand(spec.name, argv[1]))
        client.mode.rejected(client)
        return
    if (route is not KEYED and route is not SPLIT and route is not LOCAL
            and route is not BLOCKING):
        client.reply(not_supported(spec.name, spec.reason))
        client.mode.rejected(client)
        return
    n = len(argv)
    arity = spec.arity
    if (n != arity) if arity > 0 else (n < -arity):
        client.reply(wrong_args(spec.name))
        client.mode.rejected(client)
        return
    if route is KEYED:
        keyed(client, spec, argv, packed)
    elif route is SPLIT:
        split(client, spec, argv, packed)
    elif route is BLOCKING:
        blocking(client, spec, argv, packed)
    else:
        handler = HANDLERS.get(spec.name.partition("|")[0])
        if handler is None:
            client.reply(not_supported(spec.name))
        else:
            handler(client, argv)


def keyed(client: Client, spec: CommandSpec, argv: list[bytes], packed: bytes) -> None:
    """A command whose keys must share one slot: to the slot's owner, whatever its state."""
    services = client.services
    router = services.router
    if spec.key1:
        keys = [argv[1]]
        slot = key_slot(argv[1], router.nslots)
    else:
        if is_blocking_call(spec, argv):  # XREAD/XREADGROUP ... BLOCK
            blocking(client, spec, argv, packed)
            return
        keys = spec.keys(argv)
        found = slot_of_keys(client, keys, packed)
        if found is None:
            return
        slot = found
    if spec.name in HIDDEN_CHECKED:
        # Keys formed at run time (SORT BY/GET patterns ...) must be in the same slot.
        err = hidden_key_error(spec.name, argv, router.mask)
        if err is not None:
            client.reply(err)
            return
    services.stats.slot_ops[slot] += 1
    if client.state.read_from and "readonly" in spec.flags and client.mode.fast_path:
        # Reads from replicas: a read-only command of a client whose policy allows it, in the
        # plain mode (never under MULTI/WATCH), for a slot with an owner (a slot in transit
        # takes the master path below, as every request does).
        group = router.by_slot[slot]
        if group is not None and replica_read(client, group, packed):
            return
    # Owned, unassigned or in transit (migrating/locked): the router decides.
    router.forward(client, client.state.lane, slot, keys, packed, client.expect())


def replica_read(client: Client, group: RoutedGroup, packed: bytes) -> bool:
    """Serve a read from a replica of `group` in sync (True), or answer MASTERDOWN under
    read_from replica when none is (True), or leave it to the master (False)."""
    reads = client.services.router.reads
    conn = reads.pick(group.replicas, client.state.lane)
    counters = reads.counters(group.gid)
    if conn is not None:
        counters.replica += 1
        conn.send(packed, client.expect())
        return True
    if client.state.read_from == REPLICA:
        counters.refused += 1
        client.reply(no_replica_error(group.gid))
        return True
    counters.fallback += 1
    return False


def slot_of_keys(client: Client, keys: list[bytes], packed: bytes) -> int | None:
    """The one slot of a command's `keys`, or None once the command is served here: with no
    key (EVAL/FCALL with numkeys 0, a malformed BLMPOP ...) any group runs it and the backend
    answers; keys in different slots get -CROSSSLOT."""
    router = client.services.router
    if not keys:
        group = router.any_group()
        if group is None:
            client.reply(CLUSTERDOWN)
        else:
            client.send(group, packed)
        return None
    slot = common_slot(keys, router.nslots)
    if slot is None:
        client.reply(CROSSSLOT)
    return slot


def blocking(client: Client, spec: CommandSpec, argv: list[bytes], packed: bytes) -> None:
    """A command that may block: on a dedicated connection of its group (proxy.blocking)."""
    engine = client.services.blocking
    if engine is None:
        client.reply(not_supported(spec.name, "blocking commands"))
    else:
        engine.start(client, spec, argv, packed)
