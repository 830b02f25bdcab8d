"""BLPOP/LPUSH ping-pong: round trips per second, direct redis-server vs through slotproxy.

Two clients bounce one element between two lists: A does `BLPOP ping 0` then `LPUSH pong x`,
B does `BLPOP pong 0` then `LPUSH ping x`. One round trip = the element going A → B → A, i.e.
two blocking pops woken by a push from the other side. Through the proxy every BLPOP runs on a
dedicated backend connection leased (and reused) per pop. Prints a table; asserts nothing.

    .venv/bin/python bench/blocking_bench.py [--seconds 3] [--pairs 1,4]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.harness import ProxyProcess, RedisServer, group_config


def ping_pong(port: int, seconds: float, pairs: int) -> float:
    """Round trips per second summed over `pairs` independent bouncing pairs."""
    stop = threading.Event()
    counts = [0] * pairs

    def side(i: int, mine: str, other: str, serve: bool) -> None:
        r = redis.Redis(port=port, socket_timeout=10)
        if serve:
            r.lpush(other, "x")
        while not stop.is_set():
            if r.blpop([mine], timeout=1) is None:
                continue
            r.lpush(other, "x")
            if serve:
                counts[i] += 1
        r.close()

    threads = []
    for i in range(pairs):
        a, b = f"ping{{{i}}}", f"pong{{{i}}}"
        threads.append(threading.Thread(target=side, args=(i, a, b, True)))
        threads.append(threading.Thread(target=side, args=(i, b, a, False)))
    for t in threads:
        t.start()
    time.sleep(0.3)  # warm-up: connections (and the proxy's dedicated ones) are open
    start, n0 = time.perf_counter(), sum(counts)
    time.sleep(seconds)
    n1, elapsed = sum(counts), time.perf_counter() - start
    stop.set()
    for t in threads:
        t.join(5)
    return (n1 - n0) / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--pairs", default="1,4")
    ns = ap.parse_args()
    pairs = [int(p) for p in ns.pairs.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="blocking-bench-"))
    server = RedisServer(tmp / "redis").start()
    proxy = ProxyProcess(tmp / "proxy", group_config([server], log_level="warning")).start()
    try:
        rows = []
        for n in pairs:
            direct = ping_pong(server.port, ns.seconds, n)
            redis.Redis(port=server.port).flushall()
            via = ping_pong(proxy.port, ns.seconds, n)
            redis.Redis(port=server.port).flushall()
            rows.append((n, direct, via))
        print(f"{'pairs':>5}  {'direct rt/s':>12}  {'proxy rt/s':>12}  {'proxy/direct':>12}")
        for n, direct, via in rows:
            print(f"{n:>5}  {direct:>12.0f}  {via:>12.0f}  {via / direct:>11.0%}")
    finally:
        proxy.stop()
        server.stop()


if __name__ == "__main__":
    main()
