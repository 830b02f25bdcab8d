"""Errors dispatch writes itself, with Redis's exact texts, and the connection stays usable.
None of the refused commands reaches a backend."""

from __future__ import annotations

import pytest

from slotcore.keyslot import key_slot

from .conftest import NSLOTS, Proxy, wait_until

CASES = [
    # unknown command (Redis 7: each argument quoted and followed by a space)
    ((b"FOO", b"a", b"b"), "ERR unknown command 'FOO', with args beginning with: 'a' 'b' "),
    ((b"nosuch",), "ERR unknown command 'nosuch', with args beginning with: "),
    ((b"FOO", b"x" * 100, b"y" * 100, b"z"),  # arguments cut at 128 bytes in all
     "ERR unknown command 'FOO', with args beginning with: '" + "x" * 100 + "' '"
     + "y" * 25 + "' "),
    # unknown subcommand of a container
    ((b"OBJECT", b"FOO", b"k"), "ERR unknown subcommand 'FOO'. Try OBJECT HELP."),
    # refused by the proxy, with the reason
    ((b"SWAPDB", b"0", b"1"),
     "ERR command 'SWAPDB' is not supported by the proxy (the proxy serves DB 0 only)"),
    ((b"DEBUG", b"SLEEP", b"0"),
     "ERR command 'DEBUG' is not supported by the proxy (administrative)"),
    ((b"MONITOR",), "ERR command 'MONITOR' is not supported by the proxy (administrative)"),
    # wrong arity: the fast path's commands, split commands and others alike
    ((b"GET",), "ERR wrong number of arguments for 'get' command"),
    ((b"GET", b"a", b"b"), "ERR wrong number of arguments for 'get' command"),
    ((b"set", b"a"), "ERR wrong number of arguments for 'set' command"),
    ((b"MGET",), "ERR wrong number of arguments for 'mget' command"),
    ((b"MSET", b"a", b"1", b"b"), "ERR wrong number of arguments for 'mset' command"),
    ((b"HSET", b"h", b"f"), "ERR wrong number of arguments for 'hset' command"),
    # keys of one command in different slots
    ((b"RENAME", b"a", b"b"), "CROSSSLOT Keys in request don't hash to the same slot"),
    ((b"SMOVE", b"a", b"b", b"m"), "CROSSSLOT Keys in request don't hash to the same slot"),
]


@pytest.mark.parametrize(("argv", "text"), CASES, ids=[c[0][0].decode() for c in CASES])
async def test_error_text_and_the_connection_stays_usable(proxy: Proxy, argv: tuple[bytes, ...],
                                                          text: str) -> None:
    c = proxy.client()
    key = proxy.keys_on(1, 1)[0]
    got = await c.call(argv, (b"PING",), (b"GET", key))
    assert got[0] == text
    assert got[1:] == [b"PONG", str(proxy.backend(1).seq_of(b"GET", key)[0]).encode()]
    assert not any(b.seq_of(*argv) for b in proxy.backends)
    assert not c.transport.closed


async def test_same_slot_keys_are_not_crossslot(proxy: Proxy) -> None:
    c = proxy.client()
    (reply,) = await c.call((b"RENAME", b"{t}a", b"{t}b"))
    gid = proxy.gid_of(b"t")
    assert reply == str(proxy.backend(gid).seq_of(b"RENAME", b"{t}a", b"{t}b")[0]).encode()


async def test_unassigned_slot_answers_clusterdown(proxy: Proxy) -> None:
    key, other = proxy.keys_on(2, 2, b"down")
    await proxy.apply(proxy.slot_map(move={key_slot(key, NSLOTS): 0}))
    c = proxy.client()
    got = await c.call((b"GET", key), (b"MGET", other, key), (b"SET", key, b"v"),
                       (b"GET", other))
    assert got[:3] == ["CLUSTERDOWN Hash slot not served"] * 3
    assert got[3] == str(proxy.backend(2).seq_of(b"GET", other)[0]).encode()
    assert not any(key in a for b in proxy.backends for a in b.commands())


async def test_protocol_error_is_answered_then_the_connection_closes(proxy: Proxy) -> None:
    c = proxy.client()
    c.feed(b"PING\r\n*1\r\n$x\r\n")
    got = await c.take(2)
    assert got == [b"PONG", "ERR Protocol error: invalid bulk length"]
    await wait_until(lambda: c.transport.closed, "close")
    assert not c.transport.aborted


async def test_backend_lost_with_requests_in_flight_answers_errors_then_recovers(
        proxy: Proxy) -> None:
    b = proxy.backend(1)
    keys = proxy.keys_on(1, 2, b"lost")
    b.hold()
    c = proxy.client()
    c.send(*((b"GET", k) for k in keys))
    await wait_until(lambda: len(b.commands(b"GET")) == 2, "GETs at the backend")
    b.drop()
    b.holding = False
    got = await c.take(2)
    assert got == [f"ERR backend {b.addr} connection lost"] * 2
    conn = proxy.router.groups[1].lanes[0]
    await wait_until(lambda: conn.up, "reconnected")
    (reply,) = await c.call((b"GET", keys[0]))
    assert reply == str(b.seq_of(b"GET", keys[0])[-1]).encode()
