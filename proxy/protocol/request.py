"""Client request parsing (sans-IO: bytes in, argv lists out; no sockets, no asyncio).

Client request parsing with Redis 7's exact semantics (``processMultibulkBuffer`` /
``processInlineBuffer`` in networking.c, ``sdssplitargs`` in sds.c), in two implementations
with identical observable behaviour:

* ``PyRequestParser``: pure Python, the reference.
* ``HiredisRequestParser``: "verified fast path, exact slow path". A chunk that starts at a
  request boundary with ``*`` goes through ``hiredis.Reader`` (C, ~5x faster). hiredis is more
  lenient than Redis (non-bulk elements, nil, nested arrays, RESP3 types, no limits), so its
  result is only trusted for the prefix of the chunk that is *byte-identical* to the canonical
  encoding (``pack_command``) of the requests it returned: the canonical encoding of argv is
  parsed by Redis as argv, so equal bytes prove Redis would see exactly those requests.
  Everything else (inline requests, a partial request at the end of a chunk, anything hiredis
  misreads or rejects) is parsed by the pure-Python machinery, which also produces every
  error. hiredis is tried at most once per chunk, so hostile input can at worst cost two
  passes, never a quadratic number; and it never sees an aggregate header of 1000+
  elements (it would pre-allocate the declared size: see ``_BIG_ARRAY``).

Both fill ``packed`` with the canonical encoding of each returned request, which the proxy
forwards as-is (single-key commands need no re-packing). Reply framing and encoders are the
shared contract's: ``slotcore.resp``.

Deliberate deviations from redis-server, all about input no real client sends:

* Redis finds line ends with ``strchr``, so a NUL byte inside a header or inline line makes it
  wait (until the line-length limit trips). Here NUL is an ordinary byte in line scanning; for
  inline requests the line is cut at the first NUL before splitting, as ``sdssplitargs`` (which
  sees a C string) does.
* Redis checks the line-length limits only while a line is still incomplete, so its outcome for a
  header line longer than ``PROTO_INLINE_MAX_SIZE`` depends on how the bytes were split into
  reads (with its 16 KiB reads, a line of 64-80 KiB may get "invalid multibulk length" instead of
  "too big mbulk count string"). Here the limit applies to a *header* line's length itself (the
  bytes before the "\r"), so which error it gets never depends on chunking.

Inline lines follow Redis exactly (not a deviation): like ``processInlineBuffer``, the limit
applies only to an *incomplete* line, i.e. when a read ends and the bytes after the last request
boundary hold no "\n" and are more than ``max_inline_len``; a complete line of any length is
served. As in Redis, the outcome for a long line therefore depends on the read sizes: Redis
reads at most 16 KiB at a time (a complete line of up to ~80 KiB is accepted however it
arrives), the proxy whatever the event loop hands it (up to 256 KiB), so a line that arrives in
one read is accepted by the proxy even where Redis, having read only part of it, refuses it.
* Redis's auth-dependent limits (``unauthenticated multibulk length``...) are the caller's job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from slotcore.resp import HAVE_HIREDIS, ProtocolError, hiredis, pack_tuple

_pack_tuple = pack_tuple
_LLONG_MIN: Final = -(2**63)

__all__ = [
    "HiredisRequestParser",
    "Limits",
    "ProtocolError",
    "PyRequestParser",
    "make_request_parser",
    "split_inline_args",
]


@dataclass(frozen=True, slots=True)
class Limits:
    max_bulk_len: int = 512 * 1024 * 1024  # Redis proto-max-bulk-len
    # Redis accepts up to INT_MAX elements; bounding it stops one request from pinning memory.
    max_multibulk_len: int = 1024 * 1024
    max_inline_len: int = 64 * 1024  # Redis PROTO_INLINE_MAX_SIZE


# --------------------------------------------------------------------------------------------
# Inline argument splitting (sdssplitargs)
# --------------------------------------------------------------------------------------------

# Characters for which bytes.split() and sdssplitargs disagree: quotes; \v and \f (skipped
# between arguments by isspace() but *not* argument terminators inside one); NUL (ends the line).
_SPLIT_SLOW = re.compile(rb"[\"'\x00\x0b\x0c]")
_C_SPACE = frozenset(b" \t\n\v\f\r")  # C isspace() in the C locale
_ARG_END = frozenset(b" \n\r\t")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_ESCAPES = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("a"): 7}


def split_inline_args(line: bytes) -> list[bytes] | None:
    """Split an inline request line like Redis's ``sdssplitargs``; None on unbalanced quotes."""
    if _SPLIT_SLOW.search(line) is None:
        # bytes.split() splits on exactly C isspace(), so without the special characters it
        # is sdssplitargs.
        return line.split()
    return _split_inline_args_slow(line)


