"""Pub/Sub while slots migrate: a dashboard, two proxies, two groups, a real migration.

Subscriptions follow their slot: when a proxy applies the map that moves a slot, each of its
subscribers is subscribed on the new owner at once, and leaves the old one after
`pubsub.resubscribe_grace` (a publisher on a proxy that has not applied the map yet still
reaches it). The subscriber sees no `sunsubscribe` and misses nothing published after the move.
"""

from __future__ import annotations

import time
from pathlib import Path

import redis

from slotcore.keyslot import key_slot
from tests.harness.cluster import NSLOTS, cluster


def _in_first_half(prefix: str) -> str:
    return next(name for i in range(1000)
                if key_slot((name := f"{prefix}{i}").encode(), NSLOTS) < NSLOTS // 2)


def _drain(ps: redis.client.PubSub) -> list[dict]:
    out = []
    while (m := ps.get_message(timeout=0.3)) is not None:
        out.append(m)
    return out


def test_sharded_and_plain_subscribers_follow_a_migrating_slot(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        sub_proxy, pub_proxy = c.proxies
        shard = _in_first_half("orders{")
        plain = _in_first_half("news:")
        keyspace_key = _in_first_half("item:")
        slots = sorted({key_slot(x.encode(), NSLOTS) for x in (shard, plain, keyspace_key)})
        ps = redis.Redis(port=sub_proxy.port).pubsub()
        ps.ssubscribe(shard)
        ps.subscribe(plain, f"__keyspace@0__:{keyspace_key}")
        ps.psubscribe("news:*")
        assert [m["type"] for m in _drain(ps)] == ["ssubscribe", "subscribe", "subscribe",
                                                   "psubscribe"]
        pub = redis.Redis(port=pub_proxy.port)
        g1, g2 = (redis.Redis(port=s.port) for s in c.redis)
        assert pub.spublish(shard, "before") == 1
        assert pub.publish(plain, "before") == 2  # the channel and the pattern
        assert g1.execute_command("PUBSUB", "SHARDNUMSUB", shard)[1] == 1

        c.migrate(",".join(map(str, slots)), 2)
        c.wait_idle(60)
        # Both proxies are on the final map once the migration is idle.
        assert all(c.slotmap().owner[s] == 2 for s in slots)
        assert pub.spublish(shard, "after") == 1
        assert pub.publish(plain, "after") == 2
        got = _drain(ps)
        assert [(m["type"], m["data"]) for m in got] == [
            ("smessage", b"before"), ("message", b"before"), ("pmessage", b"before"),
            ("smessage", b"after"), ("message", b"after"), ("pmessage", b"after")]
        # Now on the new owner; the old one is left after the grace period.
        assert g2.execute_command("PUBSUB", "SHARDNUMSUB", shard)[1] == 1
        assert g2.pubsub_numsub(plain)[0][1] == 1
        deadline = time.monotonic() + 30
        while g1.execute_command("PUBSUB", "SHARDNUMSUB", shard)[1] != 0 or \
                g1.pubsub_numsub(plain)[0][1] != 0:
            assert time.monotonic() < deadline, "old owner still subscribed"
            time.sleep(0.1)
        # Keyspace notifications for the moved key now come from its new group.
        for srv in c.redis:
            redis.Redis(port=srv.port).config_set("notify-keyspace-events", "KA")
        redis.Redis(port=pub_proxy.port).set(keyspace_key, "v")
        m = ps.get_message(timeout=5.0)
        assert m is not None and (m["channel"], m["data"]) == (
            f"__keyspace@0__:{keyspace_key}".encode(), b"set")
        assert pub.spublish(shard, "later") == 1
        m = ps.get_sharded_message(timeout=5.0)
        assert m is not None and m["data"] == b"later"
        ps.close()
