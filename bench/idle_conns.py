"""Memory of idle client connections: the proxy's RSS with N idle clients (issue target:
10,000 idle connections in <= 64 MiB).

Starts one redis-server and one slotproxy per hot path (compiled, python) through the test
harness, opens N plain TCP connections in steps, and reads the proxy's VmRSS from
/proc/<pid>/status once the proxy reports them all connected (INFO proxy connected_clients).
Each step is measured twice: right after connecting (never used) and after every connection
sent one PING and read its PONG (used, then idle). Prints a table; exit 1 with --strict if
the last step is over --budget-mib.

    .venv/bin/python bench/idle_conns.py                      # 1,5000,10000 x both paths
    .venv/bin/python bench/idle_conns.py --conns 1,10000 --modes compiled
"""

from __future__ import annotations

import argparse
import resource
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.harness import ProxyProcess, RedisServer, group_config

PING = b"*1\r\n$4\r\nPING\r\n"


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def connected_clients(port: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"*2\r\n$4\r\nINFO\r\n$5\r\nproxy\r\n")
        data = b""
        while b"connected_clients:" not in data or not data.endswith(b"\r\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    for line in data.split(b"\r\n"):
        if line.startswith(b"connected_clients:"):
            return int(line.split(b":")[1]) - 1  # minus this INFO connection
    raise RuntimeError("no connected_clients in INFO")


def wait_clients(port: int, n: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        have = connected_clients(port)
        if have >= n:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"proxy accepted {have} of {n} connections")
        time.sleep(0.2)


def settle_rss(pid: int) -> int:
    # RSS after the proxy went quiet: the smallest of a few reads a moment apart.
    vals = []
    for _ in range(5):
        time.sleep(0.2)
        vals.append(rss_kib(pid))
    return min(vals)


def ping_all(socks: list[socket.socket]) -> None:
    for s in socks:
        s.sendall(PING)
    for s in socks:
        got = b""
        while len(got) < 7:
            chunk = s.recv(64)
            if not chunk:
                raise RuntimeError("connection closed by the proxy")
            got += chunk
        assert got == b"+PONG\r\n", got


def run_mode(mode: str, steps: list[int], tmp: Path, server: RedisServer) -> list[tuple]:
    cfg = group_config([server], log_level="warning", use_accelerator=mode == "compiled",
                       limits={"max_clients": max(steps) + 100})
    proxy = ProxyProcess(tmp / f"proxy-{mode}", cfg).start()
    rows = []
    socks: list[socket.socket] = []
    try:
        pid = proxy.process.pid
        base = settle_rss(pid)
        rows.append((mode, 0, "-", base, 0.0))
        for n in steps:
            while len(socks) < n:
                s = socket.create_connection(("127.0.0.1", proxy.port), timeout=30)
                socks.append(s)
            wait_clients(proxy.port, n)
            rss = settle_rss(pid)
            rows.append((mode, n, "connected", rss, (rss - base) / n))
            ping_all(socks)
            rss = settle_rss(pid)
            rows.append((mode, n, "used once", rss, (rss - base) / n))
    finally:
        for s in socks:
            s.close()
        proxy.stop()
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--conns", default="1,5000,10000", help="connection counts, ascending")
    ap.add_argument("--modes", default="compiled,python")
    ap.add_argument("--budget-mib", type=float, default=64.0)
    ap.add_argument("--strict", action="store_true", help="exit 1 when over the budget")
    args = ap.parse_args()
    steps = [int(x) for x in args.conns.split(",")]
    need = max(steps) * 2 + 200  # our sockets, and the proxy's (it inherits the limit)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    tmp = Path(tempfile.mkdtemp(prefix="idle-conns-"))
    server = RedisServer(tmp / "redis").start()
    rows = []
    try:
        for mode in args.modes.split(","):
            rows += run_mode(mode, steps, tmp, server)
    finally:
        server.stop()
    print(f"{'hot path':<10}{'clients':>9}  {'state':<11}{'RSS MiB':>9}{'KiB/conn':>10}")
    for mode, n, state, rss, per in rows:
        print(f"{mode:<10}{n:>9}  {state:<11}{rss / 1024:>9.1f}{per:>10.2f}")
    worst = max(rss for _, n, _, rss, _ in rows if n == max(steps)) / 1024
    verdict = "ok" if worst <= args.budget_mib else "OVER"
    print(f"# {max(steps)} idle connections: worst {worst:.1f} MiB, budget "
          f"{args.budget_mib:.0f} MiB: {verdict}")
    return 1 if args.strict and worst > args.budget_mib else 0


if __name__ == "__main__":
    sys.exit(main())