def _split_inline_args_slow(line: bytes) -> list[bytes] | None:
    """Byte-for-byte port of sdssplitargs (C reads past the end as NUL, hence ``at()``)."""
    nul = line.find(b"\0")
    if nul >= 0:
        line = line[:nul]
    n = len(line)

    def at(j: int) -> int:
        return line[j] if j < n else 0

    args: list[bytes] = []
    i = 0
    while True:
        while i < n and line[i] in _C_SPACE:
            i += 1
        if i >= n:
            return args
        cur = bytearray()
        inq = insq = done = False
        while not done:
            c = at(i)
            if inq:
                if c == 0x5C and at(i + 1) == 0x78 and at(i + 2) in _HEX and at(i + 3) in _HEX:
                    cur.append(int(line[i + 2 : i + 4], 16))
                    i += 3
                elif c == 0x5C and at(i + 1):
                    i += 1
                    cur.append(_ESCAPES.get(line[i], line[i]))
                elif c == 0x22:
                    # A closing quote must be followed by a space or the end of the line.
                    if at(i + 1) and at(i + 1) not in _C_SPACE:
                        return None
                    done = True
                elif c == 0:
                    return None
                else:
                    cur.append(c)
            elif insq:
                if c == 0x5C and at(i + 1) == 0x27:
                    i += 1
                    cur.append(0x27)
                elif c == 0x27:
                    if at(i + 1) and at(i + 1) not in _C_SPACE:
                        return None
                    done = True
                elif c == 0:
                    return None
                else:
                    cur.append(c)
            elif c in _ARG_END or c == 0:
                done = True
            elif c == 0x22:
                inq = True
            elif c == 0x27:
                insq = True
            else:
                cur.append(c)
            if at(i):
                i += 1
        args.append(bytes(cur))


# --------------------------------------------------------------------------------------------
# Client request parsing
# --------------------------------------------------------------------------------------------


def _parse_count(s: bytes) -> int | None:
    """Redis ``string2ll``: strict canonical decimal fitting a long long, else None."""
    n = len(s)
    if s.isdigit():  # ASCII digits only for bytes; False for b""
        if n >= 21 or (n > 1 and s[0] == 0x30):
            return None
        return int(s)  # may exceed LLONG_MAX; every caller then rejects it as over the limit
    if 2 <= n < 21 and s[0] == 0x2D and s[1] != 0x30 and s[1:].isdigit():
        v = int(s)
        return v if v >= _LLONG_MIN else None
    return None


# Parser states: what the bytes at the current position are.
_IDLE: Final = 0  # a request boundary
_INLINE: Final = 1  # an inline line, waiting for "\n"
_COUNT: Final = 2  # the "*<n>" line of a multibulk request
_HDR: Final = 3  # a "$<len>" line
_DATA: Final = 4  # bulk data (+2 trailing bytes)


