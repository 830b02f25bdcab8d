"""CLUSTER, READONLY, READWRITE and ASKING: the proxy answers as a Redis Cluster (masquerade).

The cluster described is made of the **proxies**: every live proxy the dashboard pushed (the
slot map's `proxies`, see `slotcore.members`), plus this one, each a master owning an even,
contiguous share of Redis Cluster's 16384 slots (in proxy-id order, so every proxy gives the
same answer). Cluster clients therefore spread their connections over the proxies, while any
proxy serves any slot: no MOVED is ever needed. A standalone proxy is a one-node cluster. Slots
this proxy's map leaves unassigned are left out, as a Redis Cluster leaves out unserved slots.

With `cluster.masquerade` off every subcommand, READONLY, READWRITE and ASKING answer what a
non-cluster Redis answers: "-ERR This instance has cluster support disabled".

The reply builders (`cluster_slots` ... `cluster_info`) are pure functions of a `ClusterView`,
in RESP2 and RESP3 (maps, verbatim strings) as Redis 7 writes them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from dataclasses import dataclass

from slotcore.addr import join_addr, split_addr
from slotcore.keyslot import key_slot
from slotcore.members import CLUSTER_SLOTS, ProxyAddr, canonical, node_id, spread
from slotcore.resp import (
    OK,
    ReplyErrorValue,
    encode_array,
    encode_bulk,
    encode_error,
    encode_int,
    pack_command,
    parse_reply,
)
from slotcore.slotmap import SlotMap

from ..client.context import Client, Services
from ..errors import NOT_INTEGER, backend_error, not_supported, unknown_subcommand
from ..routing.replicas import MASTER, PREFER_REPLICA

DISABLED = encode_error("ERR This instance has cluster support disabled")
INVALID_SLOT = encode_error("ERR Invalid slot")
INVALID_SLOT_OR_COUNT = encode_error("ERR Invalid slot or number of keys")

SCAN_COUNT = b"1000"  # keys per SCAN round trip of COUNTKEYSINSLOT / GETKEYSINSLOT


# --------------------------------------------------------------------------------------------
# The view: which nodes, which slots
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Node:
    id: str  # 40 hex
    host: str  # "" when unknown (a wildcard listen address and no `advertise`)
    port: int
    slots: tuple[tuple[int, int], ...]  # inclusive ranges of Redis Cluster slots
    myself: bool = False

    @property
    def is_hostname(self) -> bool:
        if not self.host:
            return False
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return True
        return False

    @property
    def cport(self) -> int:
        # Redis's default cluster bus port; nothing listens there (proxies have no bus).
        return self.port + 10000 if self.port + 10000 <= 65535 else 0


@dataclass(frozen=True, slots=True)
class ClusterView:
    nodes: tuple[Node, ...]  # in slot order
    epoch: int
    assigned: int  # Redis Cluster slots served (those whose proxy slot has an owner)

    @property
    def myself(self) -> Node:
        return next(n for n in self.nodes if n.myself)


def _host_port(addr: str) -> tuple[str, int]:
    host, port = split_addr(addr, default_host="")
    return ("" if host in ("0.0.0.0", "::") else host), port


def build_view(proxies: tuple[ProxyAddr, ...], me: ProxyAddr, epoch: int,
               served: list[bool] | None) -> ClusterView:
    """The cluster as this proxy (`me`) describes it. `proxies` is the pushed list (this proxy
    is added if missing); `served[s]` says whether Redis Cluster slot s is served (None: all)."""
    nodes = canonical([p for p in proxies if p.id != me.id] + [me])
    out = []
    for p, (lo, hi) in zip(nodes, spread(len(nodes)), strict=True):
        if served is None:
            ranges: list[tuple[int, int]] = [(lo, hi)]
        else:
            ranges = []
            for s in range(lo, hi + 1):
                if not served[s]:
                    continue
                if ranges and ranges[-1][1] == s - 1:
                    ranges[-1] = (ranges[-1][0], s)
                else:
                    ranges.append((s, s))
        host, port = _host_port(p.addr)
        out.append(Node(node_id(p.id), host, port, tuple(ranges), myself=p.id == me.id))
    assigned = CLUSTER_SLOTS if served is None else sum(served)
    return ClusterView(tuple(out), epoch, assigned)


def served_slots(slotmap: SlotMap | None) -> list[bool] | None:
    """Which of Redis Cluster's 16384 slots have an owner in `slotmap` (None: all of them).
    A proxy routing by 1024 slots serves Redis slot s by its slot s % 1024."""
    if slotmap is None:
        return [False] * CLUSTER_SLOTS
    owner = slotmap.owner
    if all(owner):
        return None
    mask = slotmap.nslots - 1
    return [owner[s & mask] != 0 for s in range(CLUSTER_SLOTS)]


def myself(services: Services) -> ProxyAddr:
    cfg = services.cfg
    return ProxyAddr(cfg.resolved_proxy_id(),
                     cfg.advertise or join_addr(services.host, services.port))


_cache: list[object] = [None, None, None]  # slot map, me, view


def view(services: Services) -> ClusterView:
    """The view for the slot map in force (rebuilt only when the map or the address changes)."""
    sm = services.router.slotmap
    me = myself(services)
    if _cache[0] is sm and _cache[1] == me and _cache[2] is not None:
        return _cache[2]  # type: ignore[return-value]
    v = build_view(sm.proxies if sm is not None else (), me, sm.epoch if sm else 0,
                   served_slots(sm))
    _cache[:] = [sm, me, v]
    return v


def enabled(services: Services) -> bool:
    return services.cfg.cluster.masquerade


def cluster_enabled(services: Services) -> int:
    """INFO's `cluster_enabled` (the hook the INFO code uses)."""
    return 1 if enabled(services) else 0


