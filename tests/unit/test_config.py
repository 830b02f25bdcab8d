"""Config loading: defaults, overrides, and one clear error naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config import ConfigError, config_from_dict, load_config


def test_example_config_loads() -> None:
    cfg = load_config(Path(__file__).resolve().parents[2] / "etc" / "proxy.yaml")
    assert cfg.listen == ("127.0.0.1", 19000)
    assert cfg.slots == 16384
    assert cfg.slot_map is not None
    assert cfg.slot_map.ranges() == [(0, 5460, 1), (5461, 10922, 2), (10923, 16383, 3)]
    assert cfg.limits.max_bulk_len == 512 * 1024 * 1024
    assert cfg.limits.client_output_buffer == 64 * 1024 * 1024


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"groups": {1: "h:1"}, "limits": {"max_pipline": 1}}, "limits.max_pipline: unknown"),
        ({"groups": {1: "h:1"}, "slots": 4096}, "slots: must be 16384 or 1024"),
        ({"groups": {"x": "h:1"}}, "groups.x: group id must be an integer"),
        ({"groups": {1: {"mastr": "h:1"}}}, "groups.1: expected {master"),
        ({"groups": {1: "h:notaport"}}, "groups.1.master"),
        ({"groups": {1: "h:1"}, "slot_map": [{"range": "0-99", "group": 2}]},
         "slot_map[0].group: unknown group 2"),
        ({"groups": {1: "h:1"}, "slot_map": [{"range": "0-99", "group": 1},
                                             {"range": "50-60", "group": 1}]},
         "slot 50 assigned twice"),
        ({"groups": {1: "h:1"}, "backend": {"connections": 0}}, "backend.connections"),
        ({"groups": {1: "h:1"}, "idle_timeout": "soon"}, "idle_timeout: expected a number"),
        ({"groups": {1: "h:1"}, "limits": {"max_bulk_len": "lots"}}, "limits.max_bulk_len"),
        ({"listen": "127.0.0.1:19000"}, "groups: no backend groups configured"),
        ({"groups": {1: "h:1"}, "bogus": 1}, "bogus: unknown field"),
    ],
)
def test_bad_config_names_the_field(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        config_from_dict(data)
    assert message in str(e.value)


def test_sizes_and_env_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLOTPROXY_ADMIN_TOKEN", "from-env")
    cfg = config_from_dict({"groups": {1: "h:1", 2: "h:2"},
                            "limits": {"max_bulk_len": "1mb", "client_output_buffer": "2g"},
                            "dashboard": ["http://a:1", "http://b:2"]})
    assert cfg.limits.max_bulk_len == 1024 * 1024
    assert cfg.limits.client_output_buffer == 2 * 1024**3
    assert cfg.admin_token == "from-env"
    assert cfg.dashboard == "http://a:1,http://b:2"
    assert cfg.slot_map is not None and cfg.slot_map.ranges() == [(0, 8191, 1), (8192, 16383, 2)]


def test_cluster_masquerade_config() -> None:
    base = {"groups": {1: "h:1"}}
    assert config_from_dict(base).cluster.masquerade is True
    cfg = config_from_dict({**base, "cluster": {"masquerade": False, "slot_scan_limit": 10}})
    assert (cfg.cluster.masquerade, cfg.cluster.slot_scan_limit) == (False, 10)
    with pytest.raises(ConfigError, match=r"cluster\.masquerad: unknown field"):
        config_from_dict({**base, "cluster": {"masquerad": False}})
    with pytest.raises(ConfigError, match=r"cluster\.masquerade: expected true/false"):
        config_from_dict({**base, "cluster": {"masquerade": "no"}})


def test_command_line_flags_override_the_config() -> None:
    from proxy.__main__ import build_config, parse_args

    base = ["--backends", "127.0.0.1:7001"]
    cfg = build_config(parse_args(base))
    assert cfg.hotkeys.enabled and cfg.metrics
    cfg = build_config(parse_args([*base, "--no-hotkeys", "--no-metrics",
                                   "--latency-sample-every", "7"]))
    assert not cfg.hotkeys.enabled and not cfg.metrics and cfg.latency_sample_every == 7
    with pytest.raises(ConfigError, match="--latency-sample-every"):
        build_config(parse_args([*base, "--latency-sample-every", "0"]))
