"""Tests for proxy.protocol.request and slotcore.resp: request parsers (both implementations),
reply framing, encoders.

Every request-parser test runs against PyRequestParser, HiredisRequestParser and the compiled
RequestParser (proxy._accel), every reply-framing test against slotcore's ReplyReader and its
compiled twin, and the corpus/error tests feed each stream whole, split in two at every byte,
byte by byte and in random chunks: the result must never depend on how the bytes were chunked.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from proxy import _accel
from proxy.protocol import request
from proxy.protocol.request import (
    HiredisRequestParser,
    Limits,
    PyRequestParser,
    make_request_parser,
    split_inline_args,
)
from slotcore import resp
from slotcore.resp import (
    HAVE_HIREDIS,
    NIL,
    OK,
    PONG,
    ProtocolError,
    ReplyErrorValue,
    ReplyReader,
    encode_array,
    encode_bulk,
    encode_error,
    encode_int,
    encode_raw_array,
    encode_simple,
    frame_reply,
    pack_command,
    parse_reply,
    split_array,
)

ParserCls = Any


def compiled() -> Any:
    # The compiled hot path is built by the install: its absence is a broken install.
    assert _accel.built is not None, f"compiled hot path not built: {_accel.IMPORT_ERROR}"
    return _accel.built


class CompiledParser:
    """Marker param: the compiled RequestParser (resolved when a test runs, so collection
    works even where it is not built and the test then fails saying so)."""

    def __new__(cls, limits: Limits | None = None) -> Any:  # type: ignore[misc]
        return compiled().RequestParser(limits or Limits())


class CompiledReplyReader:
    def __new__(cls) -> Any:  # type: ignore[misc]
        return compiled().ReplyReader()


PARSERS = [PyRequestParser, HiredisRequestParser, CompiledParser]


@pytest.fixture(params=PARSERS, ids=["py", "hiredis", "compiled"])
def parser_cls(request: pytest.FixtureRequest) -> ParserCls:
    # hiredis is a dependency: its absence is a broken install, not a reason to skip.
    assert HAVE_HIREDIS, "hiredis is not installed"
    return request.param


@pytest.fixture(params=[ReplyReader, CompiledReplyReader], ids=["py", "compiled"])
def reader_cls(request: pytest.FixtureRequest) -> Any:
    return request.param


def pending(p: Any) -> int:
    """Bytes a parser holds for an incomplete request."""
    return p.pending_bytes if hasattr(p, "pending_bytes") else p._pend_len


def run(
    cls: ParserCls, chunks: list[bytes], limits: Limits | None = None
) -> tuple[list[list[bytes]], list[bytes], str | None]:
    """Feed `chunks` to a fresh parser; (all requests, all packed, error)."""
    p = cls(limits or Limits())
    reqs: list[list[bytes]] = []
    packed: list[bytes] = []
    for chunk in chunks:
        failed_before = p.error is not None
        got = p.feed(chunk)
        assert len(p.packed) == len(got)
        if failed_before:
            assert got == []  # dead after an error
        reqs += got
        packed += p.packed
    return reqs, packed, p.error


def splits_in_two(data: bytes, step: int = 1) -> Iterator[list[bytes]]:
    for i in range(0, len(data) + 1, step):
        yield [data[:i], data[i:]]


def byte_by_byte(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def random_chunks(data: bytes, seed: int, max_size: int = 64) -> list[bytes]:
    rng = random.Random(seed)
    out, i = [], 0
    while i < len(data):
        n = rng.randint(1, max_size)
        out.append(data[i : i + n])
        i += n
    return out


def decode_packed(packed: bytes) -> list[list[bytes]]:
    p = PyRequestParser()
    reqs = p.feed(packed)
    assert p.error is None
    return reqs


# ---------------------------------------------------------------------------------------------
# Corpus of valid streams
# ---------------------------------------------------------------------------------------------

BIG = bytes(range(256)) * 4096  # 1 MiB, every byte value, "\r\n" included
PIPELINE = [[b"SET", b"key:%d" % i, b"value-%d\r\n" % i] for i in range(1000)]

CORPUS: list[tuple[str, bytes, list[list[bytes]]]] = [
    (
        "multibulk",
        b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n",
        [[b"GET", b"a"], [b"SET", b"k", b"hello"]],
    ),
    ("empty-bulk", b"*2\r\n$4\r\nECHO\r\n$0\r\n\r\n", [[b"ECHO", b""]]),
    (
        "inline",
        b"PING\r\nSET a b\nGET  \t a\r\n",
        [[b"PING"], [b"SET", b"a", b"b"], [b"GET", b"a"]],
    ),
    (
        "inline-quotes",
        b'SET k "a b\\x41\\n\\\\\\"\\q" \'it\\\'s "x"\'\r\nECHO "" \'\'\r\nECHO fo"o b"\r\n',
        [
            [b"SET", b"k", b'a bA\n\\"q', b'it\'s "x"'],
            [b"ECHO", b"", b""],
            [b"ECHO", b"foo b"],
        ],
    ),
    (
        "inline-escapes",
        b'ECHO "\\r\\t\\b\\a\\xff\\x4G\\xg"\r\nECHO a\x0bb \x0b\x0cc\r\n',
        [[b"ECHO", b"\r\t\b\a\xffx4Gxg"], [b"ECHO", b"a\x0bb", b"c"]],
    ),
    ("inline-cr-inside", b"ECHO a\rb\r\r\n", [[b"ECHO", b"a", b"b"]]),
    ("inline-nul-cuts-line", b"ECHO a\x00b c\r\nPING\r\n", [[b"ECHO", b"a"], [b"PING"]]),
    ("empty-lines", b"\r\n\n  \r\n\t\n\r\nPING\r\n\r\n", [[b"PING"]]),
    ("zero-and-nil-count", b"*0\r\n*-1\r\n*-5\r\n*1\r\n$4\r\nPING\r\n*0\r\n", [[b"PING"]]),
    (
        "mixed",
        b"*1\r\n$4\r\nPING\r\nECHO x\r\n*2\r\n$4\r\nECHO\r\n$1\r\ny\r\nPING\n*1\r\n$4\r\nPING\r\n",
        [[b"PING"], [b"ECHO", b"x"], [b"ECHO", b"y"], [b"PING"], [b"PING"]],
    ),
    (
        "binary",
        pack_command(b"SET", b"k\r\n", b"\r\n*1\r\n$4\r\n\x00\xff") + pack_command(b"GET", b"*"),
        [[b"SET", b"k\r\n", b"\r\n*1\r\n$4\r\n\x00\xff"], [b"GET", b"*"]],
    ),
    # Redis does not check the byte after "\r" in headers nor the 2 bytes after bulk data.
    ("lenient-terminators", b"*1\rX$4\rYPINGzz*1\r\n$4\r\nPING\r\n", [[b"PING"], [b"PING"]]),
    (
        "big-value",
        pack_command(b"SET", b"big", BIG) + b"PING\r\n",
        [[b"SET", b"big", BIG], [b"PING"]],
    ),
    ("pipeline", b"".join(pack_command(*c) for c in PIPELINE), PIPELINE),
    (
        "inline-pipeline",
        b"".join(b"SET key:%d value-%d\r\n" % (i, i) for i in range(300)),
        [[b"SET", b"key:%d" % i, b"value-%d" % i] for i in range(300)],
    ),
]
CORPUS_IDS = [c[0] for c in CORPUS]
SMALL = 4096  # streams up to this size are also split at every byte and fed byte by byte


def check_valid(reqs: list[list[bytes]], packed: list[bytes], expected: list[list[bytes]]) -> None:
    assert reqs == expected
    assert len(packed) == len(reqs)
    for argv, p in zip(reqs, packed, strict=True):
        assert p == pack_command(*argv)
    assert decode_packed(b"".join(packed)) == expected


@pytest.mark.parametrize(("name", "stream", "expected"), CORPUS, ids=CORPUS_IDS)
def test_corpus_whole(parser_cls: ParserCls, name: str, stream: bytes, expected: list) -> None:
    # The pure parser fed whole is the reference; it must match the hand-written expectation.
    ref, _, err = run(PyRequestParser, [stream])
    assert err is None
    assert ref == expected
    reqs, packed, err = run(parser_cls, [stream])
    assert err is None
    check_valid(reqs, packed, expected)


@pytest.mark.parametrize(("name", "stream", "expected"), CORPUS, ids=CORPUS_IDS)
def test_corpus_split_in_two(
    parser_cls: ParserCls, name: str, stream: bytes, expected: list
) -> None:
    step = 1 if len(stream) <= SMALL else max(1, len(stream) // 300)
    for chunks in splits_in_two(stream, step):
        reqs, packed, err = run(parser_cls, chunks)
        assert err is None, chunks
        check_valid(reqs, packed, expected)
    if step > 1:  # near every request boundary of the big streams too
        for cut in range(len(stream) - 40, len(stream) + 1):
            reqs, packed, err = run(parser_cls, [stream[:cut], stream[cut:]])
            assert (reqs, err) == (expected, None)


# Streams over 64 KiB are fed in random chunks instead (test_corpus_random_chunks): a 1 MiB
# value byte by byte would only repeat the small streams' cases, slowly.
SMALL_CORPUS = [c for c in CORPUS if len(c[1]) <= 64 * 1024]


@pytest.mark.parametrize(("name", "stream", "expected"), SMALL_CORPUS,
                         ids=[c[0] for c in SMALL_CORPUS])
def test_corpus_byte_by_byte(
    parser_cls: ParserCls, name: str, stream: bytes, expected: list
) -> None:
    reqs, packed, err = run(parser_cls, byte_by_byte(stream))
    assert err is None
    check_valid(reqs, packed, expected)


@pytest.mark.parametrize(("name", "stream", "expected"), CORPUS, ids=CORPUS_IDS)
def test_corpus_random_chunks(
    parser_cls: ParserCls, name: str, stream: bytes, expected: list
) -> None:
    # Tiny chunks of the big streams would only repeat the byte-by-byte tests, slowly.
    sizes = [3, 17, 200, 5000, 70000] if len(stream) <= 64 * 1024 else [200, 5000, 70000]
    for seed in range(20):
        max_size = sizes[seed % len(sizes)]
        reqs, packed, err = run(parser_cls, random_chunks(stream, seed, max_size))
        assert err is None
        check_valid(reqs, packed, expected)


def test_big_value_many_chunks_is_linear(parser_cls: ParserCls) -> None:
    # 8 MiB in 4 KiB chunks: quadratic re-copying would take minutes, linear is instant.
    value = b"x" * (8 * 1024 * 1024)
    stream = pack_command(b"SET", b"k", value)
    chunks = [stream[i : i + 4096] for i in range(0, len(stream), 4096)]
    reqs, _, err = run(parser_cls, chunks)
    assert err is None
    assert reqs == [[b"SET", b"k", value]]
    # The work per chunk is constant: until the value is complete each chunk is kept as it
    # came (the very object, appended, never joined or re-scanned), so the value is
    # assembled by one copy at the end.
    p = parser_cls()
    for i, chunk in enumerate(chunks[:-1]):
        assert p.feed(chunk) == []
        if i >= 1 and parser_cls is not CompiledParser:
            assert p._pend[-1] is chunk and len(p._pend) == i + 1, i
    # (The compiled parser copies each chunk once into a buffer grown geometrically, capped
    # at the value's known length.)
    assert p.feed(chunks[-1]) == [[b"SET", b"k", value]] and pending(p) == 0


def test_partial_state_is_small(parser_cls: ParserCls) -> None:
    # Completed requests and arguments are not kept in the pending buffer.
    p = parser_cls()
    assert p.feed(pack_command(b"SET", b"k", b"v" * 10000) + b"*2\r\n$3\r\nGET\r\n$3\r\nab") == [
        [b"SET", b"k", b"v" * 10000]
    ]
    assert pending(p) == 2
    assert p.feed(b"c\r\n") == [[b"GET", b"abc"]]
    assert pending(p) == 0


# ---------------------------------------------------------------------------------------------
# Protocol errors
# ---------------------------------------------------------------------------------------------

L = Limits(max_bulk_len=1000, max_multibulk_len=50, max_inline_len=100)
GOOD = b"*1\r\n$4\r\nPING\r\nECHO hi\r\n*2\r\n$4\r\nECHO\r\n$2\r\nyo\r\n"
GOOD_ARGV = [[b"PING"], [b"ECHO", b"hi"], [b"ECHO", b"yo"]]

ERRORS: list[tuple[str, bytes, str]] = [
    ("count-too-long", b"*" + b"1" * 101, "too big mbulk count string"),
    ("count-too-long-with-crlf", b"*" + b"1" * 101 + b"\r\n", "too big mbulk count string"),
    ("count-not-int", b"*abc\r\n", "invalid multibulk length"),
    ("count-trailing-junk", b"*1x\r\n", "invalid multibulk length"),
    ("count-leading-zero", b"*01\r\n$4\r\nPING\r\n", "invalid multibulk length"),
    ("count-minus-zero", b"*-0\r\n", "invalid multibulk length"),
    ("count-plus", b"*+1\r\n", "invalid multibulk length"),
    ("count-empty", b"*\r\n", "invalid multibulk length"),
    ("count-over-limit", b"*51\r\n", "invalid multibulk length"),
    ("count-below-llong-min", b"*-9223372036854775809\r\n", "invalid multibulk length"),
    ("count-lf-only", b"*1\n$4\r\nPING\r\n", "invalid multibulk length"),
    ("element-int", b"*2\r\n$3\r\nGET\r\n:5\r\n", "expected '$', got ':'"),
    ("element-status", b"*1\r\n+x\r\n", "expected '$', got '+'"),
    ("element-array", b"*1\r\n*1\r\n$1\r\na\r\n", "expected '$', got '*'"),
    ("element-error", b"*1\r\n-x\r\n", "expected '$', got '-'"),
    ("element-empty-line", b"*1\r\n\r\n", "expected '$', got '\r'"),
    ("element-raw-byte", b"*1\r\n\xff\r\n", "expected '$', got '\udcff'"),
    # hiredis accepts this and its canonical re-encoding has the same *length* as the input.
    ("resp3-verbatim", b"*2\r\n+0123456789\r\n=5\r\ntxt:a\r\n", "expected '$', got '+'"),
    ("bulk-len-too-long", b"*1\r\n$" + b"1" * 101, "too big bulk count string"),
    ("bulk-bad-line-too-long", b"*1\r\n:" + b"1" * 101 + b"\r\n", "too big bulk count string"),
    ("bulk-len-not-int", b"*1\r\n$abc\r\n", "invalid bulk length"),
    ("bulk-len-empty", b"*1\r\n$\r\n", "invalid bulk length"),
    ("bulk-len-nil", b"*1\r\n$-1\r\n", "invalid bulk length"),
    ("bulk-len-negative", b"*1\r\n$-5\r\n", "invalid bulk length"),
    ("bulk-len-leading-zero", b"*1\r\n$04\r\nPING\r\n", "invalid bulk length"),
    ("bulk-len-over-limit", b"*1\r\n$1001\r\n", "invalid bulk length"),
    ("bulk-len-huge", b"*1\r\n$99999999999999999999999\r\n", "invalid bulk length"),
    ("second-bulk-bad", b"*2\r\n$4\r\nECHO\r\n$x\r\n", "invalid bulk length"),
    ("inline-unbalanced-double", b'ECHO "abc\r\n', "unbalanced quotes in request"),
    ("inline-unbalanced-single", b"ECHO 'abc\r\n", "unbalanced quotes in request"),
    ("inline-quote-then-char", b'ECHO "a"b\r\n', "unbalanced quotes in request"),
    ("inline-squote-then-char", b"ECHO 'a'b\r\n", "unbalanced quotes in request"),
    ("inline-trailing-backslash", b'ECHO "a\\\r\n', "unbalanced quotes in request"),
]
ERROR_IDS = [e[0] for e in ERRORS]


@pytest.mark.parametrize(("name", "bad", "message"), ERRORS, ids=ERROR_IDS)
def test_error_at_every_split(parser_cls: ParserCls, name: str, bad: bytes, message: str) -> None:
    stream = GOOD + bad + b"*1\r\n$4\r\nPING\r\nPING\r\n"  # requests after the error never run
    chunkings = [[stream], byte_by_byte(stream), *splits_in_two(stream)]
    chunkings += [random_chunks(stream, seed, 9) for seed in range(10)]
    for chunks in chunkings:
        reqs, _, err = run(parser_cls, [*chunks, b"*1\r\n$4\r\nPING\r\n"], L)
        assert (reqs, err) == (GOOD_ARGV, message), chunks


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (b"*1\r\n$99999999999\r\n", "invalid bulk length"),
        (b"*1\r\n$-5\r\n", "invalid bulk length"),
        (b"*1\r\n$536870913\r\n", "invalid bulk length"),
        (b"*1048577\r\n", "invalid multibulk length"),
        (b"*2147483648\r\n", "invalid multibulk length"),
        (b"*1\r\n:5\r\n", "expected '$', got ':'"),
    ],
)
def test_error_reported_immediately(parser_cls: ParserCls, bad: bytes, message: str) -> None:
    # The rest of the request never arrives: the error must not wait for it.
    p = parser_cls()
    assert p.feed(bad) == []
    assert p.error == message
    p = parser_cls()
    assert p.feed(pack_command(b"PING") + bad) == [[b"PING"]]
    assert p.error == message
    assert p.feed(pack_command(b"PING")) == []
    assert p.packed == []


def test_default_limits_errors(parser_cls: ParserCls) -> None:
    p = parser_cls()
    assert p.feed(b"*" + b"1" * (64 * 1024 - 1)) == []
    assert p.error is None  # exactly PROTO_INLINE_MAX_SIZE bytes without CRLF: still waiting
    assert p.feed(b"1") == []
    assert p.error == "too big mbulk count string"
    p = parser_cls()
    assert p.feed(b"x" * (64 * 1024 + 1)) == []
    assert p.error == "too big inline request"
    p = parser_cls()
    line = b"ECHO " + b"a" * (64 * 1024 - 6) + b"\r\n"  # 64 KiB before the "\n": accepted
    assert p.feed(line) == [[b"ECHO", b"a" * (64 * 1024 - 6)]]
    # Issue 10: a 70 KB inline line whose newline is in the same read is served, as by Redis
    # (PROTO_INLINE_MAX_SIZE applies only while no newline has arrived).
    p = parser_cls()
    big = b"a" * (70 * 1000)
    assert p.feed(b"SET k " + big + b"\r\nGET k\r\n") == [[b"SET", b"k", big], [b"GET", b"k"]]
    assert p.error is None


def test_bulk_limit_configurable(parser_cls: ParserCls) -> None:
    limits = Limits(max_bulk_len=10)
    for chunks in ([pack_command(b"SET", b"k", b"x" * 10)], byte_by_byte(b"*1\r\n$10\r\n")):
        assert run(parser_cls, chunks, limits)[2] is None
    assert run(parser_cls, [pack_command(b"SET", b"k", b"x" * 10)], limits)[:2:] == (
        [[b"SET", b"k", b"x" * 10]],
        [pack_command(b"SET", b"k", b"x" * 10)],
    )
    # Over the limit, also when the chunk would pass hiredis's verification.
    stream = pack_command(b"GET", b"a") + pack_command(b"SET", b"k", b"x" * 11)
    for chunks in [[stream], *splits_in_two(stream)]:
        assert run(parser_cls, chunks, limits)[::2] == ([[b"GET", b"a"]], "invalid bulk length")


def test_multibulk_limit_configurable(parser_cls: ParserCls) -> None:
    limits = Limits(max_multibulk_len=3)
    ok = pack_command(b"SET", b"k", b"v")
    assert run(parser_cls, [ok], limits)[::2] == ([[b"SET", b"k", b"v"]], None)
    stream = ok * 3 + pack_command(b"MSET", b"a", b"1") + pack_command(b"DEL", b"a", b"b", b"c")
    for chunks in [[stream], *splits_in_two(stream)]:
        reqs, _, err = run(parser_cls, chunks, limits)
        assert reqs == [[b"SET", b"k", b"v"]] * 3 + [[b"MSET", b"a", b"1"]]
        assert err == "invalid multibulk length"


def test_inline_limit_configurable(parser_cls: ParserCls) -> None:
    limits = Limits(max_inline_len=10)  # below the longest canonical header: no fast path
    # A complete line is never too big; an incomplete one is once a read leaves more than the
    # limit pending without a "\n" (Redis's processInlineBuffer).
    assert run(parser_cls, [b"ECHO 12345\r\n"], limits)[::2] == ([[b"ECHO", b"12345"]], None)
    assert run(parser_cls, [b"ECHO 1234\r", b"\n"], limits)[::2] == ([[b"ECHO", b"1234"]], None)
    assert run(parser_cls, [b"ECHO 12345\r", b"\n"], limits)[2] == "too big inline request"
    assert run(parser_cls, [b"*1\r\n$123456789\r\n"], limits)[2] is None  # 10 bytes: fine
    assert run(parser_cls, [b"*1\r\n$123456789012\r\n"], limits)[2] == "too big bulk count string"


INLINE_LIMIT = Limits(max_inline_len=100)


@pytest.mark.parametrize("seed", range(12))
def test_inline_limit_only_while_line_incomplete(parser_cls: ParserCls, seed: int) -> None:
    # Redis: a read that leaves more than PROTO_INLINE_MAX_SIZE bytes pending with no "\n" is a
    # protocol error; any complete line is served. The outcome depends on the reads, so the
    # expected result is computed from the chunking by that rule.
    long_line = b"ECHO " + b"a" * 150 + b"\r\n"
    stream = GOOD + long_line + b"PING\r\n"
    chunks = random_chunks(stream, seed, 40 + 20 * seed)
    start = len(GOOD)
    nl = start + len(long_line) - 1
    fed = 0
    tripped = False
    for ch in chunks:
        fed += len(ch)
        if start < fed <= nl and fed - start > 100:
            tripped = True
            break
    reqs, _, err = run(parser_cls, chunks, INLINE_LIMIT)
    if tripped:
        assert (reqs, err) == (GOOD_ARGV, "too big inline request"), chunks
    else:
        assert (reqs, err) == ([*GOOD_ARGV, [b"ECHO", b"a" * 150], [b"PING"]], None), chunks
    # Whole: always served; byte by byte: always refused.
    assert run(parser_cls, [stream], INLINE_LIMIT)[2] is None
    assert run(parser_cls, byte_by_byte(stream), INLINE_LIMIT)[::2] == (
        GOOD_ARGV, "too big inline request")


def test_feed_after_error_returns_nothing(parser_cls: ParserCls) -> None:
    p = parser_cls()
    assert p.feed(b"*1\r\n$4\r\nPING\r\n*x\r\n*1\r\n$4\r\nPING\r\n") == [[b"PING"]]
    assert p.error == "invalid multibulk length"
    for _ in range(3):
        assert p.feed(b"*1\r\n$4\r\nPING\r\n") == []
        assert p.error == "invalid multibulk length"


def test_empty_feed(parser_cls: ParserCls) -> None:
    p = parser_cls()
    assert p.feed(b"") == []
    assert p.feed(b"*1\r\n$4\r\nPI") == []
    assert p.feed(b"") == []
    assert p.feed(b"NG\r\n") == [[b"PING"]]
    assert p.error is None


# ---------------------------------------------------------------------------------------------
# Differential fuzzing: both parsers, many chunkings, mutated streams
# ---------------------------------------------------------------------------------------------


def mutated_streams(n: int, seed: int) -> Iterator[bytes]:
    rng = random.Random(seed)
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 6)):
            r = rng.random()
            if r < 0.6:
                args = [bytes(rng.choice(b"ab\r\n*$ '\"\\") for _ in range(rng.randint(0, 5)))]
                parts.append(pack_command(b"ECHO", *args))
            elif r < 0.8:
                parts.append(b"ECHO " + bytes(rng.choice(b"ab \t'\"\\x4") for _ in range(6)))
                parts.append(rng.choice([b"\r\n", b"\n"]))
            else:
                parts.append(rng.choice([b"*0\r\n", b"*-1\r\n", b"\r\n", b"PING\r\n"]))
        yield mutate(rng, b"".join(parts), rng.randint(0, 2), b"*$:+-0123456789\r\n aX")


def mutate(rng: random.Random, data: bytes, n: int, alphabet: bytes) -> bytes:
    """`data` with up to n random one-byte edits (replace, insert or delete)."""
    s = bytearray(data)
    for _ in range(n):
        if not s:
            break
        j = rng.randrange(len(s))
        ch = rng.choice(alphabet)
        op = rng.random()
        if op < 0.4:
            s[j] = ch
        elif op < 0.7:
            s.insert(j, ch)
        else:
            del s[j]
    return bytes(s)


def test_parsers_agree_on_mutated_streams() -> None:
    classes: list[ParserCls] = [PyRequestParser, CompiledParser]
    if HAVE_HIREDIS:
        classes.append(HiredisRequestParser)
    for i, stream in enumerate(mutated_streams(400, seed=11)):
        ref = run(PyRequestParser, [stream], L)
        if ref[2] is None:
            assert decode_packed(b"".join(ref[1])) == ref[0]
        for cls in classes:
            for chunks in ([stream], random_chunks(stream, i, 7), random_chunks(stream, i, 40)):
                assert run(cls, chunks, L) == ref, (cls, chunks)
            for chunks in splits_in_two(stream, 3):
                assert run(cls, chunks, L) == ref, (cls, chunks)


# ---------------------------------------------------------------------------------------------
# Hiredis fast path
# ---------------------------------------------------------------------------------------------

def test_fast_path_taken_for_pipelined_chunk() -> None:
    p = HiredisRequestParser()
    stream = b"".join(pack_command(*c) for c in PIPELINE[:100])
    assert p.feed(stream) == PIPELINE[:100]
    assert p._fast_hits == 100


def test_fast_path_with_partial_tail_and_resume() -> None:
    stream = b"".join(pack_command(*c) for c in PIPELINE[:100])
    last = len(pack_command(*PIPELINE[99]))
    more = b"".join(pack_command(*c) for c in PIPELINE[100:150])
    # Every cut inside the last request, including right after a complete element (hiredis then
    # holds a half-built array although has_data() is False).
    for cut in range(len(stream) - last + 1, len(stream)):
        p = HiredisRequestParser()
        assert p.feed(stream[:cut]) == PIPELINE[:99]
        assert p._fast_hits == 99  # the complete prefix still went through hiredis
        # The pending request is finished by the exact parser, the rest goes back to hiredis.
        assert p.feed(stream[cut:] + more) == PIPELINE[99:150]
        assert p._fast_hits == 99 + 50, cut


def test_fast_path_after_inline_prefix() -> None:
    p = HiredisRequestParser()
    stream = b"PING\r\n\r\n" + b"".join(pack_command(*c) for c in PIPELINE[:10])
    assert p.feed(stream) == [[b"PING"], *PIPELINE[:10]]
    assert p._fast_hits == 10


def test_fast_path_not_trusted_for_non_canonical_input() -> None:
    p = HiredisRequestParser()
    stream = pack_command(b"PING") + b"*0\r\n" + pack_command(b"ECHO", b"x")
    assert p.feed(stream) == [[b"PING"], [b"ECHO", b"x"]]
    assert p._fast_hits == 1  # only the verified prefix
    p = HiredisRequestParser()
    assert p.feed(b"*2\r\n+0123456789\r\n=5\r\ntxt:a\r\n") == []
    assert p.error == "expected '$', got '+'"
    assert p._fast_hits == 0


@pytest.mark.parametrize("header", [b"*2147483647", b">500000000", b"~500000000", b"|500000000"])
def test_fast_path_never_feeds_hiredis_huge_aggregates(
    header: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # hiredis pre-allocates declared aggregate sizes (seconds of CPU / gigabytes for these):
    # record every byte any hiredis reader of the parser is fed, and check the header is not.
    fed: list[bytes] = []
    real_reader = request.hiredis.Reader

    class RecordingReader:
        def __init__(self, *a: object, **kw: object) -> None:
            self._r = real_reader(*a, **kw)

        def feed(self, buf: bytes, off: int = 0, length: int = -1) -> None:
            fed.append(bytes(buf[off:] if length < 0 else buf[off : off + length]))
            self._r.feed(buf, off, len(buf) - off if length < 0 else length)

        def gets(self) -> object:
            return self._r.gets()

    monkeypatch.setattr(request.hiredis, "Reader", RecordingReader)
    p = HiredisRequestParser()
    assert p.feed(pack_command(b"PING") + b"*1\r\n" + header + b"\r\n") == [[b"PING"]]
    assert p.error == f"expected '$', got '{chr(header[0])}'"
    p = HiredisRequestParser()
    assert p.feed(pack_command(b"PING") + (b"*999\r\n" + header[:1] + b"999\r\n") * 600) == [
        [b"PING"]
    ]
    assert p.error is not None
    assert fed, "the fast path was not taken at all"
    assert not [f for f in fed if header in f], "hiredis saw the huge aggregate header"


def test_fast_path_around_request_with_many_arguments() -> None:
    many = [b"MSET", *(b"k%d" % i for i in range(1500))]
    small = PIPELINE[:10]
    stream = b"".join(pack_command(*c) for c in [*small, many, *small])
    p = HiredisRequestParser()
    assert p.feed(stream) == [*small, many, *small]
    assert p._fast_hits == 10  # hiredis stops before the 4-digit count; the rest is exact


def test_without_hiredis_behaves_like_pure_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(request, "HAVE_HIREDIS", False)
    monkeypatch.setattr(request, "_pack_tuple", resp._py_pack_tuple)
    assert isinstance(make_request_parser(Limits()), PyRequestParser)
    p = HiredisRequestParser()
    stream = CORPUS[3][1] + b"".join(pack_command(*c) for c in PIPELINE[:20])
    assert p.feed(stream) == CORPUS[3][2] + PIPELINE[:20]
    assert p.packed == [pack_command(*a) for a in CORPUS[3][2] + PIPELINE[:20]]
    assert p._fast_hits == 0


def test_make_request_parser() -> None:
    limits = Limits(max_bulk_len=5)
    p = make_request_parser(limits)
    assert isinstance(p, HiredisRequestParser if HAVE_HIREDIS else PyRequestParser)
    assert p.limits is limits
    assert isinstance(make_request_parser(limits, prefer_hiredis=False), PyRequestParser)


# ---------------------------------------------------------------------------------------------
# Inline splitting (sdssplitargs)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"", []),
        (b"   \t ", []),
        (b"a b\tc", [b"a", b"b", b"c"]),
        (b'"a b"', [b"a b"]),
        (b'""', [b""]),
        (b"''", [b""]),
        (b'foo"bar"', [b"foobar"]),
        (b'a"b c" d', [b"ab c", b"d"]),
        (b'"\\x41\\x4g\\xZZ"', [b"Ax4gxZZ"]),
        (b'"\\n\\r\\t\\b\\a\\\\\\"\\z"', [b'\n\r\t\b\a\\"z']),
        (b"'a\\'b\\n'", [b"a'b\\n"]),
        (b"'a\"b'", [b'a"b']),
        (b'"a"\x0bb', [b"a", b"b"]),  # \v is a space after a closing quote
        (b"\x0ba\x0cb", [b"a\x0cb"]),  # ...and skipped between arguments, but not a separator
        (b"a\x00b c", [b"a"]),
        (b'"a"b', None),
        (b"'a'b", None),
        (b'"abc', None),
        (b"'abc", None),
        (b'"a\\"', None),
    ],
)
def test_split_inline_args(line: bytes, expected: list[bytes] | None) -> None:
    assert split_inline_args(line) == expected
    assert request._split_inline_args_slow(line) == expected
    assert compiled().split_inline_args(line) == expected


def test_split_inline_fast_path_matches_port() -> None:
    rng = random.Random(5)
    for _ in range(3000):
        line = bytes(rng.choice(b"ab \t\r\x0b\x0c\"'\\xF\x00") for _ in range(rng.randint(0, 12)))
        ref = request._split_inline_args_slow(line)
        assert split_inline_args(line) == ref, line
        assert compiled().split_inline_args(line) == ref, line


# ---------------------------------------------------------------------------------------------
# Reply framing
# ---------------------------------------------------------------------------------------------

REPLIES = [
    b"+OK\r\n",
    b"-ERR wrong type\r\n",
    b":42\r\n",
    b":-1\r\n",
    b"$5\r\nhello\r\n",
    b"$0\r\n\r\n",
    b"$4\r\n\r\n\r\n\r\n",
    b"$-1\r\n",
    b"*-1\r\n",
    b"*0\r\n",
    b"*3\r\n$1\r\na\r\n$-1\r\n:7\r\n",
    b"*2\r\n*2\r\n+x\r\n-E y\r\n*0\r\n",
    b"*3\r\n*1\r\n*1\r\n$2\r\n\r\n\r\n*-1\r\n$1\r\nz\r\n",
    # RESP3 (backend connections serving HELLO 3 clients)
    b"_\r\n",
    b",3.14\r\n",
    b"#t\r\n",
    b"(3492890328409238509324850943850943825024385\r\n",
    b"!22\r\nSYNTAX invalid\r\nsyntax\r\n",
    b"=15\r\ntxt:Some string\r\n",
    b"%2\r\n+first\r\n:1\r\n$6\r\nsecond\r\n%1\r\n_\r\n~0\r\n",
    b"~3\r\n:1\r\n,2.5\r\n#f\r\n",
    b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n",
    b"|1\r\n+ttl\r\n:3600\r\n*2\r\n:1\r\n%0\r\n",
    b"*2\r\n|1\r\n+a\r\n:1\r\n:2\r\n_\r\n",
]


@pytest.mark.parametrize("reply", REPLIES)
def test_frame_reply_every_prefix(reply: bytes) -> None:
    assert frame_reply(reply, 0) == len(reply)
    assert frame_reply(b"xx" + reply + b"+junk", 2) == len(reply) + 2
    for i in range(len(reply)):
        assert frame_reply(reply[:i], 0) == -1, reply[:i]
        assert frame_reply(b"pre" + reply[:i], 3) == -1


@pytest.mark.parametrize(
    "bad", [b"@x\r\n", b"$x\r\n", b"!x\r\n", b"*?\r\n", b"%x\r\n", b"*1\r\n^t\r\n", b"\r\n"]
)
def test_frame_reply_bad_input(bad: bytes, reader_cls: Any) -> None:
    with pytest.raises(ProtocolError):
        frame_reply(bad, 0)
    with pytest.raises(ProtocolError) as ref:
        ReplyReader().feed(bad)
    with pytest.raises(ProtocolError) as got:
        reader_cls().feed(bad)
    assert str(got.value) == str(ref.value)


def test_reply_reader_chunkings(reader_cls: Any) -> None:
    stream = b"".join(REPLIES) * 3
    expected = REPLIES * 3
    chunkings = [[stream], byte_by_byte(stream), *splits_in_two(stream)]
    chunkings += [random_chunks(stream, seed, 13) for seed in range(20)]
    for chunks in chunkings:
        rr = reader_cls()
        got = [r for c in chunks for r in rr.feed(c)]
        assert got == expected
        assert all(type(r) is bytes for r in got)


def test_reply_reader_big_replies_in_chunks(reader_cls: Any) -> None:
    big_bulk = encode_bulk(BIG * 4)
    big_array = encode_array([b"item-%d" % i for i in range(200000)])
    stream = b"+OK\r\n" + big_bulk + big_array + b":1\r\n"
    rr = reader_cls()
    got = [r for i in range(0, len(stream), 4096) for r in rr.feed(stream[i : i + 4096])]
    assert got == [b"+OK\r\n", big_bulk, big_array, b":1\r\n"]


def test_reply_reader_bad_byte_after_partial(reader_cls: Any) -> None:
    rr = reader_cls()
    assert rr.feed(b"*2\r\n$1\r\na") == []
    with pytest.raises(ProtocolError):
        rr.feed(b"\r\n!oops\r\n")


def test_split_array() -> None:
    reply = encode_array([b"v1", None, [b"x", 5], b""])
    assert split_array(reply) == [b"$2\r\nv1\r\n", NIL, b"*2\r\n$1\r\nx\r\n:5\r\n", b"$0\r\n\r\n"]
    assert split_array(b"*0\r\n") == []
    assert split_array(b"*-1\r\n") == []
    assert encode_raw_array(split_array(reply)) == reply
    assert split_array(b"~2\r\n:1\r\n_\r\n") == [b":1\r\n", b"_\r\n"]
    assert split_array(b"%1\r\n+k\r\n*1\r\n:1\r\n") == [b"+k\r\n", b"*1\r\n:1\r\n"]
    with pytest.raises(ProtocolError):
        split_array(b"$1\r\na\r\n")
    with pytest.raises(ProtocolError):
        split_array(b"*2\r\n$1\r\na\r\n")


# ---------------------------------------------------------------------------------------------
# Encoders and parse_reply
# ---------------------------------------------------------------------------------------------


@pytest.fixture(params=["hiredis", "python"])
def reply_decoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "python":
        monkeypatch.setattr(resp, "hiredis", None)
    else:
        assert HAVE_HIREDIS, "hiredis is not installed"
    return request.param


def test_encoders_round_trip(reply_decoder: str) -> None:
    assert encode_simple("OK") == encode_simple(b"OK") == OK
    assert encode_simple("PONG") == PONG
    assert encode_bulk(None) == NIL
    assert parse_reply(encode_simple("QUEUED")) == "QUEUED"
    assert type(parse_reply(OK)) is str
    err = parse_reply(encode_error("ERR bad\r\nthing"))
    assert isinstance(err, ReplyErrorValue)
    assert err == "ERR bad  thing"
    assert parse_reply(encode_int(-12345)) == -12345
    assert parse_reply(encode_bulk(b"a\r\nb")) == b"a\r\nb"
    assert parse_reply(encode_bulk("é")) == "é".encode()
    assert parse_reply(NIL) is None
    assert parse_reply(encode_array(None)) is None
    assert parse_reply(encode_array([])) == []
    value = [b"a", 1, None, [b"x", [], [2, b""]], "s"]
    assert parse_reply(encode_array(value)) == [b"a", 1, None, [b"x", [], [2, b""]], b"s"]
    mixed = parse_reply(encode_raw_array([OK, encode_error("WRONGTYPE x"), encode_int(3)]))
    assert mixed == ["OK", "WRONGTYPE x", 3]
    assert [type(v) for v in mixed] == [str, ReplyErrorValue, int]
    assert parse_reply(encode_array([ReplyErrorValue("ERR x")])) == [ReplyErrorValue("ERR x")]


def test_parse_reply_resp3(reply_decoder: str) -> None:
    assert parse_reply(b"_\r\n") is None
    assert parse_reply(b",3.5\r\n") == 3.5
    assert parse_reply(b",-inf\r\n") == float("-inf")
    assert parse_reply(b"#t\r\n") is True
    assert parse_reply(b"#f\r\n") is False
    assert parse_reply(b"(123456789012345678901234567890\r\n") == 123456789012345678901234567890
    err = parse_reply(b"!22\r\nSYNTAX invalid\r\nsyntax\r\n")
    assert isinstance(err, ReplyErrorValue)
    assert err == "SYNTAX invalid\r\nsyntax"
    assert parse_reply(b"=15\r\ntxt:Some string\r\n") == b"Some string"
    assert parse_reply(b"%2\r\n+a\r\n:1\r\n$1\r\nb\r\n*1\r\n:2\r\n") == {"a": 1, b"b": [2]}
    assert parse_reply(b"%1\r\n*1\r\n:1\r\n:2\r\n") == {(1,): 2}
    assert parse_reply(b"~2\r\n:1\r\n$1\r\nx\r\n") == [1, b"x"]
    assert parse_reply(b">2\r\n$7\r\nmessage\r\n:1\r\n") == [b"message", 1]
    assert parse_reply(b"|1\r\n+ttl\r\n:3\r\n:42\r\n") == 42
    assert parse_reply(b"*2\r\n|1\r\n+a\r\n:1\r\n:2\r\n_\r\n") == [2, None]


def test_parse_reply_rejects_bad_input(reply_decoder: str) -> None:
    for raw in (b"$5\r\nab", b"*2\r\n:1\r\n", b":1\r\n:2\r\n", b"@x\r\n", b"#x\r\n", b"%1\r\n"):
        with pytest.raises(ProtocolError):
            parse_reply(raw)


def test_encode_error_sanitises_and_keeps_raw_bytes() -> None:
    assert encode_error("ERR a\rb\nc") == b"-ERR a b c\r\n"
    assert encode_simple("a\r\nb") == b"+a  b\r\n"
    # The parser's message for a raw byte turns back into that byte, as Redis sends it.
    assert encode_error("ERR Protocol error: expected '$', got '\udcff'").endswith(b"'\xff'\r\n")


def test_pack_command_python_twin_matches_hiredis() -> None:
    cases: list[tuple] = [
        (b"SET", b"k", b"v"),
        ("é", b"\r\n", 0, -3, 10**30),
        (1.5, 0.1, 1e100, float("inf"), -0.0),
        (memoryview(b"mv"),),
        (),
    ]

    def as_bytes(a: object) -> bytes:
        if isinstance(a, bytes | memoryview):
            return bytes(a)
        if isinstance(a, float):
            return repr(a).encode()
        return str(a).encode()

    for args in cases:
        expected = b"*%d\r\n" % len(args) + b"".join(
            b"$%d\r\n%b\r\n" % (len(b), b) for b in map(as_bytes, args)
        )
        assert resp._py_pack_tuple(args) == expected
        if HAVE_HIREDIS:
            assert pack_command(*args) == expected
    for bad in ((None,), (True,), ([b"a"],), (bytearray(b"x"),)):
        with pytest.raises(TypeError):
            resp._py_pack_tuple(bad)
        if HAVE_HIREDIS:
            with pytest.raises(TypeError):
                pack_command(*bad)


# ---------------------------------------------------------------------------------------------
# encode(value, proto): replies built by the proxy, per the connection's protocol
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "resp2", "resp3"), [
    (None, b"$-1\r\n", b"_\r\n"),
    (b"x", b"$1\r\nx\r\n", b"$1\r\nx\r\n"),
    (resp.Status("OK"), b"+OK\r\n", b"+OK\r\n"),
    (resp.Verbatim(b"a=1\n"), b"$4\r\na=1\n\r\n", b"=8\r\ntxt:a=1\n\r\n"),
    (True, b":1\r\n", b"#t\r\n"),
    (False, b":0\r\n", b"#f\r\n"),
    (7, b":7\r\n", b":7\r\n"),
    (1.5, b"$3\r\n1.5\r\n", b",1.5\r\n"),
    (2.0, b"$1\r\n2\r\n", b",2\r\n"),
    ([b"a", None], b"*2\r\n$1\r\na\r\n$-1\r\n", b"*2\r\n$1\r\na\r\n_\r\n"),
    ({"k": 1}, b"*2\r\n$1\r\nk\r\n:1\r\n", b"%1\r\n$1\r\nk\r\n:1\r\n"),
    (resp.SetReply([resp.Status("RW"), resp.Status("access")]),
     b"*2\r\n+RW\r\n+access\r\n", b"~2\r\n+RW\r\n+access\r\n"),
    ({}, b"*0\r\n", b"%0\r\n"),
])
def test_encode_per_protocol(value: object, resp2: bytes, resp3: bytes) -> None:
    assert resp.encode(value, 2) == resp2
    assert resp.encode(value, 3) == resp3
    assert resp.encode_null(2) == resp.NIL and resp.encode_null(3) == b"_\r\n"
