#!/usr/bin/env python3
"""Big aggregate replies through slotproxy vs direct: is the proxy's reply framing linear?

Starts one redis-server and one standalone slotproxy process on free loopback ports (the test
harness's processes), loads a list and a hash of each size (100k, 300k, 1M elements by
default), and times `LRANGE key 0 -1` and `HGETALL key` direct and through the proxy. A call is
timed from sending the command to receiving the last byte of the reply (the reply's exact
length is learnt from the direct answer, so client-side parsing is not measured). Prints ms
per call (median of --reps) and proxy/direct; a linear proxy keeps that ratio flat as the size
grows, a quadratic one makes it grow with the size. Asserts nothing; stops both processes by
PID. A proxy call slower than --budget seconds is not repeated (and larger sizes of that
command are skipped), so the run stays within a few minutes even on a quadratic proxy.

    .venv/bin/python bench/bigreply_bench.py [--sizes 100000,300000,1000000] [--reps 3]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.harness import ProxyProcess, RedisServer, group_config

LOAD = {
    "list": "for i=1,tonumber(ARGV[1]) do redis.call('RPUSH', KEYS[1], 'value:'..i) end",
    "hash": "for i=1,tonumber(ARGV[1]) do redis.call('HSET', KEYS[1], 'field:'..i, 'v'..i) end",
}
READ = {"list": ("LRANGE", "0", "-1"), "hash": ("HGETALL",)}


def pack(*args: str) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def reply_length(port: int, cmd: bytes) -> int:
    """Exact byte length of the reply, read with a resumable parser (hiredis) direct."""
    import hiredis

    reader = hiredis.Reader()
    total = 0
    with socket.create_connection(("127.0.0.1", port), timeout=120) as s:
        s.sendall(cmd)
        while True:
            data = s.recv(1 << 20)
            if not data:
                raise ConnectionError("closed")
            total += len(data)
            reader.feed(data)
            if reader.gets() is not False:
                return total


def timed_call(sock: socket.socket, cmd: bytes, length: int) -> tuple[float, str | None]:
    """ms until the whole reply arrived; and an error text if the reply was not the value."""
    import hiredis

    reader = hiredis.Reader()
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    t0 = time.perf_counter()
    sock.sendall(cmd)
    got = 0
    while True:
        n = sock.recv_into(view)
        if not n:
            return (time.perf_counter() - t0) * 1000, "connection closed"
        got += n
        if got >= length:
            return (time.perf_counter() - t0) * 1000, None
        if got < 64 * 1024:  # an error reply is short: look at the start only
            reader.feed(view[:n])
            reply = reader.gets()
            if isinstance(reply, hiredis.ReplyError):
                return (time.perf_counter() - t0) * 1000, str(reply)


def measure(port: int, cmd: bytes, length: int, reps: int, budget_s: float,
            timeout: float) -> tuple[float, int, str | None]:
    times: list[float] = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        for _ in range(reps):
            try:
                ms, err = timed_call(s, cmd, length)
            except TimeoutError:
                return timeout * 1000, len(times) + 1, f"no reply in {timeout:.0f}s"
            if err:
                return ms, len(times) + 1, err
            times.append(ms)
            if times[-1] > budget_s * 1000:
                break
    return statistics.median(times), len(times), None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100000,300000,1000000")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--budget", type=float, default=20.0,
                    help="seconds: a proxy call slower than this is not repeated and the "
                         "command's larger sizes are skipped")
    ap.add_argument("--timeout", type=float, default=90.0, help="socket timeout per call (s)")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="bigreply-bench-"))
    server = RedisServer(tmp / "redis").start()
    proxy = None
    try:
        proxy = ProxyProcess(tmp / "proxy", group_config([server], log_level="warning")).start()
        print(f"# redis-server :{server.port} (pid {server.process.pid}), slotproxy "
              f":{proxy.port} (pid {proxy.process.pid}); median of {args.reps} calls, ms")
        print(f"{'command':<16}{'elements':>10}{'reply MiB':>11}{'direct ms':>11}"
              f"{'proxy ms':>11}{'proxy/direct':>14}{'proxy ms/1k el':>16}")
        skip: set[str] = set()
        errors: list[str] = []
        import redis

        direct_client = redis.Redis(port=server.port)
        for n in sizes:
            for kind in ("list", "hash"):
                key = f"big:{kind}:{n}"
                direct_client.delete(key)
                direct_client.eval(LOAD[kind], 1, key, n)
                cmd = pack(READ[kind][0], key, *READ[kind][1:])
                name = " ".join((READ[kind][0], *READ[kind][1:]))
                length = reply_length(server.port, cmd)
                d_ms, _, _ = measure(server.port, cmd, length, args.reps, args.budget,
                                     args.timeout)
                if name in skip:
                    p_cell, ratio, per_k = "skipped", "-", "-"
                else:
                    p_ms, done, err = measure(proxy.port, cmd, length, args.reps,
                                              args.budget, args.timeout)
                    if done < args.reps or err:
                        skip.add(name)
                    p_cell = f"{p_ms:.1f}" + ("*" if done < args.reps or err else "")
                    ratio, per_k = f"{p_ms / d_ms:.2f}", f"{p_ms / (n / 1000):.3f}"
                    if err:
                        errors.append(f"{name} {n}: {err} after {p_ms / 1000:.1f}s")
                print(f"{name:<16}{n:>10}{length / 2**20:>11.1f}{d_ms:>11.1f}{p_cell:>11}"
                      f"{ratio:>14}{per_k:>16}", flush=True)
                direct_client.delete(key)
        direct_client.close()
        print(f"# * = one call only (slower than --budget {args.budget:.0f}s, or failed); "
              "larger sizes of that command skipped")
        for e in errors:
            print(f"# proxy error: {e}")
    finally:
        if proxy is not None:
            proxy.stop()
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
