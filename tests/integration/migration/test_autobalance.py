"""Auto-balance end to end: real redis-servers, a real dashboard and real proxies.

A skewed load through the proxies (one group's slots get 3x the ops) is evened by the scheduler
by itself, with every acknowledged write kept; an empty group fills up to its weight; the
scheduler stays still (and says why) in dry-run mode, while a proxy is stale and while an
operator's migration runs. Rounds are short (config), and every wait is for the condition."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import pytest
import redis

from slotcore.keyslot import key_slot
from tests.harness import RedisServer, until
from tests.harness.cluster import NSLOTS, Load, cluster

from .test_operations import proxyctl

pytestmark = pytest.mark.integration

FAST = {"interval": 0.5, "quiet": 1.0, "smoothing": 1.0, "cooldown": 600, "tolerance": 15,
        "max_slots_per_hour": 5000, "hot_share": 0}
OPS = {"memory": 0, "keys": 0, "ops": 1}


def keys_per_slot(counts: dict[int, int]) -> list[str]:
    """Keys such that slot s has counts[s] of them."""
    need = dict(counts)
    out = []
    i = 0
    while any(need.values()):
        k = f"hot:{i}"
        s = key_slot(k.encode(), NSLOTS)
        if need.get(s):
            out.append(k)
            need[s] -= 1
        i += 1
    return out


class Skew:
    """INCRs spread over every slot, 3 keys per slot of group 1's half for 1 of group 2's:
    group 1 gets 3x the ops of group 2."""

    def __init__(self, port: int) -> None:
        half = NSLOTS // 2
        self.keys = keys_per_slot({s: 3 if s < half else 1 for s in range(NSLOTS)})
        self.port = port
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        r = redis.Redis(port=self.port, socket_timeout=15, protocol=2)
        while not self.stop.is_set():
            for i in range(0, len(self.keys), 64):
                p = r.pipeline(transaction=False)
                for k in self.keys[i:i + 64]:
                    p.incr(k)
                try:
                    for res in p.execute(raise_on_error=False):
                        if isinstance(res, Exception) and "TRYAGAIN" not in str(res):
                            self.errors.append(str(res))
                except (redis.ConnectionError, redis.TimeoutError):
                    r = redis.Redis(port=self.port, socket_timeout=15, protocol=2)

    def __enter__(self) -> Skew:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join(30)


def status(c) -> dict[str, Any]:
    return c.dash.get("/api/v1/autobalance?rounds=50")


def last_round(c) -> dict[str, Any] | None:
    rounds = status(c)["rounds"]
    return rounds[0] if rounds else None


def wait_reason(c, text: str, timeout: float = 30) -> dict[str, Any]:
    return until(lambda: (r := last_round(c)) and text in r["reason"] and r, timeout,
                 f"an auto-balance round saying {text!r}")


def set_ab(c, **body: Any) -> dict[str, Any]:
    code, out = c.dash.call("PUT", "/api/v1/autobalance", body)
    assert code == 200, out
    return out["settings"]


def test_dry_run_stale_proxy_and_operator_migration_keep_it_still(tmp_path: Path) -> None:
    with cluster(tmp_path, proxy_stale_after=3.0, fence_timeout=3.0) as c, \
            Skew(c.proxies[0].port) as skew:
        owner = c.slotmap().owner
        assert status(c)["enabled"] is False and status(c)["rounds"] == []  # off by default
        set_ab(c, enabled=True, dry_run=True, weights=OPS, **FAST)
        r = wait_reason(c, "dry run: would move")
        assert r["plan"]["slots"] > 0 and all(m["from"] == 1 and m["to"] == 2
                                              for m in r["plan"]["moves"]), r["plan"]
        assert r["groups"]["1"]["deviation"] > 15
        code, out = proxyctl(c, "autobalance", "status")
        assert code == 0 and "on (dry run)" in out and "would move" in out, out
        assert c.migrations()["slots"] == [] and c.slotmap().owner == owner

        # a stale proxy: rounds say so and nothing starts, dry run or not
        c.proxies[1].process.signal(signal.SIGSTOP)
        try:
            wait_reason(c, "a proxy is stale")
            set_ab(c, dry_run=False)
            first = last_round(c)["round"]
            until(lambda: last_round(c)["round"] >= first + 3, 30, "three more rounds")
            assert all("a proxy is stale" in x["reason"] or "dry run" in x["reason"]
                       for x in status(c)["rounds"] if x["round"] >= first)
            assert c.migrations()["slots"] == [] and c.slotmap().owner == owner
            # an operator's migration, queued while paused so that it stays pending
            code, out = c.dash.call("PUT", "/api/v1/migrations/settings", {"paused": True})
            assert code == 200, out
            status_code, body = c.dash.call("POST", "/api/v1/migrations",
                                            {"slots": "1020-1023", "to": 1})
            assert status_code == 409 and "proxy-1" in body["error"]  # stale blocks it too
            set_ab(c, dry_run=True)  # until the operator's migration is queued
        finally:
            c.proxies[1].process.signal(signal.SIGCONT)
        until(lambda: c.dash.call("POST", "/api/v1/migrations",
                                  {"slots": "1020-1023", "to": 1})[0] == 201, 20,
              "the operator's migration queued")
        assert c.slotmap().owner[:1020] == owner[:1020]
        set_ab(c, dry_run=False)
        wait_reason(c, "an operator's migration is running (4 slots: 1020-1023)")
        first = last_round(c)["round"]
        until(lambda: last_round(c)["round"] >= first + 3, 30, "three more rounds")
        assert sorted(int(s["slot"]) for s in c.migrations()["slots"]) == [1020, 1021, 1022,
                                                                             1023]
        assert c.slotmap().owner[:1020] == owner[:1020]
        c.dash.call("PUT", "/api/v1/migrations/settings", {"paused": False})
        c.wait_idle(60)
        # the operator is done: now it acts by itself
        until(lambda: any(x["acted"] for x in status(c)["rounds"]), 60, "a round that acted")
        c.wait_idle(60)
        assert not skew.errors, skew.errors[:5]
        c.check_placement()


def test_skewed_load_converges_within_tolerance_and_keeps_every_write(tmp_path: Path) -> None:
    cfg = {"autobalance": {"enabled": True, "weights": OPS, **FAST}}
    with cluster(tmp_path, **cfg) as c:
        ports = [p.port for p in c.proxies]
        with Load(ports, writers=2, readers=1) as load, Skew(c.proxies[0].port) as skew:
            def converged() -> dict[str, Any] | None:
                st = status(c)
                r = st["rounds"][0] if st["rounds"] else None
                if not r or not r["reason"].startswith("balanced") or c.migrations()["slots"]:
                    return None
                return st if any(x["acted"] for x in st["rounds"]) else None

            st = until(converged, 120, "auto-balance to even the skewed load")
        load.verify(ports[0])
        assert not skew.errors, skew.errors[:5]
        r = st["rounds"][0]
        assert all(abs(g["deviation"]) <= 15 for g in r["groups"].values()), r["groups"]
        acted = [x for x in st["rounds"] if x["acted"]]
        assert acted and all(m["from"] == 1 and m["to"] == 2
                             for x in acted for m in x["plan"]["moves"])
        sm = c.slotmap()
        assert sm.owner.count(2) > NSLOTS // 2  # group 2 took slots of the hot group
        assert st["moved_last_hour"] == sm.owner.count(2) - NSLOTS // 2  # every move 1 -> 2
        c.check_placement()


def test_an_empty_group_fills_up_to_its_weight_by_itself(tmp_path: Path) -> None:
    with cluster(tmp_path, ngroups=2, nproxies=1) as c:
        r = redis.Redis(port=c.proxies[0].port, protocol=2)
        p = r.pipeline(transaction=False)
        for i in range(6000):
            p.set(f"k:{i}", f"{i}:" + "x" * 200)
        p.execute()
        extra = RedisServer(tmp_path / "redis-extra").start()
        c.redis.append(extra)
        assert proxyctl(c, "group", "add", "3", "--master", extra.addr)[0] == 0
        assert proxyctl(c, "group", "weight", "3", "2")[0] == 0
        code, out = proxyctl(c, "autobalance", "on", "--weights", "memory=1,keys=1,ops=0",
                             "--tolerance", "15", "--quiet", "1s", "--interval", "0.5s",
                             "--smoothing", "0", "--max-slots-per-hour", "2000")
        assert code == 0 and "auto-balance on" in out and "tolerance 15%" in out, out
        code, out = proxyctl(c, "autobalance", "on", "--tolerance", "0")
        assert code == 2 and "tolerance: '0' is out of range" in out, out
        code, out = proxyctl(c, "autobalance", "on", "--quiet", "soon")
        assert code == 2 and "expected a duration" in out, out

        def filled() -> bool:
            rnd = last_round(c)
            return (rnd is not None and rnd["reason"].startswith("balanced")
                    and not c.migrations()["slots"] and c.slotmap().owner.count(3) > 0)

        until(filled, 120, "group 3 to fill up")
        share = c.slotmap().owner.count(3) / NSLOTS
        assert abs(share - 0.5) <= 0.5 * 0.15, share  # weight 2 of 4: half the data
        code, out = proxyctl(c, "autobalance", "status")
        assert code == 0 and "balanced" in out and "GROUP" in out, out
        code, out = proxyctl(c, "autobalance", "off")
        assert code == 0 and out.strip() == "auto-balance off"
        assert status(c)["enabled"] is False
        # a restarted dashboard (a new leader) keeps the settings and the history
        rounds = len(status(c)["rounds"])
        c.restart_dashboard()
        st = status(c)
        assert st["enabled"] is False and len(st["rounds"]) == rounds
        assert st["settings"]["tolerance"] == 15
        assert st["moved_last_hour"] == c.slotmap().owner.count(3)
        assert r.mget([f"k:{i}" for i in range(0, 6000, 7)]) == [
            f"{i}:{'x' * 200}".encode() for i in range(0, 6000, 7)]
        c.check_placement()
