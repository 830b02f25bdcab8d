"""The sentinel decision core (dashboard/control/sentinel.py) and its config: no sockets."""

from __future__ import annotations

import pytest

from dashboard.config import ConfigError, from_dict
from dashboard.control.sentinel import (
    MasterView,
    SentinelReport,
    Settings,
    decide,
    failing_over,
    gid_of,
    needs_roles,
    parse_masters,
)
from dashboard.migrate.failover import relock_source
from dashboard.model import changes as t
from dashboard.model import migration as mig
from dashboard.model.records import Topology

S = Settings(quorum=2, down_after_ms=1000, failover_timeout_ms=6000, prefix="sp-g")
M, R = "10.0.0.1:6379", "10.0.0.2:6379"


def topo() -> Topology:
    tp = t.create_group(Topology.empty(1024), 1, M, [R])
    return t.assign_slots(tp, t.parse_assignments(tp, [{"slots": "0-1023", "group": 1}]))


def view(addr: str, epoch: int = 0, flags: tuple[str, ...] = ("master",)) -> MasterView:
    return MasterView("sp-g1", addr, epoch, flags, quorum=2, down_after_ms=1000,
                      failover_timeout_ms=6000, replicas=1, other_sentinels=2)


def reports(*views: MasterView | None, down: int = 0) -> list[SentinelReport]:
    out = [SentinelReport(f"s{i}:26379", True, masters={"sp-g1": v} if v else {})
           for i, v in enumerate(views)]
    out += [SentinelReport(f"d{i}:26379", False, "refused") for i in range(down)]
    return out


def test_names_are_the_prefix_and_the_group_id() -> None:
    assert gid_of("sp-g", "sp-g12") == 12
    assert gid_of("sp-g", "sp-g") is None and gid_of("sp-g", "sp-gx1") is None
    assert gid_of("sp-g", "other-g1") is None and gid_of("sp-g", "sp-g01") is None


def test_parse_masters_keeps_ours_and_prefers_get_master_addr() -> None:
    flat = [[b"name", b"sp-g1", b"ip", b"10.0.0.1", b"port", b"6379", b"flags",
             b"s_down,master", b"config-epoch", b"3", b"quorum", b"2",
             b"down-after-milliseconds", b"1000", b"failover-timeout", b"6000",
             b"num-slaves", b"1", b"num-other-sentinels", b"2"],
            {b"name": b"theirs", b"ip": b"1.1.1.1", b"port": b"1"}]
    got = parse_masters(flat, {"sp-g1": [b"10.0.0.2", b"6379"]}, "sp-g")
    assert list(got) == ["sp-g1"]
    v = got["sp-g1"]
    assert (v.addr, v.config_epoch, v.flags, v.replicas) == (R, 3, ("s_down", "master"), 1)


def test_unmonitored_groups_are_monitored_with_the_settings() -> None:
    plan = decide(topo(), reports(None, None, None), S, {})
    monitors = [a for a in plan.actions if a.args[0] == "MONITOR"]
    assert [a.args for a in monitors] == [("MONITOR", "sp-g1", "10.0.0.1", "6379", "2")] * 3
    sets = [a.args for a in plan.actions if a.args[0] == "SET"]
    assert sets[0] == ("SET", "sp-g1", "quorum", "2", "down-after-milliseconds", "1000",
                       "failover-timeout", "6000")
    assert not plan.follow


def test_settings_that_differ_are_set_and_auth_only_once() -> None:
    s = Settings(quorum=2, down_after_ms=1000, failover_timeout_ms=6000, prefix="sp-g",
                 auth_pass="pw")
    v = MasterView("sp-g1", M, 0, ("master",), 2, 5000, 6000)
    plan = decide(topo(), reports(v), s, {}, configured=1)
    assert [a.args for a in plan.actions] == [
        ("SET", "sp-g1", "down-after-milliseconds", "1000", "auth-pass", "pw")]
    plan = decide(topo(), reports(view(M)), s, {}, authed={("s0:26379", "sp-g1")},
                  configured=1)
    assert plan.actions == []


def test_a_failover_agreed_by_a_majority_is_followed() -> None:
    roles = {M: None, R: "master"}
    plan = decide(topo(), reports(view(R, 1), view(R, 1), view(M, 0)), S, roles)
    assert plan.follow == {1: R} and plan.agreed[1] == R


def test_one_confused_sentinel_cannot_flip_a_group() -> None:
    roles = {M: "master", R: "master"}
    plan = decide(topo(), reports(view(R, 5), view(M, 0), view(M, 0)), S, roles)
    assert plan.follow == {}
    assert "waiting" in plan.notes[1]
    # ... nor two sentinels when the candidate is not a master itself.
    plan = decide(topo(), reports(view(R, 1), view(R, 1), view(M)), S, {M: None, R: "slave"})
    assert plan.follow == {}


def test_quorum_is_needed_even_when_fewer_sentinels_answer() -> None:
    plan = decide(topo(), reports(view(R, 1), down=2), S, {M: None, R: "master"})
    assert plan.follow == {}
    plan = decide(topo(), reports(view(R, 1), view(R, 1), down=1), S, {M: None, R: "master"})
    assert plan.follow == {1: R}


def test_nothing_is_done_during_a_failover_or_a_manual_promotion() -> None:
    busy = view(R, 1, ("master", "failover_in_progress"))
    plan = decide(topo(), reports(busy, view(R, 1), view(R, 1)), S, {R: "master"})
    assert plan.follow == {} and plan.actions == [] and "in progress" in plan.notes[1]
    tp = topo()
    tp.groups[1] = type(tp.groups[1])(id=1, master=M, replicas=(R,), state="promoting")
    plan = decide(tp, reports(view(R, 1), view(R, 1), view(R, 1)), S, {R: "master"})
    assert plan.follow == {} and plan.actions == []


