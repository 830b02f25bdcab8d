"""Reply placeholders: the client-side FIFO that keeps replies in request order.

Every request a client sends gets one `ReplySlot` appended to its connection's `fifo`, in
request order, *before* the request goes anywhere. Whoever produces the answer (a backend
connection, a local handler, a fan-out merge) calls `resolve(raw)`; replies are written only
from the head of the FIFO, so a pipeline whose commands go to different groups is still
answered in order. `expect` and `answer` are the only ways into the FIFO (the connection's
inlined fast path repeats `expect` for speed, and says so).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Protocol

from ..errors import merge_failed


class Marker(Protocol):
    def mark(self, conn: ReplySink) -> None: ...


class ReplySink(Protocol):
    """The part of a client connection that replies are written into."""

    fifo: deque[ReplySlot]
    out: list[bytes]
    dirty: bool
    flusher: Marker
    pipeline_paused: bool

    def pipeline_progress(self) -> None: ...

    def flush(self) -> None: ...


class ReplySlot:
    """One client request's place in the reply order."""

    __slots__ = ("data", "sink")

    def __init__(self, sink: ReplySink, data: bytes | None = None) -> None:
        self.data = data
        self.sink = sink

    def resolve(self, raw: bytes) -> None:
        """Called by whoever has the answer (backend reader, merge, local handler)."""
        self.data = raw
        s = self.sink
        fifo = s.fifo
        # Only the head can be written; a reply behind an unanswered one waits for it.
        if fifo and fifo[0] is self:
            fifo.popleft()
            out = s.out
            out.append(raw)
            while fifo and fifo[0].data is not None:
                out.append(fifo.popleft().data)  # type: ignore[arg-type]
            if not s.dirty:
                s.dirty = True
                s.flusher.mark(s)
            if s.pipeline_paused:
                s.pipeline_progress()


# The ReplySlot class `expect` and `answer` make: this one, or its compiled twin
# (proxy._accel, which calls use_slot_class when the process picks its hot path).
_Slot: type[ReplySlot] = ReplySlot


def use_slot_class(cls: type) -> None:
    global _Slot
    _Slot = cls


def expect(sink: ReplySink) -> ReplySlot:
    """A placeholder for the reply to the request being dispatched, in order."""
    slot = _Slot(sink)
    sink.fifo.append(slot)
    return slot


def answer(sink: ReplySink, raw: bytes) -> None:
    """Answer the request being dispatched with `raw` (after any replies still owed)."""
    if sink.fifo:
        sink.fifo.append(_Slot(sink, raw))
    else:
        sink.out.append(raw)
        if not sink.dirty:
            sink.dirty = True
            sink.flusher.mark(sink)


class Gather:
    """Collects the replies of the sub-requests of one client command and merges them."""

    __slots__ = ("left", "merge", "parts", "slot")

    def __init__(self, slot: ReplySlot, n: int, merge: Callable[[list[bytes]], bytes]) -> None:
        self.slot = slot
        self.parts: list[bytes] = [b""] * n
        self.left = n
        self.merge = merge

    def part(self, index: int) -> Part:
        return Part(self, index)

    def done(self, index: int, raw: bytes) -> None:
        self.parts[index] = raw
        self.left -= 1
        if self.left == 0:
            self.slot.resolve(merge_safely(self.merge, self.parts))


def merge_safely(merge: Callable[[list[bytes]], bytes], parts: list[bytes]) -> bytes:
    """merge(parts), or an error reply saying why not (the compiled Gather falls back here)."""
    try:
        return merge(parts)
    except Exception as e:  # a malformed part must not kill the event loop callback
        return merge_failed(e)


class Part:
    """Waiter for one sub-request of a Gather."""

    __slots__ = ("gather", "index")

    def __init__(self, gather: Gather, index: int) -> None:
        self.gather = gather
        self.index = index

    def resolve(self, raw: bytes) -> None:
        self.gather.done(self.index, raw)
