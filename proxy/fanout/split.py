"""Multi-key commands split by group (MGET MSET DEL UNLINK EXISTS TOUCH), and keyless commands
broadcast to every group (DBSIZE, SCRIPT LOAD, INFO); merges are in `fanout.merge`.

Keys are grouped per *group*, not per slot: one sub-request per group, sent in parallel, so a
100-key MGET over 3 groups costs 3 backend round trips at most. When every key lands on one
group the original request is forwarded unchanged and the reply needs no merge.
Like twemproxy and Redis Cluster proxies, a split MSET/DEL is not atomic across groups.
"""

from __future__ import annotations

from binascii import crc_hqx
from collections.abc import Callable

from slotcore.keyslot import hash_tag
from slotcore.resp import pack_tuple

from .. import _accel
from ..client.context import Client
from ..client.reply import Gather, merge_safely
from ..commands.table import MERGE_MGET, MERGE_OK, MERGE_SUM, SPLIT_MERGE, CommandSpec
from ..errors import CLUSTERDOWN, wrong_args
from ..routing.groups import RoutedGroup
from .merge import merge_mget, merge_ok, merge_sum


def merge_parts(kind: int, positions: list[list[int]] | None, nkeys: int,
                parts: list[bytes]) -> bytes:
    """The Python merge of a compiled Gather's parts (replies it does not merge itself)."""
    if kind == MERGE_MGET:
        assert positions is not None
        merge = merge_mget(positions, nkeys)
    else:
        merge = merge_ok if kind == MERGE_OK else merge_sum
    return merge_safely(merge, parts)


def plan_split(argv: list[bytes], step: int, by_slot: list[RoutedGroup | None], mask: int,
               slot_ops: list[int]) -> tuple[list[RoutedGroup | int], list[list[int]],
                                             list[bytes] | None]:
    """Group the keys `argv[1::step]` (step 2: MSET's key/value pairs) by destination.

    Returns `(dests, idxs, frames)`: the destinations in order of first appearance (the owning
    group, or the slot number of a slot without an owner: its keys are one destination per
    slot), the ascending key indices of each, and the packed sub-request of each (None when
    there is one destination: the original request goes unchanged). Counts every key in
    `slot_ops`. The compiled twin is `proxy._accel._speedups.split_plan`.
    """
    keys = argv[1::step]
    # Slots with comprehensions (this runs for every key of every MGET/MSET/DEL): the hash tag
    # rule is applied only if some key has a "{".
    if 0x7B in b"".join(keys):
        slots = [crc_hqx(hash_tag(k), 0) & mask for k in keys]
    else:
        slots = [crc_hqx(k, 0) & mask for k in keys]
    for slot in slots:
        slot_ops[slot] += 1
    by_dest: dict[RoutedGroup | int, list[int]] = {}
    for j, slot in enumerate(slots):
        g = by_slot[slot]
        dest: RoutedGroup | int = slot if g is None else g
        idxs = by_dest.get(dest)
        if idxs is None:
            by_dest[dest] = [j]
        else:
            idxs.append(j)
    dests = list(by_dest)
    parts = list(by_dest.values())
    if len(dests) <= 1:
        return dests, parts, None
    head = argv[0]
    frames = []
    for idxs in parts:
        sub = [head]
        if step == 2:
            for j in idxs:
                sub.append(argv[1 + 2 * j])
                sub.append(argv[2 + 2 * j])
        else:
            sub += [keys[j] for j in idxs]
        frames.append(pack_tuple(tuple(sub)))
    return dests, parts, frames


def split(client: Client, spec: CommandSpec, argv: list[bytes], packed: bytes) -> None:
    """Serve a SPLIT command (arity already checked by dispatch)."""
    name = spec.name
    mset = name == "mset"
    if mset and len(argv) % 2 == 0:
        client.reply(wrong_args(name))
        return
    services = client.services
    router = services.router
    sp = _accel.speedups
    plan = plan_split if sp is None else sp.split_plan
    dests, parts, frames = plan(argv, 2 if mset else 1, router.by_slot, router.mask,
                                services.stats.slot_ops)
    first = dests[0]
    if len(dests) == 1 and not isinstance(first, int):
        # Every key on one group: the request goes unchanged and its reply needs no merge.
        client.send(first, packed)
        return
    # A destination that is a slot number is a slot without an owner: in transit, its keys
    # are pulled from the source per slot by router.forward; else the cluster is down there.
    transit = router.transit.slots
    for dest in dests:
        if isinstance(dest, int) and dest not in transit:
            client.reply(CLUSTERDOWN)
            return
    keys = argv[1::2] if mset else argv[1:]
    lane = client.state.lane
    slot_reply = client.expect()
    if frames is None:  # one slot in transit holds every key
        router.forward(client, lane, first, keys, packed, slot_reply)  # type: ignore[arg-type]
        return
    gather: Gather
    if sp is not None:
        # The compiled twin merges well-formed parts itself, the rest through merge_parts.
        kind = SPLIT_MERGE.get(name, MERGE_SUM)
        gather = sp.Gather(slot_reply, len(dests), kind, parts if kind == MERGE_MGET else None,
                           len(keys), None)
    else:
        if name == "mget":
            merge = merge_mget(parts, len(keys))
        elif mset:
            merge = merge_ok
        else:
            merge = merge_sum
        gather = Gather(slot_reply, len(dests), merge)
    for part, dest in enumerate(dests):
        if isinstance(dest, int):
            router.forward(client, lane, dest, [keys[j] for j in parts[part]], frames[part],
                           gather.part(part))
        else:
            dest.lanes[lane].send(frames[part], gather.part(part))


def broadcast(client: Client, packed: bytes,
              merge: Callable[[list[bytes], list[int]], bytes]) -> None:
    """Send one request to every group's master; `merge(parts, gids)` builds the reply."""
    services = client.services
    groups = list(services.router.groups.values())
    if not groups:
        client.reply(CLUSTERDOWN)
        return
    gids = [g.gid for g in groups]
    gather = Gather(client.expect(), len(groups), lambda parts: merge(parts, gids))
    # Broadcast replies are merged by the proxy, so they are read in RESP2 whatever the client
    # speaks: the plain lane beside the client's own.
    lane = services.pool.plain_lane(client.state.lane)
    for j, g in enumerate(groups):
        g.lanes[lane].send(packed, gather.part(j))
