#!/usr/bin/env python3
"""SCAN of a whole keyspace: 3 groups through slotproxy vs one redis-server holding them all.

    .venv/bin/python bench/scan_bench.py [--keys 1000000] [--counts 100,1000,10000]

Starts 4 redis-servers (3 groups + 1 direct) and one proxy on free ports, loads the same
`--keys` string keys into the groups (each on its slot's group) and into the direct server,
then runs full SCAN iterations (0 ... 0) with each COUNT on both endpoints and prints keys/s,
round trips and duplicates (asserts nothing).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from slotcore.keyslot import key_slot
from slotcore.slotmap import GroupSpec, SlotMap
from tests.harness import ProxyProcess, RedisServer, group_config


def load(servers: list[RedisServer], direct: RedisServer, n: int) -> None:
    sm = SlotMap.even(16384, {i + 1: GroupSpec(i + 1, s.addr) for i, s in enumerate(servers)})
    clients = [redis.Redis(port=s.port) for s in servers]
    d = redis.Redis(port=direct.port)
    d.execute_command("DEBUG", "POPULATE", n, "key")  # key:0 ... key:n-1, value "value:N"
    pipes = [c.pipeline(transaction=False) for c in clients]
    for i in range(n):
        k = f"key:{i}"
        pipes[sm.owner[key_slot(k.encode(), 16384)] - 1].set(k, f"value:{i}")
        if i % 20000 == 19999:
            for p in pipes:
                p.execute()
    for p in pipes:
        p.execute()


def scan_all(c: redis.Redis, count: int) -> tuple[float, int, int]:
    t0 = time.perf_counter()
    cursor, seen, calls = 0, 0, 0
    while True:
        cursor, page = c.scan(cursor, count=count)
        seen += len(page)
        calls += 1
        if cursor == 0:
            return time.perf_counter() - t0, seen, calls


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--counts", default="100,1000,10000")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="scan-bench-"))
    servers = [RedisServer(tmp / f"g{i}").start() for i in range(3)]
    direct = RedisServer(tmp / "direct", extra=["--enable-debug-command", "yes"]).start()
    proxy = ProxyProcess(tmp / "proxy", group_config(servers, log_level="warning")).start()
    try:
        t0 = time.perf_counter()
        load(servers, direct, args.keys)
        print(f"loaded {args.keys} keys in {time.perf_counter() - t0:.1f}s")
        via = proxy.client()
        ref = redis.Redis(port=direct.port)
        assert via.dbsize() == ref.dbsize() == args.keys
        rows = []
        for count in (int(x) for x in args.counts.split(",")):
            for name, c in (("direct (1 server)", ref), ("slotproxy (3 groups)", via)):
                dt, seen, calls = scan_all(c, count)
                rows.append((name, count, seen, calls, dt, seen / dt))
        print("\n| endpoint | COUNT | keys returned | round trips | seconds | keys/s |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, count, seen, calls, dt, rate in rows:
            print(f"| {name} | {count} | {seen} | {calls} | {dt:.2f} | {rate:,.0f} |")
    finally:
        proxy.stop()
        for s in [*servers, direct]:
            s.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
