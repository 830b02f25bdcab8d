"""Re-pointing a group (routing.router, backend.pool) in-process: what is queued for a master
the map no longer names is answered, never written."""

from __future__ import annotations

import asyncio

from proxy.backend.conn import CONNECTING, BackendConn, Flusher
from proxy.routing.router import repointed
from slotcore.resp import pack_command
from slotcore.slotmap import GroupSpec

from .conftest import FakeBackend, MakeProxy, settle, wait_until


class _Got:
    def __init__(self) -> None:
        self.raw: list[bytes] = []

    def resolve(self, raw: bytes) -> None:
        self.raw.append(raw)


async def test_requests_queued_while_connecting_are_failed_not_written(
        backends: list[FakeBackend]) -> None:
    old = backends[0]
    conn = BackendConn("127.0.0.1", old.port, Flusher(asyncio.get_running_loop()))
    conn.start()  # connecting from now on: requests queue until it is up
    assert conn.state == CONNECTING
    got = _Got()
    conn.send(pack_command(b"SET", b"k", b"v"), got)
    assert conn.fail_unsent(repointed(1, old.addr, "127.0.0.1:1")) == 1
    assert got.raw and got.raw[0].startswith(b"-TRYAGAIN group 1 master moved")
    await wait_until(lambda: conn.up, "connected")
    await settle()
    assert old.commands(b"SET") == []  # the old master never saw it
    assert conn.fail_unsent(b"-ERR x\r\n") == 0  # an up connection is left to the drain
    await conn.close()


async def test_a_swap_naming_a_new_master_sends_new_requests_there(make_proxy: MakeProxy,
                                                                   backends: list[FakeBackend]
                                                                   ) -> None:
    p = await make_proxy()
    key = p.keys_on(1, 1, b"moved")[0]
    new = backends[2]  # any other server will do as group 1's new master
    c = p.client()
    await c.call((b"SET", key, b"1"))
    p.groups[1] = GroupSpec(1, new.addr, (p.backend(1).addr,))
    await p.apply(p.slot_map())
    await c.call((b"SET", key, b"2"), (b"GET", key))
    assert [a[2:] for a in p.backend(1).commands(b"SET") if a[1] == key] == [[b"1"]]
    assert [a[2:] for a in new.commands(b"SET") if a[1] == key] == [[b"2"]]
    assert p.router.repoints[-1] == (1, p.backend(1).addr, new.addr)
