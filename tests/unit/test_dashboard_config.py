"""Config loading and the pure INFO summary."""

from __future__ import annotations

from pathlib import Path

import pytest

from dashboard.config import ConfigError, check_secure, from_dict, load
from dashboard.model.records import GroupRecord, Topology
from dashboard.observe.health import group_health, summarize

REPO = Path(__file__).resolve().parents[2]


def test_shipped_config_loads_and_env_token_wins(tmp_path: Path) -> None:
    cfg = load(REPO / "etc/dashboard.yaml", env={"SLOTPROXY_ADMIN_TOKEN": "from-env"})
    assert cfg.listen == ("127.0.0.1", 18080)
    assert cfg.admin_token == "from-env"
    assert cfg.store.kind == "file" and Path(cfg.store.path).is_absolute()
    with pytest.raises(ConfigError, match="SLOTPROXY_ADMIN_TOKEN"):
        check_secure(load(REPO / "etc/dashboard.yaml", env={}))


def test_config_errors_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown config key"):
        from_dict({"lisen": "x"}, env={})
    with pytest.raises(ConfigError, match=r"store\.kind"):
        from_dict({"store": {"kind": "zk"}}, env={})
    with pytest.raises(ConfigError, match="listen"):
        from_dict({"listen": "nope"}, env={})
    with pytest.raises(ConfigError, match="slots"):
        from_dict({"slots": 100}, env={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("listen: [")
    with pytest.raises(ConfigError, match="bad YAML"):
        load(bad)
    cfg = from_dict({"store": {"kind": "etcd", "endpoints": "http://e:2379"}}, env={})
    assert cfg.store.endpoints == ("http://e:2379",)
    # a fence shorter than the heartbeat period would make healthy proxies stale
    with pytest.raises(ConfigError, match="fence_timeout: expected at least 3 s"):
        from_dict({"fence_timeout": 1.5}, env={})
    with pytest.raises(ConfigError, match="proxy_stale_after"):
        from_dict({"proxy_stale_after": 2}, env={})
    assert from_dict({"fence_timeout": 3}, env={}).fence_timeout == 3.0


def test_summarize_info() -> None:
    info = {"role": "slave", "used_memory": 1000, "db0": {"keys": 3, "expires": 0},
            "db2": {"keys": 4}, "instantaneous_ops_per_sec": 12, "master_host": "h",
            "master_port": 1, "master_link_status": "up", "redis_version": "7.0.15"}
    s = summarize(info)
    assert (s["role"], s["keys"], s["ops_per_sec"], s["used_memory"]) == ("replica", 7, 12, 1000)
    assert s["replica_of"] == "h:1" and s["master_link"] == "up"


def test_group_health_checks_roles() -> None:
    topo = Topology(nslots=1024, owner=(0,) * 1024,
                    groups={1: GroupRecord(1, "a:1", ("b:1",)), 2: GroupRecord(2)})
    servers = {"a:1": {"reachable": True, "role": "master", "keys": 5},
               "b:1": {"reachable": False, "error": "refused"}}
    h = group_health(topo, servers)
    assert h["1"]["ok"] and h["1"]["keys"] == 5
    assert h["1"]["servers"][1] == {"addr": "b:1", "expected_role": "replica",
                                    "reachable": False, "error": "refused",
                                    "replication": {"link": None, "lag_bytes": None,
                                                    "lag_seconds": None, "offset": None}}
    assert not h["2"]["ok"]
    h = group_health(topo, {"a:1": {"reachable": True, "role": "replica"}})
    assert not h["1"]["ok"]  # a master that reports itself a replica is not healthy


def test_autobalance_config_is_checked_at_startup() -> None:
    cfg = from_dict({"autobalance": {"enabled": True, "tolerance": 5, "quiet": "30s"}})
    assert cfg.autobalance["tolerance"] == 5
    with pytest.raises(ConfigError, match="autobalance: quiet: expected a duration"):
        from_dict({"autobalance": {"quiet": "later"}})
    with pytest.raises(ConfigError, match="autobalance: unknown setting"):
        from_dict({"autobalance": {"tolerence": 5}})


def test_nice_only_lowers_the_priority() -> None:
    assert from_dict({}, env={}).nice == 0
    assert from_dict({"nice": 10}, env={}).nice == 10
    for bad in (-1, 20, "10", 1.5, True):
        with pytest.raises(ConfigError, match="nice: expected an integer from 0 to 19"):
            from_dict({"nice": bad}, env={})
