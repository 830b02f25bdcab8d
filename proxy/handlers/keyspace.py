"""Keyspace-wide commands across every group: SCAN KEYS RANDOMKEY FLUSHDB FLUSHALL LASTSAVE,
CONFIG (GET/SET/RESETSTAT) and FUNCTION.

SCAN's cursor and its guarantee while slots migrate are in `fanout.scan`. Replies the proxy
reads itself travel on the RESP2 lane beside the client's own and are re-encoded for a RESP3
client where their shape differs (CONFIG GET's map, RANDOMKEY's null).
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import random
from collections.abc import Callable

from slotcore.addr import split_addr
from slotcore.resp import (
    OK,
    ReplyReader,
    encode_bulk,
    encode_error,
    encode_int,
    pack_command,
    parse_reply,
    split_array,
)

from ..client.context import Client
from ..client.reply import Gather
from ..config import HARD_DENIED_CONFIG
from ..errors import (
    CLUSTERDOWN,
    INVALID_CURSOR,
    config_set_denied,
    config_set_not_allowed,
    group_error,
    groups_disagree,
    merge_failed,
    not_supported,
    refused_in_transit,
    reply_too_big,
    servers_failed,
    wrong_args,
)
from ..fanout import scan as sc
from ..fanout.merge import first_error, merge_all_ok, merge_same
from ..routing.groups import RoutedGroup
from .observe import is_proxy_param, proxy_config_get, proxy_config_set

log = logging.getLogger("slotproxy.keyspace")

_NULL = {2: b"$-1\r\n", 3: b"_\r\n"}


class _Call:
    """Waiter for one backend reply, handed to a callback."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[bytes], None]) -> None:
        self.fn = fn

    def resolve(self, raw: bytes) -> None:
        self.fn(raw)


def _groups(c: Client) -> list[RoutedGroup]:
    return [g for _, g in sorted(c.services.router.groups.items())]


def _each_group(c: Client, packed: list[bytes],
                merge: Callable[[list[list[bytes]], list[int]], bytes],
                own_lane: bool = False) -> None:
    """Send the requests `packed` to every group's master (in gid order) and merge
    `merge(parts_per_group, gids)`; the plain RESP2 lane unless `own_lane`."""
    groups = _groups(c)
    if not groups:
        c.reply(CLUSTERDOWN)
        return
    gids = [g.gid for g in groups]
    k = len(packed)
    lane = c.state.lane if own_lane else c.services.pool.plain_lane(c.state.lane)

    def done(parts: list[bytes]) -> bytes:
        return merge([parts[i * k:(i + 1) * k] for i in range(len(groups))], gids)

    gather = Gather(c.expect(), len(groups) * k, done)
    for i, g in enumerate(groups):
        conn = g.lanes[lane]
        for j, p in enumerate(packed):
            conn.send(p, gather.part(i * k + j))


def _broadcast(c: Client, packed: bytes, merge: Callable[[list[bytes], list[int]], bytes],
               own_lane: bool = False) -> None:
    _each_group(c, [packed], lambda parts, gids: merge([p[0] for p in parts], gids), own_lane)


# ---------------------------------------------------------------------- SCAN
def scan(c: Client, argv: list[bytes]) -> None:
    services = c.services
    router = services.router
    moves: sc.MoveLog = services.moves
    gids = sorted(router.groups)
    if not gids:
        c.reply(CLUSTERDOWN)
        return
    if gids[-1] > sc.MAX_GID:
        c.reply(encode_error(f"ERR SCAN needs group ids up to {sc.MAX_GID}, not {gids[-1]}"))
        return
    try:
        cur = sc.decode_cursor(argv[1])
    except sc.InvalidCursor:
        c.reply(INVALID_CURSOR)
        return
    epoch = router.epoch
    if cur is None:
        cur = _restart(moves, gids, epoch)
    else:
        pairs = moves.since(cur.epoch, epoch)
        if pairs is None or sc.dangerous(pairs, cur.gid, cur.backend != 0, cur.order):
            services.stats.scan_restarts += 1
            cur = _restart(moves, gids, epoch)
        elif cur.gid not in router.groups:  # the group left the map: on to the next one
            nxt = sc.next_gid(gids, cur.gid, cur.order)
            if nxt is None:
                c.reply(b"*2\r\n$1\r\n0\r\n*0\r\n")
                return
            cur = sc.Cursor(0, nxt, cur.order, epoch)
    _scan_step(c, cur, argv[2:], epoch)


def _restart(moves: sc.MoveLog, gids: list[int], epoch: int) -> sc.Cursor:
    order = sc.choose_order(moves.current, gids)
    return sc.Cursor(0, order.groups(gids)[0], order, epoch)