# --------------------------------------------------------------------------------------------
# Reply builders (pure)
# --------------------------------------------------------------------------------------------


def _map(pairs: list[tuple[str, bytes]], proto: int) -> bytes:
    """A map of already-encoded values: `%n` in RESP3, a flat array in RESP2 (as Redis)."""
    head = b"%%%d\r\n" % len(pairs) if proto == 3 else b"*%d\r\n" % (2 * len(pairs))
    return head + b"".join(encode_bulk(k) + v for k, v in pairs)


def _verbatim(text: str, proto: int) -> bytes:
    data = text.encode()
    if proto == 3:
        return b"=%d\r\ntxt:%b\r\n" % (len(data) + 4, data)
    return encode_bulk(data)


def cluster_slots(v: ClusterView, proto: int = 2) -> bytes:
    """CLUSTER SLOTS: [start, end, [ip, port, id, {metadata}]] per range, in slot order."""
    items = []
    empty = b"%0\r\n" if proto == 3 else b"*0\r\n"
    for n in v.nodes:
        node = (b"*4\r\n" + encode_bulk(n.host) + encode_int(n.port) + encode_bulk(n.id) + empty)
        for lo, hi in n.slots:
            items.append(b"*3\r\n" + encode_int(lo) + encode_int(hi) + node)
    return b"*%d\r\n" % len(items) + b"".join(items)  # nodes and their ranges in slot order


def cluster_shards(v: ClusterView, proto: int = 2) -> bytes:
    """CLUSTER SHARDS: one shard per proxy (a master, no replicas)."""
    shards = []
    for n in v.nodes:
        flat = [s for r in n.slots for s in r]
        node: list[tuple[str, bytes]] = [
            ("id", encode_bulk(n.id)),
            ("port", encode_int(n.port)),
            ("ip", encode_bulk(n.host)),
            ("endpoint", encode_bulk(n.host)),
        ]
        if n.is_hostname:
            node.append(("hostname", encode_bulk(n.host)))
        node += [
            ("role", encode_bulk("master")),
            ("replication-offset", encode_int(0)),
            ("health", encode_bulk("online")),
        ]
        shards.append(_map([("slots", encode_array(flat)),
                            ("nodes", b"*1\r\n" + _map(node, proto))], proto))
    return b"*%d\r\n" % len(shards) + b"".join(shards)


def nodes_text(v: ClusterView, now_ms: int = 0) -> str:
    """CLUSTER NODES' text: `id ip:port@cport[,hostname] flags master ping pong epoch link
    slots...`, one line per node, each ended by "\\n"."""
    lines = []
    for n in v.nodes:
        addr = f"{join_addr(n.host, n.port) if n.host else f':{n.port}'}@{n.cport}"
        if n.is_hostname:
            addr += f",{n.host}"
        flags = "myself,master" if n.myself else "master"
        pong = 0 if n.myself else now_ms
        slots = "".join(f" {lo}" if lo == hi else f" {lo}-{hi}" for lo, hi in n.slots)
        lines.append(f"{n.id} {addr} {flags} - 0 {pong} {v.epoch} connected{slots}\n")
    return "".join(lines)


def cluster_nodes(v: ClusterView, proto: int = 2, now_ms: int = 0) -> bytes:
    return _verbatim(nodes_text(v, now_ms), proto)


