"""Failover benchmark: how long writes to a group's keys fail after `kill -9` of its master,
slotproxy + dashboard + 3 redis-sentinels vs Redis Cluster's own failover, measured the same way.

    python bench/failover_bench.py [--runs 5] [--down-after-ms 1000]

Both sides: 3 masters + 3 replicas (one per master) on this machine; one client thread INCRs
keys of the first master's slots in a loop (a 1 ms pause between writes) and records every
reply. The window is from the first failed write to the first successful one after it (and,
printed too, from the kill to that first success). Median of `--runs` kills; after each one the
killed server is restarted, comes back as a replica, and the next run kills the new master.

* slotproxy: groups of master + replica, the dashboard with `sentinels:` (quorum 2,
  down-after-milliseconds as given), one proxy; the client writes through the proxy.
* Redis Cluster: `redis-server --cluster-enabled yes --cluster-node-timeout <down-after>`,
  created with `redis-cli --cluster create ... --cluster-replicas 1`; the client is redis-py's
  RedisCluster (it follows MOVED and refreshes its slot table after a connection error).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from redis.cluster import ClusterNode, RedisCluster  # noqa: E402

from slotcore.keyslot import key_slot  # noqa: E402
from tests.harness import RedisServer, free_port, until  # noqa: E402
from tests.harness.failover import HACluster, in_sync, info  # noqa: E402


class Probe(threading.Thread):
    """INCR in a loop through `make()`'s client; records (first failure, next success)."""

    def __init__(self, make: Any, keys: list[str]) -> None:
        super().__init__(daemon=True)
        self.make, self.keys = make, keys
        self.stop = threading.Event()
        self.ok = 0
        self.first_fail: float | None = None
        self.windows: list[tuple[float, float, int]] = []
        self.successes: list[float] = []
        self.acked: dict[str, int] = dict.fromkeys(keys, 0)
        self.lost_before = 0

    def run(self) -> None:
        c = self.make()
        i = 0
        while not self.stop.is_set():
            k = self.keys[i % len(self.keys)]
            i += 1
            try:
                c.incr(k)
            except Exception:  # any failure counts as "unavailable"
                if self.first_fail is None:
                    self.first_fail = time.monotonic()
                # Both clients reconnect by themselves (RedisCluster also refreshes its
                # slot table after a connection error): the same client is used on.
                time.sleep(0.001)
                continue
            now = time.monotonic()
            self.ok += 1
            self.acked[k] += 1
            if self.first_fail is not None:
                self.windows.append((self.first_fail, now))
                self.first_fail = None
            self.successes.append(now)
            if len(self.successes) > 1000:
                del self.successes[:500]
            time.sleep(0.001)

    def lost(self, client: Any) -> int:
        """Acknowledged INCRs the counters lost since the last call (what this failover lost;
        a write whose reply never came counts as not acknowledged)."""
        acked = dict(self.acked)  # before the read: writes acked meanwhile are not missing
        values = client.mget(self.keys) if not isinstance(client, RedisCluster) else [
            client.get(k) for k in self.keys]
        total = sum(max(0, acked[k] - int(v or 0))
                    for k, v in zip(self.keys, values, strict=True))
        lost, self.lost_before = total - self.lost_before, total
        return lost

    def after(self, t: float, timeout: float = 120) -> tuple[float, float]:
        """(window, kill-to-success) of the first outage that ends after time `t`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for a, b in self.windows:
                if b > t:
                    return b - a, b - t
            time.sleep(0.01)
        raise TimeoutError("writes did not resume")


def measure(name: str, run: int, probe: Probe, killed: float, reader: Any
            ) -> tuple[float, float, int]:
    """One kill's (window, kill to first write, acked writes lost), printed as it comes."""
    window, total = probe.after(killed)
    lost = probe.lost(reader)
    print(f"  {name:9} run {run + 1}: window {window:.2f} s, kill to first write {total:.2f} s"
          f", acked INCRs lost {lost} (of {probe.ok} so far)", flush=True)
    return window, total, lost


