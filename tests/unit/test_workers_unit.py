"""Worker processes without processes: the config, the command line, the stats totals and the
spec handed to a worker."""

from __future__ import annotations

import io

import pytest

from proxy.__main__ import build_config, parse_args
from proxy.config import ConfigError, config_from_dict
from proxy.workers.aggregate import total_stats
from proxy.workers.worker import WorkerSpec, read_spec

GROUPS = {"groups": {1: {"master": "127.0.0.1:7001"}}}


def test_workers_and_supervisor_config() -> None:
    cfg = config_from_dict({**GROUPS, "workers": 4,
                            "supervisor": {"crash_loop_restarts": 3, "push_timeout": 2.5}})
    assert cfg.workers == 4
    assert cfg.supervisor.crash_loop_restarts == 3 and cfg.supervisor.push_timeout == 2.5
    assert config_from_dict(GROUPS).workers == 1


@pytest.mark.parametrize(("extra", "message"), [
    ({"workers": 0}, "workers: must be between 1 and 256, not 0"),
    ({"workers": 257}, "workers: must be between 1 and 256"),
    ({"workers": "many"}, "workers: expected an integer"),
    ({"supervisor": {"crash_loop_restarts": 0}}, "supervisor.crash_loop_restarts: must be"),
    ({"supervisor": {"restart_backoff_min": 9.0}}, "restart_backoff_min: must not exceed"),
    ({"supervisor": {"push_timeout": 0}}, "supervisor.push_timeout: must be positive"),
    ({"supervisor": {"restarts": 1}}, "supervisor.restarts: unknown field"),
])
def test_bad_worker_config_names_the_field(extra: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict({**GROUPS, **extra})


def test_workers_flag_overrides_the_config() -> None:
    cfg = build_config(parse_args(["--backends", "127.0.0.1:7001", "--workers", "3"]))
    assert cfg.workers == 3
    with pytest.raises(ConfigError, match="--workers: must be between 1 and 256"):
        build_config(parse_args(["--backends", "127.0.0.1:7001", "--workers", "0"]))


def test_the_spec_round_trips_through_a_pipe() -> None:
    cfg = config_from_dict({**GROUPS, "workers": 2})
    spec = WorkerSpec(index=1, workers=2, cfg=cfg, control="/tmp/x/w1.sock", fenced=True,
                      supervisor_pid=42)
    got = read_spec(io.BytesIO(spec.encode() + b"the rest of the pipe"))
    assert got == spec and got.cfg.slot_map == cfg.slot_map
    with pytest.raises(SystemExit, match="no spec on stdin"):
        read_spec(io.BytesIO(b""))


def test_totals_across_workers() -> None:
    w0 = {"clients": 3, "commands": 100, "ops_per_sec": 10.5, "uptime": 50.0, "epoch": 7,
          "latency_p99_ms": 0.4,
          "groups": {"1": {"master": "a:1", "up": True, "requests": 60, "errors": 1}},
          "slot_ops": [1, 2, 3]}
    w1 = {"clients": 2, "commands": 40, "ops_per_sec": 4.0, "uptime": 20.0, "epoch": 6,
          "latency_p99_ms": 0.9,
          "groups": {"1": {"master": "a:1", "up": False, "requests": 30, "errors": 0},
                     "2": {"master": "b:1", "up": True, "requests": 5, "errors": 0}},
          "slot_ops": [10, 0, 1], "new_counter": 5}
    t = total_stats([w0, w1])
    assert t == {
        "clients": 5, "commands": 140, "ops_per_sec": 14.5,
        "uptime": 50.0,          # the longest
        "epoch": 6,              # the map every worker has
        "latency_p99_ms": 0.9,   # the worst worker's
        "groups": {"1": {"master": "a:1", "up": False, "requests": 90, "errors": 1},
                   "2": {"master": "b:1", "up": True, "requests": 5, "errors": 0}},
        "slot_ops": [11, 2, 4],
        "new_counter": 5,        # a counter added later adds up without a change here
    }
    assert total_stats([]) == {}
