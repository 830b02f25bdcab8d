"""Big values are copied once, or not at all, on the compiled hot path.

The compiled client's parser leaves each value of >= 512 bytes in the read it came in (an
internal reference, `ArgRef`) instead of copying it into a bytes object: MSET's values, and
every argument after the key of other commands, but never the keys of MGET, DEL, UNLINK,
EXISTS and TOUCH. The fast path copies MSET's once, into its group's sub-request (or not at
all when every key is on one group), and forwards a single-key request as it came.
Python code must never see such a reference: every request the fast path does not serve, and
every argv it keeps (a timed request, for the slow log), gets real bytes first. Each case
below takes MSET through one of those hand-overs, on both hot paths, and checks what the
backends received, value for value.
"""

from __future__ import annotations

from typing import Any

import pytest

from proxy.client.connection import CompiledClientConnection
from slotcore.keyslot import key_slot
from slotcore.resp import encode_array, encode_int, pack_command
from slotcore.slotmap import LOCKED

from .conftest import NSLOTS, MakeProxy, Proxy, settle, wait_until

SIZES = (512, 600, 1024, 3000, 511)  # the last one is copied by the parser (below the bound)


@pytest.fixture(autouse=True)
def python_sees_bytes_only(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every request the compiled callbacks hand to Python holds bytes only (the Python path
    would mostly cope with a reference by luck: its MSET split is compiled too)."""
    handed: list[int] = []

    def check(reqs: list[list[Any]], start: int) -> None:
        for argv in reqs[start:]:
            assert all(type(a) is bytes for a in argv), [type(a) for a in argv]
            handed.append(len(argv))

    serve = CompiledClientConnection._serve
    chunk = CompiledClientConnection._dispatch_chunk_compiled

    def _serve(self: CompiledClientConnection, reqs: list[list[bytes]]) -> None:
        check(reqs, 0)
        serve(self, reqs)

    def _chunk(self: CompiledClientConnection, reqs: list[list[bytes]], packed: list[bytes],
               start: int = 0) -> None:
        check(reqs, start)
        chunk(self, reqs, packed, start)

    monkeypatch.setattr(CompiledClientConnection, "_serve", _serve)
    monkeypatch.setattr(CompiledClientConnection, "_dispatch_chunk_compiled", _chunk)
    return handed


def pairs(p: Proxy, tag: bytes) -> list[tuple[bytes, bytes]]:
    """Keys on groups 1, 1, 2, 3, 2 with values of SIZES, each of its own letter."""
    keys = (p.keys_on(1, 2, tag + b"a") + p.keys_on(2, 1, tag + b"b")
            + p.keys_on(3, 1, tag + b"c") + p.keys_on(2, 1, tag + b"d"))
    return [(k, bytes([97 + i]) * n) for i, (k, n) in enumerate(zip(keys, SIZES, strict=True))]


def mset(kv: list[tuple[bytes, bytes]], name: bytes = b"MSET") -> bytes:
    return pack_command(name, *(x for pair in kv for x in pair))


def received(p: Proxy) -> dict[bytes, bytes]:
    """Every key the backends were sent an MSET for, with its value (checked: once each)."""
    got: dict[bytes, bytes] = {}
    for b in p.backends:
        for argv in b.commands():
            if argv[0].upper() == b"MSET":
                for k, v in zip(argv[1::2], argv[2::2], strict=True):
                    assert k not in got, f"{k!r} sent twice"
                    got[k] = bytes(v)
    return got


@pytest.mark.parametrize("name", [b"MSET", b"mset"])
async def test_alone_in_its_read(make_proxy: MakeProxy, name: bytes) -> None:
    p = await make_proxy()
    kv = pairs(p, b"x")
    c = p.client()
    c.feed(mset(kv, name))
    assert await c.take(1) == [b"OK"]
    assert received(p) == dict(kv)


async def test_one_group_forwards_the_read_unchanged(make_proxy: MakeProxy) -> None:
    p = await make_proxy()
    kv = [(k, b"v" * 2000) for k in p.keys_on(2, 3, b"one")]
    c = p.client()
    c.feed(mset(kv))
    assert await c.take(1) == [b"OK"]
    assert received(p) == dict(kv)
    assert [a for a in p.backend(2).commands() if a[0] == b"MSET"] == [
        [b"MSET", *(x for pair in kv for x in pair)]]


async def test_behind_a_command_the_fast_path_does_not_serve(make_proxy: MakeProxy) -> None:
    """ECHO first: the rest of the read goes to the Python loop, MSET with real bytes."""
    p = await make_proxy()
    kv, kv2 = pairs(p, b"y"), pairs(p, b"z")
    c = p.client()
    c.feed(mset(kv2) + pack_command(b"ECHO", b"hi") + mset(kv) + pack_command(b"GET", kv[0][0]))
    got = await c.take(4)
    assert got[:3] == [b"OK", b"hi", b"OK"]
    assert received(p) == {**dict(kv), **dict(kv2)}


async def test_while_replies_are_off(make_proxy: MakeProxy) -> None:
    """CLIENT REPLY OFF: not the common case, the whole read goes to the Python path."""
    p = await make_proxy()
    kv = pairs(p, b"off")
    c = p.client()
    c.feed(pack_command(b"CLIENT", b"REPLY", b"OFF"))
    await settle()
    c.feed(mset(kv) + pack_command(b"CLIENT", b"REPLY", b"ON") + pack_command(b"PING", b"end"))
    assert await c.take(2) == [b"OK", b"end"]  # (CLIENT REPLY ON answers OK)
    assert received(p) == dict(kv)


@pytest.mark.parametrize("cut", ["after the 2nd value", "inside the 3rd value", "byte by byte"])
@pytest.mark.parametrize("replies", ["on", "off"])
async def test_cut_across_reads(make_proxy: MakeProxy, cut: str, replies: str) -> None:
    """Values parsed from an earlier read stay valid while the request completes later (its
    canonical bytes are then packed from the parts); with replies off it completes on the
    Python path."""
    p = await make_proxy()
    kv = pairs(p, b"cut")
    data = mset(kv) + pack_command(b"GET", kv[0][0])
    c = p.client()
    if replies == "off":
        c.feed(pack_command(b"CLIENT", b"REPLY", b"OFF"))
        await settle()
        data += pack_command(b"CLIENT", b"REPLY", b"ON") + pack_command(b"PING", b"x")
    if cut == "byte by byte":
        for i in range(len(data)):
            c.feed(data[i:i + 1])
    else:
        at = data.index(kv[1][1]) + len(kv[1][1]) + 2
        if cut == "inside the 3rd value":
            at = data.index(kv[2][1]) + 100
        c.feed(data[:at])
        await settle()
        c.feed(data[at:])
    got = await c.take(2)
    assert got[0] == b"OK" and (got[1] == b"x" if replies == "off" else len(got) == 2)
    assert received(p) == dict(kv)


async def test_timed_request_keeps_real_bytes_for_the_slow_log(make_proxy: MakeProxy) -> None:
    p = await make_proxy(metrics=True, latency_sample_every=1, slowlog_log_slower_than=0)
    kv = pairs(p, b"slow")
    c = p.client()
    c.feed(mset(kv))
    assert await c.take(1) == [b"OK"]
    assert received(p) == dict(kv)
    (entries,) = await c.call((b"SLOWLOG", b"GET", b"100"))
    args = next(e[3] for e in entries if e[3][0] == b"MSET")
    want = [b"MSET"]
    for k, v in kv:  # as Redis shows them: arguments over 128 bytes cut
        want += [k, v if len(v) <= 128 else v[:128] + b"... (%d more bytes)" % (len(v) - 128)]
    assert args == want


async def test_held_in_a_locked_slot_then_sent(make_proxy: MakeProxy) -> None:
    """A request held for a slot in transit outlives its read: it holds real bytes."""
    p = await make_proxy()
    kv = pairs(p, b"held")
    s = key_slot(kv[0][0], NSLOTS)
    await p.apply(p.slot_map(transit=((s, s, 1, 2, LOCKED),)))
    c = p.client()
    c.feed(mset(kv))
    await wait_until(lambda: len(p.transit.held) == 1, "the locked slot's part held")
    await settle()
    assert kv[0][0] not in received(p)  # (the other groups' parts are sent)
    await p.apply(p.slot_map(move={s: 2}))
    assert await c.take(1) == [b"OK"]
    assert received(p) == dict(kv)


async def test_single_key_commands_forward_big_values(make_proxy: MakeProxy) -> None:
    p = await make_proxy()
    k1, k2 = p.keys_on(1, 1, b"sk")[0], p.keys_on(2, 1, b"sk")[0]
    big, other = b"v" * 4000, b"w" * 700
    cmds = [(b"SET", k1, big), (b"set", k2, other, b"EX", b"100"), (b"LPUSH", k1 + b"l", big,
            other, b"small"), (b"HSET", k2 + b"h", big, other), (b"ECHO", big),
            (b"APPEND", k1, other)]
    c = p.client()
    c.feed(b"".join(pack_command(*cmd) for cmd in cmds))
    got = await c.take(len(cmds))
    assert got[4] == big  # ECHO: answered by the Python path, with real bytes
    sent = [a for b in p.backends for a in b.commands() if a[0].upper() != b"PING"]
    assert sorted(map(tuple, sent)) == sorted(c for c in cmds if c[0] != b"ECHO")


async def test_big_keys_of_split_commands(make_proxy: MakeProxy) -> None:
    """Keys of MGET, DEL, EXISTS of >= 512 bytes are keys, read by the fast path's split."""
    p = await make_proxy()
    # {k}: the slot of k, whatever the padding
    keys = [b"{" + k + b"}" + b"." * 600 for k in p.keys_on(1, 2, b"bk") + p.keys_on(2, 2, b"bk")]
    keys = [keys[0], keys[2], keys[1], keys[3]]  # groups 1, 2, 1, 2
    for b in p.backends:
        b.handlers[b"MGET"] = lambda argv, seq: encode_array([b"v:" + k for k in argv[1:]])
        for name in (b"DEL", b"EXISTS", b"TOUCH", b"UNLINK"):
            b.handlers[name] = lambda argv, seq: encode_int(len(argv) - 1)
    c = p.client()
    for name in (b"MGET", b"DEL", b"EXISTS", b"TOUCH", b"UNLINK"):
        c.feed(pack_command(name, *keys))
        (got,) = await c.take(1)
        assert got == ([b"v:" + k for k in keys] if name == b"MGET" else 4), name
        # split over both groups: each got its two keys
        assert sorted(len(a) for b in p.backends for a in b.commands(name)) == [3, 3], name


async def test_timed_single_key_request_keeps_real_bytes(make_proxy: MakeProxy) -> None:
    p = await make_proxy(metrics=True, latency_sample_every=1, slowlog_log_slower_than=0)
    k = p.keys_on(3, 1, b"ts")[0]
    c = p.client()
    c.feed(pack_command(b"SET", k, b"z" * 1000))
    await c.take(1)
    (entries,) = await c.call((b"SLOWLOG", b"GET", b"100"))
    args = next(e[3] for e in entries if e[3][0] == b"SET")
    assert args == [b"SET", k, b"z" * 128 + b"... (872 more bytes)"]
