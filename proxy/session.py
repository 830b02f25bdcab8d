"""One client connection: parse → look up → route → queue, and write replies in request order.

This is the request hot path. A single-key command costs: one dict lookup in the command table,
an arity check, one CRC16 (`crc_hqx`, C), one list index for the group, one `Reply` object, and
an append to a backend buffer that is written once per loop iteration (see backend.Flusher).
Everything else (multi-key split, local commands, errors) leaves this file early.
"""

from __future__ import annotations

import asyncio
import logging
from binascii import crc_hqx
from collections import deque
from typing import TYPE_CHECKING

from proxy.protocol.request import make_request_parser
from slotcore.keyslot import hash_tag, key_slot
from slotcore.resp import encode_error

from . import fanout, localcmds
from .backend import UP
from .commands import Route, is_blocking_call
from .errors import (
    CLUSTERDOWN,
    CROSSSLOT,
    NOAUTH,
    not_supported,
    unknown_command,
    unknown_subcommand,
    wrong_args,
)
from .pending import Reply

if TYPE_CHECKING:
    from .commands import CommandSpec
    from .server import ProxyServer

log = logging.getLogger("slotproxy.session")

KEYED = Route.KEYED
SPLIT = Route.SPLIT
LOCAL = Route.LOCAL

# Commands a client may send before AUTH when the proxy has a password (as Redis allows).
AUTH_EXEMPT = frozenset({"auth", "hello", "quit"})


