#!/usr/bin/env python3
"""Transactions per second, direct redis-server vs through slotproxy, in one run.

    .venv/bin/python bench/txn_bench.py [--seconds 3] [--clients 8]

Starts its own redis-server(s) and one proxy on free ports, then for each endpoint runs
`clients` asyncio connections in parallel, each doing back-to-back:

* multi:  MULTI, SET k v, INCR n, EXEC  (one round trip: sent as a pipeline, as redis-py does)
* watch:  WATCH n, GET n, MULTI, SET n v+1, EXEC  (three round trips; a nil EXEC is retried)

and prints a table of transactions/s (asserts nothing). Keys use one hash tag per client so
a transaction's keys share a slot, and clients spread over the groups.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from slotcore.resp import ReplyReader, pack_command
from tests.harness import ProxyProcess, RedisServer, group_config


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.r, self.w = reader, writer
        self.frames = ReplyReader()
        self.pending: list[bytes] = []

    async def many(self, cmds: list[tuple]) -> list[bytes]:
        self.w.write(b"".join(pack_command(*c) for c in cmds))
        while len(self.pending) < len(cmds):
            data = await self.r.read(65536)
            if not data:
                raise ConnectionError("closed")
            self.pending += self.frames.feed(data)
        out, self.pending = self.pending[:len(cmds)], self.pending[len(cmds):]
        return out


async def client(port: int, kind: str, i: int, deadline: float) -> tuple[int, int]:
    conn = Conn(*await asyncio.open_connection("127.0.0.1", port))
    k, n = f"{{c{i}}}k", f"{{c{i}}}n"
    done = retries = 0
    while time.perf_counter() < deadline:
        if kind == "multi":
            await conn.many([("MULTI",), ("SET", k, "v"), ("INCR", n), ("EXEC",)])
            done += 1
        else:
            await conn.many([("WATCH", n)])
            v = await conn.many([("GET", n)])
            cur = int(v[0].split(b"\r\n")[1]) if v[0][:2] != b"$-" else 0
            res = await conn.many([("MULTI",), ("SET", n, cur + 1), ("EXEC",)])
            if res[-1][:2] in (b"*-", b"_\r"):
                retries += 1
            else:
                done += 1
    conn.w.close()
    return done, retries


async def run(port: int, kind: str, clients: int, seconds: float) -> tuple[float, int]:
    deadline = time.perf_counter() + seconds
    t0 = time.perf_counter()
    res = await asyncio.gather(*(client(port, kind, i, deadline) for i in range(clients)))
    dt = time.perf_counter() - t0
    return sum(d for d, _ in res) / dt, sum(r for _, r in res)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--groups", type=int, default=2)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="txn-bench-"))
    servers = [RedisServer(tmp / f"g{i}").start() for i in range(args.groups)]
    direct = RedisServer(tmp / "direct").start()
    proxy = ProxyProcess(tmp / "proxy", group_config(servers, log_level="warning")).start()
    rows = []
    try:
        for kind in ("multi", "watch"):
            d, _ = asyncio.run(run(direct.port, kind, args.clients, args.seconds))
            p, retries = asyncio.run(run(proxy.port, kind, args.clients, args.seconds))
            rows.append((kind, d, p, retries))
    finally:
        proxy.stop()
        for s in [*servers, direct]:
            s.stop()
    print(f"{'transaction':<34} {'direct tx/s':>12} {'proxy tx/s':>12} {'proxy/direct':>13}")
    label = {"multi": "MULTI SET INCR EXEC (1 RTT)",
             "watch": "WATCH GET MULTI SET EXEC (3 RTT)"}
    for kind, d, p, _ in rows:
        print(f"{label[kind]:<34} {d:>12.0f} {p:>12.0f} {p / d:>13.2f}")
    print(f"({args.clients} clients, {args.seconds:.0f}s each, proxy over {args.groups} groups)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
