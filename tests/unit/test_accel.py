"""Differential tests: the compiled hot path (proxy._accel._speedups) against its pure-Python
twins, on the same random input.

* Request streams (valid and malformed, pipelined, inline, huge bulks, every limit) fed to
  PyRequestParser and the compiled RequestParser, whole and cut at random points: the same
  requests, the same packed frames, the same error text, at the same point.
* Keys: the same slot (CRC16-XMODEM with the hash-tag rule) for random keys and tags.
* MSET/MGET/DEL split: the same destinations, key indices, frames and slot counts.
* Reply streams (RESP2 and RESP3, nested, with garbage): the same replies, the same error
  count, the same ProtocolError text.
* The in-order release of replies (ReplySlot + delivery): the same bytes written in the same
  order and the same flusher/pipeline calls, for random resolution orders.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterator
from typing import Any

import pytest

from proxy import _accel
from proxy.client.reply import ReplySlot, answer
from proxy.fanout.split import plan_split
from proxy.protocol.request import Limits, PyRequestParser
from slotcore.keyslot import key_slot
from slotcore.resp import ProtocolError, ReplyReader, encode_array, pack_command
from tests.unit.test_resp import mutate


@pytest.fixture(scope="module")
def sp() -> Any:
    assert _accel.built is not None, f"compiled hot path not built: {_accel.IMPORT_ERROR}"
    return _accel.built


def cuts(stream: bytes, rng: random.Random, n: int) -> list[bytes]:
    """`stream` cut at up to n random points (sorted, possibly empty pieces)."""
    points = sorted(rng.randrange(len(stream) + 1) for _ in range(rng.randint(0, n)))
    out, last = [], 0
    for p in [*points, len(stream)]:
        out.append(stream[last:p])
        last = p
    return out


def run(parser: Any, chunks: list[bytes]) -> list[tuple[int, list[list[bytes]], list[bytes]]]:
    """What the parser returns per feed (index, requests, packed) plus its final error."""
    got = []
    for i, c in enumerate(chunks):
        reqs = parser.feed(c)
        got.append((i, reqs, list(parser.packed)))
    got.append((-1, [], [parser.error]))  # type: ignore[list-item]
    return got


# ------------------------------------------------------------------------------ requests
ARG_BYTES = b"ab{}\r\n*$ '\"\\\x00\xff"
INLINE_BYTES = b"ab \t'\"\\x4\x0b\x0c\x00{}"


def random_stream(rng: random.Random, big: int) -> bytes:
    parts: list[bytes] = []
    for _ in range(rng.randint(1, 12)):
        r = rng.random()
        if r < 0.45:
            argv = [rng.choice([b"GET", b"SET", b"MSET", b"ECHO", b"del"])]
            argv += [bytes(rng.choice(ARG_BYTES) for _ in range(rng.randint(0, 8)))
                     for _ in range(rng.randint(0, 5))]
            parts.append(pack_command(*argv))
        elif r < 0.55:
            parts.append(pack_command(b"SET", b"big", b"v" * rng.randint(big // 2, big)))
        elif r < 0.75:
            line = bytes(rng.choice(INLINE_BYTES) for _ in range(rng.randint(0, 14)))
            parts.append(b"ECHO " + line + rng.choice([b"\r\n", b"\n", b"\r\r\n"]))
        elif r < 0.85:
            # Non-canonical but valid: "\r" followed by any byte ends a header line.
            parts.append(b"*2\rx$4\r\nECHO\r\n$2\ryhi\r\n")
        else:
            parts.append(rng.choice([b"*0\r\n", b"*-1\r\n", b"\r\n", b"PING\r\n", b"\n",
                                     b"*1\r\n$4\r\nPING\r\n"]))
    return mutate(rng, b"".join(parts), rng.randint(0, 3), b"*$:+-0123456789\r\n aX\x00")


LIMITS = [
    Limits(),
    Limits(max_bulk_len=1000, max_multibulk_len=5, max_inline_len=40),
    Limits(max_bulk_len=20000, max_multibulk_len=50, max_inline_len=12),
    Limits(max_bulk_len=0, max_multibulk_len=1, max_inline_len=1),
]


@pytest.mark.parametrize("seed", range(8))
def test_request_parsers_agree(sp: Any, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(300):
        limits = rng.choice(LIMITS)
        stream = random_stream(rng, big=rng.choice([100, 5000, 70000]))
        chunkings = [[stream], cuts(stream, rng, 3), cuts(stream, rng, 30)]
        for chunks in chunkings:
            ref = run(PyRequestParser(limits), chunks)
            got = run(sp.RequestParser(limits), chunks)
            assert got == ref, (limits, chunks)


def test_request_parser_byte_by_byte(sp: Any) -> None:
    rng = random.Random(99)
    for _ in range(60):
        stream = random_stream(rng, big=300)
        chunks = [stream[i:i + 1] for i in range(len(stream))]
        limits = rng.choice(LIMITS)
        assert run(sp.RequestParser(limits), chunks) == run(PyRequestParser(limits), chunks)


def test_canonical_requests_are_forwarded_as_sliced(sp: Any) -> None:
    # A canonical request is forwarded as the very bytes received: a whole chunk is the same
    # object, a request inside a chunk its exact slice; a non-canonical one is re-packed.
    one = pack_command(b"SET", b"k", b"v")
    p = sp.RequestParser(Limits())
    assert p.feed(one) == [[b"SET", b"k", b"v"]] and p.packed[0] is one
    assert p.feed(b"*1\r\n$4\r\nPING\r\n" + one) == [[b"PING"], [b"SET", b"k", b"v"]]
    assert p.packed == [pack_command(b"PING"), one]
    assert p.feed(b"*1\rx$4\r\nPING\r\n") == [[b"PING"]]
    assert p.packed == [pack_command(b"PING")]


def test_request_parser_bytes_like_input(sp: Any) -> None:
    data = pack_command(b"GET", b"k")
    for kind in (bytearray, memoryview):
        p = sp.RequestParser(Limits())
        assert p.feed(kind(data)) == [[b"GET", b"k"]] and p.packed == [data]


# ------------------------------------------------------------------------------ slots
def random_keys(rng: random.Random, n: int) -> Iterator[bytes]:
    for _ in range(n):
        yield bytes(rng.choice(b"ab{}\x00\xff7") for _ in range(rng.randint(0, 12)))


def test_key_slot_agrees(sp: Any) -> None:
    rng = random.Random(3)
    for key in random_keys(rng, 20000):
        for nslots in (16384, 1024):
            assert sp.key_slot(key, nslots) == key_slot(key, nslots), key
    assert sp.key_slot(b"foo") == 12182  # Redis: CLUSTER KEYSLOT foo
    assert sp.key_slot(b"{user1000}.following") == sp.key_slot(b"{user1000}.followers")
    assert sp.crc16(b"123456789") == 0x31C3  # the CRC16-XMODEM check value


# ------------------------------------------------------------------------------ split
class G:
    """A stand-in group: compared by identity, as RoutedGroup is."""

    def __init__(self, gid: int) -> None:
        self.gid = gid

    def __repr__(self) -> str:
        return f"G{self.gid}"


@pytest.mark.parametrize("nslots", [16384, 1024])
def test_split_plan_agrees(sp: Any, nslots: int) -> None:
    rng = random.Random(nslots)
    groups = [G(1), G(2), G(3)]
    for _ in range(400):
        # Some slots without an owner (in transit or unassigned).
        by_slot = [None if rng.random() < 0.1 else groups[(s * 7) % 3] for s in range(nslots)]
        step = rng.choice([1, 2])
        head = b"MSET" if step == 2 else rng.choice([b"MGET", b"DEL", b"exists"])
        argv = [head]
        for key in random_keys(rng, rng.randint(1, 25)):
            argv.append(key)
            if step == 2:
                argv.append(b"v" * rng.randint(0, 40))
        ops_ref, ops_got = [0] * nslots, [0] * nslots
        ref = plan_split(argv, step, by_slot, nslots - 1, ops_ref)
        got = sp.split_plan(argv, step, by_slot, nslots - 1, ops_got)
        assert got == ref, argv
        assert ops_got == ops_ref
        for d_ref, d_got in zip(ref[0], got[0], strict=True):
            assert d_ref is d_got or (type(d_ref) is int and d_ref == d_got)


# ------------------------------------------------------------------------------ replies
REPLY_PIECES = [
    b"+OK\r\n", b"-ERR x\r\n", b":42\r\n", b"$5\r\nhello\r\n", b"$-1\r\n", b"*-1\r\n",
    b"*0\r\n", b"_\r\n", b",1.5\r\n", b"#t\r\n", b"(123\r\n", b"!3\r\nerr\r\n",
    b"=8\r\ntxt:abcd\r\n", b"%1\r\n+a\r\n:1\r\n", b"~2\r\n:1\r\n:2\r\n", b">2\r\n+m\r\n+c\r\n",
    b"|1\r\n+k\r\n+v\r\n:5\r\n", b"$+3\r\nabc\r\n", b"$ 2\r\nab\r\n", b"*1_0\r\n",
]


def random_replies(rng: random.Random) -> bytes:
    parts = []
    for _ in range(rng.randint(1, 10)):
        r = rng.random()
        if r < 0.6:
            parts.append(rng.choice(REPLY_PIECES))
        elif r < 0.8:
            items = [b"x" * rng.randint(0, 30) for _ in range(rng.randint(0, 6))]
            parts.append(encode_array(items))
        elif r < 0.9:
            parts.append(b"$%d\r\n%s\r\n" % (n := rng.randint(0, 70000), b"z" * n))
        else:
            parts.append(b"*3\r\n" + rng.choice(REPLY_PIECES) + b"*1\r\n" + rng.choice(REPLY_PIECES)
                         + rng.choice(REPLY_PIECES))
    s = bytearray(b"".join(parts))
    if rng.random() < 0.3:
        j = rng.randrange(len(s))
        s[j] = rng.choice(b"@x*$0-\r\n9")
    return bytes(s)


def read_all(reader: Any, chunks: list[bytes]) -> tuple[list[Any], str | None, int]:
    out: list[Any] = []
    for c in chunks:
        try:
            out.append(reader.feed(c))
        except ProtocolError as e:
            return out, str(e), reader.errors
    return out, None, reader.errors


@pytest.mark.parametrize("seed", range(6))
def test_reply_readers_agree(sp: Any, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(300):
        stream = random_replies(rng)
        for chunks in ([stream], cuts(stream, rng, 4), cuts(stream, rng, 40)):
            assert read_all(sp.ReplyReader(), chunks) == read_all(ReplyReader(), chunks), chunks


def test_reply_reader_reset(sp: Any) -> None:
    rr = sp.ReplyReader()
    assert rr.feed(b"$10\r\nabc") == []
    rr.reset()
    assert rr.feed(b"+OK\r\n") == [b"+OK\r\n"]
    rr.errors = 0
    assert rr.feed(b"-E\r\n") == [b"-E\r\n"] and rr.errors == 1


# ------------------------------------------------------------------------------ in-order release
class Flusher:
    def __init__(self, log: list[Any]) -> None:
        self.log = log

    def mark(self, conn: Any) -> None:
        self.log.append("mark")


class Sink:
    """What ReplySlot writes into (the ReplySink surface of a client connection)."""

    def __init__(self) -> None:
        self.fifo: deque[Any] = deque()
        self.out: list[bytes] = []
        self.dirty = False
        self.log: list[Any] = []
        self.flusher = Flusher(self.log)
        self.pipeline_paused = False

    def pipeline_progress(self) -> None:
        self.log.append(("progress", len(self.fifo), list(self.out)))

    def flush(self) -> None:
        self.log.append(("flush", list(self.out)))
        self.out.clear()
        self.dirty = False


def release(slot_cls: type, deliver: Any, seed: int) -> list[Any]:
    rng = random.Random(seed)
    sink = Sink()
    backends: list[deque[Any]] = [deque(), deque()]
    placed = []
    for i in range(rng.randint(1, 40)):
        if rng.random() < 0.15:
            answer_with(slot_cls, sink, b"+local%d\r\n" % i)
            continue
        slot = slot_cls(sink)
        sink.fifo.append(slot)
        b = rng.randrange(2)
        backends[b].append(slot)
        placed.append(b)
    sink.pipeline_paused = rng.random() < 0.5
    while any(backends):
        b = rng.choice([k for k in (0, 1) if backends[k]])
        n = rng.randint(1, len(backends[b]))
        deliver(backends[b], [b"$1\r\n%d\r\n" % rng.randrange(10) for _ in range(n)])
        if rng.random() < 0.3:
            sink.flush()
    return [sink.log, sink.out, len(sink.fifo)]


def answer_with(slot_cls: type, sink: Sink, raw: bytes) -> None:
    # client.reply.answer, with the slot class under test.
    from proxy.client import reply

    saved = reply._Slot
    reply.use_slot_class(slot_cls)
    try:
        answer(sink, raw)
    finally:
        reply.use_slot_class(saved)


def py_deliver(fifo: deque[Any], replies: list[bytes]) -> None:
    for raw in replies:
        fifo.popleft().resolve(raw)


@pytest.mark.parametrize("seed", range(40))
def test_in_order_release_agrees(sp: Any, seed: int) -> None:
    assert release(sp.ReplySlot, sp.deliver, seed) == release(ReplySlot, py_deliver, seed)


def test_reply_slot_subclass_and_foreign_waiters(sp: Any) -> None:
    # A subclass overriding resolve (MutedSlot) and a non-ReplySlot waiter (a Gather part) go
    # through their own resolve; data/sink are plain attributes.
    class Muted(sp.ReplySlot):
        __slots__ = ()

        def resolve(self, raw: bytes) -> None:
            sp.ReplySlot.resolve(self, b"")

    class Part:
        def __init__(self) -> None:
            self.got: list[bytes] = []

        def resolve(self, raw: bytes) -> None:
            self.got.append(raw)

    sink = Sink()
    a, m = sp.ReplySlot(sink), Muted(sink)
    sink.fifo.extend([a, m])
    part = Part()
    sp.deliver(deque([m, part, a]), [b"+1\r\n", b"+2\r\n", b"+3\r\n"])
    assert part.got == [b"+2\r\n"]
    assert sink.out == [b"+3\r\n", b""] and not sink.fifo
    assert a.data == b"+3\r\n" and a.sink is sink
    with pytest.raises(IndexError):
        sp.deliver(deque(), [b"+OK\r\n"])


# ------------------------------------------------------------------------------ flusher
class Loop:
    """call_soon recorded, run by hand."""

    def __init__(self) -> None:
        self.soon: list[Any] = []

    def call_soon(self, fn: Any) -> object:
        self.soon.append(fn)
        return object()


def flush_trace(flusher_cls: type, seed: int) -> list[Any]:
    rng = random.Random(seed)
    trace: list[Any] = []

    class Conn:
        def __init__(self, name: int) -> None:
            self.name = name

        def flush(self) -> None:
            trace.append(("flush", self.name))
            if rng.random() < 0.2:  # a flush that marks again (a write that made more output)
                fl.mark(self)

    loop = Loop()
    fl = flusher_cls(loop)
    conns = [Conn(i) for i in range(5)]
    for _ in range(30):
        for _ in range(rng.randint(0, 4)):
            fl.mark(rng.choice(conns))
        trace.append(("scheduled", len(loop.soon)))
        if loop.soon and rng.random() < 0.7:
            loop.soon.pop(0)()
    return trace


@pytest.mark.parametrize("seed", range(10))
def test_flusher_agrees(sp: Any, seed: int) -> None:
    from proxy.backend.conn import Flusher

    assert flush_trace(sp.Flusher, seed) == flush_trace(Flusher, seed)


# ------------------------------------------------------------------------------ gather / merge
class Slot:
    def __init__(self) -> None:
        self.got: list[bytes] = []

    def resolve(self, raw: bytes) -> None:
        self.got.append(raw)


def random_part(rng: random.Random, kind: int, nkeys: int) -> bytes:
    r = rng.random()
    if r < 0.1:
        return b"-ERR part %d\r\n" % rng.randrange(5)
    if r < 0.2:  # odd shapes: the Python merge decides (and its error texts)
        return rng.choice([b"+OK\r\n", b":x\r\n", b":1\r\n", b"*1\r\n$1\r\na\r\n", b"_\r\n",
                           b"~1\r\n:1\r\n", b"*-1\r\n", b"$-1\r\n", b":99999999999999999999\r\n"])
    if kind == 0:
        return b"+OK\r\n"
    if kind == 1:
        return b":%d\r\n" % rng.randint(-3, 50)
    items: list[Any] = [rng.choice([b"v%d" % rng.randrange(99), None, b"", [b"x"]])
                        for _ in range(nkeys)]
    return encode_array(items)


@pytest.mark.parametrize("seed", range(10))
def test_gather_merges_agree(sp: Any, seed: int) -> None:
    from proxy.client.reply import Gather
    from proxy.fanout.merge import merge_mget, merge_ok, merge_sum

    rng = random.Random(seed)
    for _ in range(300):
        kind = rng.randrange(3)
        nparts = rng.randint(2, 4)
        nkeys = rng.randint(nparts, 12)
        keys = list(range(nkeys))
        rng.shuffle(keys)
        cut = sorted(rng.sample(range(1, nkeys), nparts - 1))
        positions = [sorted(keys[a:b]) for a, b in zip([0, *cut], [*cut, nkeys], strict=True)]
        parts = [random_part(rng, kind, len(p)) for p in positions]
        merge = (merge_ok, merge_sum, merge_mget(positions, nkeys))[kind]
        ref_slot, got_slot = Slot(), Slot()
        ref = Gather(ref_slot, nparts, merge)
        got = sp.Gather(got_slot, nparts, kind, positions if kind == 2 else None, nkeys, None)
        order = list(range(nparts))
        rng.shuffle(order)
        for i in order:
            ref.part(i).resolve(parts[i])
            got.part(i).resolve(parts[i])
        assert got_slot.got == ref_slot.got, (kind, positions, parts)


def test_count_calls_matches_its_twin(sp: Any) -> None:
    # The metrics hook's exact per-command count: runs of one name (pipelines) and mixes.
    from collections import _count_elements  # type: ignore[attr-defined]
    rng = random.Random(7)
    names = [b"GET", b"get", b"SET", b"MSET", b"PING", b"G"]
    for _ in range(300):
        reqs = [[rng.choice(names), b"k"] for _ in range(rng.randrange(0, 40))]
        want: dict[bytes, int] = {b"GET": 5}
        got = dict(want)
        _count_elements(want, (r[0] for r in reqs))
        sp.count_calls(got, reqs)
        assert got == want
    with pytest.raises(TypeError):
        sp.count_calls({}, [[]])


def test_call_counts_is_the_dict_it_replaces(sp: Any) -> None:
    # Meter.raw_calls on the compiled path: a C table, with an ordinary dict beside it for
    # names too long for the table or past its bound. Every operation Meter and the hooks use
    # (count_calls, the parser's count, get, [], []=, items, len, clear) against a dict.
    from collections import _count_elements  # type: ignore[attr-defined]
    rng = random.Random(11)
    short = [bytes(rng.choice(b"abcdefgGETSET") for _ in range(rng.randrange(1, 8)))
             for _ in range(900)]  # more distinct names than the table holds
    long = [b"X" * n for n in (24, 25, 40, 200)]  # 24 fits, the others overflow
    names = short + long
    ref: dict[bytes, int] = {}
    got = sp.CallCounts()
    for _ in range(400):
        reqs = [[rng.choice(names), b"k"] for _ in range(rng.randrange(0, 30))]
        op = rng.randrange(4)
        if op == 0:
            _count_elements(ref, (r[0] for r in reqs))
            sp.count_calls(got, reqs)
        elif op == 1:
            _count_elements(ref, (r[0] for r in reqs))
            _count_elements(got, (r[0] for r in reqs))  # the Python path's count, into C
        elif op == 2:
            packed = b"".join(pack_command(*r) for r in reqs)
            _count_elements(ref, (r[0] for r in reqs))
            sp.RequestParser(calls=got).feed(packed)
        else:  # Meter.dispatched: a count moves off the raw name
            k = rng.choice(names)
            ref[k] = ref.get(k, 0) - 1
            got[k] = got.get(k, 0) - 1
        assert sorted(got.items()) == sorted(ref.items())
        assert len(got) == len(ref)
    for k in names:
        assert got.get(k) == ref.get(k)
        assert got.get(k, 0) == ref.get(k, 0)
        if k in ref:
            assert got[k] == ref[k]
        else:
            with pytest.raises(KeyError):
                got[k]
    assert got.get("GET", 3) == 3  # a str is never a raw name
    got.clear()
    assert got.items() == [] and len(got) == 0 and got.get(names[0]) is None
    with pytest.raises(TypeError):
        del got[b"GET"]
    with pytest.raises(TypeError):
        sp.CallCounts(1)


def test_timed_slot_records_as_its_twin(sp: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # The compiled latency sample against proxy.observe.meter.record (and the Python
    # TimedSlot): the same counts, sums, buckets, error counts and slow-log entries for the
    # same latencies, around every bucket bound; then a whole resolve releases the reply.
    from types import SimpleNamespace

    from proxy.observe import meter as meter_mod
    from proxy.observe.histogram import BOUNDS_US
    from proxy.observe.meter import Meter, Timings, record
    dts = [0, 1, 999, 1000, 1001, 5_000_000, 10**12]
    for b in BOUNDS_US:
        dts += [b * 1000 - 1, b * 1000, b * 1000 + 1000, b * 1000 + 1001]
    client = SimpleNamespace(addr="127.0.0.1:5", name=b"app")
    for slower_than in (-1, 0, 5000):
        ref_m, got_m = Meter(every=1), Meter(every=1)
        ref_m.slowlog.slower_than = got_m.slowlog.slower_than = slower_than
        ref_t, got_t = Timings(label="get"), Timings(label="get")
        ref_g, got_g = Timings(label="2"), Timings(label="2")
        for i, dt in enumerate(dts):
            raw = [b"+OK\r\n", b"-ERR x\r\n", b"!3\r\nerr\r\n", b""][i % 4]
            g_ref, g_got = (ref_g, got_g) if i % 3 else (None, None)
            argv = [b"GET", b"k%d" % i]
            monkeypatch.setattr(meter_mod, "clock_ns", lambda dt=dt: dt)
            record(ref_m, ref_t, g_ref, 0, raw, argv, client)
            slot = sp.TimedSlot(SimpleNamespace(state=client), argv, got_m, got_t, g_got)
            slot.t0 = 0
            slot.record_at(raw, dt)
        assert got_t == ref_t and got_g == ref_g
        assert [(e.usec, e.argv, e.addr, e.name, e.group) for e in got_m.slowlog.get(-1)] \
            == [(e.usec, e.argv, e.addr, e.name, e.group) for e in ref_m.slowlog.get(-1)]
        assert (len(got_m.slowlog) > 0) == (slower_than >= 0)
    # resolve: recorded once, then released in order as a ReplySlot
    sink = SimpleNamespace(fifo=deque(), out=[], dirty=True, pipeline_paused=False,
                           state=client)
    m, t = Meter(every=1), Timings()
    slot = sp.TimedSlot(sink, [b"GET", b"k"], m, t, None)
    assert isinstance(slot, sp.ReplySlot) and slot.data is None
    sink.fifo.append(slot)
    slot.resolve(b"$1\r\nv\r\n")
    assert sink.out == [b"$1\r\nv\r\n"] and not sink.fifo and t.count == 1 and t.failed == 0
    assert sum(t.buckets) == 1 and t.sum_ns >= 0


def test_slot_attribute_cache_follows_the_type(sp: Any) -> None:
    # The compiled code reads and writes __slots__ attributes by offset, cached per (type,
    # name): a class changed after the first access (a property put over a slot), an
    # instance dict, and an empty slot (AttributeError) behave as plain attribute access.
    class Sink:
        __slots__ = ("dirty", "fifo", "flusher", "out", "pipeline_paused", "state")

    def make(cls: type) -> Any:
        s = cls()
        s.fifo, s.out, s.dirty, s.pipeline_paused = deque(), [], True, False
        return s

    def release(sink: Any, raw: bytes) -> None:
        slot = sp.ReplySlot(sink)
        sink.fifo.append(slot)
        slot.resolve(raw)

    a = make(Sink)
    release(a, b"+1\r\n")
    release(a, b"+2\r\n")
    assert a.out == [b"+1\r\n", b"+2\r\n"]
    seen: list[bytes] = []

    class Out(list):
        def append(self, x: bytes) -> None:
            seen.append(x)

    store = Out()
    Sink.out = property(lambda self: store)  # type: ignore[assignment]  # shadows the slot
    b = Sink()
    b.fifo, b.dirty, b.pipeline_paused = deque(), True, False
    release(b, b"+3\r\n")
    assert seen == [b"+3\r\n"]

    class Plain:  # no slots: an instance dict
        pass

    c = make(Plain)
    release(c, b"+4\r\n")
    assert c.out == [b"+4\r\n"]

    class Bare:
        __slots__ = ("dirty", "fifo", "out", "pipeline_paused")

    d = Bare()
    d.fifo, d.dirty, d.pipeline_paused = deque(), True, False  # out never set
    slot = sp.ReplySlot(d)
    d.fifo.append(slot)
    with pytest.raises(AttributeError):
        slot.resolve(b"+5\r\n")


def test_class_constant_in_the_attribute_cache_follows_the_class(sp: Any) -> None:
    # A plain class attribute of a type whose instances have no __dict__ (Mode.fast_path) is
    # cached as a constant per call site; setting it on the class must be seen at once.
    progressed: list[int] = []

    class Sink:
        __slots__ = ("dirty", "fifo", "flusher", "out")
        pipeline_paused = False  # a class constant: no instance can shadow it

        def pipeline_progress(self) -> None:
            progressed.append(len(self.out))

    s = Sink()
    s.fifo, s.out, s.dirty = deque(), [], True

    def release(raw: bytes) -> None:
        slot = sp.ReplySlot(s)
        s.fifo.append(slot)
        slot.resolve(raw)

    release(b"+1\r\n")
    release(b"+2\r\n")
    assert progressed == []
    Sink.pipeline_paused = True  # type: ignore[assignment]
    release(b"+3\r\n")
    assert progressed == [3]
    Sink.pipeline_paused = False  # type: ignore[assignment]
    release(b"+4\r\n")
    assert progressed == [3]
    assert s.out == [b"+1\r\n", b"+2\r\n", b"+3\r\n", b"+4\r\n"]
