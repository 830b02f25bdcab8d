"""`proxyctl up`: a whole local cluster from one command, stopped by Ctrl-C."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from slotcore.keyslot import key_slot
from slotcore.slotmap import SlotMap
from tests.harness import REPO, env, http, until

pytestmark = pytest.mark.integration


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes (its parent has not reaped it yet)
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@contextlib.contextmanager
def running_up(workdir: Path, *args: str, extra_env: dict[str, str] | None = None
               ) -> Iterator[tuple[subprocess.Popen, dict[str, Any]]]:
    """`proxyctl up ARGS --json` in the background: (process, the cluster it printed)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "dashboard.cli", "up", *args, "--dir", str(workdir), "--json"],
        cwd=REPO, env={**env(), **(extra_env or {})}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line, proc.stderr.read() if proc.stderr else ""
        yield proc, json.loads(line)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def ctrl_c_stops_everything(proc: subprocess.Popen, pids: dict[str, int]) -> None:
    proc.send_signal(signal.SIGINT)
    assert proc.wait(20) == 0
    until(lambda: not any(pid_alive(p) for p in pids.values()), 10,
          "every process `up` started to stop")


def test_up_runs_a_cluster_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    workdir = tmp_path / ".cluster"
    with running_up(workdir, "--groups", "2", "--proxies", "2") as (proc, info):
        assert len(info["proxies"]) == 2 and len(info["groups"]) == 2
        # the dashboard runs on the file store in the work dir and knows both proxies
        assert (workdir / "store" / "data").is_dir()
        status, topo = http("GET", info["dashboard"] + "/api/v1/topology")
        assert status == 200 and topo["unassigned"] == ""
        assert [g["slots"] for g in topo["groups"]] == ["0-8191", "8192-16383"]
        assert {p["state"] for p in topo["proxies"]} == {"online"}
        # the proxies route: write through one, read through the other, check the backend
        slotmap = SlotMap.from_json(http("GET", info["dashboard"] + "/api/v1/slotmap")[1])
        a, b = (redis.Redis(host=h, port=int(p), protocol=2)
                for h, p in (x.rsplit(":", 1) for x in info["proxies"]))
        for key in (b"alpha", b"beta", b"gamma", b"{user1}:x"):
            a.set(key, key)
            assert b.get(key) == key
            host, port = info["groups"][str(slotmap.owner[key_slot(key)])].rsplit(":", 1)
            with redis.Redis(host=host, port=int(port)) as direct:
                assert direct.get(key) == key
        a.close()
        b.close()
        pids = info["pids"]
        assert set(pids) == {"redis-1", "redis-2", "dashboard", "proxy-1", "proxy-2"}
        assert all(pid_alive(p) for p in pids.values())
        ctrl_c_stops_everything(proc, pids)


def test_up_with_replicas_starts_replicas_that_replicate(tmp_path: Path) -> None:
    with running_up(tmp_path / ".cluster", "--groups", "2", "--proxies", "1",
                    "--replicas", "1") as (proc, info):
        pids = info["pids"]
        assert set(pids) == {"redis-1", "redis-2", "redis-1-r1", "redis-2-r1", "dashboard",
                             "proxy-1"}
        status, topo = http("GET", info["dashboard"] + "/api/v1/topology")
        assert status == 200
        assert [g["replicas"] for g in topo["groups"]] == [info["replicas"]["1"],
                                                           info["replicas"]["2"]]
        # a write through the proxy shows up on its group's replica
        slotmap = SlotMap.from_json(http("GET", info["dashboard"] + "/api/v1/slotmap")[1])
        host, port = info["proxies"][0].rsplit(":", 1)
        with redis.Redis(host=host, port=int(port), protocol=2) as c:
            c.set(b"alpha", b"1")
        gid = str(slotmap.owner[key_slot(b"alpha")])
        rhost, rport = info["replicas"][gid][0].rsplit(":", 1)
        with redis.Redis(host=rhost, port=int(rport), protocol=2) as replica:
            assert replica.info("replication")["role"] == "slave"
            until(lambda: replica.get(b"alpha") == b"1", 10, "the write to reach the replica")
        ctrl_c_stops_everything(proc, pids)