def info_text(v: ClusterView) -> str:
    size = sum(1 for n in v.nodes if n.slots)
    fields = [
        ("cluster_state", "ok" if v.assigned == CLUSTER_SLOTS else "fail"),
        ("cluster_slots_assigned", v.assigned),
        ("cluster_slots_ok", v.assigned),
        ("cluster_slots_pfail", 0),
        ("cluster_slots_fail", 0),
        ("cluster_known_nodes", len(v.nodes)),
        ("cluster_size", size),
        ("cluster_current_epoch", v.epoch),
        ("cluster_my_epoch", v.epoch),
        ("cluster_stats_messages_sent", 0),
        ("cluster_stats_messages_received", 0),
        ("total_cluster_links_buffer_limit_exceeded", 0),
    ]
    return "".join(f"{k}:{val}\r\n" for k, val in fields)


def cluster_info(v: ClusterView, proto: int = 2) -> bytes:
    return _verbatim(info_text(v), proto)


_HELP = [
    "CLUSTER <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "COUNTKEYSINSLOT <slot>",
    "    Return the number of keys in <slot> (scans the group holding it).",
    "GETKEYSINSLOT <slot> <count>",
    "    Return key names stored in a slot (scans the group holding it).",
    "INFO",
    "    Return information about the cluster.",
    "KEYSLOT <key>",
    "    Return the hash slot for <key>.",
    "LINKS",
    "    Return information about cluster links (none: proxies have no cluster bus).",
    "MYID",
    "    Return the node id.",
    "MYSHARDID",
    "    Return the node's shard id.",
    "NODES",
    "    Return cluster configuration seen by node. Output format:",
    "    <id> <ip:port> <flags> <master> <pings> <pongs> <epoch> <link> <slot> ...",
    "REPLICAS <node-id>",
    "    Return <node-id> replicas.",
    "SHARDS",
    "    Return information about slot range mappings and the nodes associated with them.",
    "SLOTS",
    "    Return information about slots range mappings. Each range is made of:",
    "    start, end, master and replicas IP addresses, ports and ids",
    "HELP",
    "    Print this help.",
]

# Subcommands that change a Redis Cluster's configuration: the dashboard owns the slot map.
_CONFIGURING = {
    b"addslots", b"addslotsrange", b"delslots", b"delslotsrange", b"flushslots", b"setslot",
    b"meet", b"forget", b"replicate", b"failover", b"reset", b"bumpepoch", b"saveconfig",
    b"set-config-epoch", b"count-failure-reports",
}


# --------------------------------------------------------------------------------------------
# Handlers
# --------------------------------------------------------------------------------------------


def cluster(c: Client, argv: list[bytes]) -> None:
    services = c.services
    sub = argv[1].lower() if len(argv) > 1 else b""
    if not enabled(services):
        c.reply(unknown_subcommand("cluster", argv[1]) if sub not in _KNOWN else DISABLED)
        return
    proto = c.state.proto
    n = len(argv)
    if sub == b"slots" and n == 2:
        c.reply(cluster_slots(view(services), proto))
    elif sub == b"shards" and n == 2:
        c.reply(cluster_shards(view(services), proto))
    elif sub == b"nodes" and n == 2:
        c.reply(cluster_nodes(view(services), proto, int(time.time() * 1000)))
    elif sub == b"info" and n == 2:
        c.reply(cluster_info(view(services), proto))
    elif sub == b"myid" and n == 2:
        c.reply(encode_bulk(view(services).myself.id))
    elif sub == b"myshardid" and n == 2:
        c.reply(encode_bulk(view(services).myself.id))  # one node per shard: the same id
    elif sub == b"keyslot" and n == 3:
        c.reply(encode_int(key_slot(argv[2], CLUSTER_SLOTS)))
    elif sub in (b"replicas", b"slaves") and n == 3:
        ids = {node.id for node in view(services).nodes}
        target = argv[2].decode(errors="replace")
        c.reply(encode_array([]) if target in ids else encode_error(f"ERR Unknown node {target}"))
    elif sub == b"links" and n == 2:
        c.reply(encode_array([]))
    elif sub == b"countkeysinslot" and n == 3:
        slot = _int(argv[2])
        if slot is None:
            c.reply(NOT_INTEGER)
        elif not 0 <= slot < CLUSTER_SLOTS:
            c.reply(INVALID_SLOT)
        else:
            _keys_in_slot(c, slot, None)
    elif sub == b"getkeysinslot" and n == 4:
        slot, count = _int(argv[2]), _int(argv[3])
        if slot is None or count is None:
            c.reply(NOT_INTEGER)
        elif not 0 <= slot < CLUSTER_SLOTS or count < 0:
            c.reply(INVALID_SLOT_OR_COUNT)
        else:
            _keys_in_slot(c, slot, count)
    elif sub == b"help" and n == 2:
        c.reply(b"*%d\r\n" % len(_HELP) + b"".join(b"+%b\r\n" % h.encode() for h in _HELP))
    elif sub in _CONFIGURING:
        c.reply(not_supported("cluster|" + sub.decode(errors="replace"),
                              "the dashboard owns the slot map"))
    elif sub in _KNOWN:
        c.reply(encode_error(f"ERR wrong number of arguments for 'cluster|{sub.decode()}' "
                             "command"))
    else:
        c.reply(unknown_subcommand("cluster", argv[1]))


