"""Replication facts from INFO replies and the promote/config rules: pure, no server."""

from __future__ import annotations

import pytest

from dashboard.config import ConfigError, from_dict
from dashboard.model import changes as t
from dashboard.model import migration as mig
from dashboard.model import replication as rep
from dashboard.model.records import Topology
from slotcore.slotmap import LOCKED, MIGRATING, GroupSpec, SlotMap

MASTER = "10.0.0.1:6379"
REPLICA = "10.0.0.2:6379"

# INFO replication of a master with one replica, as redis-py parses it ...
MASTER_INFO = {"role": "master", "connected_slaves": 1, "master_repl_offset": 5000,
               "slave0": {"ip": "10.0.0.2", "port": 6379, "state": "online", "offset": 4200,
                          "lag": 1}}
# ... and of the replica.
REPLICA_INFO = {"role": "slave", "master_host": "10.0.0.1", "master_port": 6379,
                "master_link_status": "up", "master_last_io_seconds_ago": 0,
                "master_sync_in_progress": 0, "slave_repl_offset": 4900}


def group_with_replica() -> Topology:
    topo = t.create_group(Topology.empty(1024), 1, MASTER, [REPLICA])
    return t.assign_slots(topo, [(list(range(1024)), 1)])


def test_replica_link_lag_from_the_masters_view() -> None:
    link = rep.replica_link(MASTER, MASTER_INFO, REPLICA, REPLICA_INFO)
    assert link == {"link": "up", "lag_bytes": 800, "lag_seconds": 1, "offset": 4900}
    # the raw "ip=...,port=..." text form parses the same
    raw = {**MASTER_INFO, "slave0": "ip=10.0.0.2,port=6379,state=online,offset=4200,lag=1"}
    assert rep.replica_link(MASTER, raw, REPLICA, REPLICA_INFO) == link


def test_replica_link_states() -> None:
    # replica not polled: the master's line alone
    assert rep.replica_link(MASTER, MASTER_INFO, REPLICA, None)["link"] == "up"
    # a hostname in the topology, an IP in the master's INFO: matched by the only such port
    assert rep.replica_link(MASTER, MASTER_INFO, "replica-host:6379", None)["lag_bytes"] == 800
    assert rep.replica_link(MASTER, {**MASTER_INFO, "slave0": {**MASTER_INFO["slave0"],
                                                                "state": "wait_bgsave"}},
                            REPLICA, None)["link"] == "wait_bgsave"
    master_itself = rep.replica_link(MASTER, MASTER_INFO, REPLICA, {"role": "master"})
    assert master_itself["link"] == "not-replicating"
    other = rep.replica_link(MASTER, MASTER_INFO, REPLICA,
                             {**REPLICA_INFO, "master_host": "10.9.9.9"})
    assert other["link"] == "wrong-master" and other["replica_of"] == "10.9.9.9:6379"
    syncing = rep.replica_link(MASTER, None, REPLICA,
                               {**REPLICA_INFO, "master_sync_in_progress": 1,
                                "master_last_io_seconds_ago": -1})
    assert syncing == {"link": "syncing", "lag_bytes": None, "lag_seconds": None,
                       "offset": 4900}
    assert rep.replica_link(MASTER, None, REPLICA, None)["link"] is None


def test_sync_state_progress() -> None:
    s = rep.sync_state(MASTER, MASTER_INFO, {**REPLICA_INFO, "master_sync_in_progress": 1,
                                             "master_sync_read_bytes": 10,
                                             "master_sync_total_bytes": -1})
    assert s["state"] == "syncing" and s["sync_read_bytes"] == 10
    assert s["sync_total_bytes"] is None  # diskless: the size is not known
    assert rep.sync_state(MASTER, MASTER_INFO, {**REPLICA_INFO, "master_link_status": "down"}
                          )["state"] == "connecting"
    behind = rep.sync_state(MASTER, MASTER_INFO, REPLICA_INFO)
    assert behind["state"] == "catching-up" and not behind["in_sync"]
    # in sync with the offset the master had when the replica was added
    done = rep.sync_state(MASTER, MASTER_INFO, REPLICA_INFO, target=4900)
    assert done["state"] == "in-sync" and done["in_sync"] and done["target_offset"] == 4900
    assert rep.sync_state(MASTER, None, REPLICA_INFO)["state"] == "in-sync"
    assert rep.sync_state(MASTER, MASTER_INFO, {"role": "master"})["state"] == \
        "not-replicating"


def test_caught_up_needs_the_masters_offset_and_a_live_link() -> None:
    assert not rep.caught_up(MASTER_INFO, REPLICA_INFO, MASTER)
    there = {**REPLICA_INFO, "slave_repl_offset": 5000}
    assert rep.caught_up(MASTER_INFO, there, MASTER)
    assert not rep.caught_up(MASTER_INFO, {**there, "master_link_status": "down"}, MASTER)
    assert not rep.caught_up(MASTER_INFO, there, "10.0.0.9:6379")


