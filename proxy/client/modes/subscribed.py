"""Subscribed mode: a client with channels, patterns or shard channels.

`Subscriptions` is the client's Pub/Sub state: what it is subscribed to (the proxy computes
the counts Redis puts in every confirmation, since the subscriptions are spread over several
backend connections) and its dedicated subscriber connection per backend address
(`backend.subscriber`). `SubscribedMode` enforces Redis's rule for RESP2 clients: only
(P|S)(UN)SUBSCRIBE, PING (answered `*2 pong <arg>`), QUIT and RESET; RESP3 clients may run
anything, and get messages as `>` pushes.

Ordering: a confirmation is written once every backend involved has confirmed (so a PUBLISH
sent after the client saw it reaches the client), in request order like any reply. Messages
are written when they arrive — except while a confirmation is still owed, when they queue
behind it (Redis never sends a channel's message before its subscribe confirmation). A message
for a name the client has unsubscribed from meanwhile is dropped.
"""

from __future__ import annotations

import logging

from slotcore.resp import encode_bulk

from ...backend.subscriber import (
    CHANNELS,
    MESSAGE,
    PATTERNS,
    PMESSAGE,
    SHARDS,
    SMESSAGE,
    SubscriberConn,
)
from ...commands.table import CommandSpec
from ...errors import pubsub_context, pubsub_too_many_conns, pubsub_too_many_subs
from ...routing.channels import ChannelHub
from .. import reply as replies
from ..context import Client, Mode
from ..reply import ReplySlot
from .normal import NORMAL

log = logging.getLogger("slotproxy.pubsub")

# What a RESP2 client may run while subscribed (Redis's processCommand).
ALLOWED = frozenset({"subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe",
                     "sunsubscribe", "ping", "quit", "reset"})

SUB_VERBS = (b"subscribe", b"psubscribe", b"ssubscribe")
UNSUB_VERBS = (b"unsubscribe", b"punsubscribe", b"sunsubscribe")
PREFIX = (len(MESSAGE), len(PMESSAGE), len(SMESSAGE))  # where the channel (pattern) starts


def confirmation(proto: int, verb: bytes, name: bytes | None, count: int) -> bytes:
    """One (un)subscribe confirmation, as Redis frames it (RESP3: a push)."""
    head = b"*3\r\n" if proto == 2 else b">3\r\n"
    if name is None:
        ch = b"$-1\r\n" if proto == 2 else b"_\r\n"
    else:
        ch = b"$%d\r\n%b\r\n" % (len(name), name)
    return b"%b$%d\r\n%b\r\n%b:%d\r\n" % (head, len(verb), verb, ch, count)


def _first_name(raw: bytes, pos: int) -> bytes:
    """The bulk string at `pos` of a message frame (its channel, or pattern)."""
    nl = raw.index(b"\r\n", pos)
    start = nl + 2
    return raw[start:start + int(raw[pos + 1:nl])]


class SubscribedMode(Mode):
    name = "subscribed"
    fast_path = False

    def intercept(self, client: Client, spec: CommandSpec, argv: list[bytes],
                  packed: bytes) -> bool:
        if client.state.proto != 2:
            return False
        name = spec.name
        top = name.partition("|")[0]
        if top in ALLOWED:
            if top == "ping" and len(argv) <= 2:
                client.reply(b"*2\r\n$4\r\npong\r\n" +
                             encode_bulk(argv[1] if len(argv) == 2 else b""))
                return True
            return False
        # Unknown subcommands and wrong arities get their own errors first, as in Redis.
        if spec.subcommands is not None or not spec.check_arity(len(argv)):
            return False
        client.reply(pubsub_context(name))
        return True


SUBSCRIBED = SubscribedMode()


class Confirm:
    """The confirmations of one client command, written once every backend confirmed."""

    __slots__ = ("data", "left", "slot", "subs")

    def __init__(self, subs: Subscriptions, slot: ReplySlot, data: bytes, n: int) -> None:
        self.subs = subs
        self.slot = slot
        self.data = data
        self.left = n

    def done(self) -> None:
        self.left -= 1
        if self.left == 0:
            subs = self.subs
            subs.pending -= 1
            if subs.pending == 0:
                subs.queued = 0
            self.slot.resolve(self.data)


