#!/usr/bin/env python3
"""PUBLISH throughput, direct Redis vs slotproxy: messages/s delivered to 1 and to 100
subscribers. Prints a table; asserts nothing.

    .venv/bin/python bench/pubsub_bench.py [--messages 20000] [--size 64] [--groups 2]

One publisher pipelines PUBLISH (batches of 100, waiting for each batch's replies) to one
channel; the subscribers (raw sockets, counting bytes) each receive every message. The clock
runs from the first PUBLISH until the last subscriber has every message. Everything runs on
loopback ports of this machine; the redis-servers and the proxy are stopped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from slotcore.resp import pack_command
from tests.harness import ProxyProcess, RedisServer, group_config

CHANNEL = b"bench:channel"
BATCH = 100


async def subscriber(port: int, frame_len: int, total: int, ready: asyncio.Event,
                     done: asyncio.Future) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(pack_command(b"SUBSCRIBE", CHANNEL))
    confirm = b"*3\r\n$9\r\nsubscribe\r\n$%d\r\n%b\r\n:1\r\n" % (len(CHANNEL), CHANNEL)
    await reader.readexactly(len(confirm))
    ready.set()
    want = frame_len * total
    got = 0
    while got < want:
        chunk = await reader.read(1 << 20)
        if not chunk:
            break
        got += len(chunk)
    done.set_result(time.perf_counter())
    writer.close()


async def run_one(port: int, nsubs: int, messages: int, size: int) -> float:
    payload = b"x" * size
    frame_len = len(b"*3\r\n$7\r\nmessage\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n"
                    % (len(CHANNEL), CHANNEL, size, payload))
    loop = asyncio.get_running_loop()
    readies = [asyncio.Event() for _ in range(nsubs)]
    dones = [loop.create_future() for _ in range(nsubs)]
    tasks = [asyncio.create_task(subscriber(port, frame_len, messages, readies[i], dones[i]))
             for i in range(nsubs)]
    await asyncio.gather(*(e.wait() for e in readies))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    batch = pack_command(b"PUBLISH", CHANNEL, payload) * BATCH
    reply_len = len(b":%d\r\n" % nsubs) * BATCH
    start = time.perf_counter()
    for _ in range(messages // BATCH):
        writer.write(batch)
        await reader.readexactly(reply_len)
    ends = await asyncio.wait_for(asyncio.gather(*dones), 300)
    elapsed = max(ends) - start
    writer.close()
    await asyncio.gather(*tasks, return_exceptions=True)
    return messages * nsubs / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--groups", type=int, default=2)
    args = ap.parse_args()
    messages = max(BATCH, args.messages // BATCH * BATCH)
    tmp = Path(tempfile.mkdtemp(prefix="pubsub-bench-"))
    direct = RedisServer(tmp / "direct").start()
    groups = [RedisServer(tmp / f"g{i}").start() for i in range(args.groups)]
    proxy = ProxyProcess(tmp / "proxy", group_config(groups, log_level="warning")).start()
    rows = []
    try:
        for nsubs in (1, 100):
            d = asyncio.run(run_one(direct.port, nsubs, messages, args.size))
            p = asyncio.run(run_one(proxy.port, nsubs, messages, args.size))
            rows.append((nsubs, d, p))
    finally:
        proxy.stop()
        for s in [direct, *groups]:
            s.stop()
    print(f"PUBLISH {messages} messages of {args.size} B, one channel, pipelined by {BATCH}; "
          f"proxy over {args.groups} groups")
    print(f"{'subscribers':>11} | {'direct msg/s':>13} | {'proxy msg/s':>12} | "
          f"{'proxy/direct':>12}")
    print(f"{'-' * 11}-+-{'-' * 13}-+-{'-' * 12}-+-{'-' * 12}")
    for nsubs, d, p in rows:
        print(f"{nsubs:>11} | {d:>13,.0f} | {p:>12,.0f} | {p / d:>11.2f}x")


if __name__ == "__main__":
    main()
