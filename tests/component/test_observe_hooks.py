"""The fast path's observability hooks over both hot paths (compiled and pure Python): the
hot-key sampler's countdown, the exact per-command call counts and the 1-in-N latency
sampler see the requests the fast path serves exactly as dispatch would. (Reads from
replicas leaving the fast path: test_replica_routing.py, which runs over both too.)"""

from __future__ import annotations

from proxy.config import HotKeysConfig

from .conftest import MakeProxy


async def test_every_served_request_offers_its_key_at_sample_rate_1(
        make_proxy: MakeProxy) -> None:
    p = await make_proxy(hotkeys=HotKeysConfig(sample_rate=1))
    hot, warm = p.keys_on(1, 1, b"hot")[0], p.keys_on(2, 1, b"warm")[0]
    a, b = p.keys_on(1, 1, b"ma")[0], p.keys_on(3, 1, b"mb")[0]
    c = p.client()
    # One read: the fast path's single-key requests, a split command (not sampled, as in
    # dispatch's split) and a local command between them.
    cmds: list[tuple[bytes, ...]] = [(b"GET", hot)] * 20 + [(b"SET", warm, b"v")] * 5
    cmds += [(b"MSET", a, b"1", b, b"2"), (b"PING",)]
    cmds += [(b"INCR", hot)] * 3
    await c.call(*cmds)
    # A second read, after the first one's countdown was written back.
    await c.call((b"GET", hot), (b"GET", warm))
    top = {k: n for k, n, _err, _slot in p.services.hotkeys.current.summary.top()}
    assert top == {hot: 24, warm: 6}


async def test_sampling_countdown_is_shared_with_dispatch(make_proxy: MakeProxy) -> None:
    # sample_rate 1: the countdown returned by each sample is 1 again, so any request that
    # skipped or double-counted the countdown would show in the counts.
    p = await make_proxy(hotkeys=HotKeysConfig(sample_rate=1))
    key = p.keys_on(1, 1, b"k")[0]
    c = p.client()
    # GETRANGE is keyed but may not be a fast-path command; GET is. Both are counted once.
    await c.call((b"GET", key), (b"GETRANGE", key, b"0", b"1"), (b"GET", key),
                 (b"STRLEN", key), (b"GET", key))
    top = {k: n for k, n, _err, _slot in p.services.hotkeys.current.summary.top()}
    assert top == {key: 5}


async def test_calls_are_counted_exactly_per_command(make_proxy: MakeProxy) -> None:
    p = await make_proxy(metrics=True, latency_sample_every=61)
    k1, k2 = p.keys_on(1, 1, b"c1")[0], p.keys_on(2, 1, b"c2")[0]
    c = p.client()
    await c.call(*([(b"GET", k1)] * 7), *([(b"get", k2)] * 2), *([(b"SET", k1, b"v")] * 3),
                 (b"MSET", k1, b"1", k2, b"2"), (b"MSET", k1, b"1", k2, b"2"),
                 (b"DEL", k1, k2), (b"PING",), (b"PING",), (b"NOSUCHCMD",))
    await c.call((b"GET", k1))
    calls = {r.name: r.calls for r in p.services.stats.meter.rows() if r.calls}
    assert calls == {"get": 10, "set": 3, "mset": 2, "del": 1, "ping": 2}


async def test_one_request_in_every_is_timed(make_proxy: MakeProxy) -> None:
    p = await make_proxy(metrics=True, latency_sample_every=3)
    k1, k2 = p.keys_on(1, 1, b"t1")[0], p.keys_on(2, 1, b"t2")[0]
    c = p.client()
    await c.call(*([(b"GET", k1)] * 30))
    await c.call(*([(b"SET", k2, b"v")] * 31))
    meter = p.services.stats.meter
    assert meter.commands["get"].count == 10
    assert meter.commands["set"].count == 10  # 61 fast-path requests: 20 timed in all
    assert meter.groups["1"].count == 10 and meter.groups["2"].count == 10


async def test_every_request_timed_split_commands_too(make_proxy: MakeProxy) -> None:
    p = await make_proxy(metrics=True, latency_sample_every=1)
    k1, k2 = p.keys_on(1, 1, b"s1")[0], p.keys_on(3, 1, b"s3")[0]
    c = p.client()
    await c.call((b"MSET", k1, b"1", k2, b"2"), (b"GET", k1), (b"MGET", k1, k2),
                 (b"DEL", k1, k2), (b"GET", k2))
    meter = p.services.stats.meter
    assert {n: t.count for n, t in meter.commands.items()} == {
        "mset": 1, "get": 2, "mget": 1, "del": 1}
    assert meter.groups["*"].count == 3
    assert meter.groups["1"].count == 1 and meter.groups["3"].count == 1
