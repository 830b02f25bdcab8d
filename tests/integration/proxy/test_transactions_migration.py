"""Transactions while their slot migrates (dashboard-driven cluster, two proxies).

N clients run WATCH/GET/MULTI/SET/EXEC retry loops on one counter through both proxies while
the counter's slot moves to the other group and back: the final value equals the number of
EXECs that succeeded (a transaction never runs half on each owner, a moved WATCH never
succeeds silently). MULTI-without-WATCH INCR transactions run alongside on a second counter in
the same slot: its value equals their acknowledged count.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import redis

from slotcore.keyslot import key_slot
from tests.harness.cluster import NSLOTS, cluster

pytestmark = pytest.mark.integration

RETRY = ("TRYAGAIN", "CLUSTERDOWN")


def test_counter_transactions_while_the_slot_migrates(tmp_path: Path) -> None:
    key, key2 = "{ctr}watched", "{ctr}multi"
    slot = key_slot(key.encode(), NSLOTS)
    with cluster(tmp_path) as c:
        ports = [p.port for p in c.proxies]
        first = c.slotmap().owner[slot]
        other = 2 if first == 1 else 1
        redis.Redis(port=ports[0]).mset({key: 0, key2: 0})
        stop = threading.Event()
        lock = threading.Lock()
        wins = {"watch": 0, "multi": 0, "nil": 0, "tryagain": 0}
        errors: list[str] = []

        def watcher(i: int) -> None:
            r = redis.Redis(port=ports[i % 2], socket_timeout=20, protocol=2 + i % 2)
            while not stop.is_set():
                try:
                    with r.pipeline() as p:
                        p.watch(key)
                        v = int(p.get(key))
                        p.multi()
                        p.set(key, v + 1)
                        p.execute()
                    with lock:
                        wins["watch"] += 1
                except redis.WatchError:
                    with lock:
                        wins["nil"] += 1
                except redis.ResponseError as e:
                    with lock:
                        if any(x in str(e) for x in RETRY):
                            wins["tryagain"] += 1
                        else:
                            errors.append(str(e))
                    time.sleep(0.01)

        def multier(i: int) -> None:
            r = redis.Redis(port=ports[i % 2], socket_timeout=20)
            while not stop.is_set():
                try:
                    with r.pipeline() as p:
                        p.incr(key2)
                        p.execute()
                    with lock:
                        wins["multi"] += 1
                except redis.ResponseError as e:
                    with lock:
                        if not any(x in str(e) for x in RETRY):
                            errors.append(str(e))
                    time.sleep(0.01)

        threads = [threading.Thread(target=watcher, args=(i,)) for i in range(4)]
        threads += [threading.Thread(target=multier, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.5)
            for to in (other, first):
                c.migrate(str(slot), to)
                c.wait_idle(60)
                time.sleep(0.5)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        print("transaction outcomes:", wins)
        assert not errors, errors[:5]
        r = redis.Redis(port=ports[1])
        assert wins["watch"] > 0 and wins["multi"] > 0
        assert int(r.get(key)) == wins["watch"], wins
        assert int(r.get(key2)) == wins["multi"], wins
        assert c.slotmap().owner[slot] == first
        c.check_placement()