class _RequestParserBase:
    """The exact (pure-Python) request parser machinery shared by both implementations.

    Unconsumed input is kept as a list of chunks (``_pend``) that always starts at the first byte
    of the unit being waited for (an inline line, a count/length line, or bulk data). Chunks
    that cannot complete that unit are only appended, so a huge bulk value arriving in many
    pieces is joined once, when complete: O(n), not O(n^2).
    """

    __slots__ = (
        "_argv",
        "_bulklen",
        "_left",
        "_max_bulk",
        "_max_inline",
        "_max_mb",
        "_pend",
        "_pend_len",
        "_state",
        "error",
        "limits",
        "packed",
    )

    def __init__(self, limits: Limits = Limits()) -> None:
        self.limits = limits
        self._max_bulk = limits.max_bulk_len
        self._max_mb = limits.max_multibulk_len
        self._max_inline = limits.max_inline_len
        #: The protocol error message, set once; afterwards feed() always returns [].
        self.error: str | None = None
        #: After each feed(): packed[i] is the canonical RESP encoding of the i-th returned argv.
        self.packed: list[bytes] = []
        self._state = _IDLE
        self._argv: list[bytes] = []  # arguments of the multibulk request in progress
        self._left = 0  # elements of that request still to read
        self._bulklen = 0  # length of the bulk being read (state _DATA)
        self._pend: list[bytes] = []
        self._pend_len = 0

    def feed(self, data: bytes) -> list[list[bytes]]:
        """Every request completed by ``data``, in order, each as an argv list.

        On a protocol violation, returns the requests before it, sets ``error`` and returns []
        forever after. Also sets ``packed`` (parallel to the returned list).
        """
        raise NotImplementedError

    def _fail(self, msg: str) -> None:
        self.error = msg
        self._pend = []
        self._pend_len = 0
        self._argv = []

    def _consume(
        self,
        data: bytes,
        start: int,
        out: list[list[bytes]],
        packed: list[bytes],
        stop: bool,
    ) -> tuple[bytes, int]:
        """Parse ``data[start:]`` (after any pending bytes), appending complete requests.

        Returns ``(buf, pos)``: everything in ``buf`` is consumed or kept as pending when
        ``pos == len(buf)``; ``pos < len(buf)`` only with ``stop``, at a request boundary whose
        next byte is ``*`` (where the hiredis fast path can take over).
        """
        state = self._state
        if state == _IDLE:
            return data, self._parse(data, start, out, packed, stop)
        pend = self._pend
        if state == _DATA:
            need = self._bulklen + 2 - self._pend_len  # bytes of `data` this bulk still needs
            if len(data) < need:
                pend.append(data)
                self._pend_len += len(data)
                return data, len(data)
            # Assemble the value straight from the pieces: a single copy however many chunks.
            pend.append(data)
            rem = self._bulklen
            parts = []
            for p in pend:
                if len(p) >= rem:
                    parts.append(p[:rem])
                    break
                parts.append(p)
                rem -= len(p)
            self._pend = []
            self._pend_len = 0
            argv = self._argv
            argv.append(b"".join(parts))
            self._left -= 1
            if self._left:
                self._state = _HDR
            else:
                out.append(argv)
                packed.append(_pack_tuple(tuple(argv)))
                self._argv = []
                self._state = _IDLE
            return data, self._parse(data, need, out, packed, stop)
        # Waiting for the end of a line: only join once the terminator may have arrived. A
        # header line is complete once any byte follows its "\r", which may end the pending bytes.
        term = b"\n" if state == _INLINE else b"\r"
        total = self._pend_len + len(data)
        if (
            term not in data
            and total <= self._max_inline
            and (state == _INLINE or not pend or not pend[-1].endswith(b"\r"))
        ):
            pend.append(data)
            self._pend_len = total
            return data, len(data)
        pend.append(data)
        buf = b"".join(pend)
        self._pend = []
        self._pend_len = 0
        return buf, self._parse(buf, 0, out, packed, stop)

    def _parse(
        self,
        buf: bytes,
        pos: int,
        out: list[list[bytes]],
        packed: list[bytes],
        stop: bool,
    ) -> int:
        """The Redis state machine over ``buf[pos:]``; see ``_consume`` for the return value."""
        n = len(buf)
        max_inline = self._max_inline
        state = self._state
        argv = self._argv
        left = self._left
        bulklen = self._bulklen
        pack = _pack_tuple
        while pos < n:
            if state == _IDLE:
                if buf[pos] == 0x2A:  # '*'
                    if stop:
                        break
                    state = _COUNT
                else:
                    state = _INLINE

            if state == _INLINE:
                nl = buf.find(b"\n", pos)
                if nl < 0:
                    if n - pos > max_inline:
                        self._fail("too big inline request")
                        return n
                    break
                # No limit on a complete line: Redis checks PROTO_INLINE_MAX_SIZE only while
                # the query buffer holds no "\n" (processInlineBuffer).
                end = nl - 1 if nl > pos and buf[nl - 1] == 0x0D else nl
                args = split_inline_args(buf[pos:end])
                if args is None:
                    self._fail("unbalanced quotes in request")
                    return n
                pos = nl + 1
                state = _IDLE
                if args:  # blank lines are skipped silently
                    out.append(args)
                    packed.append(pack(tuple(args)))
                continue

            if state == _COUNT:
                # Like Redis: the line ends at the first "\r", and the byte after it is skipped.
                cr = buf.find(b"\r", pos)
                if cr < 0:
                    if n - pos > max_inline:
                        self._fail("too big mbulk count string")
                        return n
                    break
                if cr - pos > max_inline:
                    self._fail("too big mbulk count string")
                    return n
                if cr + 1 >= n:
                    break
                count = _parse_count(buf[pos + 1 : cr])
                if count is None or count > self._max_mb:
                    self._fail("invalid multibulk length")
                    return n
                pos = cr + 2
                if count <= 0:  # "*0" and "*-1" are skipped silently, as Redis does
                    state = _IDLE
                    continue
                left = count
                argv = []
                state = _HDR

            # Elements of a multibulk request (state _HDR or _DATA).
            while True:
                if state == _HDR:
                    cr = buf.find(b"\r", pos)
                    if cr < 0:
                        if n - pos > max_inline:
                            self._fail("too big bulk count string")
                            return n
                        break
                    if cr - pos > max_inline:
                        self._fail("too big bulk count string")
                        return n
                    if cr + 1 >= n:
                        break
                    if buf[pos] != 0x24:  # '$'
                        # surrogateescape: encode_error() turns it back into Redis's raw byte.
                        got = buf[pos : pos + 1].decode("utf-8", "surrogateescape")
                        self._fail(f"expected '$', got '{got}'")
                        return n
                    s = buf[pos + 1 : cr]
                    # Negative lengths and non-canonical numbers are invalid, as for string2ll;
                    # the length bound also keeps int() away from huge digit strings.
                    if not s.isdigit() or len(s) >= 21 or (s[0] == 0x30 and len(s) > 1):
                        self._fail("invalid bulk length")
                        return n
                    bulklen = int(s)
                    if bulklen > self._max_bulk:
                        self._fail("invalid bulk length")
                        return n
                    pos = cr + 2
                    state = _DATA
                end = pos + bulklen
                if end + 2 > n:
                    break
                argv.append(buf[pos:end])
                pos = end + 2  # the 2 bytes after the data are not checked, as in Redis
                left -= 1
                if not left:
                    out.append(argv)
                    packed.append(pack(tuple(argv)))
                    argv = []
                    state = _IDLE
                    break
                state = _HDR
            if state != _IDLE:
                break

        self._state = state
        self._argv = argv
        self._left = left
        self._bulklen = bulklen
        if state == _IDLE:
            return pos
        tail = buf[pos:] if pos else buf
        self._pend = [tail] if tail else []
        self._pend_len = len(tail)
        return n


