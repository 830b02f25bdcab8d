"""A backend's reply stream, read by BackendConn.data_received (or its compiled twin):
replies framed and handed out in request order, error replies counted, and a stream gone
wrong -- unparsable, or a reply no request waits for -- drops the connection with an error
to every request waiting on it, then reconnects."""

from __future__ import annotations

from proxy.backend.conn import UP
from slotcore.resp import encode_bulk

from .conftest import MakeProxy, wait_until


def backend_conns(p, gid: int) -> list:
    return [c for c in p.services.pool.all_conns() if c.port == p.backend(gid).port]


async def test_error_replies_are_counted(make_proxy: MakeProxy) -> None:
    p = await make_proxy()
    k = p.keys_on(1, 1)[0]
    p.backend(1).handlers[b"GET"] = lambda argv, seq: b"-ERR boom " + argv[1] + b"\r\n"
    counters = p.services.stats.backends
    before = sum(c.errors for c in counters.values())
    c = p.client()
    got = await c.call(*[(b"GET", k)] * 3, (b"SET", k, b"v"))
    assert [str(g) for g in got[:3]] == [f"ERR boom {k.decode()}"] * 3
    assert got[3].isdigit()
    assert sum(c.errors for c in counters.values()) - before == 3


async def test_unparsable_reply_drops_the_connection(make_proxy: MakeProxy) -> None:
    p = await make_proxy()
    k = p.keys_on(1, 1)[0]
    p.backend(1).handlers[b"GET"] = lambda argv, seq: b"?what\r\n"
    c = p.client()
    (got,) = await c.call((b"GET", k))
    assert str(got).startswith("ERR backend") and "connection lost" in str(got)
    assert any("protocol error" in (b.last_error or "") for b in backend_conns(p, 1))
    del p.backend(1).handlers[b"GET"]
    await wait_until(lambda: all(b.state == UP for b in backend_conns(p, 1)), "reconnected")
    (again,) = await c.call((b"GET", k))
    assert again.isdigit()


async def test_reply_nobody_asked_for_drops_the_connection(make_proxy: MakeProxy) -> None:
    p = await make_proxy()
    k = p.keys_on(2, 1)[0]
    p.backend(2).handlers[b"GET"] = lambda argv, seq: encode_bulk(b"a") + encode_bulk(b"b")
    c = p.client()
    (got,) = await c.call((b"GET", k))
    # both in one read: nothing of it can be trusted, the request owed fails too
    assert str(got).startswith("ERR backend") and "connection lost" in str(got)
    await wait_until(lambda: any("no request waiting" in (b.last_error or "")
                                 for b in backend_conns(p, 2)), "the connection dropped")
    del p.backend(2).handlers[b"GET"]
    await wait_until(lambda: all(b.state == UP for b in backend_conns(p, 2)), "reconnected")
    (again,) = await c.call((b"GET", k))
    assert again.isdigit()
