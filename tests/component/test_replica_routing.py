"""The routing decision of reads from replicas (dispatch.keyed + routing.replicas), in-process:
which backend a client's command reaches for each read policy. The replica's health is the
state the health loop feeds (`ReplicaReads.update`); the real checks against replicating
redis-servers are in tests/integration/proxy/test_replica_reads.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from proxy.routing.replicas import Verdict
from slotcore.keyslot import key_slot
from slotcore.slotmap import LOCKED, MIGRATING, GroupSpec

from .conftest import NSLOTS, FakeBackend, MakeProxy, Proxy, settle


@pytest.fixture
async def replica() -> AsyncIterator[FakeBackend]:
    b = await FakeBackend("replica").start()
    yield b
    await b.close()


async def _proxy(make_proxy: MakeProxy, replica: FakeBackend, **cfg: object) -> Proxy:
    p = await make_proxy(**cfg)
    p.groups[1] = GroupSpec(1, p.backend(1).addr, (replica.addr,))
    await p.apply(p.slot_map())
    p.router.reads.update(replica.addr, Verdict(True, "ok"), 1.0)
    return p


def _seen(b: FakeBackend, name: bytes, key: bytes) -> int:
    return sum(1 for argv in b.commands(name) if argv[1:2] == [key])


async def test_readonly_client_reads_from_the_replica_writes_to_the_master(
        make_proxy: MakeProxy, replica: FakeBackend) -> None:
    p = await _proxy(make_proxy, replica)
    key = p.keys_on(1, 1, b"ro")[0]
    master = p.backend(1)
    c = p.client()
    await c.call((b"GET", key))
    assert _seen(master, b"GET", key) == 1 and _seen(replica, b"GET", key) == 0
    assert await c.call((b"READONLY",)) == [b"OK"]
    await c.call((b"GET", key), (b"SET", key, b"v"), (b"HGET", key, b"f"), (b"INCR", key))
    assert _seen(replica, b"GET", key) == 1 and _seen(replica, b"HGET", key) == 1
    assert _seen(replica, b"SET", key) == 0 and _seen(replica, b"INCR", key) == 0
    assert _seen(master, b"SET", key) == 1 and _seen(master, b"INCR", key) == 1
    assert p.router.reads.counters(1).replica == 2
    # Another group has no replica: prefer-replica (what READONLY means here) reads its master.
    other = p.keys_on(2, 1, b"other")[0]
    await c.call((b"GET", other))
    assert _seen(p.backend(2), b"GET", other) == 1
    assert await c.call((b"READWRITE",)) == [b"OK"]
    await c.call((b"GET", key))
    assert _seen(master, b"GET", key) == 2 and _seen(replica, b"GET", key) == 1


async def test_a_replica_not_good_is_skipped_and_replica_policy_answers_masterdown(
        make_proxy: MakeProxy, replica: FakeBackend) -> None:
    p = await _proxy(make_proxy, replica)
    key = p.keys_on(1, 1, b"skip")[0]
    c = p.client()
    await c.call((b"READONLY",))
    p.router.reads.update(replica.addr, Verdict(False, "master link down"), 2.0)
    await c.call((b"GET", key))
    assert _seen(p.backend(1), b"GET", key) == 1 and _seen(replica, b"GET", key) == 0
    assert p.router.reads.counters(1).fallback == 1
    p.router.reads.default_policy = 2  # as read_from: replica
    c2 = p.client()
    (err,) = await c2.call((b"GET", key))
    assert "MASTERDOWN no replica of group 1" in str(err)
    assert _seen(p.backend(1), b"GET", key) == 1


@pytest.mark.parametrize("state", [LOCKED, MIGRATING])
async def test_a_slot_in_transit_takes_the_master_path(
        make_proxy: MakeProxy, replica: FakeBackend, state: str) -> None:
    p = await _proxy(make_proxy, replica)
    key = p.keys_on(1, 1, b"moving")[0]
    s = key_slot(key, NSLOTS)
    await p.apply(p.slot_map(transit=((s, s, 2, 1, state),)))
    c = p.client()
    await c.call((b"READONLY",))
    c.send((b"GET", key))
    await settle()
    assert _seen(replica, b"GET", key) == 0
    if state == MIGRATING:  # the master path: the key is pulled from the source first
        await c.take(1)
        assert p.backend(2).commands(b"MIGRATE")
    else:  # the master path: held until the next map
        assert len(p.transit.held) == 1
