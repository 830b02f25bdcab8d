"""Blocked clients on slots that migrate (dashboard-driven cluster, two proxies, two groups).

A client blocked on the old owner is unblocked there and re-issued on the new owner with the
remaining timeout; an element (or stream entry) the old owner handed out before the unblock is
delivered, never lost and never twice. The job queue runs producers and consumers through both
proxies while the queues' slots migrate back and forth: every job is consumed exactly once.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import hiredis
import pytest
import redis

from slotcore.keyslot import key_slot
from slotcore.resp import frame_reply, pack_command
from tests.harness import until
from tests.harness.cluster import NSLOTS, RETRY, cluster

pytestmark = pytest.mark.integration


def blocked_on(c, gid: int) -> int:
    r = redis.Redis(port=c.redis[gid - 1].port)
    try:
        return int(r.info("clients")["blocked_clients"])
    finally:
        r.close()


def owner(c, slot: int) -> int:
    return c.slotmap().owner[slot]


def read_reply(sock: socket.socket, timeout: float = 20.0) -> object:
    sock.settimeout(timeout)
    buf = b""
    while True:
        if buf and (end := frame_reply(buf, 0)) > 0:
            reader = hiredis.Reader()
            reader.feed(buf[:end])
            return reader.gets()
        chunk = sock.recv(65536)
        assert chunk, f"closed; have {buf!r}"
        buf += chunk


def test_blocked_clients_follow_their_slot(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        p0, p1 = c.proxies
        r1 = redis.Redis(port=p1.port, protocol=2)
        q, stream, tail = "bq{x}", "bs{x}", "bt{x}"
        slot = key_slot(q.encode(), NSLOTS)
        src = owner(c, slot)
        dst = 3 - src
        r1.xgroup_create(stream, "g", id="$", mkstream=True)
        pop = socket.create_connection(("127.0.0.1", p0.port))
        pop.sendall(pack_command("BLPOP", q, "0"))
        xrg = socket.create_connection(("127.0.0.1", p0.port))
        xrg.sendall(pack_command("XREADGROUP", "GROUP", "g", "c1", "BLOCK", "60000",
                                 "STREAMS", stream, ">"))
        r1.xadd(tail, {"old": "1"}, id="1-1")
        xr = socket.create_connection(("127.0.0.1", p0.port))
        xr.sendall(pack_command("XREAD", "BLOCK", "0", "STREAMS", tail, "$"))
        until(lambda: blocked_on(c, src) == 3, 10, "all three to block on the source")
        c.migrate(str(slot), dst)
        c.wait_idle()
        # Unblocked on the old owner, re-issued (remaining timeout) on the new one.
        until(lambda: blocked_on(c, dst) == 3 and blocked_on(c, src) == 0, 20,
              "all three to block on the target")
        r1.rpush(q, "job")
        r1.xadd(stream, {"f": "v"}, id="5-5")
        assert read_reply(pop) == [q.encode(), b"job"]
        got = read_reply(xrg)
        assert got[0][0] == stream.encode() and got[0][1][0][0] == b"5-5"  # type: ignore[index]
        assert r1.xpending(stream, "g")["pending"] == 1
        r1.xadd(tail, {"new": "2"}, id="6-6")
        got = read_reply(xr)  # only what came after `$`, not the older entry
        assert got == [[tail.encode(), [[b"6-6", [b"new", b"2"]]]]], got
        xr.close()
        # and back, with a push racing the move: whatever the source handed out is delivered
        pop.sendall(pack_command("BRPOP", q, "30"))
        until(lambda: blocked_on(c, dst) == 1, 10, "BRPOP to block")
        c.migrate(str(slot), src)
        r1.rpush(q, "racing")
        assert read_reply(pop) == [q.encode(), b"racing"]
        c.wait_idle()
        assert r1.llen(q) == 0
        until(lambda: blocked_on(c, src) + blocked_on(c, dst) == 0, 10, "nothing blocked")
        pop.close()
        xrg.close()
        r1.close()


def test_job_queue_exactly_once_while_slots_migrate(tmp_path: Path) -> None:
    n_jobs, n_producers = 600, 2
    with cluster(tmp_path, migration={"max_concurrent_slots": 64}) as c:
        ports = [p.port for p in c.proxies]
        # Four queues in slots 100-131 (group 1 at first), migrated back and forth as a range.
        queues: list[str] = []
        i = 0
        while len(queues) < 4:
            key = f"jobs{{{i}}}"
            if 100 <= key_slot(key.encode(), NSLOTS) <= 131:
                queues.append(key)
            i += 1
        produced: list[str] = []
        consumed: list[str] = []
        errors: list[str] = []
        lock = threading.Lock()
        producing = threading.Event()
        producing.set()
        migrating = threading.Event()
        migrating.set()

        def producer(w: int) -> None:
            conns = [redis.Redis(port=p, socket_timeout=20) for p in ports]
            n = -1
            while migrating.is_set() or n + 1 < n_jobs // n_producers:
                n += 1
                time.sleep(0.002)
                job = f"job-{w}-{n}"
                q = queues[n % len(queues)]
                while True:
                    try:
                        conns[n % 2].lpush(q, job)
                        break
                    except redis.ResponseError as e:
                        if not any(x in str(e) for x in RETRY):
                            errors.append(f"LPUSH: {e}")
                            break
                with lock:
                    produced.append(job)

        def consumer(k: int) -> None:
            r = redis.Redis(port=ports[k % 2], socket_timeout=20)
            q = queues[k % len(queues)]
            idle = 0
            while producing.is_set() or idle < 3:
                try:
                    got = r.brpop([q], timeout=0.2)
                except redis.ResponseError as e:
                    if not any(x in str(e) for x in RETRY):
                        errors.append(f"BRPOP: {e}")
                    continue
                if got is None:
                    idle += 1
                    continue
                idle = 0
                with lock:
                    consumed.append(got[1].decode())

        producers = [threading.Thread(target=producer, args=(w,)) for w in range(n_producers)]
        consumers = [threading.Thread(target=consumer, args=(k,)) for k in range(8)]
        for t in consumers + producers:
            t.start()
        for to in (2, 1, 2, 1, 2, 1):
            c.migrate("100-131", to)
            c.wait_idle()
        migrating.clear()
        for t in producers:
            t.join(60)
        producing.clear()
        for t in consumers:
            t.join(60)
        assert not errors, errors[:5]
        assert len(produced) >= n_jobs
        assert len(consumed) == len(set(consumed)), "a job was delivered twice"
        assert sorted(consumed) == sorted(produced), (
            f"lost: {sorted(set(produced) - set(consumed))[:5]}")
        c.check_placement()
