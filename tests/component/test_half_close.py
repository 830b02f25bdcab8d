"""Half-close (the client's EOF) and CLIENT REPLY, in-process: replies owed when the EOF
arrives are all written before the close, whatever holds them (backends, the pipeline bound, a
client not reading); muted replies keep their place in the order."""

from __future__ import annotations

from .conftest import MakeProxy, Proxy, settle, wait_until


async def test_eof_waits_for_held_replies_and_the_backlog(make_proxy: MakeProxy) -> None:
    proxy = await make_proxy(limits={"max_pipeline": 8})
    b = proxy.backend(1)
    keys = proxy.keys_on(1, 20, b"hc")
    b.hold()
    c = proxy.client()
    c.send(*((b"GET", k) for k in keys))
    assert c.conn.eof_received() is True  # keep the transport open for the replies
    await wait_until(lambda: b.in_flight == 8, "8 in flight")
    assert len(c.conn.backlog) == 12
    c.conn.pause_writing()  # and the client is slow to read, too
    b.release()
    await c.take(8)
    await settle()
    assert not c.transport.closed and len(c.conn.backlog) == 12
    c.conn.resume_writing()
    got = await c.take(12)
    assert got == [str(b.seq_of(b"GET", k)[0]).encode() for k in keys[8:]]
    await wait_until(lambda: c.transport.closed, "closed after the last reply")
    assert not c.transport.aborted


async def test_eof_with_nothing_owed_closes_at_once(proxy: Proxy) -> None:
    c = proxy.client()
    assert await c.call((b"PING",)) == [b"PONG"]
    await settle()
    assert c.conn.eof_received() is False  # the loop closes the transport itself


async def test_eof_after_a_protocol_error(proxy: Proxy) -> None:
    b = proxy.backend(2)
    (key,) = proxy.keys_on(2, 1, b"pe")
    b.hold()
    c = proxy.client()
    c.feed(b"*2\r\n$3\r\nGET\r\n$%d\r\n%b\r\n*x\r\n" % (len(key), key))
    assert c.conn.eof_received() is True
    await settle()
    assert not c.transport.closed
    b.release()
    got = await c.take(2)
    assert got[1] == "ERR Protocol error: invalid multibulk length"
    await wait_until(lambda: c.transport.closed, "closed")


async def test_client_reply_off_keeps_the_order_of_what_is_sent(proxy: Proxy) -> None:
    b1, b2 = proxy.backend(1), proxy.backend(2)
    (k1,), (k2,) = proxy.keys_on(1, 1, b"ro"), proxy.keys_on(2, 1, b"ro")
    b1.hold()
    c = proxy.client()
    # k1's reply is held; the muted GET k2 (answered first) must not overtake or block it.
    c.send((b"GET", k1), (b"CLIENT", b"REPLY", b"OFF"), (b"GET", k2), (b"SET", k1, b"x"),
           (b"CLIENT", b"REPLY", b"ON"), (b"GET", k2))
    await settle()
    assert c.replies == []
    b1.release()
    got = await c.take(3)
    assert got[0] == str(b1.seq_of(b"GET", k1)[0]).encode()
    assert got[1] == b"OK"
    assert got[2] == str(b2.seq_of(b"GET", k2)[1]).encode()
    await settle()
    assert len(c.replies) == 3 and not c.conn.fifo
    # The fast path is back once the replies are on again.
    assert not c.conn.reply_ctl
