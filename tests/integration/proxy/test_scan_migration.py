"""SCAN while slots migrate (dashboard, one proxy, three groups): every key present for the
whole iteration is returned, over several full iterations while slots move back and forth
between groups in both directions of the scan order; duplicates are allowed (and counted)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import redis

from proxy.fanout.scan import ASCENDING, Cursor, encode_cursor
from slotcore.keyslot import key_slot
from tests.harness import until
from tests.harness.cluster import NSLOTS, cluster

pytestmark = pytest.mark.integration


def full_scan(c: redis.Redis, pause: float = 0.0, cursor: int = 0) -> tuple[Counter, int]:
    seen: Counter = Counter()
    calls = 0
    while True:
        cursor, page = c.scan(cursor, count=25)
        calls += 1
        seen.update(page)
        if cursor == 0:
            return seen, calls
        if pause:
            time.sleep(pause)


def info(c: redis.Redis) -> dict:
    return c.info("proxy")


def test_scan_complete_while_slots_move_back_and_forth(tmp_path: Path) -> None:
    with cluster(tmp_path, ngroups=3, nproxies=1) as c:
        r = redis.Redis(port=c.proxies[0].port)
        served = {s for s, g in enumerate(c.slotmap().owner) if g}
        stable = [k for i in range(6000)
                  if key_slot((k := f"stable:{i}".encode()), NSLOTS) in served]
        p = r.pipeline(transaction=False)
        for k in stable:
            p.set(k, "v")
        p.execute()
        want = set(stable)

        # Moves both ways: 3 -> 1 and 2 -> 1 are backward for an ascending pass, 1 -> 3
        # forward; each migration moves ~1/6 of the keys.
        plan = [("682-850", 1), ("682-850", 3), ("341-500", 1), ("341-500", 2),
                ("0-170", 3), ("0-170", 1)] * 3
        done = threading.Event()
        errors: list[BaseException] = []

        def mover() -> None:
            try:
                time.sleep(0.3)  # the first pass is under way
                for slots, to in plan:
                    c.migrate(slots, to)
                    c.wait_idle(120)
                    time.sleep(0.4)  # iterations can end between migrations
            except BaseException as e:  # reported by the test below
                errors.append(e)
            finally:
                done.set()

        t = threading.Thread(target=mover)
        t.start()
        iterations = overlapped = dups = 0
        try:
            while not done.is_set() or iterations < 3:
                before = int(info(r)["slot_map_epoch"])
                t0 = time.monotonic()
                seen, calls = full_scan(r, pause=0.002)
                after = int(info(r)["slot_map_epoch"])
                print(f"iteration {iterations}: {time.monotonic() - t0:.2f}s, {calls} calls, "
                      f"epochs {before}-{after}, {info(r)['scan_restarts']} restarts so far")
                iterations += 1
                overlapped += after != before
                dups += sum(n - 1 for n in seen.values())
                missing = want - set(seen)
                assert not missing, (f"iteration {iterations}: {len(missing)} keys missed, "
                                     f"e.g. {sorted(missing)[:5]}")
        finally:
            t.join()
        assert not errors, errors[0]
        assert overlapped >= 4, (iterations, overlapped)  # the map did change mid-iteration
        print(f"\n{iterations} iterations, {overlapped} across a map change, "
              f"{dups} duplicates, {info(r)['scan_restarts']} restarts")
        c.check_placement()


def test_stale_cursors_restart_or_fail(tmp_path: Path) -> None:
    with cluster(tmp_path, ngroups=2, nproxies=2) as c:
        r, r2 = (redis.Redis(port=p.port) for p in c.proxies)
        r.mset({f"k{i}": i for i in range(500)})
        want = {f"k{i}".encode() for i in range(500)}
        # One iteration whose calls alternate between the two proxies (same maps, same
        # epochs): one cursor for both, every key once.
        seen_both: Counter = Counter()
        cursor, calls = 0, 0
        while True:
            cursor, page = (r, r2)[calls % 2].scan(cursor, count=10)
            seen_both.update(page)
            calls += 1
            if cursor == 0:
                break
        assert set(seen_both) == want and max(seen_both.values()) == 1 and calls > 20
        # A cursor of a pass begun before a migration, continued after it finished.
        cursor, page = r.scan(0, count=10)
        seen = set(page)
        c.migrate("600-1023", 1)
        c.wait_idle(60)
        rest, _ = full_scan(r, cursor=cursor)
        assert want <= seen | set(rest)
        # A well-formed cursor whose epoch this proxy never saw: the pass restarts.
        unknown = encode_cursor(Cursor(5, 1, ASCENDING, (int(info(r)["slot_map_epoch"]) + 77)))
        got, _ = full_scan(r, cursor=unknown)
        assert want <= set(got)
        # A cursor naming a group that is not in the map (check byte valid): skipped past.
        ghost = encode_cursor(Cursor(0, 9, ASCENDING, int(info(r)["slot_map_epoch"])))
        assert r.scan(ghost)[0] == 0
        with pytest.raises(redis.ResponseError, match="invalid cursor"):
            r.scan(ghost ^ 1 << 60)


def test_flush_refused_while_slots_in_transit(tmp_path: Path) -> None:
    with cluster(tmp_path, ngroups=2, nproxies=1) as c:
        proxy = c.proxies[0]
        r = redis.Redis(port=proxy.port)
        r.mset({f"f{i}": i for i in range(400)})
        status, body = c.dash.call("PUT", "/api/v1/migrations/settings", {"keys_per_sec": 5})
        assert status == 200, body
        c.migrate("0-511", 2)
        until(lambda: proxy.slotmap().get("transit"), 20, "slots in transit")
        for args in (("FLUSHALL",), ("FLUSHDB", "ASYNC")):
            with pytest.raises(redis.ResponseError,
                               match=r"refused while a slot migration runs \(\d+ slots"):
                r.execute_command(*args)
        assert r.dbsize() == 400
        status, body = c.dash.call("PUT", "/api/v1/migrations/settings", {"keys_per_sec": 0})
        assert status == 200, body
        c.wait_idle(60)
        assert r.flushall() is True and r.dbsize() == 0
