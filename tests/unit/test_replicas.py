"""Reads from replicas and the sentinel follower: the pure parts (verdicts, choice, decisions)."""

from __future__ import annotations

import pytest

from proxy.config import ConfigError, ReadConfig, config_from_dict
from proxy.control.sentinel import MasterAnswer, decide, flat_pairs, repoint
from proxy.routing.replicas import (
    MASTER,
    PREFER_REPLICA,
    REPLICA,
    ReplicaReads,
    Verdict,
    assess,
    choose,
    info_fields,
    master_view,
)
from slotcore.slotmap import GroupSpec, SlotMap

M, R = "127.0.0.1:7000", "127.0.0.1:7001"

REPLICA_INFO = """# Replication\r
role:slave\r
master_host:127.0.0.1\r
master_port:7000\r
master_link_status:up\r
master_last_io_seconds_ago:1\r
master_sync_in_progress:0\r
slave_read_repl_offset:1000\r
slave_repl_offset:1000\r
slave_priority:100\r
"""

MASTER_INFO = """# Replication\r
role:master\r
connected_slaves:1\r
slave0:ip=127.0.0.1,port=7001,state=online,offset=1000,lag=0\r
master_repl_offset:1200\r
"""


def _r(**kw: str) -> dict[str, str]:
    return {**info_fields(REPLICA_INFO), **kw}


def _m(**kw: str) -> dict[str, str]:
    return {**info_fields(MASTER_INFO), **kw}


def test_info_fields_and_the_masters_view() -> None:
    r = info_fields(REPLICA_INFO)
    assert r["role"] == "slave" and r["slave_repl_offset"] == "1000"
    assert master_view(_m(), R) == (1000, 0)
    assert master_view(_m(), "127.0.0.1:7002") == (None, None)
    assert master_view(_m(slave0="ip=127.0.0.1,port=7001,state=wait_bgsave,offset=0,lag=0"),
                       R) == (None, None)


def test_a_replica_in_sync_is_good() -> None:
    v = assess(_r(), _m(), R, M, ReadConfig())
    assert v == Verdict(True, "ok", 200, 0.0)
    # "localhost" and 127.0.0.1 are the same master.
    assert assess(_r(master_host="localhost"), _m(), R, M, ReadConfig()).good


@pytest.mark.parametrize(("replica", "master", "reason"), [
    (None, _m(), "unreachable"),
    (_r(role="master"), _m(), "role is master"),
    (_r(master_port="7005"), _m(), "replicates from 127.0.0.1:7005"),
    (_r(master_link_status="down"), _m(), "master link down"),
    (_r(master_sync_in_progress="1"), _m(), "sync in progress"),
    (_r(), None, "master unreachable"),
    (_r(), _m(master_repl_offset="5000000"), "lagging 4999000 bytes"),
    (_r(), _m(slave0="ip=127.0.0.1,port=7001,state=online,offset=1000,lag=30"),
     "lagging 30 s"),
])
def test_a_replica_is_skipped(replica: dict | None, master: dict | None, reason: str) -> None:
    v = assess(replica, master, R, M, ReadConfig(max_lag_bytes=1024 * 1024, max_lag_seconds=10))
    assert not v.good
    assert v.reason.startswith(reason)


def test_lag_bounds_of_zero_mean_no_bound() -> None:
    cfg = ReadConfig(max_lag_bytes=0, max_lag_seconds=0)
    assert assess(_r(), _m(master_repl_offset="9" * 12), R, M, cfg).good
    # Not listed by the master yet: the replica's own last-io figure counts.
    assert assess(_r(master_last_io_seconds_ago="3"), _m(slave0=""), R, M,
                  ReadConfig(max_lag_seconds=2)).reason == "lagging 3 s"


def test_choose_round_robin_and_least_pending() -> None:
    assert [choose([0, 0, 0], t, False) for t in range(4)] == [0, 1, 2, 0]
    assert choose([5, 1, 3], 0, True) == 1
    # Ties take turns from `start`.
    assert [choose([2, 2], t, True) for t in range(3)] == [0, 1, 0]


class _Conn:
    def __init__(self, pending: int) -> None:
        self.fifo = [None] * pending


class _Pool:
    def __init__(self, pending: dict[str, int]) -> None:
        self.conns = {a: [_Conn(n)] for a, n in pending.items()}

    def lanes(self, addr: str) -> list[_Conn]:
        return self.conns[addr]


