"""HELLO 3 pipelined behind commands still owed: the commands after it wait (lane barrier)
until every earlier reply is in, then go on the RESP3 lanes; replies stay in order.

The barrier matters because the RESP3 lanes are other backend connections: a SET sent on the
RESP2 connection and a GET of the same key sent right after on the RESP3 connection could
otherwise execute in the wrong order on the backend.
"""

from __future__ import annotations

import pytest

from .conftest import FakeBackend, MakeProxy, Proxy, settle, wait_until


def sent_after_hello(b: FakeBackend) -> list[list[bytes]]:
    """Requests that came on a RESP3 connection (one whose first request was HELLO 3)."""
    resp3 = {c.index for c in b.conns if c.first == [b"HELLO", b"3"]}
    return [argv for _, conn, argv in b.log if conn in resp3 and argv[0] != b"HELLO"]


def gets_received(proxy: Proxy) -> int:
    return sum(len(b.commands(b"GET")) for b in proxy.backends)


def assert_nothing_after_hello_sent(proxy: Proxy, after: set[bytes]) -> None:
    for b in proxy.backends:
        seen = {a[1] for a in b.commands(b"GET")}
        assert not seen & after, f"{b.name} got {seen & after} before the earlier replies"


@pytest.mark.parametrize("max_pipeline", [1024, 4], ids=["fast-path", "backlog"])
async def test_commands_after_hello_3_wait_for_the_replies_owed(
        make_proxy: MakeProxy, max_pipeline: int) -> None:
    proxy = await make_proxy(limits={"max_pipeline": max_pipeline})
    # Owed before HELLO: one GET per group (with max_pipeline 4, two, so the pipeline holds
    # them, HELLO and one more), every backend holding its replies.
    owed = [proxy.keys_on(g, 1, b"before%d:" % g)[0] for g in (1, 2, 3)]
    if max_pipeline == 4:
        owed = owed[:2]
    after = [proxy.keys_on(g, 1, b"after%d:%d:" % (g, i))[0] for i, g in enumerate((1, 2, 1))]
    for b in proxy.backends:
        b.hold()
    c = proxy.client()
    c.send(*((b"GET", k) for k in owed), (b"HELLO", b"3"), *((b"GET", k) for k in after))
    await wait_until(lambda: gets_received(proxy) == len(owed), "owed")
    await settle()
    assert_nothing_after_hello_sent(proxy, set(after))
    # Answer the owed requests one group at a time: until the last is in, nothing after
    # HELLO may go out.
    for b in proxy.backends[:len(owed) - 1]:
        b.release()
        await wait_until(lambda b=b: b.in_flight == 0, "release")
        await settle()
        assert_nothing_after_hello_sent(proxy, set(after))
    for b in proxy.backends:
        b.release()
    got = await c.take(len(owed) + 1 + len(after))
    expect_owed = [str(proxy.backend(proxy.gid_of(k)).seq_of(b"GET", k)[0]).encode()
                   for k in owed]
    assert got[:len(owed)] == expect_owed
    assert got[len(owed)][b"proto"] == 3  # HELLO's reply is a RESP3 map
    for k, reply in zip(after, got[len(owed) + 1:], strict=True):
        b = proxy.backend(proxy.gid_of(k))
        # The command went on a new connection that said HELLO 3 first.
        assert [b"GET", k] in sent_after_hello(b)
        assert reply == str(b.seq_of(b"GET", k)[0]).encode()
    await wait_until(lambda: c.transport.reading, "reading resumed")


async def test_a_read_after_hello_3_waits_behind_the_replies_owed(proxy: Proxy) -> None:
    """HELLO 3 last in a read, then a later read with a fast-path command: the client is still
    read (so a disconnect is seen), but the command waits in the backlog until every reply
    owed before HELLO is in, then goes on the new lane."""
    owed = [proxy.keys_on(g, 1, b"tail%d:" % g)[0] for g in (1, 2, 3)]
    for b in proxy.backends:
        b.hold()
    c = proxy.client()
    c.send(*((b"GET", k) for k in owed), (b"HELLO", b"3"))
    await wait_until(lambda: gets_received(proxy) == 3, "owed")
    key = proxy.keys_on(1, 1, b"later")[0]
    c.send((b"GET", key))
    await settle()
    for b in proxy.backends[:2]:
        b.release()
        await wait_until(lambda b=b: b.in_flight == 0, "release")
        await settle()
        assert_nothing_after_hello_sent(proxy, {key})
    proxy.backend(3).release()
    got = await c.take(5)
    assert got[3][b"proto"] == 3
    b = proxy.backend(1)
    assert [b"GET", key] in sent_after_hello(b)
    assert got[4] == str(b.seq_of(b"GET", key)[0]).encode()


async def test_hello_3_with_nothing_owed_switches_at_once(proxy: Proxy) -> None:
    c = proxy.client()
    keys = [proxy.keys_on(g, 1, b"now%d:" % g)[0] for g in (1, 2, 3)]
    got = await c.call((b"HELLO", b"3"), *((b"GET", k) for k in keys), (b"HELLO", b"2"),
                       (b"GET", keys[0]))
    assert got[0][b"proto"] == 3
    for k, reply in zip(keys, got[1:4], strict=True):
        b = proxy.backend(proxy.gid_of(k))
        assert [b"GET", k] in sent_after_hello(b)
        assert reply == str(b.seq_of(b"GET", k)[0]).encode()
    assert got[4][got[4].index(b"proto") + 1] == 2  # RESP2 HELLO reply: a flat array
    # Back on RESP2: the last GET went on the first (RESP2) connection.
    b1 = proxy.backend(1)
    seqs = b1.seq_of(b"GET", keys[0])
    assert len(seqs) == 2
    conn_of = {seq: conn for seq, conn, _ in b1.log}
    resp3 = {c.index for c in b1.conns if c.first == [b"HELLO", b"3"]}
    assert conn_of[seqs[0]] in resp3 and conn_of[seqs[1]] not in resp3
    assert got[5] == str(seqs[1]).encode()
