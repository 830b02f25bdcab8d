"""The per-slot state machine (pure) and the slot maps it implies for the proxies."""

from __future__ import annotations

import pytest

from dashboard.model import changes as t
from dashboard.model import migration as mig
from dashboard.model.records import Topology
from slotcore.slotmap import LOCKED, MIGRATING, SlotMap


def cluster() -> Topology:
    topo = Topology.empty(1024)
    for gid in (1, 2, 3):
        topo = t.create_group(topo, gid, f"10.0.0.{gid}:6379")
    return t.assign_slots(topo, [(list(range(0, 512)), 1), (list(range(512, 1024)), 2)])


def roundtrip(topo: Topology) -> Topology:
    back = Topology.from_json(topo.to_json())
    assert back == topo
    mig.check_invariants(back)
    # the proxy's own parser accepts what we push
    assert SlotMap.from_json(back.slot_map().to_json()) == back.slot_map()
    return back


def test_full_walk_and_the_maps_each_state_pushes() -> None:
    topo, queued = mig.start(cluster(), [0, 1, 2, 600], 3)
    assert queued == [0, 1, 2, 600]
    topo = roundtrip(topo)
    sm = topo.slot_map()
    assert sm.transit == () and sm.owner[0] == 1 and sm.owner[600] == 2  # pending: normal

    batch = mig.next_batch(topo, 3)
    assert batch == [0, 1, 2]
    topo = roundtrip(mig.advance(topo, batch, "preparing"))
    sm = topo.slot_map()
    assert sm.transit == ((0, 2, 1, 3, LOCKED),)
    assert sm.owner[0] == 3 and topo.owner[0] == 1  # listed under the target; stored owner: source
    assert mig.current_batch(topo) == [0, 1, 2]

    topo = roundtrip(mig.advance(topo, batch, "prepared"))
    assert topo.slot_map().transit == ((0, 2, 1, 3, LOCKED),)
    topo = roundtrip(mig.fence(mig.advance(topo, batch, "migrating"), [b"big"]))
    sm = topo.slot_map()
    assert sm.transit == ((0, 2, 1, 3, MIGRATING),) and sm.fenced == frozenset({b"big"})
    assert sm.to_json()["fenced"] == [b"big".hex()]
    topo = roundtrip(mig.unfence(topo, [b"big"]))
    assert topo.slot_map().fenced == frozenset()

    topo = roundtrip(mig.advance(topo, [0, 1], "finished"))
    sm = topo.slot_map()
    assert topo.owner[0] == 3 and sm.owner[0] == 3
    assert sm.transit == ((2, 2, 1, 3, MIGRATING),)
    topo = roundtrip(mig.clear(topo, [0, 1]))
    assert 0 not in topo.migrations and topo.owner[0] == 3
    assert mig.current_batch(topo) == [2]


def test_illegal_transitions_are_refused() -> None:
    topo, _ = mig.start(cluster(), [5], 2)
    with pytest.raises(t.InvalidRequest):
        mig.advance(topo, [5], "migrating")  # skipping states
    with pytest.raises(t.InvalidRequest):
        mig.advance(topo, [6], "preparing")  # not migrating at all
    with pytest.raises(t.InvalidRequest):
        mig.clear(topo, [5])  # not finished


def test_start_validation() -> None:
    topo = cluster()
    with pytest.raises(t.NotFound):
        mig.start(topo, [1], 9)
    topo2 = t.create_group(topo, 4)
    with pytest.raises(t.Conflict):
        mig.start(topo2, [1], 4)  # no master
    topo3 = t.unassign_slots(topo, [7])
    with pytest.raises(t.Conflict, match="not assigned"):
        mig.start(topo3, [7], 2)
    topo4, queued = mig.start(topo, [0, 1, 600], 2)
    assert queued == [0, 1]  # 600 is on group 2 already
    with pytest.raises(t.Conflict, match="already migrating"):
        mig.start(topo4, [1], 3)
    # plain slot assignment is refused while slots migrate
    with pytest.raises(t.Conflict):
        t.assign_slots(topo4, [([5], 2)])
    with pytest.raises(t.Conflict):
        t.remove_group(topo4, 1)


def test_cancel_keeps_every_slot_on_exactly_one_owner() -> None:
    topo, _ = mig.start(cluster(), range(0, 10), 3)
    topo = mig.advance(topo, [0, 1, 2, 3], "preparing")
    topo = mig.advance(topo, [0, 1, 2], "prepared")
    topo = mig.advance(topo, [0, 1], "migrating")
    topo = mig.advance(topo, [0], "finished")
    new, cancelled, going = mig.cancel(topo)
    roundtrip(new)
    assert cancelled == [2, 3, 4, 5, 6, 7, 8, 9]
    assert going == [0, 1]
    assert new.owner[2] == 1 and 2 not in new.migrations  # back on the source, nothing moved
    assert new.migrations[1].state == "migrating"  # keys on both sides: it finishes
    assert new.slot_map().transit == ((1, 1, 1, 3, MIGRATING),)


def test_many_slots_compress_to_few_transit_ranges() -> None:
    topo, _ = mig.start(cluster(), range(0, 1024), 3)
    batch = mig.next_batch(topo, 2000)
    topo = mig.advance(topo, batch, "preparing")
    sm = roundtrip(topo).slot_map()
    assert sm.transit == ((0, 511, 1, 3, LOCKED), (512, 1023, 2, 3, LOCKED))


def test_a_batch_never_has_a_group_on_both_sides() -> None:
    """Stock MIGRATE blocks the source until the target answers: A->B with B->A deadlocks."""
    topo, _ = mig.start(cluster(), range(0, 10), 2)       # 1 -> 2
    topo, _ = mig.start(topo, range(600, 610), 1)         # 2 -> 1
    topo, _ = mig.start(topo, range(700, 705), 3)         # 2 -> 3
    first = mig.next_batch(topo, 100)
    assert first == list(range(0, 10))  # 2 is a target: 2 -> 1 and 2 -> 3 must wait
    topo = mig.advance(topo, first, "preparing")
    for s in first:
        topo = mig.advance(topo, [s], "prepared")
        topo = mig.advance(topo, [s], "migrating")
        topo = mig.advance(topo, [s], "finished")
    topo = mig.clear(topo, first)
    second = mig.next_batch(topo, 100)
    assert second == [*range(600, 610), *range(700, 705)]  # 2 -> 1 and 2 -> 3: no cycle
    assert mig.next_batch(topo, 4) == [600, 601, 602, 603]
