"""Each compiled hot-path piece against its Python twin, in isolation (no sockets, no loop).

Prints ns per operation (best of --repeat timeit runs; min is the least noisy figure on a
shared machine) for: request framing (1 and 16 pipelined SETs, a 10-key MSET, an inline
line), the key slot, the MSET split plan, backend reply framing (16 bulk replies), the
in-order release of 16 replies, and the write-coalescing Flusher. The whole-process figure
is bench/callgrind.sh's; this one says which piece gains what.

    .venv/bin/python bench/accel_micro.py
"""

from __future__ import annotations

import argparse
import sys
import timeit
from collections import deque
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxy import _accel
from proxy.backend.conn import Flusher, _deliver
from proxy.client.reply import ReplySlot
from proxy.fanout.split import plan_split
from proxy.protocol.request import HiredisRequestParser, Limits, PyRequestParser
from slotcore.keyslot import key_slot
from slotcore.resp import ReplyReader, pack_command


class Sink:
    # Slots, as ClientConnection has: attribute reads cost what they cost in the proxy.
    __slots__ = ("dirty", "fifo", "flusher", "out", "pipeline_paused")

    def __init__(self) -> None:
        self.fifo: deque[Any] = deque()
        self.out: list[bytes] = []
        self.dirty = False
        self.pipeline_paused = False
        self.flusher = self

    def mark(self, conn: Any) -> None:
        pass

    def pipeline_progress(self) -> None:
        pass


class Loop:
    def call_soon(self, fn: Any) -> None:
        pass


class Conn:
    def flush(self) -> None:
        pass


def best(fn: Any, number: int, repeat: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e9


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--number", type=int, default=20000)
    args = ap.parse_args()
    sp = _accel.built
    if sp is None:
        print(f"the compiled hot path is not built: {_accel.IMPORT_ERROR}")
        return 2
    lim = Limits()
    one = pack_command(b"SET", b"key:000123", b"x" * 32)
    sixteen = b"".join(pack_command(b"SET", b"key:%06d" % i, b"x" * 32) for i in range(16))
    mset_argv = [b"MSET"] + [x for i in range(10) for x in (b"key:%06d" % (i * 7919), b"x" * 32)]
    mset = pack_command(*mset_argv)
    inline = b"SET key:000123 " + b"x" * 32 + b"\r\n"
    replies = b"".join(b"$32\r\n" + b"x" * 32 + b"\r\n" for _ in range(16))
    groups = [object(), object()]
    by_slot = [groups[s % 2] for s in range(16384)]
    ops = [0] * 16384

    def release(slot_cls: type, deliver: Any) -> Any:
        def run() -> None:
            sink = Sink()
            fifo: deque[Any] = deque()
            for _ in range(16):
                s = slot_cls(sink)
                sink.fifo.append(s)
                fifo.append(s)
            deliver(fifo, [b"+OK\r\n"] * 16)
        return run

    def construct(slot_cls: type) -> Any:
        sink = Sink()

        def run() -> None:
            for _ in range(16):
                slot_cls(sink)
        return run

    def flusher(cls: type) -> Any:
        fl = cls(Loop())
        conns = [Conn() for _ in range(16)]

        def run() -> None:
            for c in conns:
                fl.mark(c)
            fl._run()
        return run

    def feed(obj: Any, data: bytes) -> Any:
        return lambda: obj.feed(data)

    def slot(fn: Any, key: bytes) -> Any:
        return lambda: fn(key)

    def plan(fn: Any) -> Any:
        return lambda: fn(mset_argv, 2, by_slot, 16383, ops)

    py_parser, c_parser = PyRequestParser(lim), sp.RequestParser(lim)
    hr_parser = HiredisRequestParser(lim)
    cases: list[tuple[str, int, Any, Any]] = [
        ("parse 1 SET (32 B), pure-Python twin", 1, feed(py_parser, one), feed(c_parser, one)),
        ("parse 1 SET, hiredis-assisted twin", 1, feed(hr_parser, one), feed(c_parser, one)),
        ("parse 16 pipelined SETs (hiredis twin)", 16, feed(hr_parser, sixteen),
         feed(c_parser, sixteen)),
        ("parse MSET of 10 keys (hiredis twin)", 1, feed(hr_parser, mset), feed(c_parser, mset)),
        ("parse inline SET", 1, feed(py_parser, inline), feed(c_parser, inline)),
        ("key slot (no tag)", 1, slot(key_slot, b"key:000123"), slot(sp.key_slot, b"key:000123")),
        ("key slot ({tag})", 1, slot(key_slot, b"{user1}:x"), slot(sp.key_slot, b"{user1}:x")),
        ("MSET split plan, 10 keys over 2 groups", 1, plan(plan_split), plan(sp.split_plan)),
        ("frame 16 bulk replies", 16, feed(ReplyReader(), replies),
         feed(sp.ReplyReader(), replies)),
        ("ReplySlot(sink) from Python, x16", 16, construct(ReplySlot), construct(sp.ReplySlot)),
        ("the same + release 16 replies in order", 16,
         release(ReplySlot, _deliver), release(sp.ReplySlot, sp.deliver)),
        ("flusher: mark 16 connections + run", 16, flusher(Flusher), flusher(sp.Flusher)),
    ]
    print(f"{'piece':<42}{'python ns/op':>14}{'compiled ns/op':>16}{'ratio':>8}")
    for name, per, py, c in cases:
        tp = best(py, args.number, args.repeat) / per
        tc = best(c, args.number, args.repeat) / per
        print(f"{name:<42}{tp:>14.0f}{tc:>16.0f}{tc / tp:>8.2f}")
    print("# ns per request (or per reply / per connection for the rows over 16); "
          "best of the repeats")
    return 0


if __name__ == "__main__":
    sys.exit(main())
