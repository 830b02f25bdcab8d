"""One contract, two real backends: every test runs on the file store and on a real etcd."""

from __future__ import annotations

import asyncio

import pytest

from dashboard.store.base import CasConflict, NotLeader
from dashboard.store.keys import Keys


async def test_put_get_roundtrip(store, keys: Keys) -> None:
    assert await store.get(keys.topology) is None
    rev = await store.put(keys.topology, {"epoch": 1, "nested": {"a": [1, 2]}})
    entry = await store.get(keys.topology)
    assert entry is not None
    assert entry.value == {"epoch": 1, "nested": {"a": [1, 2]}}
    assert entry.revision == rev > 0
    assert entry.key == keys.topology


async def test_revisions_grow_store_wide(store, keys: Keys) -> None:
    r1 = await store.put(keys.proxy("a"), {"n": 1})
    r2 = await store.put(keys.proxy("b"), {"n": 2})
    r3 = await store.put(keys.proxy("a"), {"n": 3})
    assert r1 < r2 < r3


async def test_cas_on_revision(store, keys: Keys) -> None:
    rev = await store.put(keys.topology, {"v": 1}, expect=0)
    with pytest.raises(CasConflict):
        await store.put(keys.topology, {"v": "lost"}, expect=0)  # must not exist: it does
    rev2 = await store.put(keys.topology, {"v": 2}, expect=rev)
    with pytest.raises(CasConflict):
        await store.put(keys.topology, {"v": "stale"}, expect=rev)  # somebody wrote since
    entry = await store.get(keys.topology)
    assert entry is not None and entry.value == {"v": 2} and entry.revision == rev2


async def test_delete_and_recreate_never_reuses_a_revision(store, keys: Keys) -> None:
    rev = await store.put(keys.proxy("p"), {"v": 1})
    assert await store.delete(keys.proxy("p"), expect=rev)
    assert await store.get(keys.proxy("p")) is None
    assert not await store.delete(keys.proxy("p"))
    rev2 = await store.put(keys.proxy("p"), {"v": 2}, expect=0)
    assert rev2 > rev
    with pytest.raises(CasConflict):
        await store.put(keys.proxy("p"), {"v": 3}, expect=rev)  # ABA is detected


async def test_delete_cas(store, keys: Keys) -> None:
    rev = await store.put(keys.proxy("p"), {"v": 1})
    await store.put(keys.proxy("p"), {"v": 2})
    with pytest.raises(CasConflict):
        await store.delete(keys.proxy("p"), expect=rev)
    assert (await store.get(keys.proxy("p"))) is not None


async def test_list_prefix(store, keys: Keys) -> None:
    other = Keys(cluster=keys.cluster + "x")
    await store.put(keys.proxy("b:1"), {"id": "b:1"})
    await store.put(keys.proxy("a/2"), {"id": "a/2"})  # ids may hold ':' and '/'
    await store.put(keys.topology, {"epoch": 0})
    await store.put(other.proxy("c"), {"id": "c"})
    listed = await store.list(keys.proxies)
    assert [e.key for e in listed] == [keys.proxy("a/2"), keys.proxy("b:1")]
    assert [e.value["id"] for e in listed] == ["a/2", "b:1"]


async def test_concurrent_cas_exactly_one_wins(make_store, keys: Keys) -> None:
    a, b = make_store(), make_store()
    rev = await a.put(keys.topology, {"epoch": 0})
    results = await asyncio.gather(a.put(keys.topology, {"w": "a"}, expect=rev),
                                   b.put(keys.topology, {"w": "b"}, expect=rev),
                                   return_exceptions=True)
    assert sum(isinstance(r, int) for r in results) == 1
    assert sum(isinstance(r, CasConflict) for r in results) == 1


async def test_leader_lock_excludes_and_hands_over(make_store, keys: Keys) -> None:
    a, b = make_store(), make_store()
    await a.campaign(keys.leader, {"id": "a"})
    assert a.is_leader
    assert not await b.try_lead(keys.leader, {"id": "b"})
    assert (await b.leader(keys.leader)) == {"id": "a"}
    waiter = asyncio.create_task(b.campaign(keys.leader, {"id": "b"}, retry_interval=0.05))
    await asyncio.sleep(0.3)
    assert not waiter.done()
    await a.resign()
    await asyncio.wait_for(waiter, 5)
    assert b.is_leader and not a.is_leader
    assert (await a.leader(keys.leader)) == {"id": "b"}


async def test_writes_are_fenced_after_losing_the_lock(make_store, keys: Keys) -> None:
    a, b = make_store(), make_store()
    await a.campaign(keys.leader, {"id": "a"})
    await a.put(keys.topology, {"by": "a"})
    await a.resign()
    await b.campaign(keys.leader, {"id": "b"})
    with pytest.raises(NotLeader):
        await a.put(keys.topology, {"by": "stale a"})
    await b.put(keys.topology, {"by": "b"})
    entry = await b.get(keys.topology)
    assert entry is not None and entry.value == {"by": "b"}
