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

from ..client.context import Client
from ..client.reply import Gather
from ..commands.table import CommandSpec
from ..errors import CLUSTERDOWN, wrong_args
from ..routing.groups import RoutedGroup
from .merge import merge_mget, merge_ok, merge_sum


def split(client: Client, spec: CommandSpec, argv: list[bytes], packed: bytes) -> None:
    """Serve a SPLIT command (arity already checked by dispatch)."""
    name = spec.name
    mset = name == "mset"
    if mset and len(argv) % 2 == 0:
        client.reply(wrong_args(name))
        return
    services = client.services
    router = services.router
    by_slot = router.by_slot
    mask = router.mask
    keys = argv[1::2] if mset else argv[1:]
    # Slots, then groups, computed with comprehensions (this runs for every key of every
    # MGET/MSET/DEL): the hash tag rule is applied only if some key has a "{".
    if 0x7B in b"".join(keys):
        slots = [crc_hqx(hash_tag(k), 0) & mask for k in keys]
    else:
        slots = [crc_hqx(k, 0) & mask for k in keys]
    slot_ops = services.stats.slot_ops
    for slot in slots:
        slot_ops[slot] += 1
    groups = [by_slot[slot] for slot in slots]
    first = groups[0]
    if first is not None and groups.count(first) == len(groups):
        # Every key on one group: the request goes unchanged and its reply needs no merge.
        client.send(first, packed)
        return
    # Destination → indices into `keys`. A destination is a group, or the slot number of a
    # slot in transit (its keys are pulled from the source per slot by router.forward).
    by_dest: dict[RoutedGroup | int, list[int]] = {}
    transit = router.transit.slots
    for j, g in enumerate(groups):
        dest: RoutedGroup | int
        if g is None:
            dest = slots[j]
            if dest not in transit:
                client.reply(CLUSTERDOWN)
                return
        else:
            dest = g
        idxs = by_dest.get(dest)
        if idxs is None:
            by_dest[dest] = [j]
        else:
            idxs.append(j)
    lane = client.state.lane
    slot_reply = client.expect()
    if len(by_dest) == 1:  # one slot in transit holds every key
        dest = next(iter(by_dest))
        router.forward(client, lane, dest, keys, packed, slot_reply)  # type: ignore[arg-type]
        return
    if name == "mget":
        merge = merge_mget(list(by_dest.values()), len(keys))
    elif mset:
        merge = merge_ok
    else:
        merge = merge_sum
    gather = Gather(slot_reply, len(by_dest), merge)
    head = argv[0]
    vals = argv[2::2] if mset else None
    for part, (dest, idxs) in enumerate(by_dest.items()):
        sub = [head]
        if vals is not None:
            for j in idxs:
                sub.append(keys[j])
                sub.append(vals[j])
        else:
            sub += [keys[j] for j in idxs]
        sub_packed = pack_tuple(tuple(sub))
        if isinstance(dest, int):
            router.forward(client, lane, dest, [keys[j] for j in idxs], sub_packed,
                           gather.part(part))
        else:
            dest.lanes[lane].send(sub_packed, gather.part(part))


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