class ClientSession(asyncio.Protocol):
    def __init__(self, server: ProxyServer) -> None:
        self.server = server
        self.router = server.router
        self.table = server.table
        self.flusher = server.flusher
        cfg = server.cfg
        self.parser = make_request_parser(cfg.limits.resp_limits(), prefer_hiredis=cfg.use_hiredis)
        self.max_pipeline = cfg.limits.max_pipeline
        self.resume_at = max(1, cfg.limits.max_pipeline // 2)
        self.output_limit = cfg.limits.client_output_buffer
        self.pending: deque[Reply] = deque()
        self.backlog: deque[tuple[list[bytes], bytes]] = deque()
        self.deferred_error: str | None = None
        self.in_backlog = False
        self.barrier = False
        self.out: list[bytes] = []
        self.dirty = False
        self.transport: asyncio.Transport | None = None
        self.id = server.next_client_id()
        self.proto = 2
        self.cidx = server.router.client_index(self.id, 2)
        self.authed = not cfg.password
        self.name = b""
        self.lib_name = b""
        self.lib_ver = b""
        self.addr = "?"
        self.closing = False
        self.closed = False
        self.pipeline_paused = False
        self.write_paused = False
        self.reading = True
        self.activity = 0
        self.commands = 0
        self.created = asyncio.get_running_loop().time()

    # ------------------------------------------------------------------ transport callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Called by the loop for each accepted client."""
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.addr = f"{peer[0]}:{peer[1]}"
        if not self.server.admit(self):
            # Over max_clients: say why, then close, as Redis does.
            transport.write(encode_error("ERR max number of clients reached"))
            transport.close()
            self.closed = True
            return
        transport.set_write_buffer_limits(high=256 * 1024)

    def connection_lost(self, exc: Exception | None) -> None:
        """Called by the loop when the client connection is gone."""
        self.closed = True
        self.transport = None
        # Replies still owed to this client are dropped as they arrive; the waiters stay in the
        # backend FIFOs so those connections stay in step.
        self.pending.clear()
        self.backlog.clear()
        self.out.clear()
        self.server.forget(self)

    def pause_writing(self) -> None:
        """Called by the transport when unsent replies pass its high-water mark."""
        self.write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        """Called by the transport when the client has read enough of its replies."""
        self.write_paused = False
        if self.backlog:
            self._run_backlog()
            if not self.backlog and len(self.pending) < self.max_pipeline:
                self.pipeline_paused = False
        self._update_reading()

    def _update_reading(self) -> None:
        want = not (self.write_paused or self.pipeline_paused or self.closing)
        if want != self.reading and self.transport is not None:
            self.reading = want
            if want:
                self.transport.resume_reading()
            else:
                self.transport.pause_reading()

    # ------------------------------------------------------------------ requests
    def data_received(self, data: bytes) -> None:
        """Called by the loop with request bytes."""
        self.activity += 1
        if self.closing:
            return
        parser = self.parser
        reqs = parser.feed(data)
        if reqs:
            if self.backlog or len(reqs) + len(self.pending) > self.max_pipeline:
                # More than the pipeline bound arrived at once: keep the surplus parsed but
                # undispatched, so replies in flight (and memory) stay bounded.
                self.backlog.extend(zip(reqs, parser.packed, strict=True))
                self._run_backlog()
            else:
                # The fast path, inlined: a single-key command (GET, SET, INCR, HSET, ...) whose
                # slot has an owner. Everything else goes through dispatch().
                packed = parser.packed
                fast = self.server.fast_arity
                router = self.router
                route = router.route
                mask = router.mask
                slot_ops = router.slot_ops
                pending = self.pending
                mark = self.flusher.mark
                cidx = self.cidx
                authed = self.authed
                i = 0
                for argv in reqs:
                    arity = fast.get(argv[0]) if authed else None
                    if arity is not None:
                        n = len(argv)
                        if n == arity if arity > 0 else n >= -arity:
                            key = argv[1]
                            if 0x7B in key:  # "{" (int: memchr, no buffer protocol)
                                key = hash_tag(key)
                            slot = crc_hqx(key, 0) & mask
                            slot_ops[slot] += 1
                            group = route[slot]
                            if group is not None:
                                reply = Reply(self)
                                pending.append(reply)
                                conn = group.conns[cidx]
                                if conn.state == UP:  # BackendConn.send, inlined
                                    conn.fifo.append(reply)
                                    conn.out.append(packed[i])
                                    if not conn.dirty:
                                        conn.dirty = True
                                        mark(conn)
                                else:
                                    conn.send(packed[i], reply)
                                i += 1
                                continue
                    self.dispatch(argv, packed[i])
                    i += 1
                    if self.closing:  # QUIT: nothing after it runs
                        break
                    if self.barrier:  # protocol switch: the rest waits (see _run_backlog)
                        self.backlog.extend(zip(reqs[i:], packed[i:], strict=True))
                        self.pipeline_paused = True
                        self._update_reading()
                        break
                    authed = self.authed  # AUTH/HELLO/RESET may have changed these
                    cidx = self.cidx
                self.commands += i
                self.server.commands += i
        if parser.error is not None and not self.closing:
            if self.backlog:
                self.deferred_error = parser.error
            else:
                self._protocol_error(parser.error)
        if len(self.pending) >= self.max_pipeline and not self.pipeline_paused:
            # Backpressure: stop reading this client until half its replies are written.
            self.pipeline_paused = True
            self._update_reading()

    def _run_backlog(self) -> None:
        # Re-entry guard: dispatching can resolve replies synchronously (backend down, local
        # commands), which calls write_ready, which would call us again.
        if self.in_backlog:
            return
        self.in_backlog = True
        backlog = self.backlog
        n = 0
        try:
            # write_paused: the client is not reading its replies; dispatching more would only
            # pile replies up in our output buffer.
            while (backlog and len(self.pending) < self.max_pipeline and not self.closing
                   and not self.write_paused):
                if self.barrier:
                    # After a HELLO that changed protocol, later commands use other backend
                    # connections: wait until everything sent before it is answered, so a
                    # pipelined SET then GET cannot be reordered across the two connections.
                    if self.pending:
                        break
                    self.barrier = False
                argv, packed = backlog.popleft()
                self.dispatch(argv, packed)
                n += 1
        finally:
            self.in_backlog = False
        self.barrier = False
        self.commands += n
        self.server.commands += n
        if not backlog and self.deferred_error is not None and not self.closing:
            self._protocol_error(self.deferred_error)
        if backlog and not self.pipeline_paused:
            self.pipeline_paused = True
            self._update_reading()

    def _protocol_error(self, message: str) -> None:
        self.reply(encode_error("ERR Protocol error: " + message))
        log.info("client %s: protocol error: %s", self.addr, message)
        self.close_after_replies()

    def dispatch(self, argv: list[bytes], packed: bytes) -> None:
        spec = self.table.lookup(argv)
        if spec is None:
            self.reply(unknown_command(argv))
            return
        if not self.authed and spec.name.partition("|")[0] not in AUTH_EXEMPT:
            self.reply(NOAUTH)
            return
        route = spec.route
        if spec.subcommands is not None and route is not LOCAL:
            # The table resolved the container itself: its subcommand is missing or unknown
            # (local containers such as CLIENT parse their own subcommands).
            self.reply(wrong_args(spec.name) if len(argv) < 2
                       else unknown_subcommand(spec.name, argv[1]))
            return
        if route is KEYED:
            if spec.key1 and len(self.server.fast_arity) < 4096:
                # Remember this spelling of the name for the inlined fast path.
                self.server.fast_arity[argv[0]] = spec.arity
            n = len(argv)
            arity = spec.arity
            if (n != arity) if arity > 0 else (n < -arity):
                self.reply(wrong_args(spec.name))
                return
            router = self.router
            if spec.key1:
                keys = [argv[1]]
                slot = key_slot(argv[1], router.nslots)
            else:
                slot, keys = self._route_keys(spec, argv, packed)
                if slot < 0:
                    return
            router.slot_ops[slot] += 1
            # Owned, unassigned or in transit (migrating/locked): the router decides.
            reply = Reply(self)
            self.pending.append(reply)
            router.forward(self, self.cidx, slot, keys, packed, reply)
        elif route is SPLIT:
            fanout.split(self, spec, argv, packed)
        elif route is LOCAL:
            localcmds.handle(self, spec, argv)
        else:
            self.reply(not_supported(spec.name, spec.reason))

    def _route_keys(self, spec: CommandSpec, argv: list[bytes], packed: bytes
                    ) -> tuple[int, list[bytes]]:
        """Keys somewhere other than argv[1]: find them and check they share a slot.

        Returns (slot, keys), or (-1, []) after having answered the request itself (blocking
        call, CROSSSLOT, or a keyless call such as EVAL with numkeys 0, sent to any group).
        """
        if is_blocking_call(spec, argv):
            self.reply(not_supported(spec.name, "blocking commands"))
            return -1, []
        keys = spec.keys(argv)
        router = self.router
        if not keys:
            # EVAL/FCALL with numkeys 0 and the like: any group can run it.
            group = router.any_group()
            if group is None:
                self.reply(CLUSTERDOWN)
            else:
                reply = Reply(self)
                self.pending.append(reply)
                group.conns[self.cidx].send(packed, reply)
            return -1, []
        nslots = router.nslots
        slot = key_slot(keys[0], nslots)
        for k in keys[1:]:
            if key_slot(k, nslots) != slot:
                self.reply(CROSSSLOT)
                return -1, []
        return slot, keys

    # ------------------------------------------------------------------ replies
    def reply(self, raw: bytes) -> None:
        """Answer the current request with `raw` (after any replies still owed)."""
        if self.pending:
            self.pending.append(Reply(self, raw))
        else:
            self.out.append(raw)
            if not self.dirty:
                self.dirty = True
                self.flusher.mark(self)

    def write_ready(self) -> None:
        """Called when the head reply is resolved: move every ready reply to the out buffer."""
        pending = self.pending
        out = self.out
        while pending and pending[0].data is not None:
            out.append(pending.popleft().data)  # type: ignore[arg-type]
        if not self.dirty:
            self.dirty = True
            self.flusher.mark(self)
        if self.pipeline_paused:
            self.pipeline_progress()

    def pipeline_progress(self) -> None:
        """Replies were written while reading is paused: dispatch held-back work, resume."""
        if len(self.pending) <= self.resume_at:
            if self.backlog:
                self._run_backlog()
            if not self.backlog and len(self.pending) < self.max_pipeline:
                self.pipeline_paused = False
                self._update_reading()

    def flush(self) -> None:
        """Called by the Flusher once per loop iteration: one write for all ready replies."""
        self.dirty = False
        out = self.out
        transport = self.transport
        if transport is None:
            out.clear()
            return
        if out:
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            transport.write(data)
            # Only a client over the high-water mark (pause_writing was called) can be over the
            # output limit, so the size is asked only then.
            if self.write_paused and transport.get_write_buffer_size() > self.output_limit:
                log.warning("client %s: output buffer over %d bytes; closing", self.addr,
                            self.output_limit)
                self.pending.clear()
                transport.abort()
                return
        if self.closing and not self.pending:
            transport.close()

    def close_after_replies(self) -> None:
        """Stop reading; close once every owed reply is written (QUIT, protocol errors)."""
        self.closing = True
        self._update_reading()
        if not self.pending and not self.dirty:
            self.dirty = True
            self.flusher.mark(self)

    def close_now(self) -> None:
        if self.transport is not None:
            self.transport.close()
