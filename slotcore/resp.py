"""RESP as both sides of the cluster speak it (sans-IO: bytes in, values out).

* Command packing (``pack_command``): the canonical multibulk encoding, used for every request
  the proxy or the dashboard builds.
* Reply framing (``frame_reply``, ``split_array``, ``ReplyReader``): RESP2, and RESP3 for the
  backend connections that serve HELLO 3 clients. ``ReplyReader`` is resumable: a large
  aggregate spanning many reads is scanned once, not from its start on every chunk.
* Encoders for replies built by the proxy (RESP2 and RESP3, including push frames), and
  ``parse_reply`` for the few places that must look inside a reply.

Client *request* parsing is the proxy's alone: ``proxy.protocol.request``.
"""

from __future__ import annotations

import re
from typing import Any, Final

try:
    import hiredis
except ImportError:  # pragma: no cover - hiredis is a hard dependency, but degrade gracefully
    hiredis = None

HAVE_HIREDIS: Final[bool] = hiredis is not None

__all__ = [
    "HAVE_HIREDIS",
    "NIL",
    "NULL3",
    "OK",
    "PONG",
    "ProtocolError",
    "ReplyErrorValue",
    "ReplyReader",
    "SetReply",
    "Status",
    "Verbatim",
    "encode",
    "encode_array",
    "encode_bulk",
    "encode_double",
    "encode_error",
    "encode_int",
    "encode_null",
    "encode_raw_array",
    "encode_simple",
    "frame_reply",
    "pack_command",
    "pack_tuple",
    "parse_reply",
    "split_array",
]

OK: Final = b"+OK\r\n"
PONG: Final = b"+PONG\r\n"
NIL: Final = b"$-1\r\n"



class ProtocolError(Exception):
    """A RESP violation; the message is the text after ``-ERR Protocol error: ``."""


