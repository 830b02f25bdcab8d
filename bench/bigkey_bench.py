#!/usr/bin/env python3
"""How long the servers block while the mover copies a big key in chunks (figures only).

The tests assert what the mover controls (every chunk command within the chunk bound, from the
servers' own SLOWLOG); this prints the time figures those bounds are for: per key type, the
mover's longest client-timed command (`max_stall_ms`), the longest command the servers
themselves report (SLOWLOG, usec), and the worst PING round trip seen by a probe process on
each server during the copy. Two redis-servers on free loopback ports, stopped by PID.

    .venv/bin/python bench/bigkey_bench.py [--elements 200000] [--stall-ms 50]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis

from dashboard.migrate.bigkeys import copy_big_key, tmp_name
from dashboard.migrate.mover import Settings
from tests.harness import RedisServer
from tests.harness.commandlog import CommandLog

NSLOTS = 1024
PROBE = """
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
worst = 0.0
sys.stdout.write("ready\\n"); sys.stdout.flush()
while True:
    t0 = time.perf_counter()
    s.sendall(b"PING\\r\\n")
    if not s.recv(64):
        break
    worst = max(worst, (time.perf_counter() - t0) * 1000)
    sys.stdout.write(f"{worst:.2f}\\n"); sys.stdout.flush()
    time.sleep(0.001)
"""
FILL = {
    "hash": "for i=1,tonumber(ARGV[1]) do redis.call('HSET', KEYS[1], 'f'..i, 'value'..i) end",
    "list": "for i=1,tonumber(ARGV[1]) do redis.call('RPUSH', KEYS[1], 'value'..i) end",
    "zset": "for i=1,tonumber(ARGV[1]) do redis.call('ZADD', KEYS[1], i, 'm'..i) end",
    "set": "for i=1,tonumber(ARGV[1]) do redis.call('SADD', KEYS[1], 'm'..i) end",
    "stream": "for i=1,tonumber(ARGV[1]) do redis.call('XADD', KEYS[1], i..'-1', 'f', i) end",
    "string": "for i=1,tonumber(ARGV[1]) do redis.call('APPEND', KEYS[1], "
              "'0123456789abcdef0123456789abcdef') end",
}


class LatencyProbe:
    """PING a server every ms from ANOTHER process (our own GIL must not skew it)."""

    def __init__(self, port: int) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", PROBE, str(port)],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.proc.stdout.readline()

    def worst(self) -> float:
        self.proc.kill()
        out, _ = self.proc.communicate()
        lines = out.split()
        return float(lines[-1]) if lines else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--elements", type=int, default=200_000)
    ap.add_argument("--stall-ms", type=float, default=50.0)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bigkey-bench-"))
    src, dst = (RedisServer(tmp / f"r{i}", extra=["--lazyfree-lazy-server-del", "yes"]).start()
                for i in range(2))
    try:
        a = redis.Redis(port=src.port)
        settings = Settings(big_key_bytes=256 << 10, stall_ms=args.stall_ms)
        print(f"# {args.elements} elements (stream: 1/4), stall_ms={args.stall_ms}")
        print(f"{'type':<8}{'chunks':>8}{'max_stall_ms':>14}{'server max ms':>15}"
              f"{'probe src ms':>14}{'probe dst ms':>14}")
        for kind, script in FILL.items():
            key = b"big:{" + kind.encode() + b"}"
            a.eval(script, 1, key, args.elements // 4 if kind == "stream" else args.elements)
            probes = [LatencyProbe(src.port), LatencyProbe(dst.port)]
            with CommandLog(src.port) as sl, CommandLog(dst.port) as dl:
                try:
                    stats = asyncio.run(copy_big_key(src.addr, dst.addr, key, NSLOTS, settings))
                finally:
                    worst = [p.worst() for p in probes]
                mine = {key, tmp_name(key, NSLOTS)}
                server_max = max((c.usec for c in sl.commands() + dl.commands()
                                  if len(c.args) > 1 and c.args[1] in mine), default=0)
            print(f"{kind:<8}{stats['chunks']:>8}{stats['max_stall_ms']:>14.1f}"
                  f"{server_max / 1000:>15.1f}{worst[0]:>14.1f}{worst[1]:>14.1f}", flush=True)
            redis.Redis(port=dst.port).delete(key)
    finally:
        src.stop()
        dst.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
