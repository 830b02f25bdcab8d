"""One client connection: parse → mode → dispatch → queue, and write replies in request order.

This is the request hot path. While the connection's mode allows it (`mode.fast_path`), a
single-key command costs: one dict lookup for its arity (`CommandTable.fast_arity`), one CRC16
(`crc_hqx`, C), one list index for the group, one `ReplySlot`, one countdown decrement for
the hot-key sampler (`observe/hotkeys.py`), and an append to a backend
buffer that is written once per loop iteration (see `backend.conn.Flusher`). Everything else
goes through `proxy.dispatch`. With the compiled hot path (`proxy._accel`) the parser and that
loop are its compiled twins (`RequestParser`, `fast_run`); everything else is the same code.

Requests of a client with a read policy (`state.read_from`) leave the fast path for
`dispatch.keyed` (it picks the replica). The hot-key countdown and the 1-in-N latency sampler
are counted by both implementations of the loop alike; per-command calls are counted once per
read, in C in both (the compiled parser into `CallCounts` itself, the Python path through
`count_calls`).

Flow control: at most `max_pipeline` replies are owed at once; the surplus stays parsed in
`backlog` and reading pauses (backpressure, not buffering). Reading also pauses while the
client does not read its replies, and a client whose unread replies pass the output limit is
disconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from binascii import crc_hqx
from collections import _count_elements, deque  # type: ignore[attr-defined]
from collections.abc import Callable
from operator import itemgetter

from slotcore.keyslot import hash_tag
from slotcore.resp import pack_command

from .. import _accel
from ..backend.conn import UP
from ..errors import MAX_CLIENTS, protocol_error
from ..protocol.request import make_request_parser
from ..routing.groups import RoutedGroup
from . import reply as replies
from .context import Mode, Services
from .modes.auth import AUTH_REQUIRED
from .modes.normal import NORMAL
from .reply import ReplySlot
from .state import new_client_state
from .timed import MutedTimedSlot, TimedSlot, Timing

log = logging.getLogger("slotproxy.client")
# Metrics: calls counted per read by C code (Counter's helper), not per request in Python.
count_calls = _count_elements
first_arg = itemgetter(0)

MUTED_OFF = 1
MUTED_SKIP = 2


class MutedSlot(ReplySlot):
    """The place of a reply CLIENT REPLY OFF/SKIP drops: resolved like any, writes nothing."""

    __slots__ = ()

    def resolve(self, raw: bytes) -> None:
        ReplySlot.resolve(self, b"")


if _accel.built is not None:
    _CReplySlot = _accel.built.ReplySlot

    class CompiledMutedSlot(_CReplySlot):  # type: ignore[misc, valid-type]
        """MutedSlot over the compiled ReplySlot (its twin)."""

        __slots__ = ()

        def resolve(self, raw: bytes) -> None:
            _CReplySlot.resolve(self, b"")
else:
    CompiledMutedSlot = None  # type: ignore[assignment, misc]


def select_hot_path(use_accelerator: bool, *, quiet: bool = False) -> str:
    """Pick the compiled hot path (when built and wanted) or the Python one for connections
    made from now on, and the ReplySlot class replies are queued with; returns its name."""
    name = _accel.select(use_accelerator, quiet=quiet)
    sp = _accel.speedups
    replies.use_slot_class(ReplySlot if sp is None else sp.ReplySlot)
    return name


# `proxy.dispatch.dispatch`, handed in by the listener: the connection serves the fast path
# itself and gives everything else to it (dispatch sits above the client package).
Dispatch = Callable[["ClientConnection", list[bytes], bytes], None]


class ClientConnection(asyncio.Protocol):
    # Slots, not a __dict__: ~1 KiB less per connection (10,000 idle clients are a target).
    __slots__ = (
        "_fast_run", "_time", "backlog", "closed", "closing", "deferred_error", "dirty",
        "dispatch", "eof", "fifo", "flusher", "in_backlog", "lane_barrier", "max_pipeline",
        "mode", "muted", "out", "output_limit", "parser", "pipeline_paused", "query_limit",
        "reading", "reply_ctl", "reply_off", "resume_at", "services", "skip_next", "stash",
        "stash_len", "state", "stats", "subs", "timing", "transport", "write_paused",
    )

    def __init__(self, services: Services, dispatch: Dispatch) -> None:
        self.services = services
        self.dispatch = dispatch
        self.flusher = services.flusher
        cfg = services.cfg
        limits = cfg.limits
        sp = _accel.speedups
        if sp is None:
            self.parser = make_request_parser(limits.resp_limits(),
                                              prefer_hiredis=cfg.use_hiredis)
            self._fast_run = None
        else:
            # The metrics hook's exact call count is made by the compiled parser, per read.
            meter = services.stats.meter
            self.parser = sp.RequestParser(limits.resp_limits(),
                                           calls=meter.raw_calls if meter.enabled else None)
            self._fast_run = sp.fast_run
        self.max_pipeline = limits.max_pipeline
        self.resume_at = max(1, limits.max_pipeline // 2)
        self.output_limit = limits.client_output_buffer  # pubsub.output_buffer while subscribed
        # Pub/Sub state once the client subscribed (client.modes.subscribed.Subscriptions).
        self.subs = None
        self.query_limit = limits.max_query_buffer
        cid = services.clients.next_id()
        self.state = new_client_state(id=cid, created=services.loop_time(),
                                      lane=services.pool.lane_for(cid, 2),
                                      read_from=services.router.reads.default_policy)
        self.mode: Mode = AUTH_REQUIRED if cfg.password else NORMAL
        # Replies owed, in request order (see client.reply), and the bytes ready to write.
        self.fifo: deque[ReplySlot] = deque()
        self.out: list[bytes] = []
        self.dirty = False
        # Requests parsed but not dispatched yet (pipeline bound, or waiting at a barrier).
        # Empty tuple until first needed (_backlog_q): most clients never have one, and an
        # idle connection's memory counts (bench/idle_conns.py).
        self.backlog: deque[tuple[list[bytes], bytes]] | tuple[()] = ()
        self.deferred_error: str | None = None
        # Bytes read but not parsed: while a blocked client's backlog is full it is still read
        # (so its disconnect is seen) but not parsed, up to limits.max_query_buffer.
        self.stash: list[bytes] | None = None
        self.stash_len = 0
        self.in_backlog = False
        # Set by a protocol switch with replies still owed: later commands use other lanes,
        # so they wait until everything sent before is answered (see _run_backlog).
        self.lane_barrier = False
        self.transport: asyncio.Transport | None = None
        self.closing = False
        self.closed = False
        # The client half-closed (eof_received): no more requests, the owed replies still go out.
        self.eof = False
        # CLIENT REPLY OFF|SKIP (see reply_mode): while `reply_ctl` is set the fast path is off
        # and every command goes through _dispatch_muted, which sets `muted` for its replies.
        self.reply_ctl = False
        self.reply_off = False
        self.skip_next = False
        self.muted = 0  # the current command's replies are dropped: MUTED_OFF or MUTED_SKIP
        self._time = services.loop.time
        self.stats = services.stats
        # Metrics: the dispatch path's timed request until its reply is queued (client.timed).
        self.timing: Timing | None = None
        self.pipeline_paused = False
        self.write_paused = False
        self.reading = True

    # ------------------------------------------------------------------ transport callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Called by the loop for each accepted client."""
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.state.addr = f"{peer[0]}:{peer[1]}"
        sock = transport.get_extra_info("sockname")
        if isinstance(sock, tuple):
            self.state.laddr = f"{sock[0]}:{sock[1]}"
        s = transport.get_extra_info("socket")
        if s is not None:
            self.state.fd = s.fileno()
        self.state.last_read = self._time()
        if not self.services.clients.admit(self):
            # Over max_clients: say why, then close, as Redis does.
            transport.write(MAX_CLIENTS)  # type: ignore[attr-defined]
            transport.close()
            self.closed = True
            return
        transport.set_write_buffer_limits(high=256 * 1024)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        """Called by the loop when the client connection is gone."""
        self.closed = True
        self.transport = None
        # Replies still owed to this client are dropped as they arrive; the waiters stay in the
        # backend FIFOs so those connections stay in step.
        self.fifo.clear()
        self.backlog = ()
        self.out.clear()
        self.stash = None
        self.services.clients.forget(self)
        if self.subs is not None:
            self.subs.close()  # its backend subscriber connections go with it
        self.mode.leave(self)

    def eof_received(self) -> bool:
        """Called by the loop when the client half-closed (`shutdown(SHUT_WR)`, `nc -N`).

        Like Redis and twemproxy: every complete request read before the EOF is answered
        (backlog included), then the connection is closed. True keeps the transport open for
        writing until then; False (nothing owed) lets the loop close it now.
        """
        self.eof = True
        self.reading = False  # the transport reads no more after an EOF
        if self._drained() and not self.out:
            return False
        if not self.dirty:
            self.dirty = True
            self.flusher.mark(self)
        return True

    def _drained(self) -> bool:
        # Nothing owed and nothing left to dispatch (after QUIT or a protocol error the backlog
        # is dropped, so only the FIFO counts then).
        return not self.fifo and (self.closing or not (self.backlog or self.lane_barrier))

    def pause_writing(self) -> None:
        """Called by the transport when unsent replies pass its high-water mark."""
        self.write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        """Called by the transport when the client has read enough of its replies."""
        self.write_paused = False
        if self.backlog or self.lane_barrier:
            self._run_backlog()
            if not self.backlog and not self.lane_barrier and len(self.fifo) < self.max_pipeline:
                self.pipeline_paused = False
        if not self.backlog and self.stash is not None:
            self._unstash()
        self._update_reading()

    def _update_reading(self) -> None:
        # pipeline_paused behind a barrier (a blocked client) keeps reading, so a disconnect is
        # seen at once: the backlog stays bounded by max_pipeline (plus one read), bytes past
        # it are kept unparsed up to max_query_buffer (see data_received). After an EOF there
        # is nothing more to read.
        held = self.pipeline_paused and not self.lane_barrier
        want = not (self.write_paused or held or self.closing or self.eof)
        if want != self.reading and self.transport is not None:
            self.reading = want
            if want:
                self.transport.resume_reading()
            else:
                self.transport.pause_reading()

    # ------------------------------------------------------------------ requests
    def data_received(self, data: bytes, reqs: list[list[bytes]] | None = None) -> None:
        """Called by the loop with request bytes. (`reqs`: a read the compiled twin of this
        callback parsed and accounted already, handed over here with data unused: see _serve.)"""
        if reqs is None:
            state = self.state
            state.activity += 1
            state.last_read = self._time()
            self.stats.bytes_in += len(data)  # metrics: per read, not per request
            if self.closing:
                return
            if self.stash is not None:
                self._stash(data)
                return
            reqs = self.parser.feed(data)
        # One read's requests: dispatch them, then its protocol error and backpressure.
        parser = self.parser
        if reqs:
            meter = self.stats.meter
            if meter.enabled and self._fast_run is None:
                # Metrics hook: every parsed request's call, counted in C (Counter's helper;
                # the compiled parser counts them itself).
                count_calls(meter.raw_calls, map(first_arg, reqs))
            if (self.backlog or self.lane_barrier
                    or len(reqs) + len(self.fifo) > self.max_pipeline):
                # More than the pipeline bound arrived at once: keep the surplus parsed but
                # undispatched, so replies in flight (and memory) stay bounded.
                self._backlog_q().extend(zip(reqs, parser.packed, strict=True))
                self._run_backlog()
            elif self._fast_run is not None:
                self._dispatch_chunk_compiled(reqs, parser.packed)
            else:
                self._dispatch_chunk(reqs, parser.packed)
        if parser.error is not None and not self.closing:
            if self.backlog:
                self.deferred_error = parser.error
            else:
                self._protocol_error(parser.error)
        # _after_read's own tests, inline: calling it on every read would cost the Python path
        # 0.5 % of its instructions.
        if (len(self.fifo) >= self.max_pipeline and not self.pipeline_paused) or self.lane_barrier:
            self._after_read()

    # The compiled data_received (CompiledClientConnection) serves the common case itself and
    # calls the Python methods here at the point where it leaves it: the Python code stays the
    # one definition of every other case.
    _py_data_received = data_received

    def _serve(self, reqs: list[list[bytes]]) -> None:
        """A read parsed (and accounted) by the compiled data_received, from there on."""
        ClientConnection.data_received(self, b"", reqs)

    def _after_read(self) -> None:
        if len(self.fifo) >= self.max_pipeline and not self.pipeline_paused:
            # Backpressure: stop reading this client until half its replies are written.
            self.pipeline_paused = True
            self._update_reading()
        elif self.lane_barrier and len(self.backlog) + len(self.fifo) >= self.max_pipeline:
            self.stash = []  # a blocked client's backlog is full: read on, parse later
            self.stash_len = 0

    def _stash(self, data: bytes) -> None:
        stash = self.stash
        assert stash is not None
        stash.append(data)
        self.stash_len += len(data)
        if self.stash_len > self.query_limit and self.transport is not None:
            # As Redis's client-query-buffer-limit: the client is closed.
            log.warning("client %s: unparsed requests over %d bytes behind a blocked command; "
                        "closing", self.state.addr, self.query_limit)
            self.stash = None
            self.transport.abort()

    def _unstash(self) -> None:
        stash, self.stash = self.stash, None
        if stash:
            self.data_received(b"".join(stash))

    def _dispatch_chunk(self, reqs: list[list[bytes]], packed: list[bytes]) -> None:
        # The fast path, inlined: a single-key command (GET, SET, INCR, HSET, ...) whose slot
        # has an owner, while the mode allows it. It is `dispatch.keyed` for exactly the
        # commands `CommandTable.fast_arity` lists, with `reply.expect` and
        # `BackendConn.send` written out; everything else goes through dispatch().
        if self._fast_run is not None:
            self._dispatch_chunk_compiled(reqs, packed)
            return
        services = self.services
        fast = services.table.fast_arity
        router = services.router
        by_slot = router.by_slot
        mask = router.mask
        slot_ops = services.stats.slot_ops
        hot = services.hotkeys  # hot keys: see observe/hotkeys.py (three lines in this loop)
        tick = hot.countdown
        fifo = self.fifo
        mark = self.flusher.mark
        lane = self.state.lane
        # A client reading from replicas (state.read_from) takes dispatch.keyed, which picks
        # the replica: the fast path below stays the master path, untouched.
        fast_path = self.mode.fast_path and not (self.reply_ctl or self.state.read_from)
        meter = services.stats.meter  # metrics hook: see below
        metered = meter.enabled
        countdown = meter.countdown
        every = meter.every
        fast_last = False
        i = 0
        for argv in reqs:
            arity = fast.get(argv[0]) if fast_path else None
            if arity is not None:
                n = len(argv)
                if n == arity if arity > 0 else n >= -arity:
                    key = argv[1]
                    if 0x7B in key:  # "{" (int: memchr, no buffer protocol)
                        key = hash_tag(key)
                    slot = crc_hqx(key, 0) & mask
                    group = by_slot[slot]
                    if group is not None:
                        # (an unowned slot's request is counted and sampled by dispatch)
                        slot_ops[slot] += 1
                        tick -= 1
                        if not tick:  # hot keys: 1 request in sample_rate offers its key
                            tick = hot.sample(argv[1], slot)
                        # ---- metrics hook (proxy.observe.meter), the fast path's only one:
                        # 1 request in `every` gets a TimedSlot (clock read now and when its
                        # reply is queued). Calls are counted per read (data_received).
                        if metered:
                            countdown -= 1
                            if countdown:
                                slot_reply = ReplySlot(self)
                            else:
                                countdown = every
                                slot_reply = TimedSlot(self, argv, meter,
                                                       meter.raw_named(argv[0]),
                                                       meter.gid(group.gid))
                        else:
                            slot_reply = ReplySlot(self)
                        # ---- end of metrics hook
                        fifo.append(slot_reply)
                        conn = group.lanes[lane]
                        if conn.state == UP:
                            conn.fifo.append(slot_reply)
                            conn.out.append(packed[i])
                            if not conn.dirty:
                                conn.dirty = True
                                mark(conn)
                        else:
                            conn.send(packed[i], slot_reply)
                        i += 1
                        fast_last = True
                        continue
            fast_last = False
            i += 1
            hot.countdown = tick  # dispatch.keyed counts on from here
            stop = self._dispatch_slow(reqs, packed, i - 1)
            tick = hot.countdown
            if stop:
                break
            # The command may have changed the mode or the lane (AUTH, HELLO, RESET, CLIENT
            # REPLY).
            fast_path = self.mode.fast_path and not (self.reply_ctl or self.state.read_from)
            lane = self.state.lane
        # Metrics hook: the sampler's place, for the next read (unless this read changed the
        # rate: CONFIG SET proxy-latency-sample-every has set it then).
        if meter.every == every:
            meter.countdown = countdown
        hot.countdown = tick
        if fast_last:
            self.state.cmd = reqs[i - 1][0]  # CLIENT LIST's cmd= (dispatch sets the others)
        self.state.commands += i
        services.stats.commands += i

    def _dispatch_chunk_compiled(self, reqs: list[list[bytes]], packed: list[bytes],
                                 start: int = 0) -> None:
        # The same loop with the fast path compiled (`_speedups.fast_run`: the loop above,
        # request for request, plus MSET/MGET/DEL... whose keys all have an owner, served as
        # fanout.split.split serves them): it serves reqs[i:] until a request it does not
        # serve, which goes through dispatch() here, and so on. The hooks of the loop above
        # are counted in C: the hot-key countdown (services.hotkeys.countdown, read and
        # written back by fast_run; hot.sample called at 0) and the latency sampler
        # (meter.countdown; at 0 `_timed_slot` makes the TimedSlot); a client with a read
        # policy (state.read_from) leaves the fast path, as above. From reqs[start]: the
        # compiled data_received served (and counted) the ones before.
        services = self.services
        fast = services.table.fast_arity
        router = services.router
        by_slot = router.by_slot
        mask = router.mask
        slot_ops = services.stats.slot_ops
        hot = services.hotkeys
        meter = services.stats.meter
        timed = _timed_slot if meter.enabled else None  # timed(conn, argv, group)
        mark = self.flusher.mark
        fast_run = self._fast_run
        assert fast_run is not None
        split_kinds = services.table.split_kinds
        n = len(reqs)
        fast_path = self.mode.fast_path and not (self.reply_ctl or self.state.read_from)
        fast_last = False
        i = start
        while i < n:
            if fast_path:
                j = fast_run(self, reqs, packed, i, fast, by_slot, mask, slot_ops,
                             self.state.lane, mark, UP, hot, split_kinds, meter, timed)
                if j > i:
                    fast_last = True
                    i = j
                    if i == n:
                        break
            fast_last = False
            i += 1
            if self._dispatch_slow(reqs, packed, i - 1):
                break
            fast_path = self.mode.fast_path and not (self.reply_ctl or self.state.read_from)
        if fast_last:
            self.state.cmd = reqs[i - 1][0]
        self.state.commands += i - start
        services.stats.commands += i - start

    def _dispatch_slow(self, reqs: list[list[bytes]], packed: list[bytes], i: int) -> bool:
        """reqs[i] through dispatch(); True when the rest of the chunk must not run now."""
        if self.reply_ctl:
            self._dispatch_muted(reqs[i], packed[i])
        else:
            self.dispatch(self, reqs[i], packed[i])
        if self.closing:  # QUIT: nothing after it runs
            return True
        if self.lane_barrier:  # protocol or connection switch, blocked: the rest waits
            self._backlog_q().extend(zip(reqs[i + 1:], packed[i + 1:], strict=True))
            self.pipeline_paused = True
            if not self.fifo:  # already answered (e.g. refused at once): go on now
                self.pipeline_progress()
            self._update_reading()
            return True
        return False

    def _backlog_q(self) -> deque[tuple[list[bytes], bytes]]:
        backlog = self.backlog
        if not isinstance(backlog, deque):
            backlog = self.backlog = deque()
        return backlog

    def _run_backlog(self) -> None:
        # Re-entry guard: dispatching can resolve replies synchronously (backend down, local
        # commands), which calls pipeline_progress, which would call us again.
        if self.in_backlog:
            return
        self.in_backlog = True
        backlog = self.backlog
        n = 0
        try:
            # write_paused: the client is not reading its replies; dispatching more would only
            # pile replies up in our output buffer.
            while (backlog and len(self.fifo) < self.max_pipeline and not self.closing
                   and not self.write_paused):
                if self.lane_barrier:
                    # After a HELLO that changed protocol, later commands use other backend
                    # connections: wait until everything sent before it is answered, so a
                    # pipelined SET then GET cannot be reordered across the two connections.
                    if self.fifo:
                        break
                    self.lane_barrier = False
                argv, packed = backlog.popleft()  # type: ignore[union-attr]
                if self.reply_ctl:
                    self._dispatch_muted(argv, packed)
                else:
                    self.dispatch(self, argv, packed)
                n += 1
        finally:
            self.in_backlog = False
        # The barrier lifts only once every reply owed before it is in (above, or here when
        # nothing is left to dispatch); until then reading stays paused.
        if self.lane_barrier and not self.fifo:
            self.lane_barrier = False
        self.state.commands += n
        self.services.stats.commands += n
        if not backlog and self.deferred_error is not None and not self.closing:
            self._protocol_error(self.deferred_error)
        if (backlog or self.lane_barrier) and not self.pipeline_paused:
            # pipeline_paused also means "call pipeline_progress as replies are written",
            # which is what lifts a barrier.
            self.pipeline_paused = True
            self._update_reading()

    def _dispatch_muted(self, argv: list[bytes], packed: bytes) -> None:
        # CLIENT REPLY OFF or SKIP in force: this command's replies are dropped (as Redis's
        # resetClient turns SKIP_NEXT into SKIP for exactly the next command).
        self.muted = MUTED_OFF if self.reply_off else MUTED_SKIP if self.skip_next else 0
        self.skip_next = False
        try:
            self.dispatch(self, argv, packed)
        finally:
            self.muted = 0
            self.reply_ctl = self.reply_off or self.skip_next

    def reply_mode(self, mode: bytes) -> None:
        """CLIENT REPLY ON|OFF|SKIP (lowercase), or b"reset" (RESET clears OFF and SKIP)."""
        if mode in (b"on", b"reset"):
            self.reply_off = self.skip_next = False
            if self.muted == MUTED_OFF:
                self.muted = 0  # ON's own +OK (and RESET's) is sent
        elif mode == b"off":
            self.reply_off = True
        elif mode == b"skip" and not self.reply_off:
            self.skip_next = True
        self.reply_ctl = self.reply_off or self.skip_next

    def _protocol_error(self, message: str) -> None:
        self.reply(protocol_error(message))
        log.info("client %s: protocol error: %s", self.state.addr, message)
        self.close_after_replies()

    # ------------------------------------------------------------------ the Client surface
    def reply(self, raw: bytes) -> None:
        """Answer the current request with `raw` (after any replies still owed)."""
        timing = self.timing
        if timing is not None:  # metrics: a timed request answered here and now
            self.timing = None
            self.stats.meter.finish(timing.name, timing.group, timing.t0, raw, timing.argv,
                                    self.state)
        if self.muted:
            return  # CLIENT REPLY OFF/SKIP: nothing owed, nothing written
        replies.answer(self, raw)

    def expect(self) -> ReplySlot:
        """A placeholder for the current request's reply, resolved by whoever answers it."""
        timing = self.timing
        if timing is not None:  # metrics: a timed request, answered when this slot is
            self.timing = None
            meter = self.stats.meter
            timed = (MutedTimedSlot if self.muted else TimedSlot)(
                self, timing.argv, meter, meter.named(timing.name), meter.group(timing.group))
            timed.t0 = timing.t0
            self.fifo.append(timed)
            return timed
        if self.muted:
            # Keeps its place in the order (a muted reply still comes before later ones), and
            # writes nothing when resolved.
            slot = MutedSlot(self) if self._fast_run is None else CompiledMutedSlot(self)
            self.fifo.append(slot)
            return slot
        return replies.expect(self)

    def send(self, group: RoutedGroup, packed: bytes) -> None:
        """Forward the current request unchanged to `group` on this client's lane."""
        group.lanes[self.state.lane].send(packed, self.expect())

    def set_mode(self, mode: Mode) -> None:
        self.mode = mode

    def push(self, raw: bytes) -> None:
        """Write an unsolicited frame (a Pub/Sub message) now, ahead of replies still owed."""
        self.out.append(raw)
        if not self.dirty:
            self.dirty = True
            self.flusher.mark(self)

    def defer(self, argv: list[bytes]) -> bool:
        """If replies are still owed, put the current command back at the head of the backlog,
        to run again once every one of them is answered (True); else False: run it now. For
        commands that move the client to another backend connection (WATCH, EXEC after WATCH),
        so that nothing the client sent before can execute after them."""
        if not self.fifo:
            return False
        self._backlog_q().appendleft((argv, pack_command(*argv)))
        self.stats.meter.redispatched(argv[0], self.state.cmd)  # counted once, run twice
        self.lane_barrier = True
        if self.muted == MUTED_SKIP:
            self.skip_next = True  # the skip is for this command, when it runs again
        return True

    def barrier(self) -> None:
        """Later commands wait until every reply owed now is answered (see _run_backlog)."""
        if self.fifo:
            self.lane_barrier = True

    def hold_later_commands(self) -> None:
        """Commands after the current one wait until every reply owed so far is written (a
        blocking command: they run once it is answered, in order)."""
        self.lane_barrier = True
        self.pipeline_paused = True  # so written replies call pipeline_progress

    def run_after_replies(self, argv: list[bytes], packed: bytes) -> None:
        """Dispatch the current command again once every earlier reply is written (WAIT)."""
        self._backlog_q().appendleft((argv, packed))
        self.stats.meter.redispatched(argv[0], self.state.cmd)  # counted once, run twice
        self.hold_later_commands()

    def switch_protocol(self, proto: int) -> None:
        """Move the client to the lanes of protocol `proto` (HELLO, RESET)."""
        state = self.state
        if proto == state.proto:
            return
        pool = self.services.pool
        if proto == 3:
            pool.enable_resp3()
        if self.fifo:
            self.lane_barrier = True
        state.proto = proto
        state.lane = pool.lane_for(state.id, proto)

    def pipeline_progress(self) -> None:
        """Replies were written while reading is paused: dispatch held-back work, resume."""
        if len(self.fifo) <= self.resume_at:
            if self.backlog or self.lane_barrier:
                self._run_backlog()
            if not self.backlog and self.stash is not None:
                self._unstash()
            if not self.backlog and not self.lane_barrier and len(self.fifo) < self.max_pipeline:
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
        wrote = bool(out)
        if wrote:
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            transport.write(data)
            self.stats.bytes_out += len(data)  # metrics: per write, not per reply
        if self.write_paused or self.closing or self.eof:
            self._after_write(transport, wrote)

    def _after_write(self, transport: asyncio.Transport, wrote: bool) -> None:
        # Only a client over the high-water mark (pause_writing was called) can be over the
        # output limit, so the size is asked only then.
        if wrote and self.write_paused and transport.get_write_buffer_size() > self.output_limit:
            log.warning("client %s: output buffer over %d bytes; closing", self.state.addr,
                        self.output_limit)
            if self.subs is not None and self.subs.active:
                self.services.stats.pubsub_dropped += 1
            self.closing = True
            self.fifo.clear()
            transport.abort()
            return
        if (self.closing or self.eof) and self._drained():
            transport.close()

    def close_after_replies(self) -> None:
        """Stop reading; close once every owed reply is written (QUIT, protocol errors)."""
        self.closing = True
        self._update_reading()
        if not self.fifo and not self.dirty:
            self.dirty = True
            self.flusher.mark(self)

    def peer_closed(self) -> bool:
        """Whether the client has closed its side, seen even while reading is paused (a
        blocked client with a full backlog): the kernel's TCP state, no read needed."""
        transport = self.transport
        if transport is None:
            return True
        sock = transport.get_extra_info("socket")
        tcp_info = getattr(socket, "TCP_INFO", None)
        if sock is None or tcp_info is None:
            return False
        with contextlib.suppress(OSError, AttributeError, TypeError, ValueError):
            info = sock.getsockopt(socket.IPPROTO_TCP, tcp_info, 8)
            return bool(info) and info[0] in (7, 8)  # TCP_CLOSE, TCP_CLOSE_WAIT
        return False

    def close_now(self) -> None:
        if self.transport is not None:
            self.transport.close()