def _scan_step(c: Client, cur: sc.Cursor, opts: list[bytes], sent_epoch: int) -> None:
    services = c.services
    router = services.router
    group = router.groups[cur.gid]
    slot = c.expect()
    packed = pack_command(b"SCAN", str(cur.backend).encode(), *opts)

    def done(raw: bytes) -> None:
        if raw[:1] == b"-":
            slot.resolve(raw)
            return
        try:
            # *2\r\n$<n>\r\n<cursor>\r\n<keys array>: only the head is parsed, the keys
            # array is passed on as it came.
            if raw[:5] != b"*2\r\n$":
                raise ValueError(raw[:20])
            nl = raw.index(b"\r\n", 5)
            end = nl + 2 + int(raw[5:nl])
            backend = int(raw[nl + 2:end])
            keys = raw[end + 2:]
            if raw[end:end + 2] != b"\r\n" or keys[:1] != b"*":
                raise ValueError(raw[:40])
        except Exception as e:  # a malformed reply must not kill the loop
            slot.resolve(encode_error(f"ERR group {cur.gid}: bad SCAN reply ({e})"))
            return
        if backend > sc.MAX_BACKEND:
            slot.resolve(encode_error(f"ERR group {cur.gid}: SCAN cursor {backend} too big"))
            return
        now = router.epoch
        gids = sorted(router.groups)
        if not gids or gids[-1] > sc.MAX_GID:  # the map changed under the call
            slot.resolve(CLUSTERDOWN if not gids else encode_error(
                f"ERR SCAN needs group ids up to {sc.MAX_GID}, not {gids[-1]}"))
            return
        pairs = services.moves.since(sent_epoch & 0xFF, now)
        nxt: sc.Cursor | None
        if pairs is None or sc.dangerous(pairs, cur.gid, True, cur.order):
            services.stats.scan_restarts += 1
            nxt = _restart(services.moves, gids, now)
        elif backend != 0:
            nxt = sc.Cursor(backend, cur.gid, cur.order, now)
        else:
            g = sc.next_gid(gids, cur.gid, cur.order)
            nxt = None if g is None else sc.Cursor(0, g, cur.order, now)
        text = b"0" if nxt is None else str(sc.encode_cursor(nxt)).encode()
        slot.resolve(b"*2\r\n" + encode_bulk(text) + keys)

    group.lanes[services.pool.plain_lane(c.state.lane)].send(packed, _Call(done))


# ---------------------------------------------------------------------- KEYS RANDOMKEY ...
def keys(c: Client, argv: list[bytes]) -> None:
    limit = c.output_limit

    def merge(parts: list[bytes], gids: list[int]) -> bytes:
        err = first_error(parts, gids)
        if err is not None:
            return err
        size = sum(len(p) for p in parts)
        if size > limit:
            return reply_too_big("KEYS", size, limit)
        items: list[bytes] = []
        for p in parts:
            items += split_array(p)
        return b"*%d\r\n" % len(items) + b"".join(items)

    _broadcast(c, pack_command(*argv), merge)


def randomkey(c: Client, argv: list[bytes]) -> None:
    """DBSIZE and RANDOMKEY on every group in one round; a group is picked with probability
    proportional to its DBSIZE, among those that returned a key."""
    proto = c.state.proto
    reqs = [pack_command(b"DBSIZE"), pack_command(b"RANDOMKEY")]

    def merge(parts: list[list[bytes]], gids: list[int]) -> bytes:
        flat = [p for pair in parts for p in pair]
        err = first_error(flat, [g for g in gids for _ in reqs])
        if err is not None:
            return err
        choices = [(int(size[1:-2]), key) for size, key in parts if key[:3] != b"$-1"]
        if not choices:
            return _NULL.get(proto, _NULL[2])
        weights = [max(n, 1) for n, _ in choices]
        return random.choices([k for _, k in choices], weights)[0]

    _each_group(c, reqs, merge)


def flush(c: Client, argv: list[bytes]) -> None:
    name = argv[0].decode(errors="replace").upper()
    if len(argv) > 2 or (len(argv) == 2 and argv[1].lower() not in (b"async", b"sync")):
        c.reply(encode_error("ERR syntax error"))
        return
    transit = c.services.router.transit.slots
    if transit:
        c.reply(refused_in_transit(name, len(transit)))
        return
    _broadcast(c, pack_command(*argv), merge_all_ok)


def lastsave(c: Client, argv: list[bytes]) -> None:
    """The oldest of the groups' LASTSAVE: every group has saved at least once since then, so
    "has my data reached disk everywhere?" is never answered too optimistically."""
    def merge(parts: list[bytes], gids: list[int]) -> bytes:
        return first_error(parts, gids) or encode_int(min(int(p[1:-2]) for p in parts))

    _broadcast(c, pack_command(b"LASTSAVE"), merge)