def test_pick_skips_replicas_not_good() -> None:
    pool = _Pool({"a:1": 0, "b:1": 9, "c:1": 0})
    reads = ReplicaReads(ReadConfig(), pool)  # type: ignore[arg-type]
    assert reads.pick(("a:1", "b:1"), 0) is None  # never checked: not good
    reads.update("b:1", Verdict(True, "ok"), 1.0)
    assert reads.pick(("a:1", "b:1"), 0) is pool.conns["b:1"][0]
    reads.update("a:1", Verdict(True, "ok"), 1.0)
    assert reads.pick(("a:1", "b:1"), 0) is pool.conns["a:1"][0]  # fewer replies owed
    reads.update("a:1", Verdict(False, "master link down"), 2.0)
    assert reads.pick(("a:1", "b:1"), 0) is pool.conns["b:1"][0]
    reads.forget_except({"b:1"})
    assert set(reads.status) == {"b:1"}


def test_read_policy_config() -> None:
    base = {"groups": {1: {"master": M, "replicas": [R]}}}
    assert config_from_dict(base).reads.read_from == "master"
    cfg = config_from_dict({**base, "read_from": "prefer-replica", "replica_max_lag_bytes": "64kb",
                            "replica_check_interval": 0.5, "replica_balance": "round-robin"})
    assert (cfg.reads.read_from, cfg.reads.max_lag_bytes, cfg.reads.check_interval,
            cfg.reads.balance) == ("prefer-replica", 65536, 0.5, "round-robin")
    assert ReplicaReads(cfg.reads).default_policy == PREFER_REPLICA
    assert ReplicaReads(ReadConfig(read_from="replica")).default_policy == REPLICA
    assert ReplicaReads(ReadConfig()).default_policy == MASTER
    with pytest.raises(ConfigError, match="read_from: must be one of"):
        config_from_dict({**base, "read_from": "slave"})
    with pytest.raises(ConfigError, match="replica_check_interval: must be positive"):
        config_from_dict({**base, "replica_check_interval": 0})


def test_sentinel_config() -> None:
    base = {"groups": {1: M, 2: R}}
    cfg = config_from_dict({**base, "sentinels": ["127.0.0.1:26379", "127.0.0.1:26380"],
                            "sentinel_master_names": {2: "orders"}})
    assert cfg.sentinel.addrs == ("127.0.0.1:26379", "127.0.0.1:26380")
    assert (cfg.sentinel.master_name(1), cfg.sentinel.master_name(2)) == \
        ("slotproxy-g1", "orders")
    with pytest.raises(ConfigError, match="sentinels: not with a dashboard"):
        config_from_dict({**base, "sentinels": "127.0.0.1:26379", "dashboard": "http://d:1"})
    with pytest.raises(ConfigError, match="sentinel_master_names: unknown group 3"):
        config_from_dict({**base, "sentinels": "h:1", "sentinel_master_names": {3: "x"}})
    with pytest.raises(ConfigError, match="sentinel_password: given but no sentinels"):
        config_from_dict({**base, "sentinel_password": "s"})


def test_sentinel_decision_prefers_the_newest_config_epoch() -> None:
    old, new = MasterAnswer(M, 3, (R,)), MasterAnswer(R, 4, (M,))
    # One sentinel has seen the failover, two have not yet: the newer configuration wins.
    assert decide([old, old, new]) == MasterAnswer(R, 4, (M,))
    # Same epoch: the address most of them give.
    assert decide([old, MasterAnswer("127.0.0.1:7009", 3), old]).addr == M
    assert decide([]) is None


def test_sentinel_repoint_builds_the_next_map() -> None:
    sm = SlotMap.even(16384, {1: GroupSpec(1, M, (R,)), 2: GroupSpec(2, "127.0.0.1:7100")},
                      epoch=7)
    new = repoint(sm, 1, R, ())
    assert new is not None and new.epoch == 8
    assert new.groups[1] == GroupSpec(1, R, (M,))  # the old master stays, as a replica
    assert new.groups[2] == sm.groups[2] and new.owner == sm.owner
    assert repoint(new, 1, R, (M,)) is None  # nothing changes
    assert repoint(sm, 9, R, ()) is None


def test_flat_pairs() -> None:
    assert flat_pairs([b"ip", b"127.0.0.1", b"port", b"7000"]) == {"ip": "127.0.0.1",
                                                                    "port": "7000"}
    assert flat_pairs({b"ip": b"h"}) == {"ip": "h"}
    assert flat_pairs(None) == {}
