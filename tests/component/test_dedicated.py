"""The pool of dedicated connections (backend.dedicated): one pool for WATCH and blocking
commands, bounded per lease kind, idle connections shared by both kinds, CLIENT ID asked for
blocking leases only, and the drain rule (a WATCH request in flight delays a map swap's
drain, a blocked call never does)."""

from __future__ import annotations

import asyncio

from slotcore.resp import pack_command

from .conftest import WAIT, MakeProxy, Proxy, settle, wait_until

UNWATCH = pack_command(b"UNWATCH")


class Got:
    def __init__(self) -> None:
        self.raw: list[bytes] = []

    def resolve(self, raw: bytes) -> None:
        self.raw.append(raw)


async def test_bounds_are_per_kind_and_idle_connections_serve_both(
        make_proxy: MakeProxy) -> None:
    proxy = await make_proxy(backend={"max_leased": 1, "max_dedicated": 1})
    b = proxy.backend(1)
    b.handlers[b"UNWATCH"] = lambda argv, seq: b"+OK\r\n"
    b.handlers[b"CLIENT"] = lambda argv, seq: b":77\r\n"
    pool = proxy.services.pool.dedicated
    addr = b.addr
    w = pool.lease(addr, 2, pool.watch)
    assert w is not None
    assert pool.lease(addr, 2, pool.watch) is None and pool.watch.refused == 1
    bl = pool.lease(addr, 2, pool.blocking)  # each kind has its own bound
    assert bl is not None and bl is not w
    assert pool.lease(addr, 2, pool.blocking) is None and pool.blocking.refused == 1
    await wait_until(lambda: bl.backend_id == 77, "CLIENT ID")
    assert w.backend_id is None and b.commands(b"CLIENT") == [[b"CLIENT", b"ID"]]
    assert pool.watch.leased == 1 and pool.blocking.leased == 1

    pool.release(w, UNWATCH)
    # Given back, but still counted against the bound until its UNWATCH is answered.
    assert pool.watch.leased == 0
    await wait_until(lambda: pool.in_use(addr, pool.watch) == 0, "UNWATCH answered")
    pool.release(bl, b"")
    assert pool.in_use(addr, pool.blocking) == 0
    opened = len(b.conns)

    # Both are idle now and serve either kind; a blocking lease asks CLIENT ID once.
    again = [pool.lease(addr, 2, pool.watch), pool.lease(addr, 2, pool.blocking)]
    assert set(again) == {w, bl}
    await wait_until(lambda: w.backend_id == 77, "CLIENT ID of the former WATCH one")
    assert len(b.commands(b"CLIENT")) == 2 and len(b.conns) == opened

    # None closes it (e.g. the blocked client went away); the bound is free again.
    pool.release(bl, None)
    pool.release(w, None)
    await wait_until(lambda: not b.conns or len(b.conns) == opened - 2, "closed")
    assert pool.lease(addr, 2, pool.blocking) is not None


async def test_drain_waits_for_watch_requests_never_for_blocked_calls(proxy: Proxy) -> None:
    b = proxy.backend(1)
    pool = proxy.services.pool.dedicated
    bl = pool.lease(b.addr, 2, pool.blocking)
    w = pool.lease(b.addr, 2, pool.watch)
    assert bl is not None and w is not None
    await wait_until(lambda: bl.up and w.up and not bl.fifo, "connected")
    b.hold()
    blocked, watched = Got(), Got()
    bl.send(pack_command(b"BLPOP", b"q", b"0"), blocked)
    await wait_until(lambda: b.commands(b"BLPOP") != [], "BLPOP sent")
    await asyncio.wait_for(pool.drain(WAIT), 1.0)  # a blocked call never delays a swap

    w.send(pack_command(b"WATCH", b"k"), watched)
    drain = asyncio.ensure_future(pool.drain(WAIT))
    await settle()
    assert not drain.done()  # a watched request in flight does
    b.release()
    await asyncio.wait_for(drain, WAIT)
    assert watched.raw and blocked.raw