class PyRequestParser(_RequestParserBase):
    """Pure-Python client request parser with Redis 7 semantics."""

    __slots__ = ()

    def feed(self, data: bytes) -> list[list[bytes]]:
        out: list[list[bytes]] = []
        self.packed = packed = []
        if self.error is not None or not data:
            return out
        if type(data) is not bytes:
            data = bytes(data)
        self._consume(data, 0, out, packed, False)
        return out


# Every canonical header ("*<n>" or "$<n>", n < 10**20) is at most 21 bytes before its "\r".
_MAX_CANONICAL_HEADER: Final = 21

# hiredis pre-allocates a list of the declared size for "*<n>" (and RESP3 ">", "~", "|")
# headers, at up to 1024 nesting levels: "*2147483647\r\n" alone costs seconds of CPU, ">5e8"
# gigabytes. So hiredis is only fed the bytes before the first such header with 4+ digits
# (arrays of < 1000 elements: at most 8 MB even fully nested); the exact parser, which never
# pre-allocates, takes it from there. Requests with 1000+ arguments are rare and merely slower.
_BIG_ARRAY = re.compile(rb"\*[0-9]{4}")
# One pattern per RESP3 aggregate byte, each searched only if that byte occurs at all: a
# pattern that starts with a literal is scanned at memchr speed, while a character class
# ("[*>~|][0-9]{4}") costs ~3.5 ns per byte — 60 us per 17 KB chunk of random values.
_BIG_RESP3 = (
    (0x3E, re.compile(rb">[0-9]{4}")),
    (0x7E, re.compile(rb"~[0-9]{4}")),
    (0x7C, re.compile(rb"\|[0-9]{4}")),
)


