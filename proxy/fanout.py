"""Multi-key commands split by group and merged back (MGET MSET DEL UNLINK EXISTS TOUCH),
and keyless commands broadcast to every group (DBSIZE, SCRIPT LOAD, INFO).

Keys are grouped per *group*, not per slot: one sub-request per group, sent in parallel, so a
100-key MGET over 3 groups costs 3 backend round trips at most. When every key lands on one
group the original request is forwarded unchanged and the reply needs no merge.
Like twemproxy and Redis Cluster proxies, a split MSET/DEL is not atomic across groups.
"""

from __future__ import annotations

from binascii import crc_hqx
from collections.abc import Callable
from typing import TYPE_CHECKING

from slotcore.keyslot import hash_tag
from slotcore.resp import OK, encode_error, encode_int, pack_tuple, split_array

from .errors import CLUSTERDOWN, wrong_args
from .pending import Gather, Reply

if TYPE_CHECKING:
    from .commands import CommandSpec
    from .router import Group
    from .session import ClientSession


def _first_error(parts: list[bytes]) -> bytes | None:
    for p in parts:
        if p[:1] == b"-":
            return p
    return None


def _merge_sum(parts: list[bytes]) -> bytes:
    err = _first_error(parts)
    if err is not None:
        return err
    return encode_int(sum(int(p[1:-2]) for p in parts))


def _merge_ok(parts: list[bytes]) -> bytes:
    err = _first_error(parts)
    return err if err is not None else OK


def _merge_mget(positions: list[list[int]], nkeys: int) -> Callable[[list[bytes]], bytes]:
    def merge(parts: list[bytes]) -> bytes:
        err = _first_error(parts)
        if err is not None:
            return err
        items: list[bytes] = [b""] * nkeys
        for idxs, part in zip(positions, parts, strict=True):
            elems = split_array(part)
            if len(elems) != len(idxs):
                raise ValueError("sub-reply has the wrong number of elements")
            for i, e in zip(idxs, elems, strict=True):
                items[i] = e
        return b"*%d\r\n" % nkeys + b"".join(items)

    return merge


def split(session: ClientSession, spec: CommandSpec, argv: list[bytes], packed: bytes) -> None:
    name = spec.name
    n = len(argv)
    mset = name == "mset"
    if not spec.check_arity(n) or (mset and n % 2 == 0):
        session.reply(wrong_args(name))
        return
    router = session.router
    route = router.route
    mask = router.mask
    keys = argv[1::2] if mset else argv[1:]
    # Slots, then groups, computed with comprehensions (this runs for every key of every
    # MGET/MSET/DEL): the hash tag rule is applied only if some key has a "{".
    if 0x7B in b"".join(keys):
        slots = [crc_hqx(hash_tag(k), 0) & mask for k in keys]
    else:
        slots = [crc_hqx(k, 0) & mask for k in keys]
    slot_ops = router.slot_ops
    for slot in slots:
        slot_ops[slot] += 1
    groups = [route[slot] for slot in slots]
    cidx = session.cidx
    first = groups[0]
    if first is not None and groups.count(first) == len(groups):
        # Every key on one group: the request goes unchanged and its reply needs no merge.
        reply = Reply(session)
        session.pending.append(reply)
        first.conns[cidx].send(packed, reply)
        return
    # Destination → indices into `keys`. A destination is a Group, or the slot number of a
    # slot in transit (its keys are pulled from the source per slot by router.forward).
    by_dest: dict[Group | int, list[int]] = {}
    for j, g in enumerate(groups):
        dest: Group | int
        if g is None:
            dest = slots[j]
            if dest not in router.transit:
                session.reply(CLUSTERDOWN)
                return
        else:
            dest = g
        idxs = by_dest.get(dest)
        if idxs is None:
            by_dest[dest] = [j]
        else:
            idxs.append(j)
    reply = Reply(session)
    session.pending.append(reply)
    if len(by_dest) == 1:  # one slot in transit holds every key
        dest = next(iter(by_dest))
        router.forward(session, cidx, dest, keys, packed, reply)  # type: ignore[arg-type]
        return
    if name == "mget":
        merge = _merge_mget(list(by_dest.values()), len(keys))
    elif mset:
        merge = _merge_ok
    else:
        merge = _merge_sum
    gather = Gather(reply, len(by_dest), merge)
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
            router.forward(session, cidx, dest, [keys[j] for j in idxs], sub_packed,
                           gather.part(part))
        else:
            dest.conns[cidx].send(sub_packed, gather.part(part))


def broadcast(
    session: ClientSession,
    packed: bytes,
    merge: Callable[[list[bytes], list[Group]], bytes],
) -> None:
    """Send one request to every group's master; `merge(parts, groups)` builds the reply."""
    groups = list(session.router.groups.values())
    if not groups:
        session.reply(CLUSTERDOWN)
        return
    reply = Reply(session)
    session.pending.append(reply)
    gather = Gather(reply, len(groups), lambda parts: merge(parts, groups))
    # Broadcast replies are merged by the proxy, so they are read in RESP2 whatever the client
    # speaks: `cidx % n` is the client's RESP2 connection.
    cidx = session.cidx
    for j, g in enumerate(groups):
        g.conns[cidx % g.n].send(packed, gather.part(j))


def merge_dbsize(parts: list[bytes], groups: list[Group]) -> bytes:
    for p, g in zip(parts, groups, strict=True):
        if p[:1] == b"-":
            return encode_error(f"ERR group {g.gid}: {p[1:-2].decode(errors='replace')}")
    return encode_int(sum(int(p[1:-2]) for p in parts))


def merge_all_ok(parts: list[bytes], groups: list[Group]) -> bytes:
    for p, g in zip(parts, groups, strict=True):
        if p[:1] == b"-":
            return encode_error(f"ERR group {g.gid}: {p[1:-2].decode(errors='replace')}")
    return OK


def merge_same(parts: list[bytes], groups: list[Group]) -> bytes:
    """Every group must succeed; the first reply stands for all (SCRIPT LOAD's sha1)."""
    for p, g in zip(parts, groups, strict=True):
        if p[:1] == b"-":
            return encode_error(f"ERR group {g.gid}: {p[1:-2].decode(errors='replace')}")
    return parts[0]


def merge_and_arrays(parts: list[bytes], groups: list[Group]) -> bytes:
    """SCRIPT EXISTS: a script exists for the proxy only if every group has it."""
    for p, g in zip(parts, groups, strict=True):
        if p[:1] == b"-":
            return encode_error(f"ERR group {g.gid}: {p[1:-2].decode(errors='replace')}")
    arrays = [split_array(p) for p in parts]
    flags = [all(a[i] == b":1\r\n" for a in arrays) for i in range(len(arrays[0]))]
    return b"*%d\r\n" % len(flags) + b"".join(b":1\r\n" if f else b":0\r\n" for f in flags)

