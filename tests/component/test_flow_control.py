"""Backpressure: at most `max_pipeline` requests of a client are in flight; reading pauses and
resumes; a client that does not read its replies past the output limit is dropped."""

from __future__ import annotations

import pytest

from .conftest import MakeProxy, Proxy, settle, wait_until


async def test_at_most_max_pipeline_requests_in_flight_and_reading_pauses(
        make_proxy: MakeProxy) -> None:
    proxy = await make_proxy(limits={"max_pipeline": 8})
    backends = proxy.backends
    in_flight: list[int] = []
    for b in backends:
        b.observers.append(lambda: in_flight.append(sum(x.in_flight for x in backends)))
        b.hold()
    c = proxy.client()
    keys = [b"bp:%d" % i for i in range(100)]
    assert {proxy.gid_of(k) for k in keys} == {1, 2, 3}
    c.send(*((b"GET", k) for k in keys))  # 100 requests in one read
    await wait_until(lambda: sum(b.in_flight for b in backends) == 8, "8 requests in flight")
    await settle()
    # Nothing beyond the bound was sent while nothing is answered; the rest waits parsed.
    assert sum(b.in_flight for b in backends) == 8
    assert sum(len(b.commands(b"GET")) for b in backends) == 8
    assert len(c.conn.backlog) == 92
    assert not c.transport.reading and c.transport.pause_calls == 1
    assert c.replies == []
    # Answer slowly from now on: the proxy refills as replies are written.
    for b, delay in zip(backends, (0.001, 0.002, 0.0), strict=True):
        b.delay = delay
        b.release()
    got = await c.take(100)
    assert max(in_flight) == 8
    assert len(in_flight) == 100
    for k, reply in zip(keys, got, strict=True):
        (seq,) = backends[proxy.gid_of(k) - 1].seq_of(b"GET", k)
        assert reply == str(seq).encode()
    # Reading resumed once the backlog was dispatched and the replies written.
    await wait_until(lambda: c.transport.reading, "reading resumed")
    assert c.transport.resume_calls >= 1
    assert c.transport.pause_calls == c.transport.resume_calls
    assert not c.conn.backlog and not c.conn.fifo
    # And the connection keeps working.
    assert await c.call((b"PING",)) == [b"PONG"]


async def test_pipeline_bound_holds_over_many_reads(make_proxy: MakeProxy) -> None:
    proxy = await make_proxy(limits={"max_pipeline": 8})
    peak: list[int] = [0]
    for b in proxy.backends:
        b.delay = 0.001
        b.observers.append(lambda: peak.__setitem__(0, max(
            peak[0], sum(x.in_flight for x in proxy.backends))))
    c = proxy.client()
    keys = [b"many:%d" % i for i in range(60)]
    for k in keys:  # one request per read, faster than the backends answer
        c.send((b"SET", k, b"v"))
    got = await c.take(60)
    assert peak[0] <= 8
    for k, reply in zip(keys, got, strict=True):
        (seq,) = proxy.backend(proxy.gid_of(k)).seq_of(b"SET", k, b"v")
        assert reply == str(seq).encode()


@pytest.fixture
async def small_output(make_proxy: MakeProxy) -> Proxy:
    return await make_proxy(limits={"max_pipeline": 8, "client_output_buffer": 1000})


async def test_nothing_more_is_dispatched_while_the_client_does_not_read(
        small_output: Proxy) -> None:
    proxy = small_output
    b = proxy.backend(1)
    keys = proxy.keys_on(1, 20, b"wp")
    b.hold()
    c = proxy.client()
    c.send(*((b"GET", k) for k in keys))
    await wait_until(lambda: b.in_flight == 8, "8 in flight")
    # The transport passed its high-water mark: the client is not reading its replies.
    c.conn.pause_writing()
    b.release()
    await c.take(8)
    await settle()
    # Its replies were written, but the backlog stays undispatched while it does not read.
    assert len(b.commands(b"GET")) == 8
    assert len(c.conn.backlog) == 12
    assert not c.transport.reading
    c.conn.resume_writing()
    got = await c.take(12)
    assert got == [str(b.seq_of(b"GET", k)[0]).encode() for k in keys[8:]]
    await wait_until(lambda: c.transport.reading, "reading resumed")
    assert not c.transport.aborted


async def test_client_over_the_output_limit_is_aborted(small_output: Proxy) -> None:
    proxy = small_output
    b = proxy.backend(2)
    key = proxy.keys_on(2, 1)[0]
    c = proxy.client()
    b.hold()
    c.send((b"GET", key))
    await wait_until(lambda: b.in_flight == 1, "GET at the backend")
    c.conn.pause_writing()  # the client stopped reading ...
    c.transport.buffer_size = 1001  # ... and what it has not read is over the limit (1000)
    b.release()
    await wait_until(lambda: c.transport.aborted, "abort")
    await settle()
    assert c.conn.closed  # connection_lost ran: the client is gone from the registry
    assert c.conn not in proxy.services.clients.clients
    # The backend connection stays in step for the next client.
    other = proxy.client()
    assert await other.call((b"GET", key)) == [str(b.seq_of(b"GET", key)[-1]).encode()]


async def test_client_at_the_output_limit_is_kept(small_output: Proxy) -> None:
    proxy = small_output
    b = proxy.backend(2)
    key = proxy.keys_on(2, 1)[0]
    c = proxy.client()
    b.hold()
    c.send((b"GET", key))
    await wait_until(lambda: b.in_flight == 1, "GET at the backend")
    c.conn.pause_writing()
    c.transport.buffer_size = 1000  # at the limit, not over it
    b.release()
    await c.take(1)
    await settle()
    assert not c.transport.aborted and not c.conn.closed