def test_promote_rules_and_the_lock_in_the_slot_map() -> None:
    topo = group_with_replica()
    assert rep.promote_check(topo, 1, REPLICA).master == MASTER
    with pytest.raises(t.NotFound):
        rep.promote_check(topo, 1, "10.0.0.9:1")
    with pytest.raises(t.NotFound):
        rep.promote_check(topo, 2, REPLICA)
    with pytest.raises(t.Conflict, match="already is the master"):
        rep.promote_check(topo, 1, MASTER)
    locked = rep.set_state(topo, 1, "promoting")
    with pytest.raises(t.Conflict, match="another promotion"):
        rep.promote_check(locked, 1, REPLICA)
    # every slot of the group is LOCKED in place, and proxies accept that map
    sm = SlotMap.from_json(locked.slot_map().to_json())
    assert sm.transit == ((0, 1023, 1, 1, LOCKED),)
    assert sm.owner == topo.owner
    # no migration may take slots out of a group switching masters
    other = t.create_group(locked, 2, "10.0.0.3:6379")
    with pytest.raises(t.Conflict, match="group 1 is promoting"):
        mig.start(other, [5], 2)
    # and none may be in progress when a promotion starts
    moving, _ = mig.start(t.create_group(topo, 2, "10.0.0.3:6379"), [5, 6], 2)
    with pytest.raises(t.Conflict, match="slot migration \\(slots 5-6\\)"):
        rep.promote_check(moving, 1, REPLICA)
    # unlocked with the switch: the new master, the old one a replica
    done = rep.set_state(t.switch_master(locked, 1, REPLICA), 1, "active")
    assert (done.groups[1].master, done.groups[1].replicas) == (REPLICA, (MASTER,))
    assert not done.slot_map().transit


def test_a_group_locked_in_place_is_only_valid_as_locked() -> None:
    groups = {1: GroupSpec(1, MASTER)}
    SlotMap(nslots=1024, owner=(1,) * 1024, groups=groups, transit=((0, 9, 1, 1, LOCKED),))
    with pytest.raises(ValueError, match="source and target are both 1"):
        SlotMap(nslots=1024, owner=(1,) * 1024, groups=groups,
                transit=((0, 9, 1, 1, MIGRATING),))


def test_group_config_knobs() -> None:
    assert rep.parse_knobs({"min-replicas-to-write": 1, "min-replicas-max-lag": "10"}) == {
        "min-replicas-to-write": "1", "min-replicas-max-lag": "10"}
    for bad, why in (({}, "expected an object"), ({"maxmemory": 1}, "unknown group setting"),
                     ({"min-replicas-to-write": -1}, "outside"),
                     ({"min-replicas-to-write": True}, "expected an integer"),
                     ({"min-replicas-max-lag": "x"}, "expected an integer")):
        with pytest.raises(t.InvalidRequest, match=why):
            rep.parse_knobs(bad)
    topo = rep.set_config(group_with_replica(), 1, {"min-replicas-to-write": "1"})
    assert topo.groups[1].config == {"min-replicas-to-write": "1"}
    assert Topology.from_json(topo.to_json()) == topo
    assert topo.to_json()["groups"][0]["config"] == {"min-replicas-to-write": "1"}
    with pytest.raises(t.Conflict, match="no master"):
        rep.set_config(t.create_group(topo, 2), 2, {"min-replicas-to-write": "1"})
    # the settings follow the group through a master switch
    switched = t.switch_master(topo, 1, REPLICA)
    assert switched.groups[1].config == {"min-replicas-to-write": "1"}


def test_replicas_short() -> None:
    need1 = {"min-replicas-to-write": "1", "min-replicas-max-lag": "10"}
    assert rep.replicas_short(MASTER_INFO, need1) is None
    assert rep.replicas_short(MASTER_INFO, {}) is None
    assert "needs 2 replica(s)" in (rep.replicas_short(MASTER_INFO, {
        "min-replicas-to-write": "2"}) or "")
    lagging = {**MASTER_INFO, "slave0": {**MASTER_INFO["slave0"], "lag": 30}}
    assert "the master has 0" in (rep.replicas_short(lagging, need1) or "")


def test_backend_credentials_in_the_config() -> None:
    cfg = from_dict({"backend": {"password": "pw", "username": "ops"}}, env={})
    assert (cfg.backend.password, cfg.backend.username) == ("pw", "ops")
    assert from_dict({}, env={}).backend.password is None
    with pytest.raises(ConfigError, match="unknown backend key"):
        from_dict({"backend": {"pasword": "x"}}, env={})
    with pytest.raises(ConfigError, match="promote_timeout"):
        from_dict({"promote_timeout": 0}, env={})