class ReplyErrorValue(str):
    """An error reply (``-ERR ...``) as returned by ``parse_reply``: the text without the ``-``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"ReplyErrorValue({str.__repr__(self)})"


# --------------------------------------------------------------------------------------------
# Command packing (canonical multibulk encoding)
# --------------------------------------------------------------------------------------------


def _py_pack_tuple(args: tuple[Any, ...]) -> bytes:
    """Pure-Python twin of ``hiredis.pack_command``: same accepted types, same bytes."""
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, bytes):
            b = a
        elif isinstance(a, str):
            b = a.encode()
        elif type(a) is int:  # hiredis rejects bool and other int subclasses
            b = b"%d" % a
        elif isinstance(a, float):
            b = repr(a).encode()
        elif isinstance(a, memoryview):
            b = a.tobytes()
        else:
            raise TypeError("A tuple item must be str, int, float or bytes.")
        parts.append(b"$%d\r\n%b\r\n" % (len(b), b))
    return b"".join(parts)


# Takes the arguments as one tuple (hiredis's calling convention) to avoid re-packing *args.
_pack_tuple = hiredis.pack_command if hiredis is not None else _py_pack_tuple
# Public alias: pack an argv tuple without the *args unpacking of pack_command.
pack_tuple = _pack_tuple


def pack_command(*args: bytes | str | int | float) -> bytes:
    """Canonical RESP multibulk encoding of a command (``hiredis.pack_command`` when present)."""
    return _pack_tuple(args)


# --------------------------------------------------------------------------------------------
# Backend reply framing (RESP2, and RESP3 for connections serving HELLO 3 clients)
# --------------------------------------------------------------------------------------------

# RESP3 adds: "_" null, "," double, "#" boolean, "(" big number (lines); "!" blob error, "="
# verbatim string (length-prefixed); "~" set, ">" push, "%" map and "|" attribute (aggregates).
# Streamed strings/aggregates ("$?", "*?") are never sent by Redis and are rejected.
_LINE_TYPES: Final = frozenset(b"+-:_,#(")
_BLOB_TYPES: Final = frozenset(b"$!=")
_AGG_TYPES: Final = frozenset(b"*~>%|")


def _bad_reply(buf: bytes | bytearray, pos: int) -> ProtocolError:
    return ProtocolError(f"invalid reply at offset {pos}: {bytes(buf[pos : pos + 32])!r}")


def _agg_elements(buf: bytes | bytearray, pos: int, nl: int) -> int:
    """Number of replies that follow the aggregate header at ``pos`` (<= 0: none)."""
    try:
        n = int(buf[pos + 1 : nl])
    except ValueError:
        raise _bad_reply(buf, pos) from None
    t = buf[pos]
    if t == 0x25:  # '%' map: n key/value pairs
        return 2 * n
    if t == 0x7C:  # '|' attribute: n pairs, then the reply they are attached to
        return 2 * n + 1 if n >= 0 else 0
    return n


def frame_reply(buf: bytes, pos: int) -> int:
    """Offset just past the reply starting at ``buf[pos]``, or -1 if it is incomplete.

    RESP2 (and RESP3) types; raises ProtocolError on an unknown type byte or a bad length.
    """
    nl = buf.find(b"\r\n", pos)
    if nl < 0:
        return -1
    t = buf[pos]
    if t == 0x24:  # '$', the most common reply: checked first
        try:
            n = int(buf[pos + 1 : nl])
        except ValueError:
            raise _bad_reply(buf, pos) from None
        if n < 0:
            return nl + 2
        end = nl + n + 4
        return end if end <= len(buf) else -1
    if t in _LINE_TYPES:
        return nl + 2
    if t in _AGG_TYPES:
        n = _agg_elements(buf, pos, nl)
        if n <= 0:
            return nl + 2
        end, need = _scan_replies(buf, nl + 2, [n])
        return -1 if need else end
    if t in _BLOB_TYPES:
        try:
            n = int(buf[pos + 1 : nl])
        except ValueError:
            raise _bad_reply(buf, pos) from None
        end = nl + n + 4 if n >= 0 else nl + 2
        return end if end <= len(buf) else -1
    raise _bad_reply(buf, pos)


def _scan_replies(buf: bytes | bytearray, pos: int, outer: list[int]) -> tuple[int, int]:
    """Frame replies from ``pos`` until the aggregates counted in ``outer`` are all complete
    (with ``outer`` empty: one reply). Iterative, so deep nesting costs no recursion.

    ``outer`` holds the number of replies still missing in each open aggregate and is updated
    in place, which makes the scan resumable. Returns ``(end, 0)`` when complete, else
    ``(start of the unfinished reply, buffer length needed before it is worth retrying)``.
    """
    size = len(buf)
    while True:
        nl = buf.find(b"\r\n", pos)
        if nl < 0:
            return pos, size + 1
        t = buf[pos]
        if t in _BLOB_TYPES:
            try:
                n = int(buf[pos + 1 : nl])
            except ValueError:
                raise _bad_reply(buf, pos) from None
            if n >= 0:
                end = nl + n + 4
                if end > size:
                    return pos, end
                pos = end
            else:
                pos = nl + 2
        elif t in _LINE_TYPES:
            pos = nl + 2
        elif t in _AGG_TYPES:
            n = _agg_elements(buf, pos, nl)
            pos = nl + 2
            if n > 0:
                outer.append(n)
                continue
        else:
            raise _bad_reply(buf, pos)
        # A reply is complete: it may complete the aggregates around it too.
        while outer:
            outer[-1] -= 1
            if outer[-1]:
                break
            outer.pop()
        if not outer:
            return pos, 0


def split_array(reply: bytes) -> list[bytes]:
    """Raw bytes of each element of a complete array reply ([] for ``*0`` and ``*-1``).

    RESP3 sets and pushes are split the same way, maps into alternating keys and values.
    """
    nl = reply.find(b"\r\n")
    if nl < 0 or reply[0] not in b"*~>%":
        raise _bad_reply(reply, 0)
    n = _agg_elements(reply, 0, nl)
    items = []
    pos = nl + 2
    for _ in range(n):
        end = frame_reply(reply, pos)
        if end < 0:
            raise ProtocolError("incomplete array reply")
        items.append(reply[pos:end])
        pos = end
    return items


class ReplyReader:
    """Splits a byte stream into complete raw replies (resumable, linear in the stream size).

    Complete replies are sliced straight out of each received chunk; only an incomplete tail is
    buffered, in a bytearray (amortised O(1) appends). A big reply spanning many chunks is
    scanned incrementally (the scan position and open-aggregate counts are kept), and not
    rescanned at all until the buffer reaches the length known to be needed, so a 1M-element
    LRANGE costs one pass however it is cut into reads. `errors` counts error replies seen.
    After a ProtocolError the stream is unusable: drop the connection.
    """

    __slots__ = ("_buf", "_need", "_outer", "_scan", "errors")

    def __init__(self) -> None:
        self._buf = bytearray()  # the incomplete reply, from its first byte
        self._need = 0  # no progress possible before the buffer holds this many bytes
        self._scan = 0  # offset in _buf of the next reply to frame
        self._outer: list[int] = []  # replies still missing in each open aggregate
        self.errors = 0

    def reset(self) -> None:
        """Forget any partial reply (the connection it came from is gone)."""
        self._buf = bytearray()
        self._need = self._scan = 0
        self._outer = []

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        pos = 0
        buf = self._buf
        if buf:
            had = len(buf)
            buf += data
            if len(buf) < self._need:
                return out
            end, need = _scan_replies(buf, self._scan, self._outer)
            if need:
                self._scan = end
                self._need = need
                return out
            out.append(bytes(buf) if end == len(buf) else bytes(memoryview(buf)[:end]))
            if buf[0] == 0x2D:
                self.errors += 1
            buf.clear()
            pos = end - had
        n = len(data)
        find = data.find
        while pos < n:
            t = data[pos]
            # The common reply types framed inline: this loop runs once per reply.
            if t == 0x24:  # '$' bulk
                nl = find(b"\r\n", pos)
                if nl < 0:
                    end = -1
                else:
                    try:
                        ln = int(data[pos + 1 : nl])
                    except ValueError:
                        raise _bad_reply(data, pos) from None
                    end = nl + 4 + ln if ln >= 0 else nl + 2
                    if end > n:
                        end = -1
            elif t == 0x2B or t == 0x3A or t == 0x2D:  # '+' status, ':' integer, '-' error
                nl = find(b"\r\n", pos)
                end = nl + 2 if nl >= 0 else -1
                if t == 0x2D and end > 0:
                    self.errors += 1
            else:
                end = frame_reply(data, pos)
            if end < 0:
                # Start an incremental scan of this reply (a little work is redone, once).
                self._buf = bytearray(memoryview(data)[pos:])
                self._need = 0
                self._scan = 0
                self._outer = []
                break
            out.append(data if (pos == 0 and end == n) else data[pos:end])
            pos = end
        return out


# --------------------------------------------------------------------------------------------
# Encoders
# --------------------------------------------------------------------------------------------


def _one_line(b: bytes) -> bytes:
    # A CR or LF would end the line early and desynchronise the client.
    if b"\r" in b or b"\n" in b:
        return b.replace(b"\r", b" ").replace(b"\n", b" ")
    return b


def encode_simple(s: str | bytes) -> bytes:
    """``+s\\r\\n`` (CR/LF replaced by spaces)."""
    b = s.encode("utf-8", "surrogateescape") if isinstance(s, str) else s
    return b"+%b\r\n" % _one_line(b)


def encode_error(msg: str) -> bytes:
    """``-msg\\r\\n`` (CR/LF replaced by spaces, as Redis's addReplyError does).

    surrogateescape lets messages carry raw bytes decoded with it (e.g. "got '\\udcff'").
    """
    b = msg.encode("utf-8", "surrogateescape") if isinstance(msg, str) else msg
    return b"-%b\r\n" % _one_line(b)


def encode_int(n: int) -> bytes:
    return b":%d\r\n" % n


def encode_bulk(b: bytes | str | None) -> bytes:
    """Bulk string; None is the nil bulk ``$-1``."""
    if b is None:
        return NIL
    if isinstance(b, str):
        b = b.encode()
    return b"$%d\r\n%b\r\n" % (len(b), b)


ArrayItem = bytes | int | str | None | list["ArrayItem"]


def encode_array(items: list[ArrayItem] | None) -> bytes:
    """Array reply: bytes/str -> bulk, int -> integer, None -> nil bulk, list -> nested array,
    ReplyErrorValue -> error. ``items=None`` is the nil array ``*-1``."""
    if items is None:
        return b"*-1\r\n"
    parts = [b"*%d\r\n" % len(items)]
    for it in items:
        if isinstance(it, bytes):
            parts.append(b"$%d\r\n%b\r\n" % (len(it), it))
        elif isinstance(it, ReplyErrorValue):
            parts.append(encode_error(it))
        elif isinstance(it, str):
            parts.append(encode_bulk(it))
        elif isinstance(it, int):
            parts.append(b":%d\r\n" % it)
        elif it is None:
            parts.append(NIL)
        elif isinstance(it, list):
            parts.append(encode_array(it))
        else:
            raise TypeError(f"cannot encode {type(it).__name__} in an array reply")
    return b"".join(parts)


def encode_raw_array(raw_items: list[bytes]) -> bytes:
    """Array of already-encoded replies."""
    return b"*%d\r\n%b" % (len(raw_items), b"".join(raw_items))


# Encoding for the connection's protocol (`proto`: 2 or 3), as Redis's addReply* functions do:
# RESP3 types degrade to their RESP2 forms (null -> $-1, map -> flat array, set -> array,
# double -> bulk string, boolean -> integer 1/0, verbatim -> bulk string).

NULL3: Final = b"_\r\n"


class Status(str):
    """A simple-string reply (``+text``) inside ``encode``'s values."""

    __slots__ = ()


class SetReply(list):  # type: ignore[type-arg]
    """A set reply in the list's order (RESP3 ``~``; an array in RESP2)."""

    __slots__ = ()


class Verbatim(bytes):
    """A verbatim string (RESP3 ``=len\r\ntxt:...``; a bulk string in RESP2)."""

    __slots__ = ()


def encode_null(proto: int) -> bytes:
    """The null reply: ``$-1`` (RESP2 nil bulk) or ``_`` (RESP3)."""
    return NIL if proto == 2 else NULL3


def encode_double(x: float, proto: int) -> bytes:
    if x != x:
        text = b"nan"
    elif x in (float("inf"), float("-inf")):
        text = b"inf" if x > 0 else b"-inf"
    else:
        text = repr(x).encode() if x != int(x) or abs(x) >= 1e17 else b"%d" % int(x)
    return b",%b\r\n" % text if proto == 3 else b"$%d\r\n%b\r\n" % (len(text), text)


def encode(value: Any, proto: int) -> bytes:
    """One reply value for a `proto` connection.

    bytes/str -> bulk, Status -> simple string, Verbatim -> verbatim, bool -> boolean,
    int -> integer, float -> double, None -> null, list/tuple -> array, dict -> map,
    SetReply (ordered) and set/frozenset -> set, ReplyErrorValue -> error.
    """
    if isinstance(value, Verbatim):
        if proto == 3:
            return b"=%d\r\ntxt:%b\r\n" % (len(value) + 4, value)
        return b"$%d\r\n%b\r\n" % (len(value), value)
    if isinstance(value, bytes):
        return b"$%d\r\n%b\r\n" % (len(value), value)
    if isinstance(value, ReplyErrorValue):
        return encode_error(value)
    if isinstance(value, Status):
        return encode_simple(value)
    if isinstance(value, str):
        return encode_bulk(value)
    if isinstance(value, bool):
        if proto == 3:
            return b"#t\r\n" if value else b"#f\r\n"
        return b":1\r\n" if value else b":0\r\n"
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, float):
        return encode_double(value, proto)
    if value is None:
        return NIL if proto == 2 else NULL3
    if isinstance(value, SetReply):
        head = b"~%d\r\n" if proto == 3 else b"*%d\r\n"
        return head % len(value) + b"".join(encode(v, proto) for v in value)
    if isinstance(value, (list, tuple)):
        return b"*%d\r\n" % len(value) + b"".join(encode(v, proto) for v in value)
    if isinstance(value, dict):
        head = b"%%%d\r\n" % len(value) if proto == 3 else b"*%d\r\n" % (2 * len(value))
        return head + b"".join(encode(k, proto) + encode(v, proto) for k, v in value.items())
    if isinstance(value, (set, frozenset)):
        head = b"~%d\r\n" if proto == 3 else b"*%d\r\n"
        return head % len(value) + b"".join(encode(v, proto) for v in value)
    raise TypeError(f"cannot encode {type(value).__name__} as a reply")


