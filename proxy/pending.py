"""Reply placeholders: the client-side FIFO entries that keep replies in request order.

Every request a client sends gets one `Reply` appended to its session's `pending` deque, in
request order, *before* the request goes anywhere. Whoever produces the answer (a backend
connection, a local handler, a fan-out merge) calls `resolve(raw)`; the session writes replies
only from the head of its deque, so a pipeline whose commands go to different groups is still
answered in order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .session import ClientSession


class Reply:
    """One client request's reply slot."""

    __slots__ = ("data", "session")

    def __init__(self, session: ClientSession, data: bytes | None = None) -> None:
        self.data = data
        self.session = session

    def resolve(self, raw: bytes) -> None:
        """Called by whoever has the answer (backend reader, merge, local handler)."""
        self.data = raw
        s = self.session
        pending = s.pending
        # Only the head can be written; a reply behind an unanswered one waits for it.
        # (ClientSession.write_ready, inlined: this runs once per reply.)
        if pending and pending[0] is self:
            pending.popleft()
            out = s.out
            out.append(raw)
            while pending and pending[0].data is not None:
                out.append(pending.popleft().data)
            if not s.dirty:
                s.dirty = True
                s.flusher.mark(s)
            if s.pipeline_paused:
                s.pipeline_progress()


class Gather:
    """Collects the replies of the sub-requests of one client command and merges them."""

    __slots__ = ("left", "merge", "parts", "reply")

    def __init__(self, reply: Reply, n: int, merge: Callable[[list[bytes]], bytes]) -> None:
        self.reply = reply
        self.parts: list[bytes] = [b""] * n
        self.left = n
        self.merge = merge

    def part(self, index: int) -> Part:
        return Part(self, index)

    def done(self, index: int, raw: bytes) -> None:
        self.parts[index] = raw
        self.left -= 1
        if self.left == 0:
            try:
                merged = self.merge(self.parts)
            except Exception as e:  # a malformed part must not kill the event loop callback
                merged = f"-ERR proxy could not merge replies: {e}\r\n".encode()
            self.reply.resolve(merged)


class Part:
    """Waiter for one sub-request of a Gather."""

    __slots__ = ("gather", "index")

    def __init__(self, gather: Gather, index: int) -> None:
        self.gather = gather
        self.index = index

    def resolve(self, raw: bytes) -> None:
        self.gather.done(self.index, raw)
