"""Pure model and topology rules: no sockets, no loop."""

from __future__ import annotations

import pytest

from dashboard.model import changes as t
from dashboard.model.records import GroupRecord, ProxyRecord, SlotMigration, Topology
from slotcore.slotmap import SlotMap


def three_groups(nslots: int = 16384) -> Topology:
    topo = Topology.empty(nslots)
    for gid in (1, 2, 3):
        topo = t.create_group(topo, gid, f"10.0.0.{gid}:6379")
    return t.assign_slots(topo, t.parse_assignments(topo, t.even_assignment(nslots, [1, 2, 3])))


def test_json_roundtrip_keeps_everything() -> None:
    topo = three_groups()
    topo = t.add_server(topo, 2, "10.0.1.2:6379")
    topo = Topology(nslots=topo.nslots, owner=topo.owner, groups=topo.groups,
                    migrations={7: SlotMigration("pending", 1, 2)}, epoch=42)
    back = Topology.from_json(topo.to_json())
    assert back == topo
    assert topo.to_json()["ranges"] == [[0, 5460, 1], [5461, 10921, 2], [10922, 16383, 3]]
    assert topo.to_json()["groups"][1] == {"id": 2, "master": "10.0.0.2:6379",
                                           "replicas": ["10.0.1.2:6379"], "state": "active",
                                           "weight": 1.0}
    rec = ProxyRecord("p", "h:1", "h:2", "online", 1.5, 1.0, 3, None)
    assert ProxyRecord.from_json(rec.to_json()) == rec


def test_slot_map_is_what_proxies_parse() -> None:
    topo = t.create_group(three_groups(1024), 4)  # a group with no master is left out
    sm = SlotMap.from_json(topo.slot_map().to_json())
    assert sm.nslots == 1024 and set(sm.groups) == {1, 2, 3}
    assert sm.owner == topo.owner
    assert sm.groups[1].master == "10.0.0.1:6379"


def test_even_assignment_covers_every_slot_once() -> None:
    for n in (1, 3, 7):
        items = t.even_assignment(16384, list(range(1, n + 1)))
        topo = Topology.empty(16384)
        for gid in range(1, n + 1):
            topo = t.create_group(topo, gid, f"h:{6000 + gid}")
        topo = t.assign_slots(topo, t.parse_assignments(topo, items))
        assert 0 not in topo.owner
        counts = [len(topo.slots_of(g)) for g in range(1, n + 1)]
        assert max(counts) - min(counts) <= 1


def test_create_group_rules() -> None:
    topo = Topology.empty(1024)
    topo = t.create_group(topo)
    topo = t.create_group(topo)
    assert sorted(topo.groups) == [1, 2]
    with pytest.raises(t.Conflict, match="already exists"):
        t.create_group(topo, 1)
    with pytest.raises(t.InvalidRequest, match="outside"):
        t.create_group(topo, 10000)
    with pytest.raises(t.InvalidRequest, match="needs a master"):
        t.create_group(topo, 5, None, ["h:1"])
    with pytest.raises(t.InvalidRequest, match="host:port"):
        t.create_group(topo, 5, "localhost")
    with pytest.raises(t.InvalidRequest, match="integer"):
        t.check_gid(True)


def test_servers_belong_to_one_group_and_masters_are_protected() -> None:
    topo = three_groups(1024)
    with pytest.raises(t.Conflict, match="belongs to group 1"):
        t.add_server(topo, 2, "10.0.0.1:6379")
    with pytest.raises(t.Conflict, match="already has master"):
        t.add_server(topo, 2, "10.9.9.9:1", "master")
    topo = t.add_server(topo, 2, " 10.9.9.9:01 ")  # normalised
    assert topo.groups[2].replicas == ("10.9.9.9:1",)
    with pytest.raises(t.Conflict, match="owns slots"):
        t.remove_server(topo, 2, "10.0.0.2:6379")
    with pytest.raises(t.NotFound, match="not in group 2"):
        t.remove_server(topo, 2, "10.0.0.3:6379")
    topo = t.remove_server(topo, 2, "10.9.9.9:1")
    assert topo.groups[2].replicas == ()
    empty = t.create_group(topo, 9, "h:9")
    assert t.remove_server(empty, 9, "h:9").groups[9] == GroupRecord(9)
    with pytest.raises(t.NotFound, match="unknown group 8"):
        t.add_server(topo, 8, "h:8")


def test_assignment_rules() -> None:
    topo = three_groups(1024)
    with pytest.raises(t.Conflict, match="already belong to group"):
        t.assign_slots(topo, [([0, 1], 2)])
    moved = t.assign_slots(topo, [([0, 1], 2)], force=True)
    assert moved.owner[:3] == (2, 2, 1)
    with pytest.raises(t.InvalidRequest, match="overlapping ranges: slots 5-10"):
        t.parse_assignments(topo, [{"slots": "0-10", "group": 1}, {"slots": "5-20", "group": 2}])
    with pytest.raises(t.InvalidRequest, match="outside 0-1023"):
        t.parse_assignments(topo, [{"slots": "1000-2000", "group": 1}])
    with pytest.raises(t.InvalidRequest, match="expected"):
        t.parse_assignments(topo, [{"slots": "1"}])
    nomaster = t.create_group(Topology.empty(1024), 1)
    with pytest.raises(t.Conflict, match="no master"):
        t.assign_slots(nomaster, [([0], 1)])
    migrating = Topology(nslots=1024, owner=topo.owner, groups=topo.groups,
                         migrations={5: SlotMigration("migrating", 1, 2)})
    with pytest.raises(t.Conflict, match="while slots are migrating: 5"):
        t.assign_slots(migrating, [([900], 3)], force=True)


def test_remove_group_rules() -> None:
    topo = three_groups(1024)
    with pytest.raises(t.Conflict, match="owns slots 0-340"):
        t.remove_group(topo, 1)
    topo = t.assign_slots(topo, [(topo.slots_of(1), 2)], force=True)
    assert 1 not in t.remove_group(topo, 1).groups
    with pytest.raises(t.NotFound):
        t.remove_group(topo, 77)


def test_switch_master_swaps_roles_within_the_group() -> None:
    topo = three_groups(1024)
    topo = t.add_server(topo, 2, "10.9.9.9:1")
    topo = t.add_server(topo, 2, "10.9.9.8:1")
    new = t.switch_master(topo, 2, "10.9.9.8:1")
    assert new.groups[2].master == "10.9.9.8:1"
    assert new.groups[2].replicas == ("10.0.0.2:6379", "10.9.9.9:1")
    assert new.slots_of(2) == topo.slots_of(2)
    assert t.switch_master(new, 2, "10.9.9.8:1") == new  # already master: no change
    with pytest.raises(t.Conflict, match="not a replica of group 2"):
        t.switch_master(topo, 2, "10.0.0.1:6379")