if _accel.built is not None:
    class CompiledClientConnection(ClientConnection):
        """The connection of the compiled hot path: its read and write callbacks are the
        compiled twins of ClientConnection's (`_speedups.client_data_received` and
        `client_flush`), which the event loop and the Flusher call with no Python frame. They
        serve the common case and call the Python methods above for everything else."""

        __slots__ = ()
        data_received = _accel.built.client_data_received
        flush = _accel.built.client_flush
else:
    CompiledClientConnection = None  # type: ignore[assignment, misc]


def new_client(services: Services, dispatch: Dispatch) -> ClientConnection:
    """A connection of the hot path selected now (select_hot_path)."""
    if _accel.speedups is not None and CompiledClientConnection is not None:
        return CompiledClientConnection(services, dispatch)
    return ClientConnection(services, dispatch)


def _timed_slot(conn: ClientConnection, argv: list[bytes], group: RoutedGroup | None
                ) -> ReplySlot:
    """The compiled fast path's latency sample (1 request in meter.every): what the Python
    loop makes inline, as the compiled TimedSlot (clock and record in C); group None: a split
    command, "*" as dispatch labels it. A function, not a method: no bound method made per
    read."""
    meter = conn.services.stats.meter
    sp = _accel.speedups
    cls = sp.TimedSlot if sp is not None else TimedSlot
    return cls(conn, argv, meter, meter.raw_named(argv[0]),
               meter.gid(group.gid) if group is not None else meter.group("*"))


if _accel.built is not None:
    _accel.built.set_client_hooks(_timed_slot, UP)
