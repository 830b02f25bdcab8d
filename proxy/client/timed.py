"""A reply slot that times its request: what the metrics sampler hands out instead of a plain
`ReplySlot` (one request in `Meter.every`, see proxy.observe.meter).

The clock is read when the request is parsed and dispatched (here) and when its reply is
queued (`resolve`, called by whoever answers: backend reader, merge, local handler), so the
figure is the proxy-side total, the backend round trip included, writing excluded.
"""

from __future__ import annotations

from ..observe.meter import Meter, Timings, clock_ns, record
from .reply import ReplySink, ReplySlot


class TimedSlot(ReplySlot):
    __slots__ = ("argv", "group", "meter", "t0", "timings")

    def __init__(self, sink: ReplySink, argv: list[bytes], meter: Meter, timings: Timings,
                 group: Timings | None) -> None:
        self.data = None
        self.sink = sink
        self.argv = argv
        self.meter = meter
        self.timings = timings
        self.group = group
        self.t0 = clock_ns()

    def resolve(self, raw: bytes) -> None:
        record(self.meter, self.timings, self.group, self.t0, raw, self.argv,
               self.sink.state)  # type: ignore[attr-defined]
        ReplySlot.resolve(self, raw)


class MutedTimedSlot(TimedSlot):
    """A timed request under CLIENT REPLY OFF/SKIP: timed, then writes nothing."""

    __slots__ = ()

    def resolve(self, raw: bytes) -> None:
        record(self.meter, self.timings, self.group, self.t0, raw, self.argv,
               self.sink.state)  # type: ignore[attr-defined]
        ReplySlot.resolve(self, b"")


class Timing:
    """A timed request on the dispatch path, until its handler queues a reply or asks for a
    reply slot (ClientConnection.reply / expect consume it)."""

    __slots__ = ("argv", "group", "name", "t0")

    def __init__(self, name: str, argv: list[bytes], group: str) -> None:
        self.name = name
        self.argv = argv
        self.group = group
        self.t0 = clock_ns()