# --------------------------------------------------------------------------------------------
# Reply decoding
# --------------------------------------------------------------------------------------------

Reply = bytes | int | float | bool | str | None | list["Reply"] | dict[Any, "Reply"]

# hiredis returns status replies as bytes, like bulk strings, and mishandles some RESP3 types
# ("!" rejected, "|" mis-framed, "(" as bytes): decode replies that may contain those in Python.
# A reply's type byte is at its start or right after a "\r\n" (this may also match inside bulk
# data: that only costs the slower decoder).
_PY_DECODE = re.compile(rb"(?:\A|\r\n)[+_,#(!=%~>|]")


def parse_reply(raw: bytes) -> Reply:
    """Decode one complete reply: bulk -> bytes, integer -> int, status -> str,
    error -> ReplyErrorValue, nil -> None, array -> list; RESP3: null -> None, double -> float,
    boolean -> bool, big number -> int, blob error -> ReplyErrorValue, verbatim -> bytes (without
    its format prefix), map -> dict (list keys become tuples), set/push -> list, attributes are
    dropped. Raises ProtocolError if ``raw`` is not exactly one well-formed reply."""
    if hiredis is not None and _PY_DECODE.search(raw) is None:
        reader = hiredis.Reader(replyError=ReplyErrorValue)
        try:
            reader.feed(raw)
            value = reader.gets()
        except hiredis.ProtocolError as e:
            raise ProtocolError(str(e)) from None
        if value is False:
            raise ProtocolError("incomplete reply")
        if reader.has_data():
            raise ProtocolError("trailing bytes after reply")
        return value
    try:
        value, end = _py_parse_reply(raw, 0)
    except ValueError:
        raise _bad_reply(raw, 0) from None
    if end < 0:
        raise ProtocolError("incomplete reply")
    if end != len(raw):
        raise ProtocolError("trailing bytes after reply")
    return value