class Subscriptions:
    """One client's Pub/Sub state and its subscriber connections (by backend address)."""

    def __init__(self, client: Client, hub: ChannelHub) -> None:
        self.client = client
        self.hub = hub
        self.limit = min(hub.cfg.output_buffer, client.services.cfg.limits.client_output_buffer)
        # channels, patterns, shard channels (dicts as ordered sets)
        self.names: tuple[dict[bytes, None], dict[bytes, None], dict[bytes, None]] = ({}, {}, {})
        self.conns: dict[str, SubscriberConn] = {}
        self.pending = 0  # confirmations owed to the client
        self.queued = 0  # message bytes queued behind them
        self.active = False
        hub.clients.add(self)

    # ------------------------------------------------------------------ counts
    def count(self, kind: int) -> int:
        """The figure Redis puts in a confirmation: channels + patterns, or shard channels."""
        n = self.names
        return len(n[SHARDS]) if kind == SHARDS else len(n[CHANNELS]) + len(n[PATTERNS])

    def total(self) -> int:
        n = self.names
        return len(n[0]) + len(n[1]) + len(n[2])

    def _enter(self) -> None:
        if not self.active:
            self.active = True
            c = self.client
            if c.mode is not NORMAL and c.mode is not SUBSCRIBED:
                # WATCHing (MULTI itself refuses SUBSCRIBE): the watch cannot be EXECed from
                # the subscribed mode, so its dedicated connection goes back now.
                c.mode.leave(c)
            c.set_mode(SUBSCRIBED)
            c.output_limit = self.limit

    def _leave(self) -> None:
        if self.active:
            self.active = False
            c = self.client
            if c.mode is SUBSCRIBED:
                c.set_mode(NORMAL)
            c.output_limit = c.services.cfg.limits.client_output_buffer

    # ------------------------------------------------------------------ commands
    def subscribe(self, kind: int, names: list[bytes]) -> None:
        c = self.client
        have = self.names[kind]
        new = [n for n in dict.fromkeys(names) if n not in have]
        cfg = self.hub.cfg
        if new and self.total() + len(new) > cfg.max_subscriptions:
            c.reply(pubsub_too_many_subs(cfg.max_subscriptions))
            return
        per_addr: dict[str, list[bytes]] = {}
        place = self.hub.place
        for n in new:
            for addr in place(kind, n):
                per_addr.setdefault(addr, []).append(n)
        opened: list[SubscriberConn] = []
        for addr in per_addr:
            if addr not in self.conns:
                conn = self.hub.pool.open(addr, self)
                if conn is None:
                    for o in opened:
                        del self.conns[o.addr]
                        o.close()
                    c.reply(pubsub_too_many_conns(addr, cfg.max_backend_connections))
                    return
                opened.append(conn)
                self.conns[addr] = conn
        verb = SUB_VERBS[kind]
        proto = c.state.proto
        parts = []
        for n in names:
            have[n] = None
            parts.append(confirmation(proto, verb, n, self.count(kind)))
        self._enter()
        self._send(kind, per_addr, True, b"".join(parts))

    def unsubscribe(self, kind: int, names: list[bytes]) -> None:
        c = self.client
        have = self.names[kind]
        verb = UNSUB_VERBS[kind]
        proto = c.state.proto
        if not names:
            names = list(have)
            if not names:
                c.reply(confirmation(proto, verb, None, self.count(kind)))
                return
        gone = {n for n in names if n in have}
        per_addr: dict[str, list[bytes]] = {}
        if gone:
            for addr, conn in self.conns.items():
                held = conn.names[kind]
                mine = [n for n in gone if n in held]
                if mine:
                    per_addr[addr] = mine
        parts = []
        for n in names:
            have.pop(n, None)
            parts.append(confirmation(proto, verb, n, self.count(kind)))
        if self.total() == 0:
            self._leave()
        self._send(kind, per_addr, False, b"".join(parts))

    def _send(self, kind: int, per_addr: dict[str, list[bytes]], sub: bool, data: bytes) -> None:
        c = self.client
        if not per_addr:
            c.reply(data)
            return
        slot = c.expect()
        self.pending += 1
        confirm = Confirm(self, slot, data, len(per_addr))
        for addr, names in per_addr.items():
            conn = self.conns[addr]
            if sub:
                conn.subscribe(kind, names, confirm.done)
            else:
                conn.unsubscribe(kind, names, confirm.done)

    def reset(self) -> None:
        """RESET: every subscription dropped at once, no confirmations (as Redis)."""
        for n in self.names:
            n.clear()
        for conn in list(self.conns.values()):
            conn.close()
        self.conns.clear()
        self._leave()

    def close(self) -> None:
        """The client is gone: its subscriber connections go too."""
        self.reset()
        self.hub.clients.discard(self)

    # ------------------------------------------------------------------ slot map changes
    def reconcile(self, prune: bool) -> None:
        """Subscribe each name where it lives under the map in force; with `prune`, also
        leave the places it no longer lives in."""
        if self.client.closed:
            self.close()
            return
        place = self.hub.place
        desired: dict[str, tuple[list[bytes], list[bytes], list[bytes]]] = {}
        for kind, names in enumerate(self.names):
            for n in names:
                for addr in place(kind, n):
                    want = desired.get(addr)
                    if want is None:
                        want = desired[addr] = ([], [], [])
                    want[kind].append(n)
        for addr, want in desired.items():
            conn = self.conns.get(addr)
            if conn is None:
                conn = self.hub.pool.open(addr, self)
                if conn is None:
                    log.warning("client %s: no pub/sub connection to %s (limit reached); its "
                                "subscriptions there are not served", self.client.state.addr,
                                addr)
                    continue
                self.conns[addr] = conn
            for kind in (CHANNELS, PATTERNS, SHARDS):
                held = conn.names[kind]
                missing = [n for n in want[kind] if n not in held]
                if missing:
                    conn.subscribe(kind, missing, _nothing)
        if not prune:
            return
        for addr, conn in list(self.conns.items()):
            want = desired.get(addr)
            for kind in (CHANNELS, PATTERNS, SHARDS):
                keep = set(want[kind]) if want is not None else set()
                extra = [n for n in conn.names[kind] if n not in keep]
                if extra:
                    conn.unsubscribe(kind, extra, _nothing)
            if conn.empty() and conn.idle():
                self.conn_idle(conn)

    # ------------------------------------------------------------------ from the backends
    def conn_idle(self, conn: SubscriberConn) -> None:
        """A subscriber connection holds nothing any more and owes nothing: close it."""
        if self.conns.get(conn.addr) is conn:
            del self.conns[conn.addr]
        conn.close()

    def deliver(self, raw: bytes, kind: int) -> None:
        """A message from a backend: to the client if it is still subscribed to it."""
        c = self.client
        if c.closed or c.closing:
            return
        if _first_name(raw, PREFIX[kind]) not in self.names[kind]:
            return
        self._write(c, [raw])

    def deliver_all(self, frames: list[bytes]) -> None:
        """Messages the client certainly holds (see SubscriberConn.data_received)."""
        c = self.client
        if not (c.closed or c.closing):
            self._write(c, frames)

    def _write(self, c: Client, frames: list[bytes]) -> None:
        if c.state.proto != 2:
            frames = [b">" + f[1:] for f in frames]
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        stats = c.services.stats
        stats.pubsub_messages += len(frames)
        stats.pubsub_bytes += len(data)
        if self.pending:
            # Behind the confirmations still owed (bounded like the output buffer).
            self.queued += len(data)
            if self.queued > self.limit:
                log.warning("client %s: pub/sub messages queued over %d bytes; closing",
                            c.state.addr, self.limit)
                stats.pubsub_dropped += 1
                c.close_now()
                self.close()
                return
            replies.answer(c, data)  # type: ignore[arg-type]
        else:
            c.push(data)


def _nothing() -> None:
    pass
