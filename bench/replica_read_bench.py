"""GET throughput through a proxy reading from the master vs from a replica.

One master, one replica replicating from it (REPLICAOF), two standalone proxies over them:
`read_from: master` (the default: the connection's fast path) and `read_from: prefer-replica`
(every read-only command through dispatch and the replica choice). redis-benchmark GET, 50
clients, `-P 1` and `-P 16`, rounds interleaved so both proxies see the same machine load;
the table gives medians and the prefer-replica/master ratio, and where the GETs landed
(INFO commandstats on each server).

    .venv/bin/python -m bench.replica_read_bench [--rounds 3] [-n 100000]

Figures, not a test: on a shared machine absolute numbers are noisy, the ratio of one run less.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import tempfile
from pathlib import Path

import redis

from tests.harness import ProxyProcess, RedisServer, until


def _rps(port: int, n: int, pipeline: int) -> float:
    out = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-t", "get", "-n", str(n), "-c", "50",
         "-P", str(pipeline), "-r", "10000", "-q"],
        check=True, capture_output=True, text=True, timeout=600).stdout
    m = re.search(r"GET: ([\d.]+) requests per second", out.replace("\r", "\n"))
    assert m, out
    return float(m.group(1))


def _gets(s: RedisServer) -> int:
    stats = redis.Redis(port=s.port).info("commandstats")
    return int(stats.get("cmdstat_get", {}).get("calls", 0))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("-n", type=int, default=100_000)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="slotproxy-replica-bench-"))
    m = RedisServer(base / "m").start()
    r = RedisServer(base / "r").start()
    proxies: dict[str, ProxyProcess] = {}
    try:
        redis.Redis(port=r.port).execute_command("REPLICAOF", m.host, str(m.port))
        until(lambda: redis.Redis(port=r.port).info("replication")
              .get("master_link_status") == "up", 30, "replica in sync")
        for policy in ("master", "prefer-replica"):
            cfg = {"groups": {1: {"master": m.addr, "replicas": [r.addr]}},
                   "read_from": policy, "log_level": "warning"}
            proxies[policy] = ProxyProcess(base / policy, cfg).start()
        until(lambda: proxies["prefer-replica"].client().info("proxy")["group_1_replica0"]
              ["status"] == "ok", 30, "replica ok")
        rows = []
        for pipeline in (1, 16):
            figures: dict[str, list[float]] = {p: [] for p in proxies}
            landed: dict[str, tuple[int, int]] = {}
            for _ in range(args.rounds):
                for policy, proxy in proxies.items():
                    before = (_gets(m), _gets(r))
                    figures[policy].append(_rps(proxy.port, args.n, pipeline))
                    landed[policy] = (_gets(m) - before[0], _gets(r) - before[1])
            med = {p: statistics.median(v) for p, v in figures.items()}
            rows.append((pipeline, med, landed))
        print("| -P | read_from master (GET/s) | prefer-replica (GET/s) | ratio | "
              "GETs on master / replica (prefer-replica, last round) |")
        print("|---|---|---|---|---|")
        for pipeline, med, landed in rows:
            ml, rl = landed["prefer-replica"]
            print(f"| {pipeline} | {med['master']:.0f} | {med['prefer-replica']:.0f} | "
                  f"{med['prefer-replica'] / med['master']:.2f} | {ml} / {rl} |")
    finally:
        for p in proxies.values():
            p.stop()
        m.stop()
        r.stop()


if __name__ == "__main__":
    main()
