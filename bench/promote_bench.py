"""Planned master switch benchmark: how long `group promote` holds a group's requests, as the
dashboard reports it and as a client writing through a proxy sees it, and how many
acknowledged writes were lost (must be 0).

    python bench/promote_bench.py [--rounds 5] [--knob]

Layout (1024 slots): two groups through two proxies; group 1 has one replica. A writer thread
INCRs one counter per slot of group 1 through proxy 1, one request at a time, timing each; the
promotion goes back and forth between group 1's two servers `--rounds` times. `--knob` sets
`min-replicas-to-write 1` on the group first (the new master is then waited for until its
replica is online again before the group is released). Everything runs on this machine: on a
shared or loaded machine the absolute figures are noisy.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from slotcore.keyslot import key_slot  # noqa: E402
from tests.harness import RedisServer, until  # noqa: E402
from tests.harness.cluster import NSLOTS, Cluster  # noqa: E402


class Writer(threading.Thread):
    def __init__(self, port: int, keys: list[str]) -> None:
        super().__init__(daemon=True)
        self.conn = redis.Redis(port=port, protocol=2, socket_timeout=30)
        self.keys = keys
        self.acked: dict[str, int] = {}
        self.samples: list[tuple[float, float]] = []  # (start, seconds)
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            key = self.keys[i % len(self.keys)]
            t0 = time.monotonic()
            try:
                self.conn.incr(key)
            except redis.RedisError as e:
                self.errors.append(str(e))
                continue
            self.samples.append((t0, time.monotonic() - t0))
            self.acked[key] = self.acked.get(key, 0) + 1
            i += 1

    def worst(self, since: float, until_: float) -> float:
        return max((d for t, d in self.samples if since <= t <= until_), default=0.0)


def linked(replica: RedisServer, master: RedisServer) -> bool:
    info = redis.Redis(port=master.port, protocol=2).info("replication")
    return any(isinstance(v, dict) and v.get("port") == replica.port
               and v.get("state") == "online" for k, v in info.items() if k.startswith("slave"))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--knob", action="store_true", help="min-replicas-to-write 1 on group 1")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="slotproxy-promote-bench-"))
    c = Cluster(tmp, ngroups=2, nproxies=2)
    replica = RedisServer(tmp / "replica").start()
    try:
        servers = [c.redis[0], replica]
        status, body = c.dash.call("POST", "/api/v1/groups/1/servers", {"addr": replica.addr})
        assert status == 201, body
        until(lambda: linked(replica, c.redis[0]), 30, "replica online")
        if args.knob:
            status, body = c.dash.call("PUT", "/api/v1/groups/1/config",
                                       {"min-replicas-to-write": 1})
            assert status == 200, body
        sm = c.slotmap()
        keys = [k for k in (f"bench:{i}" for i in range(4000))
                if sm.owner[key_slot(k.encode(), NSLOTS)] == 1][:200]
        writer = Writer(c.proxies[0].port, keys)
        writer.start()
        rows = []
        time.sleep(1.0)
        for n in range(args.rounds):
            target = servers[(n + 1) % 2]
            old = servers[n % 2]
            until(lambda t=target, o=old: linked(t, o), 30, "replica online")
            before = writer.samples[-1][0] if writer.samples else time.monotonic()
            t0 = time.monotonic()
            status, body = c.dash.call("POST", "/api/v1/groups/1/promote",
                                       {"addr": target.addr, "timeout": 5}, )
            t1 = time.monotonic()
            assert status == 200, body
            time.sleep(1.0)
            rows.append((n + 1, body["seconds"], t1 - t0, writer.worst(min(before, t0), t1)))
        writer.stop.set()
        writer.join(30)
        final = redis.Redis(port=c.proxies[1].port, protocol=2)
        values = dict(zip(keys, final.mget(keys), strict=True))
        lost = sum(max(0, writer.acked.get(k, 0) - int(values[k] or 0)) for k in keys)
        acked = sum(writer.acked.values())
        print(f"\npromote benchmark: {args.rounds} switches, min-replicas-to-write "
              f"{1 if args.knob else 0}, {acked} acknowledged INCRs, {lost} lost, "
              f"{len(writer.errors)} errors {writer.errors[:3]}")
        print("| # | held (dashboard), s | API call, s | worst client write latency, s |")
        print("|---|---|---|---|")
        for r in rows:
            print(f"| {r[0]} | {r[1]:.3f} | {r[2]:.3f} | {r[3]:.3f} |")
        med = [statistics.median(col) for col in zip(*[r[1:] for r in rows], strict=True)]
        print(f"| median | {med[0]:.3f} | {med[1]:.3f} | {med[2]:.3f} |")
        return 0 if lost == 0 else 1
    finally:
        c.close()
        replica.stop()


if __name__ == "__main__":
    sys.exit(main())