def _big_header(buf: bytes, pos: int, end: int) -> int:
    """Offset of the first aggregate header with 4+ digits in buf[pos:end], or -1."""
    m = _BIG_ARRAY.search(buf, pos, end)
    if m is not None:
        end = m.start()
    found = m is not None
    for byte, pattern in _BIG_RESP3:
        if byte in buf:
            m = pattern.search(buf, pos, end)
            if m is not None:
                end = m.start()
                found = True
    return end if found else -1


class HiredisRequestParser(_RequestParserBase):
    """Client request parser using hiredis for verified whole-request runs (see module doc).

    Without hiredis installed it behaves exactly like ``PyRequestParser``.
    """

    __slots__ = ("_fast_hits", "_fast_max", "_fast_ok", "_reader")

    def __init__(self, limits: Limits = Limits()) -> None:
        super().__init__(limits)
        # With a tiny max_inline_len even canonical headers could be "too big"; leave those
        # configurations to the exact parser rather than re-checking every header.
        self._fast_ok = HAVE_HIREDIS and limits.max_inline_len >= _MAX_CANONICAL_HEADER
        self._reader: Any = hiredis.Reader() if self._fast_ok else None
        self._fast_hits = 0  # requests accepted via hiredis; for tests
        # A whole chunk no longer than this needs no per-request limit checks: an element of
        # length L takes >= L + 6 bytes and a request of k elements >= 6k + 4.
        self._fast_max = min(self._max_bulk + 5, 6 * (self._max_mb + 1) - 1)

    def feed(self, data: bytes) -> list[list[bytes]]:
        # Hottest case, inlined: the chunk is nothing but whole requests (every -P 1 request,
        # most pipelines). Same proof as _verify: the canonical encoding of what hiredis
        # parsed must be byte-identical to the chunk. Anything else takes the general path.
        # (`62 in data` is a memchr; `b">" in data` goes through the buffer protocol, 5x slower.)
        if (
            self._state == _IDLE
            and data
            and data[0] == 0x2A  # '*'
            and self._fast_ok
            and self.error is None
            and len(data) <= self._fast_max
            and _big_header(data, 0, len(data)) < 0
        ):
            reader = self._reader
            try:
                reader.feed(data)
                reqs = []
                r = reader.gets()
                while r is not False:
                    reqs.append(r)
                    r = reader.gets()
                if len(reqs) == 1:
                    pk = [_pack_tuple(tuple(reqs[0]))] if reqs[0] else None
                else:
                    pk = [_pack_tuple(tuple(q)) for q in reqs] if all(reqs) else None
            except (hiredis.ProtocolError, TypeError, ValueError):
                pk = None
            if pk is not None:
                blob = pk[0] if len(pk) == 1 else b"".join(pk)
                if blob == data:
                    self.packed = pk
                    self._fast_hits += len(reqs)
                    return reqs
                if data.startswith(blob):
                    # Whole requests, then one cut by the read: keep the proven prefix and let
                    # the exact parser hold the tail (the reader holds it half-built: reset it).
                    self._reader = hiredis.Reader()
                    self.packed = pk
                    self._fast_hits += len(reqs)
                    self._consume(data, len(blob), reqs, pk, False)
                    return reqs
            # Not provably exact (odd element, *0...): start over on the general path with a
            # fresh reader.
            self._reader = hiredis.Reader()
        out: list[list[bytes]] = []
        self.packed = packed = []
        if self.error is not None or not data:
            return out
        if type(data) is not bytes:
            data = bytes(data)
        if not self._fast_ok:
            self._consume(data, 0, out, packed, False)
            return out
        pos = 0
        if self._state != _IDLE or data[0] != 0x2A:
            # Finish the pending request and any inline ones, up to the next "*" boundary.
            data, pos = self._consume(data, 0, out, packed, True)
            if pos >= len(data):
                return out
        pos = self._fast(data, pos, out, packed)
        if pos < len(data):
            self._consume(data, pos, out, packed, False)
        return out

    def _fast(
        self,
        buf: bytes,
        pos: int,
        out: list[list[bytes]],
        packed: list[bytes],
    ) -> int:
        """Accept the verified prefix of ``buf[pos:]`` parsed by hiredis; return where it ends."""
        end = _big_header(buf, pos, len(buf))
        if end < 0:
            end = len(buf)
        if end == pos:
            return pos
        reqs: list[Any] = []
        try:
            self._reader.feed(buf, pos, end - pos)
            gets = self._reader.gets
            r = gets()
            while r is not False:
                reqs.append(r)
                r = gets()
        except hiredis.ProtocolError:
            pass
        span = self._verify(buf, pos, reqs, out, packed) if reqs else 0
        if pos + span != end:
            # Whatever hiredis saw beyond the accepted span belongs to the exact parser. It may
            # hold buffered bytes, a half-built reply (which has_data() does not reveal: it
            # only reports unread bytes) or an error state: start afresh.
            self._reader = hiredis.Reader()
        return pos + span

    def _verify(
        self,
        buf: bytes,
        pos: int,
        reqs: list[Any],
        out: list[list[bytes]],
        packed: list[bytes],
    ) -> int:
        """Accept the longest provably-exact prefix of hiredis's ``reqs`` parsed from ``buf[pos:]``;
        return its length in bytes (0: nothing accepted)."""
        if not all(reqs):
            # [] / None come from "*0" / "*-1" (which Redis skips) or from a non-array reply:
            # stop before them and let the exact parser decide.
            for i, r in enumerate(reqs):
                if not r:
                    del reqs[i:]
                    break
            if not reqs:
                return 0
        try:
            pk = [_pack_tuple(tuple(r)) for r in reqs]
        except (TypeError, ValueError):  # a non-bulk element: int, nil, error, nested array...
            return 0
        blob = b"".join(pk)
        # The proof: these bytes are exactly the canonical encoding of `reqs`. (Comparing
        # lengths alone is not enough: hiredis turns RESP3 "=5\r\ntxt:a" into b"a", shorter
        # than its canonical form, which can cancel out a longer "+status" element.)
        if not buf.startswith(blob, pos):
            return 0
        span = len(blob)
        # Limits: an element of length L takes >= L + 6 bytes and a request of k elements
        # >= 6k + 4, so small spans need no per-request checks.
        check_bulk = span > self._max_bulk
        if check_bulk or span >= 6 * (self._max_mb + 1):
            max_mb, max_bulk = self._max_mb, self._max_bulk
            for i, r in enumerate(reqs):
                if len(r) > max_mb or (check_bulk and max(map(len, r)) > max_bulk):
                    del reqs[i:]
                    del pk[i:]
                    span = sum(map(len, pk))
                    break
        out.extend(reqs)
        packed.extend(pk)
        self._fast_hits += len(reqs)
        return span


def make_request_parser(
    limits: Limits, prefer_hiredis: bool = True
) -> PyRequestParser | HiredisRequestParser:
    """The hiredis-accelerated parser when available and wanted, else the pure-Python one."""
    if prefer_hiredis and HAVE_HIREDIS:
        return HiredisRequestParser(limits)
    return PyRequestParser(limits)


