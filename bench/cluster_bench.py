"""Masquerade benchmark: `redis-benchmark --cluster` through 2 proxies (it discovers both from
CLUSTER NODES and spreads its clients over them) vs plain `redis-benchmark` through one proxy.
Prints a table of requests/s and p50 latency; asserts nothing.

    python bench/cluster_bench.py [--requests 100000] [--clients 50] [--rounds 2] [--pipeline 1]

Everything runs on this machine: a dashboard, 2 redis-server groups, 2 proxies (1024 slots),
redis-benchmark. On a machine with few cores the proxies and redis-benchmark compete for them,
so the 2-proxy figure shows the client side of the masquerade more than proxy scaling.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness.cluster import cluster  # noqa: E402

LINE = re.compile(r"^(\w+): ([\d.]+) requests per second(?:, p50=([\d.]+) msec)?", re.M)


def bench(port: int, cluster_mode: bool,
          args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    argv = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", "set,get",
            "-n", str(args.requests), "-c", str(args.clients), "-P", str(args.pipeline),
            "-r", "100000", "-q"]
    if cluster_mode:
        argv.insert(1, "--cluster")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    text = out.stdout.replace("\r", "\n")
    if out.returncode != 0 or "error" in (text + out.stderr).lower():
        print(f"# {' '.join(argv)} failed ({out.returncode}): {out.stderr.strip()}",
              file=sys.stderr)
    return {m[1]: (float(m[2]), float(m[3] or "nan")) for m in LINE.finditer(text)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--pipeline", type=int, default=1)
    args = ap.parse_args()
    runs: dict[str, list[dict[str, tuple[float, float]]]] = {"1 proxy": [], "2 proxies": []}
    with tempfile.TemporaryDirectory(prefix="cluster-bench-") as tmp, \
            cluster(Path(tmp), ngroups=2, nproxies=2) as c:
        port = c.proxies[0].port
        for _ in range(args.rounds):  # interleaved, so drift hits both alike
            runs["1 proxy"].append(bench(port, False, args))
            runs["2 proxies"].append(bench(port, True, args))
    print(f"\nredis-benchmark -t set,get -n {args.requests} -c {args.clients} "
          f"-P {args.pipeline} -r 100000, median of {args.rounds} rounds\n")
    print(f"| {'setup':<44} | {'test':<4} | {'req/s':>10} | {'p50 ms':>7} |")
    print(f"|{'-' * 46}|{'-' * 6}|{'-' * 12}|{'-' * 9}|")
    names = {"1 proxy": "redis-benchmark -> 1 proxy",
             "2 proxies": "redis-benchmark --cluster -> 2 proxies"}
    for setup, results in runs.items():
        for test in ("SET", "GET"):
            rps = [r[test][0] for r in results if test in r]
            p50 = [r[test][1] for r in results if test in r]
            if rps:
                print(f"| {names[setup]:<44} | {test:<4} | {statistics.median(rps):>10.0f} | "
                      f"{statistics.median(p50):>7.3f} |")
            else:
                print(f"| {names[setup]:<44} | {test:<4} | {'failed':>10} | {'':>7} |")


if __name__ == "__main__":
    main()