def _hashable(v: Reply) -> Any:
    return tuple(_hashable(x) for x in v) if isinstance(v, list) else v


def _py_parse_reply(raw: bytes, pos: int) -> tuple[Reply, int]:
    """(value, end) of the reply at ``pos``; end is -1 if incomplete."""
    nl = raw.find(b"\r\n", pos)
    if nl < 0:
        return None, -1
    t = raw[pos]
    if t in _BLOB_TYPES:
        n = int(raw[pos + 1 : nl])
        if n < 0:
            return None, nl + 2
        end = nl + 2 + n
        if end + 2 > len(raw):
            return None, -1
        if t == 0x24:
            return raw[nl + 2 : end], end + 2
        if t == 0x21:  # '!'
            return ReplyErrorValue(raw[nl + 2 : end].decode("utf-8", "replace")), end + 2
        return raw[nl + 6 : end], end + 2  # '=': skip the "txt:" format prefix
    line = raw[pos + 1 : nl]
    if t == 0x3A or t == 0x28:  # ':' '('
        return int(line), nl + 2
    if t == 0x2B:
        return line.decode("utf-8", "replace"), nl + 2
    if t == 0x2D:
        return ReplyErrorValue(line.decode("utf-8", "replace")), nl + 2
    if t == 0x5F:  # '_'
        return None, nl + 2
    if t == 0x2C:  # ','
        return float(line), nl + 2
    if t == 0x23:  # '#'
        if line not in (b"t", b"f"):
            raise _bad_reply(raw, pos)
        return line == b"t", nl + 2
    if t in _AGG_TYPES:
        n = int(line)
        pos = nl + 2
        if n < 0:
            return None, pos
        count = 2 * n if t == 0x25 or t == 0x7C else n
        items: list[Reply] = []
        for _ in range(count):
            item, pos = _py_parse_reply(raw, pos)
            if pos < 0:
                return None, -1
            items.append(item)
        if t == 0x25:
            return {_hashable(k): v for k, v in zip(items[::2], items[1::2], strict=True)}, pos
        if t == 0x7C:  # attribute: metadata for the reply that follows, which is returned
            return _py_parse_reply(raw, pos)
        return items, pos
    raise _bad_reply(raw, pos)