# ---------------------------------------------------------------------- CONFIG
# Values CONFIG GET never shows (secrets, and paths on the backend hosts).
_REDACTED = (
    "requirepass", "masterauth", "masteruser", "aclfile", "dir", "dbfilename", "logfile",
    "pidfile", "unixsocket", "appendfilename", "appenddirname", "cluster-config-file",
    "tls-*", "sentinel-*pass*", "*password*",
)
REDACTED = b"(redacted by the proxy)"


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def config(c: Client, argv: list[bytes]) -> None:
    sub = argv[1].lower() if len(argv) > 1 else b""
    if sub == b"get":
        if len(argv) < 3:
            c.reply(wrong_args("config|get"))
        elif all(is_proxy_param(p) for p in argv[2:]):  # the proxy's own (handlers/server)
            proxy_config_get(c, argv[2:])
        else:
            _config_get(c, argv)
    elif sub == b"set":
        if len(argv) < 4 or len(argv) % 2:
            c.reply(wrong_args("config|set"))
        elif all(is_proxy_param(p) for p in argv[2::2]):
            proxy_config_set(c, argv[2:])
        else:
            _config_set(c, argv)
    elif sub == b"resetstat" and len(argv) == 2:
        _reset_proxy_stats(c)
        _broadcast(c, pack_command(b"CONFIG", b"RESETSTAT"), merge_all_ok)
    elif sub == b"rewrite":
        c.reply(not_supported("config|rewrite", "each server's config file is its own"))
    elif sub == b"help":
        group = c.services.router.any_group()
        if group is None:
            c.reply(CLUSTERDOWN)
        else:
            c.send(group, pack_command(*argv))
    else:
        c.reply(not_supported("config|" + sub.decode(errors="replace")))


def _config_get(c: Client, argv: list[bytes]) -> None:
    """From one master: the proxy keeps every server's parameters uniform (CONFIG SET goes
    to all of them)."""
    group = c.services.router.any_group()
    if group is None:
        c.reply(CLUSTERDOWN)
        return
    proto = c.state.proto
    slot = c.expect()

    def done(raw: bytes) -> None:
        if raw[:1] == b"-":
            slot.resolve(group_error(group.gid, raw))
            return
        try:
            items = split_array(raw)
        except Exception as e:  # a malformed reply must not kill the loop
            slot.resolve(merge_failed(e))
            return
        out: list[bytes] = []
        for i in range(0, len(items) - 1, 2):
            name = parse_reply(items[i])
            key = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
            out.append(items[i])
            out.append(encode_bulk(REDACTED) if _matches(key.lower(), _REDACTED)
                       else items[i + 1])
        head = b"%%%d\r\n" % (len(out) // 2) if proto == 3 else b"*%d\r\n" % len(out)
        slot.resolve(head + b"".join(out))

    group.lanes[c.services.pool.plain_lane(c.state.lane)].send(pack_command(*argv), _Call(done))


def _config_set(c: Client, argv: list[bytes]) -> None:
    allowed = c.services.cfg.config.set_allowed
    for i in range(2, len(argv), 2):
        param = argv[i].decode(errors="replace").lower()
        if _matches(param, HARD_DENIED_CONFIG):
            c.reply(config_set_denied(param))
            return
        if not _matches(param, allowed):
            c.reply(config_set_not_allowed(param))
            return
    servers: list[tuple[int, str]] = []
    for g in _groups(c):
        servers.append((g.gid, g.master))
        servers += [(g.gid, r) for r in g.spec.replicas]
    if not servers:
        c.reply(CLUSTERDOWN)
        return
    slot = c.expect()
    packed = pack_command(*argv)

    async def run() -> None:
        results = await asyncio.gather(*(_one_shot(c, addr, packed) for _, addr in servers))
        failures = [f"group {gid} {addr}: {r[1:-2].decode(errors='replace')}"
                    for (gid, addr), r in zip(servers, results, strict=True) if r[:1] != b"+"]
        if len(failures) == len(servers) and all(r == results[0] for r in results):
            slot.resolve(results[0])  # refused alike everywhere (a bad value): Redis's text
        elif failures:
            slot.resolve(servers_failed("CONFIG SET", failures, len(servers)))
        else:
            slot.resolve(OK)

    task = c.services.loop.create_task(run())
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)


_TASKS: set[asyncio.Task[None]] = set()


