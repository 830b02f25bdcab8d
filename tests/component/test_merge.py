"""Split and broadcast replies merged (fanout.merge): values back in key order, the first error
wins (tagged with its group for broadcasts), a malformed part is reported, not fatal."""

from __future__ import annotations

from .conftest import Proxy


def on(proxy: Proxy, *gids: int, prefix: bytes = b"m") -> list[bytes]:
    return [proxy.keys_on(g, 1, b"%s%d:%d:" % (prefix, i, g))[0] for i, g in enumerate(gids)]


async def test_split_mget_puts_values_back_in_key_order(proxy: Proxy) -> None:
    keys = on(proxy, 3, 1, 2, 1, 3)
    c = proxy.client()
    (reply,) = await c.call((b"MGET", *keys))
    for k, v in zip(keys, reply, strict=True):
        gid = proxy.gid_of(k)
        (seq,) = proxy.backend(gid).seq_of(b"MGET", *(x for x in keys if proxy.gid_of(x) == gid))
        assert v == b"%s@%d" % (k, seq)
    assert [len(b.commands(b"MGET")) for b in proxy.backends] == [1, 1, 1]


async def test_split_mget_with_an_error_part_answers_that_error(proxy: Proxy) -> None:
    proxy.backend(2).handlers[b"MGET"] = lambda argv, seq: b"-WRONGTYPE nope\r\n"
    c = proxy.client()
    got = await c.call((b"MGET", *on(proxy, 1, 2)), (b"PING",))
    assert got == ["WRONGTYPE nope", b"PONG"]


async def test_split_mget_with_a_malformed_part_says_it_could_not_merge(proxy: Proxy) -> None:
    # Two keys asked of group 2, one value back.
    proxy.backend(2).handlers[b"MGET"] = lambda argv, seq: b"*1\r\n$1\r\nx\r\n"
    c = proxy.client()
    got = await c.call((b"MGET", *on(proxy, 1, 2, 2)), (b"ECHO", b"still here"))
    assert got == ["ERR proxy could not merge replies: sub-reply has the wrong number of "
                   "elements", b"still here"]


async def test_split_del_with_a_non_integer_part_says_it_could_not_merge(proxy: Proxy) -> None:
    proxy.backend(1).handlers[b"DEL"] = lambda argv, seq: b"+OK\r\n"
    c = proxy.client()
    (reply,) = await c.call((b"DEL", *on(proxy, 1, 2, 3)))
    assert reply.startswith("ERR proxy could not merge replies: ")
    assert await c.call((b"DEL", *on(proxy, 2, 3, 3))) == [3]


async def test_split_mset_ok_or_first_error(proxy: Proxy) -> None:
    c = proxy.client()
    k = on(proxy, 1, 2, 3)
    assert await c.call((b"MSET", k[0], b"a", k[1], b"b", k[2], b"c")) == [b"OK"]
    assert proxy.backend(2).commands(b"MSET") == [[b"MSET", k[1], b"b"]]
    proxy.backend(3).handlers[b"MSET"] = lambda argv, seq: b"-OOM command not allowed\r\n"
    assert await c.call((b"MSET", k[0], b"a", k[2], b"c")) == ["OOM command not allowed"]


async def test_dbsize_broadcast_sums_or_names_the_failing_group(proxy: Proxy) -> None:
    c = proxy.client()
    assert await c.call((b"DBSIZE",)) == [30]  # each fake group has 10 keys
    proxy.backend(2).handlers[b"DBSIZE"] = lambda argv, seq: b"-ERR disk on fire\r\n"
    assert await c.call((b"DBSIZE",), (b"PING",)) == ["ERR group 2: ERR disk on fire", b"PONG"]


async def test_script_load_broadcast_names_the_failing_group(proxy: Proxy) -> None:
    for b in proxy.backends:
        b.handlers[b"SCRIPT"] = lambda argv, seq: b"$4\r\nsha1\r\n"
    c = proxy.client()
    assert await c.call((b"SCRIPT", b"LOAD", b"return 1")) == [b"sha1"]
    assert all(b.commands(b"SCRIPT") == [[b"SCRIPT", b"LOAD", b"return 1"]]
               for b in proxy.backends)
    proxy.backend(3).handlers[b"SCRIPT"] = lambda argv, seq: (
        b"-ERR Error compiling script (new function): user_script:1: syntax error\r\n")
    assert await c.call((b"SCRIPT", b"LOAD", b"return +")) == [
        "ERR group 3: ERR Error compiling script (new function): user_script:1: syntax error"]
