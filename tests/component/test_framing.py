"""Backend reply framing (BackendConn.data_received over slotcore.resp.ReplyReader): a big reply
cut into many reads is delivered once, intact, and framed with linear work.

Work is counted, not timed: every call of the resumable scanner is wrapped to add up the bytes
it may look at (from where it starts to the end of the buffer). Rescanning a big reply from
its start on every read, as the framing once did, makes that sum grow with the square of the
reply size; framing it once keeps it within a small factor of the size.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from proxy.backend.conn import BackendConn, Flusher
from slotcore import resp
from slotcore.resp import ReplyReader, encode_array, encode_bulk


class Collect:
    def __init__(self) -> None:
        self.got: list[bytes] = []

    def resolve(self, raw: bytes) -> None:
        self.got.append(raw)


@pytest.fixture
def scanned(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """[bytes the scanner was called over, number of calls], summed over the test."""
    total = [0, 0]
    real = resp._scan_replies

    def counting(buf: bytes | bytearray, pos: int, outer: list[int]) -> tuple[int, int]:
        total[0] += len(buf) - pos
        total[1] += 1
        return real(buf, pos, outer)

    monkeypatch.setattr(resp, "_scan_replies", counting)
    return total


def feed_in_chunks(conn: BackendConn, data: bytes, size: int) -> None:
    for i in range(0, len(data), size):
        conn.data_received(data[i:i + size])


async def backend_conn() -> BackendConn:
    return BackendConn("127.0.0.1", 1, Flusher(asyncio.get_running_loop()))


async def test_million_element_array_in_many_reads_is_framed_once(scanned: list[int]) -> None:
    reply = encode_array([b"%d" % i for i in range(1_000_000)])
    conn = await backend_conn()
    first, big, last = Collect(), Collect(), Collect()
    conn.fifo.extend([first, big, last])
    stream = b"+OK\r\n" + reply + b":7\r\n"
    feed_in_chunks(conn, stream, 64 * 1024)  # ~170 reads, as a socket delivers them
    assert first.got == [b"+OK\r\n"]
    assert len(big.got) == 1 and big.got[0] == reply
    assert last.got == [b":7\r\n"]
    assert not conn.fifo
    chunks = len(stream) // (64 * 1024) + 1
    assert scanned[1] <= chunks + 2
    # Linear: about one pass over the reply (plus a little redone per read), not a pass
    # per read (which would be ~chunks/2 = 80 times the size).
    assert scanned[0] <= 2 * len(reply)


async def test_big_bulk_in_small_reads_is_framed_once(scanned: list[int]) -> None:
    value = bytes(random.Random(1).randbytes(2_000_000))
    reply = encode_bulk(value)
    conn = await backend_conn()
    w = Collect()
    conn.fifo.append(w)
    feed_in_chunks(conn, reply, 1000)  # 2000 reads
    assert w.got == [reply]
    # Its length is known from the header: the bytes are not looked at until all are in.
    assert scanned[0] <= 2 * len(reply)
    assert scanned[1] <= 3


async def test_nested_aggregates_in_small_reads(scanned: list[int]) -> None:
    rows = [[b"f%d" % i, i, [b"x" * (i % 50), None]] for i in range(20_000)]
    reply = encode_array(rows)
    conn = await backend_conn()
    w, after = Collect(), Collect()
    conn.fifo.extend([w, after])
    feed_in_chunks(conn, reply + b"$1\r\nz\r\n", 333)
    assert w.got == [reply] and after.got == [b"$1\r\nz\r\n"]
    assert scanned[0] <= 3 * len(reply)


REPLIES = [
    b"+OK\r\n", b"-ERR boom\r\n", b":42\r\n", b"$-1\r\n", b"$0\r\n\r\n", b"$5\r\nhe\r\no\r\n",
    b"*-1\r\n", b"*0\r\n", encode_array([b"a", [b"b", [1, None]], b""]),
    # RESP3: null, double, boolean, big number, verbatim, blob error, map, set, push, attribute
    b"_\r\n", b",3.14\r\n", b"#t\r\n", b"(123456789012345678901234567890\r\n",
    b"=8\r\ntxt:abcd\r\n", b"!9\r\nERR blob!\r\n", b"%2\r\n+k\r\n:1\r\n$1\r\nv\r\n*1\r\n_\r\n",
    b"~2\r\n:1\r\n:2\r\n", b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nm\r\n",
    b"|1\r\n+ttl\r\n:3\r\n$3\r\nval\r\n",
]


def test_reply_reader_byte_by_byte_equals_all_at_once() -> None:
    stream = b"".join(REPLIES) * 3
    whole = ReplyReader().feed(stream)
    assert whole == REPLIES * 3
    r = ReplyReader()
    one_by_one = [x for i in range(len(stream)) for x in r.feed(stream[i:i + 1])]
    assert one_by_one == whole
    assert all(type(x) is bytes for x in one_by_one)
    assert r.errors == 3  # the top-level "-" error replies