async def _one_shot(c: Client, addr: str, packed: bytes, timeout: float = 5.0) -> bytes:
    """One request on a connection of its own (replicas have no lanes), AUTH as the lanes do."""
    bcfg = c.services.cfg.backend
    writer = None
    try:
        host, port = split_addr(addr)
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port),
                                                bcfg.connect_timeout or timeout)
        reqs = []
        if bcfg.password:
            reqs.append(pack_command(b"AUTH", bcfg.username, bcfg.password) if bcfg.username
                        else pack_command(b"AUTH", bcfg.password))
        reqs.append(packed)
        writer.write(b"".join(reqs))
        rr = ReplyReader()
        got: list[bytes] = []
        while len(got) < len(reqs):
            data = await asyncio.wait_for(reader.read(65536), timeout)
            if not data:
                return b"-ERR connection closed\r\n"
            got += rr.feed(data)
        for r in got[:-1]:
            if r[:1] == b"-":
                return r
        return got[-1]
    except (OSError, TimeoutError) as e:
        return encode_error(f"ERR unreachable ({e or type(e).__name__})")
    finally:
        if writer is not None:
            writer.close()


def _reset_proxy_stats(c: Client) -> None:
    """The proxy's cumulative counters (not the gauges, nor slot_ops, which drive load-aware
    rebalancing)."""
    s = c.services.stats
    for name in ("commands", "connections_received", "rejected_connections", "pubsub_connects",
                 "pubsub_refused", "pubsub_messages", "pubsub_bytes", "pubsub_dropped",
                 "txn_multi", "txn_exec", "txn_aborted", "txn_watch_failed", "txn_discarded",
                 "txn_queued", "lease_refused", "scan_restarts"):
        if hasattr(s, name):
            setattr(s, name, 0)
    for b in s.backends.values():
        b.requests = b.errors = 0
    s.meter.reset()  # commandstats, latency histograms (the slow log stays, as in Redis)
    s.bytes_in = s.bytes_out = 0


# ---------------------------------------------------------------------- FUNCTION / SCRIPT KILL
def merge_kill(parts: list[bytes], gids: list[int]) -> bytes:
    """FUNCTION/SCRIPT KILL: OK if some group killed one; NOTBUSY (Redis's) if none was busy;
    any other error, tagged."""
    if any(p[:1] == b"+" for p in parts):
        return OK
    others = [i for i, p in enumerate(parts) if not p.startswith(b"-NOTBUSY")]
    if others:
        return group_error(gids[others[0]], parts[others[0]])
    return parts[0]


def _canon(v: object) -> object:
    """A reply with the order of every array ignored: servers list a library's functions in
    their own hash order."""
    if isinstance(v, dict):
        return _canon(list(v.items()))
    if isinstance(v, list | tuple):
        return tuple(sorted((_canon(x) for x in v), key=repr))
    return v


def merge_agree(what: str) -> Callable[[list[bytes], list[int]], bytes]:
    """FUNCTION LIST: the groups are kept uniform, so the answer is the first group's if
    every group lists the same libraries (in any order); otherwise an error naming the groups
    that differ from the first."""
    def merge(parts: list[bytes], gids: list[int]) -> bytes:
        err = first_error(parts, gids)
        if err is not None:
            return err
        first = _canon(parse_reply(parts[0]))
        differ = [gids[i] for i, p in enumerate(parts[1:], 1)
                  if p != parts[0] and _canon(parse_reply(p)) != first]
        return groups_disagree(what, differ) if differ else parts[0]
    return merge


def function(c: Client, argv: list[bytes]) -> None:
    sub = argv[1].lower() if len(argv) > 1 else b""
    packed = pack_command(*argv)
    if sub == b"load" and len(argv) >= 3:
        _broadcast(c, packed, merge_same)  # the library name, from every group
    elif sub in (b"flush", b"delete", b"restore") and len(argv) >= 2:
        _broadcast(c, packed, merge_all_ok)
    elif sub == b"kill" and len(argv) == 2:
        _broadcast(c, packed, merge_kill)
    elif sub == b"list":
        # On the client's own lane: compared, returned as is (RESP3 maps included).
        _broadcast(c, packed, merge_agree("FUNCTION LIST"), own_lane=True)
    elif sub in (b"stats", b"dump") and len(argv) == 2:
        # DUMP: the first group's payload (its bytes follow each server's hash order, so they
        # are not compared; LOAD/DELETE/RESTORE/FLUSH keep the groups' libraries the same).
        # STATS: the first group's figures (libraries/functions are uniform); a script
        # running on another group shows in that group's own FUNCTION STATS only.
        _broadcast(c, packed, lambda parts, gids: first_error(parts, gids) or parts[0],
                   own_lane=True)
    elif sub == b"help":
        group = c.services.router.any_group()
        if group is None:
            c.reply(CLUSTERDOWN)
        else:
            c.send(group, packed)
    elif sub in (b"load", b"flush", b"delete", b"restore", b"kill", b"stats", b"dump"):
        c.reply(wrong_args("function|" + sub.decode()))
    else:
        c.reply(not_supported("function|" + sub.decode(errors="replace")))


HANDLERS = {
    "scan": scan,
    "keys": keys,
    "randomkey": randomkey,
    "flushdb": flush,
    "flushall": flush,
    "lastsave": lastsave,
    "config": config,
    "function": function,
}
