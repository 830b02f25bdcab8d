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

from .errors import CLUSTERDOWN, wrong_args
from .pending import Gather, Reply
from .resp import OK, encode_error, encode_int, pack_command, split_array
from .slots import hash_tag

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
    step = 2 if name == "mset" else 1
    if not spec.check_arity(n) or (step == 2 and n % 2 == 0):
        session.reply(wrong_args(name))
        return
    router = session.router
    route = router.route
    mask = router.mask
    slot_ops = router.slot_ops
    # Destination → argv indices of its keys, in order of first appearance. A destination is
    # a Group, or the slot number for a slot in transit (its keys are moved per slot).
    by_group: dict[Group | int, list[int]] = {}
    for i in range(1, n, step):
        key = argv[i]
        if 0x7B in key:  # "{" (int: memchr, no buffer protocol)
            key = hash_tag(key)
        slot = crc_hqx(key, 0) & mask
        slot_ops[slot] += 1
        g = route[slot]
        dest: Group | int = g if g is not None else slot
        if g is None and slot not in router.transit:
            session.reply(CLUSTERDOWN)
            return
        idxs = by_group.get(dest)
        if idxs is None:
            by_group[dest] = [i]
        else:
            idxs.append(i)
    cidx = session.cidx
    reply = Reply(session)
    session.pending.append(reply)
    if len(by_group) == 1:
        dest, idxs = next(iter(by_group.items()))
        if isinstance(dest, int):
            router.forward(session, cidx, dest, [argv[i] for i in idxs], packed, reply)
        else:
            dest.conns[cidx].send(packed, reply)
        return
    if name == "mget":
        positions = [[i - 1 for i in idxs] for idxs in by_group.values()]
        merge = _merge_mget(positions, n - 1)
    elif name == "mset":
        merge = _merge_ok
    else:
        merge = _merge_sum
    gather = Gather(reply, len(by_group), merge)
    head = argv[0]
    for j, (dest, idxs) in enumerate(by_group.items()):
        if step == 2:
            sub = [head]
            for i in idxs:
                sub.append(argv[i])
                sub.append(argv[i + 1])
        else:
            sub = [head, *(argv[i] for i in idxs)]
        if isinstance(dest, int):
            router.forward(session, cidx, dest, [argv[i] for i in idxs], pack_command(*sub),
                           gather.part(j))
        else:
            dest.conns[cidx].send(pack_command(*sub), gather.part(j))


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


def pack(*args: bytes | str | int) -> bytes:
    return pack_command(*args)