def test_an_elected_master_outside_the_group_is_reported_not_followed() -> None:
    x = "10.0.0.9:6379"
    plan = decide(topo(), reports(view(x, 1), view(x, 1), view(x, 1)), S, {x: "master"})
    assert plan.follow == {} and "add-server" in plan.notes[1]


def test_a_promotion_by_the_dashboard_re_points_every_sentinel() -> None:
    # The topology says R (promoted by the dashboard); the sentinels still watch M, a replica.
    tp = t.switch_master(topo(), 1, R)
    rs = reports(view(M, 2), view(M, 2), view(M, 2))
    roles = {R: "master", M: "slave"}
    assert needs_roles(tp, rs, S, {}) == {M, R}
    plan = decide(tp, rs, S, roles)
    assert plan.follow == {}
    assert [a.args[0] for a in plan.actions] == ["REMOVE", "MONITOR", "SET"] * 3
    # ... but not while a sentinel is unreachable (it would talk the others back to M).
    plan = decide(tp, rs[:2] + reports(down=1), S, roles, configured=3)
    assert plan.actions == [] and "every sentinel" in plan.notes[1]
    # ... and never when the sentinels' master is merely unreachable from here.
    plan = decide(tp, rs, S, {R: "master", M: None})
    assert plan.actions == []


def test_removed_groups_are_unmonitored() -> None:
    tp = t.create_group(Topology.empty(1024), 2, M)
    plan = decide(tp, reports(view(R, 0)), S, {}, configured=1)
    assert ("REMOVE", "sp-g1") in [a.args for a in plan.actions]


def test_host_names_in_the_topology_match_the_sentinels_ips() -> None:
    tp = t.create_group(Topology.empty(1024), 1, "redis1a:6379", ["redis1b:6379"])
    aliases = {M: "redis1a:6379", R: "redis1b:6379"}
    plan = decide(tp, reports(view(R, 1), view(R, 1), view(R, 1)), S,
                  {"redis1b:6379": "master"}, aliases)
    assert plan.follow == {1: "redis1b:6379"}


def test_relock_sends_a_failed_over_sources_migrating_slots_back_to_locked() -> None:
    tp = t.create_group(topo(), 2, "10.0.0.3:6379")
    tp, _ = mig.start(tp, range(0, 8), 2)
    tp = mig.advance(tp, range(0, 8), "preparing")
    tp = mig.advance(tp, range(0, 8), "prepared")
    tp = mig.advance(tp, range(0, 4), "migrating")
    new, slots = relock_source(tp, 1)
    assert slots == [0, 1, 2, 3]
    assert {new.migrations[s].state for s in range(8)} == {"prepared"}
    mig.check_invariants(new)
    assert relock_source(tp, 2) == (tp, [])


def test_sentinel_config_is_validated() -> None:
    cfg = from_dict({"cluster": "c1", "sentinels": ["127.0.0.1:26379", ":26380"],
                     "sentinel": {"quorum": 2, "down_after_ms": "1000"}}, env={})
    assert cfg.sentinels == ("127.0.0.1:26379", "127.0.0.1:26380")
    assert cfg.sentinel.down_after_ms == 1000 and cfg.sentinel.master_prefix == "slotproxy-c1-g"
    for bad, field in [({"sentinels": ["nope"]}, "sentinels"),
                       ({"sentinels": ["a:1", "a:1"]}, "twice"),
                       ({"sentinels": ["a:1"], "sentinel": {"quorum": 2}}, "quorum"),
                       ({"sentinel": {"down_after_ms": 0}}, "down_after_ms"),
                       ({"sentinel": {"quorm": 1}}, "quorm"),
                       ({"sentinel": {"master_prefix": "a b"}}, "master_prefix")]:
        with pytest.raises(ConfigError, match=field):
            from_dict(bad, env={})


def test_the_leading_sentinels_promoted_replica_is_followed_once_it_is_a_master() -> None:
    from dataclasses import replace as dc_replace

    leader = dc_replace(view(M, 0, ("o_down", "master", "failover_in_progress")), promoted=R)
    rs = reports(leader, view(M, 0, ("s_down", "master")), view(M, 0, ("s_down", "master")))
    assert R in needs_roles(topo(), rs, S, {})
    # REPLICAOF NO ONE not done yet: wait.
    plan = decide(topo(), rs, S, {M: None, R: "slave"})
    assert plan.follow == {} and "in progress" in plan.notes[1]
    plan = decide(topo(), rs, S, {M: None, R: "master"})
    assert plan.follow == {1: R}
    # A promoted server outside the group is never followed.
    odd = dc_replace(leader, promoted="10.0.0.9:6379")
    plan = decide(topo(), reports(odd), S, {"10.0.0.9:6379": "master"}, configured=1)
    assert plan.follow == {}


def test_promoted_of_reads_the_flag() -> None:
    from dashboard.control.sentinel import promoted_of

    reply = [{b"ip": b"10.0.0.2", b"port": b"6379", b"flags": b"slave"},
             [b"ip", b"10.0.0.3", b"port", b"6380", b"flags", b"slave,promoted"]]
    assert promoted_of(reply) == "10.0.0.3:6380"
    assert promoted_of(reply[:1]) is None and promoted_of(None) is None


def test_groups_seen_down_or_failing_over_hold_the_auto_balancer() -> None:
    assert failing_over(reports(view(M), view(M), view(M)), "sp-g") == set()
    assert failing_over(reports(view(M, 0, ("master", "s_down")), view(M)), "sp-g") == {1}
    assert failing_over(reports(view(R, 1, ("master", "failover_in_progress"))), "sp-g") == {1}
    assert failing_over(reports(view(M, 0, ("master", "o_down"))), "other-") == set()