def bench_slotproxy(runs: int, down_after: int, tmp: Path) -> list[tuple[float, float, int]]:
    c = HACluster(tmp / "slotproxy", ngroups=3, nproxies=1, down_after_ms=down_after)
    out = []
    try:
        keys = c.keys_of(1, 100, "f")
        port = c.proxies[0].port
        probe = Probe(lambda: redis.Redis(port=port, socket_timeout=5,
                                          socket_connect_timeout=1), keys)
        probe.start()
        for run in range(runs):
            c.wait_watched(1, 60)
            old, new = c.master(1), c.replica(1)
            until(lambda: probe.ok > 100, 30, "writes")
            t = time.monotonic()
            old.kill()
            c.wait_master(1, new.addr)
            out.append(measure("slotproxy", run, probe, t, redis.Redis(port=new.port)))
            old.start()
            until(lambda old=old, new=new: in_sync(old.port, new.port), 90, "old master back")
        probe.stop.set()
        probe.join(10)
    finally:
        c.close()
    return out


def bench_cluster(runs: int, node_timeout: int, tmp: Path) -> list[tuple[float, float, int]]:
    extra = ("--cluster-enabled", "yes", "--cluster-node-timeout", str(node_timeout),
             "--repl-diskless-sync-delay", "0")
    # The bus port defaults to port + 10000, which may be taken: give each node a free one.
    nodes = [RedisServer(tmp / f"cluster{i}",
                         extra=(*extra, "--cluster-port", str(free_port()))).start()
             for i in range(6)]
    out = []
    try:
        subprocess.run(["redis-cli", "--cluster", "create", *(n.addr for n in nodes),
                        "--cluster-replicas", "1", "--cluster-yes"], check=True,
                       capture_output=True, timeout=60)
        by_port = {n.port: n for n in nodes}

        def state_ok() -> bool:
            return all(b"cluster_state:ok" in redis.Redis(port=n.port).execute_command(
                "CLUSTER", "INFO") for n in nodes if n.alive())
        until(state_ok, 60, "cluster ok")
        first = nodes[0]
        slots = redis.Redis(port=first.port).execute_command("CLUSTER", "SLOTS")

        def master_of(slot: int) -> int:
            for s in redis.Redis(port=next(n for n in nodes if n.alive()).port
                                 ).execute_command("CLUSTER", "SLOTS"):
                if s[0] <= slot <= s[1]:
                    return int(s[2][1])
            raise KeyError(slot)

        slot = int(slots[0][0])
        keys = [k for k in (f"f:{i}" for i in range(200000))
                if key_slot(k.encode(), 16384) == slot][:50]
        startup = [ClusterNode(n.host, n.port) for n in nodes]
        probe = Probe(lambda: RedisCluster(startup_nodes=startup, socket_timeout=5,
                                           socket_connect_timeout=1), keys)
        probe.start()
        for run in range(runs):
            until(lambda: probe.ok > 100, 60, "writes")
            victim = by_port[master_of(slot)]
            replica = next(n for n in nodes if n.alive() and n is not victim
                           and info(n.port).get("master_port") == victim.port)
            until(lambda r=replica, v=victim: in_sync(r.port, v.port), 30, "replica in sync")
            t = time.monotonic()
            victim.kill()
            out.append(measure("cluster", run, probe, t, RedisCluster(startup_nodes=startup)))
            victim.start()
            until(lambda v=victim, r=replica: in_sync(v.port, r.port), 90, "old master back")
            until(state_ok, 60, "cluster ok")
        probe.stop.set()
        probe.join(10)
    finally:
        for n in nodes:
            n.stop()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--down-after-ms", type=int, default=1000)
    ap.add_argument("--only", choices=["slotproxy", "cluster"])
    args = ap.parse_args()
    results: dict[str, list[tuple[float, float, int]]] = {}
    with tempfile.TemporaryDirectory(prefix="failover-bench-") as d:
        tmp = Path(d)
        if args.only in (None, "slotproxy"):
            results["slotproxy + sentinel"] = bench_slotproxy(args.runs, args.down_after_ms, tmp)
        if args.only in (None, "cluster"):
            results["Redis Cluster"] = bench_cluster(args.runs, args.down_after_ms, tmp)
    print(f"\nunavailability after kill -9 of a master (down-after / node-timeout "
          f"{args.down_after_ms} ms), median of {args.runs}:")
    print("| setup | window: first failed -> first ok write (s) | kill -> first ok write (s) "
          "| runs (window) | acked writes lost (total) |")
    print("| --- | --- | --- | --- | --- |")
    for name, rs in results.items():
        w = statistics.median(r[0] for r in rs)
        k = statistics.median(r[1] for r in rs)
        print(f"| {name} | {w:.2f} | {k:.2f} | {', '.join(f'{r[0]:.2f}' for r in rs)} "
              f"| {sum(r[2] for r in rs)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