_KNOWN = _CONFIGURING | {
    b"slots", b"shards", b"nodes", b"info", b"myid", b"myshardid", b"keyslot", b"replicas",
    b"slaves", b"links", b"countkeysinslot", b"getkeysinslot", b"help",
}


def _int(b: bytes) -> int | None:
    try:
        return int(b)
    except ValueError:
        return None


def readonly(c: Client, argv: list[bytes]) -> None:
    """READONLY / READWRITE / ASKING: OK as a cluster node, an error as a non-cluster Redis.

    As on a Redis Cluster replica, READONLY lets this connection's read-only commands be served
    by a replica (routing.replicas): the proxy's own `read_from` if that already reads from
    replicas, else prefer-replica (a replica in sync, else the master). READWRITE sends them
    to the masters again. ASKING changes nothing: every proxy serves every slot."""
    if not enabled(c.services):
        c.reply(DISABLED)
        return
    name = argv[0].lower()
    if name == b"readonly":
        c.state.read_from = c.services.router.reads.default_policy or PREFER_REPLICA
    elif name == b"readwrite":
        c.state.read_from = MASTER
    c.reply(OK)


def reset_read_policy(c: Client) -> None:
    """RESET: back to the proxy's read_from (as Redis's RESET leaves READONLY mode)."""
    c.state.read_from = c.services.router.reads.default_policy


# --------------------------------------------------------------------------------------------
# COUNTKEYSINSLOT / GETKEYSINSLOT: SCAN the group(s) holding the slot, keep its keys
# --------------------------------------------------------------------------------------------

_tasks: set[asyncio.Task[bytes]] = set()


def _keys_in_slot(c: Client, slot: int, count: int | None) -> None:
    """Answer COUNTKEYSINSLOT (count None) or GETKEYSINSLOT. The backends are not cluster
    nodes, so this SCANs the whole group owning the slot (both groups while it migrates) and
    keeps the keys hashing to it: O(keys of the group), bounded by `cluster.slot_scan_limit`."""
    services = c.services
    router = services.router
    pslot = slot & (router.nslots - 1)
    moving = router.transit.slots.get(pslot)
    if moving is not None:
        groups = [moving.src, moving.dst]
    else:
        g = router.by_slot[pslot]
        groups = [g] if g is not None else []
    if not groups or count == 0:
        c.reply(encode_int(0) if count is None else encode_array([]))
        return
    waiter = c.expect()
    lane = services.pool.plain_lane(c.state.lane)
    conns = [g.lanes[lane] for g in groups]
    cfg = services.cfg
    timeout = cfg.backend.request_timeout or 30.0
    task = services.loop.create_task(
        _scan_slot(conns, slot, count, cfg.cluster.slot_scan_limit, timeout))
    _tasks.add(task)

    def done(t: asyncio.Task[bytes]) -> None:
        _tasks.discard(t)
        if t.cancelled():
            waiter.resolve(encode_error("ERR slot scan cancelled"))
        elif (e := t.exception()) is not None:
            waiter.resolve(encode_error(f"ERR slot scan failed: {e}"))
        else:
            waiter.resolve(t.result())

    task.add_done_callback(done)


async def _scan_slot(conns: list, slot: int, count: int | None, limit: int,
                     timeout: float) -> bytes:
    found: set[bytes] = set()
    for conn in conns:
        cursor = b"0"
        scanned = 0
        while True:
            try:
                raw = await conn.probe(pack_command(b"SCAN", cursor, b"COUNT", SCAN_COUNT),
                                       timeout)
            except TimeoutError:
                return backend_error(conn.addr, "timed out")
            reply = parse_reply(raw)
            if isinstance(reply, ReplyErrorValue):
                return raw
            if not (isinstance(reply, list) and len(reply) == 2):
                return encode_error(f"ERR unexpected SCAN reply from {conn.addr}")
            cursor, keys = reply
            scanned += len(keys)
            for k in keys:
                if key_slot(k, CLUSTER_SLOTS) == slot:
                    found.add(k)
            if count is not None and len(found) >= count:
                return encode_array(sorted(found)[:count])
            if cursor == b"0":
                break
            if scanned > limit:
                return encode_error(
                    f"ERR slot scan of {conn.addr} stopped after {scanned} keys "
                    f"(cluster.slot_scan_limit {limit})")
    return encode_int(len(found)) if count is None else encode_array(sorted(found))


HANDLERS = {"cluster": cluster, "readonly": readonly, "readwrite": readonly, "asking": readonly}
