"""The two hot paths write the same bytes for the same request stream.

The compiled read and write callbacks (`CompiledClientConnection`: `_speedups`'
client_data_received and client_flush) serve the common case themselves and hand every other
case to the Python methods at the point where it leaves the common case. Random streams that
cross every one of those points (reads cut anywhere, bursts over the pipeline bound, CLIENT
REPLY OFF/SKIP, commands off the fast path, split commands, inline requests, a protocol error
at the end) go through a proxy on each hot path in turn; the client must receive exactly the
same bytes from both, and the backends the same requests.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from proxy import _accel
from proxy.backend.conn import BackendConn
from proxy.client.connection import ClientConnection, CompiledClientConnection
from slotcore.resp import encode_array, encode_bulk, encode_int, pack_command

from .conftest import Client, FakeBackend, MakeProxy, settle, wait_until

KEYS = [b"k%d" % i for i in range(40)] + [b"{t}a", b"{t}b", b"{t}c"]
DATA = {b"GET", b"SET", b"INCR", b"MGET", b"MSET", b"mset", b"MsEt", b"DEL", b"EXISTS",
        b"WATCH"}


def deterministic(backends: list[FakeBackend]) -> None:
    """Replies that depend on the request only (not on a backend's sequence number), so the
    two runs can be compared byte for byte."""
    for b in backends:
        b.handlers.update({
            b"GET": lambda argv, seq: encode_bulk(b"v:" + argv[1]),
            b"SET": lambda argv, seq: b"+OK\r\n",
            b"INCR": lambda argv, seq: encode_int(len(argv[1])),
            b"MGET": lambda argv, seq: encode_array([b"v:" + k for k in argv[1:]]),
            b"MSET": lambda argv, seq: b"+OK\r\n",
            b"DEL": lambda argv, seq: encode_int(len(argv) - 1),
            b"EXISTS": lambda argv, seq: encode_int(len(argv) - 1),
            b"WATCH": lambda argv, seq: b"+OK\r\n",
            b"UNWATCH": lambda argv, seq: b"+OK\r\n",
        })


def one_command(rng: random.Random) -> bytes:
    k = rng.choice(KEYS)
    r = rng.random()
    if r < 0.25:
        return pack_command(b"GET", k)
    if r < 0.40:
        n = rng.randint(0, 40) if rng.random() < 0.8 else rng.choice([511, 512, 2000])
        return pack_command(b"SET", k, b"x" * n)  # >= 512: left in the read (compiled)
    if r < 0.47:
        return pack_command(b"INCR", k)
    if r < 0.55:
        return pack_command(b"MGET", *rng.sample(KEYS, rng.randint(1, 5)))
    if r < 0.60:
        ks = rng.sample(KEYS, rng.randint(1, 4))
        if rng.random() < 0.5:  # small values (copied by the parser)
            return pack_command(b"MSET", *(x for key in ks for x in (key, b"m")))
        # values of >= 512 bytes: the compiled parser leaves them in the read (ArgRef) and
        # they are copied once, into each group's sub-request
        name = rng.choice([b"MSET", b"mset", b"MsEt"])
        args = [x for key in ks for x in (key, bytes([rng.randint(97, 122)]) * rng.choice(
            [511, 512, 513, 1024, 3000]))]
        if rng.random() < 0.1:
            args.pop()  # wrong number of arguments: dispatch's error reply (Python path)
        return pack_command(name, *args)
    if r < 0.64:
        return pack_command(b"DEL", *rng.sample(KEYS, rng.randint(1, 3)))
    if r < 0.70:
        return pack_command(b"PING") if rng.random() < 0.5 else pack_command(b"ECHO", k)
    if r < 0.74:
        return b"PING\r\n" if rng.random() < 0.5 else b"GET " + k + b"\r\n"  # inline
    if r < 0.78:
        return pack_command(b"GET")  # wrong arity: an error reply from dispatch
    if r < 0.81:
        return pack_command(b"NOSUCHCOMMAND", k)
    if r < 0.86:  # OFF for a few commands at a time (then ON), or SKIP the next one
        return pack_command(b"CLIENT", b"REPLY", rng.choice([b"OFF", b"ON", b"ON", b"SKIP"]))
    if r < 0.88:
        return pack_command(b"EXISTS", k, rng.choice(KEYS))
    if r < 0.90:  # waits for the replies owed (a barrier), later commands held back meanwhile
        return pack_command(b"WATCH", k) + pack_command(b"UNWATCH")
    return pack_command(b"GET", k)


def stream(rng: random.Random, protocol_error: bool) -> bytes:
    cmds = [one_command(rng) for _ in range(rng.randint(50, 400))]
    cmds.append(pack_command(b"CLIENT", b"REPLY", b"ON"))
    cmds.append(pack_command(b"PING", b"end"))
    if protocol_error:
        cmds.append(b"*1\r\n$x\r\n")  # its reply, then the close
    return b"".join(cmds)


async def run(make_proxy: MakeProxy, compiled: bool, data: bytes, seed: int
              ) -> tuple[bytes, list[list[list[bytes]]], type]:
    proxy = await make_proxy(use_accelerator=compiled, limits={"max_pipeline": 16})
    deterministic(proxy.backends)
    for b in proxy.backends:
        b.log.clear()
    c: Client = proxy.client()
    owed: list[int] = []  # the client's replies owed after each read
    rng = random.Random(seed)  # the same cuts and pauses on both paths
    pos = 0
    while pos < len(data):
        step = rng.choice([1, 2, 7, 20, 30, 45, 60, 100, 200, 700, 3000])
        c.feed(data[pos:pos + step])
        pos += step
        if not c.conn.closing:  # (a protocol error's reply is owed beyond the bound)
            owed.append(len(c.conn.fifo))
        r = rng.random()
        if r < 0.4:  # a client that waits for its replies (most reads start with none owed)
            await wait_until(lambda: (not c.conn.fifo and not c.conn.backlog) or c.conn.closing,
                             "the replies owed")
        elif r < 0.6:
            await asyncio.sleep(0)  # let some replies arrive between reads
        await wait_until(lambda: c.transport.reading or c.conn.closing,
                         "reading resumed (pipeline bound)")
    conn = c.conn
    await wait_until(lambda: not conn.fifo and not conn.backlog and not conn.dirty,
                     "every reply written")
    await settle()
    seen = [[a for a in b.commands() if a[0] in DATA] for b in proxy.backends]
    kind = type(conn)
    # closed (after writing every reply) iff the stream ended in a protocol error
    assert c.transport.closed is data.endswith(b"$x\r\n")
    await proxy.close()
    assert owed and max(owed) <= 16  # the pipeline bound held (limits.max_pipeline)
    return bytes(c.transport.written), seen, kind


@pytest.mark.parametrize("seed", range(6))
async def test_both_hot_paths_write_the_same_bytes(make_proxy: MakeProxy, hot_path: str,
                                                   seed: int) -> None:
    # Both paths run in each case; the conftest's hot_path only picks which one goes first.
    assert _accel.COMPILED_AVAILABLE, f"compiled hot path not built: {_accel.IMPORT_ERROR}"
    data = stream(random.Random(seed), protocol_error=seed % 2 == 1)
    first = hot_path == "compiled"
    a = await run(make_proxy, first, data, seed)
    b = await run(make_proxy, not first, data, seed)
    fast, slow = (a, b) if first else (b, a)
    assert fast[2] is CompiledClientConnection and slow[2] is ClientConnection
    assert fast[0] == slow[0]
    assert fast[0].endswith(b"-ERR Protocol error: invalid bulk length\r\n" if seed % 2
                            else b"$3\r\nend\r\n")
    assert fast[1] == slow[1]
    assert sum(map(len, fast[1])) > 50  # the stream's commands did reach the backends


async def test_backend_connections_of_each_hot_path(make_proxy: MakeProxy, hot_path: str
                                                    ) -> None:
    """The compiled backend write (CompiledBackendConn.flush) writes and counts as its twin."""
    proxy = await make_proxy()
    conns = proxy.services.pool.all_conns()
    want = "CompiledBackendConn" if hot_path == "compiled" else "BackendConn"
    assert conns and {type(c).__name__ for c in conns} == {want}
    assert all(isinstance(c, BackendConn) for c in conns)
    counters = proxy.services.stats.backends
    before = sum(c.requests for c in counters.values())
    c = proxy.client()
    k1, k2 = proxy.keys_on(1, 1)[0], proxy.keys_on(2, 1)[0]
    got = await c.call((b"SET", k1, b"1"), (b"GET", k2), (b"MGET", k1, k2))
    assert len(got) == 3 and len(got[2]) == 2
    assert sum(c.requests for c in counters.values()) - before == 4  # SET, GET, 2 sub-MGETs
    assert [a[0] for a in proxy.backend(1).commands() if a[0] in DATA] == [b"SET", b"MGET"]
