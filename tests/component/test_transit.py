"""Slots in transit (routing.transit) and the drain on a map swap (routing.router)."""

from __future__ import annotations

import asyncio

from slotcore.keyslot import key_slot
from slotcore.slotmap import LOCKED, MIGRATING

from .conftest import NSLOTS, WAIT, MakeProxy, Proxy, settle, wait_until


def slot_of(key: bytes) -> int:
    return key_slot(key, NSLOTS)


def seq_reply(proxy: Proxy, gid: int, *argv: bytes) -> bytes:
    (seq,) = proxy.backend(gid).seq_of(*argv)
    return str(seq).encode()


# ---------------------------------------------------------------------------- LOCKED
async def test_locked_slot_holds_a_request_until_the_next_map_releases_it(proxy: Proxy) -> None:
    key = proxy.keys_on(1, 1, b"locked")[0]
    s = slot_of(key)
    before, behind = proxy.keys_on(1, 1, b"b4")[0], proxy.keys_on(2, 1, b"behind")[0]
    await proxy.apply(proxy.slot_map(transit=((s, s, 1, 2, LOCKED),)))
    c = proxy.client()
    c.send((b"GET", before), (b"GET", key), (b"GET", behind), (b"SET", key, b"v"))
    (first,) = await c.take(1)
    assert first == seq_reply(proxy, 1, b"GET", before)
    await wait_until(lambda: proxy.backend(2).seq_of(b"GET", behind) != [], "behind sent")
    await settle()
    # Held: no backend saw the locked slot's requests; the reply behind them waits its turn.
    assert not any(b.seq_of(b"GET", key) or b.seq_of(b"SET", key, b"v")
                   for b in proxy.backends)
    assert len(c.replies) == 1
    assert len(proxy.transit.held) == 2
    # The next map gives the slot to group 2: the held requests go there, in order.
    await proxy.apply(proxy.slot_map(move={s: 2}))
    got = await c.take(3)
    assert got == [seq_reply(proxy, 2, b"GET", key), seq_reply(proxy, 2, b"GET", behind),
                   seq_reply(proxy, 2, b"SET", key, b"v")]
    assert int(got[0]) > int(got[1])  # sent after "behind", answered in request order
    assert int(got[2]) > int(got[0])
    assert not proxy.transit.held


async def test_held_request_past_lock_timeout_gets_tryagain(make_proxy: MakeProxy) -> None:
    proxy = await make_proxy(migration={"lock_timeout": 10.0})
    key = proxy.keys_on(3, 1, b"slow")[0]
    s = slot_of(key)
    await proxy.apply(proxy.slot_map(transit=((s, s, 3, 1, LOCKED),)))
    c = proxy.client()
    loop = asyncio.get_running_loop()
    c.send((b"GET", key))
    await wait_until(lambda: len(proxy.transit.held) == 1, "held")
    since = proxy.transit.held[0].since
    assert since <= loop.time()
    proxy.transit.expire_held(since + 9.9)  # not yet
    await settle()
    assert c.replies == [] and len(proxy.transit.held) == 1
    proxy.transit.expire_held(since + 10.1)
    (reply,) = await c.take(1)
    assert reply == f"TRYAGAIN slot {s} is being migrated: locked too long"
    # Answered, so the next map does not send it anywhere.
    await proxy.apply(proxy.slot_map(move={s: 1}))
    await settle()
    assert not any(b.seq_of(b"GET", key) for b in proxy.backends)
    assert await c.call((b"PING",)) == [b"PONG"]


# ---------------------------------------------------------------------------- MIGRATING
async def test_migrating_slot_pulls_the_keys_from_the_source_then_runs_on_the_target(
        proxy: Proxy) -> None:
    key = proxy.keys_on(1, 1, b"mig")[0]
    s = slot_of(key)
    other = proxy.keys_on(2, 1, b"other")[0]
    src, dst = proxy.backend(1), proxy.backend(2)
    src.handlers[b"MIGRATE"] = lambda argv, seq: b"+NOKEY\r\n"
    await proxy.apply(proxy.slot_map(transit=((s, s, 1, 2, MIGRATING),)))
    c = proxy.client()
    got = await c.call((b"GET", key), (b"GET", other))
    migrates = src.commands(b"MIGRATE")
    assert migrates == [[b"MIGRATE", b"127.0.0.1", str(dst.port).encode(), b"", b"0",
                         b"5000", b"REPLACE", b"KEYS", key]]
    assert src.seq_of(b"GET", key) == []  # never served by the source
    # The GET reached the target only after the MIGRATE was answered, so behind "other".
    assert got == [seq_reply(proxy, 2, b"GET", key), seq_reply(proxy, 2, b"GET", other)]
    assert int(got[0]) > int(got[1])


async def test_migrating_split_command_pulls_only_the_keys_of_the_moving_slot(
        proxy: Proxy) -> None:
    key = proxy.keys_on(1, 1, b"mv")[0]
    s = slot_of(key)
    stay = proxy.keys_on(1, 1, b"stay")[0]
    assert slot_of(stay) != s
    src = proxy.backend(1)
    src.handlers[b"MIGRATE"] = lambda argv, seq: b"+OK\r\n"
    await proxy.apply(proxy.slot_map(transit=((s, s, 1, 3, MIGRATING),)))
    c = proxy.client()
    (reply,) = await c.call((b"DEL", key, stay))
    assert reply == 2
    assert [m[8:] for m in src.commands(b"MIGRATE")] == [[key]]
    assert src.commands(b"DEL") == [[b"DEL", stay]]
    assert proxy.backend(3).commands(b"DEL") == [[b"DEL", key]]


async def test_migrate_error_answers_tryagain_and_runs_nothing(proxy: Proxy) -> None:
    key = proxy.keys_on(1, 1, b"ioerr")[0]
    s = slot_of(key)
    proxy.backend(1).handlers[b"MIGRATE"] = lambda argv, seq: b"-IOERR error or timeout\r\n"
    await proxy.apply(proxy.slot_map(transit=((s, s, 1, 2, MIGRATING),)))
    c = proxy.client()
    got = await c.call((b"SET", key, b"v"), (b"PING",))
    assert got == [f"TRYAGAIN slot {s} is being migrated: could not move its keys "
                   f"(IOERR error or timeout)", b"PONG"]
    assert not any(b.seq_of(b"SET", key, b"v") for b in proxy.backends)


async def test_fenced_key_in_a_migrating_slot_is_held_its_neighbours_are_not(
        proxy: Proxy) -> None:
    big = proxy.keys_on(1, 1, b"big")[0]
    s = slot_of(big)
    near = next(b"{%s}n%d" % (big, i) for i in range(10))  # same slot via the hash tag
    assert slot_of(near) == s
    proxy.backend(1).handlers[b"MIGRATE"] = lambda argv, seq: b"+NOKEY\r\n"
    await proxy.apply(proxy.slot_map(transit=((s, s, 1, 2, MIGRATING),),
                                     fenced=frozenset({big})))
    c = proxy.client()
    c.send((b"GET", big), (b"GET", near))
    await wait_until(lambda: proxy.backend(2).seq_of(b"GET", near) != [], "near served")
    await settle()
    assert len(proxy.transit.held) == 1 and c.replies == []
    await proxy.apply(proxy.slot_map(transit=((s, s, 1, 2, MIGRATING),)))  # fence lifted
    got = await c.take(2)
    assert got == [seq_reply(proxy, 2, b"GET", big), seq_reply(proxy, 2, b"GET", near)]


# ---------------------------------------------------------------------------- fencing
async def test_proxy_cut_off_from_the_dashboard_answers_tryagain(make_proxy: MakeProxy) -> None:
    now = [0.0]
    proxy = await make_proxy(fence_enabled=True, clock=lambda: now[0],
                             migration={"fence_timeout": 10.0})
    moving, locked = proxy.keys_on(1, 1, b"fm")[0], proxy.keys_on(2, 1, b"fl")[0]
    sm, sl = slot_of(moving), slot_of(locked)
    proxy.backend(1).handlers[b"MIGRATE"] = lambda argv, seq: b"+NOKEY\r\n"
    await proxy.apply(proxy.slot_map(transit=((sm, sm, 1, 3, MIGRATING),
                                              (sl, sl, 2, 3, LOCKED))))
    c = proxy.client()
    c.send((b"GET", locked))
    await wait_until(lambda: len(proxy.transit.held) == 1, "held")
    now[0] = 9.0
    proxy.transit.check_fence()
    assert not proxy.transit.fenced_out
    now[0] = 10.5
    proxy.transit.check_fence()
    assert proxy.transit.fenced_out
    # Held requests are answered at once, whatever their age ...
    proxy.transit.expire_held(proxy.transit.held[0].since)
    # ... and new ones for slots in transit are refused without touching a backend.
    owned = proxy.keys_on(3, 1, b"fo")[0]
    c.send((b"GET", moving), (b"GET", owned))
    got = await c.take(3)
    assert got[:2] == [
        f"TRYAGAIN slot {sl} is being migrated: lost contact with the dashboard",
        f"TRYAGAIN slot {sm} is being migrated: this proxy lost contact with the dashboard"]
    assert got[2] == seq_reply(proxy, 3, b"GET", owned)  # owned slots are still served
    assert proxy.backend(1).commands(b"MIGRATE") == []
    # Contact restored: served again.
    proxy.transit.touch_contact()
    (reply,) = await c.call((b"GET", moving))
    assert reply == seq_reply(proxy, 3, b"GET", moving)
    assert len(proxy.backend(1).commands(b"MIGRATE")) == 1


# ---------------------------------------------------------------------------- drain
async def test_apply_returns_only_once_requests_under_the_old_map_are_answered(
        proxy: Proxy) -> None:
    key = proxy.keys_on(1, 1, b"drain")[0]
    s = slot_of(key)
    b1 = proxy.backend(1)
    b1.hold()
    c = proxy.client()
    c.send((b"SET", key, b"old"))
    await wait_until(lambda: b1.seq_of(b"SET", key, b"old") != [], "SET at group 1")
    replies_at_done: list[int] = []
    new_map = proxy.slot_map(move={s: 2})
    task = asyncio.get_running_loop().create_task(proxy.router.apply(new_map))
    task.add_done_callback(lambda t: replies_at_done.append(len(c.replies)))
    await settle()
    # The new map is in force for new requests, but the swap is not acknowledged yet.
    assert proxy.router.slotmap is new_map
    assert not task.done()
    assert c.replies == []
    b1.release()
    await asyncio.wait_for(task, WAIT)
    assert replies_at_done == [1]  # the old map's request was answered (and written) first
    assert await c.take(1) == [seq_reply(proxy, 1, b"SET", key, b"old")]
    (reply,) = await c.call((b"GET", key))
    assert reply == seq_reply(proxy, 2, b"GET", key)  # new requests follow the new map
    assert b1.seq_of(b"GET", key) == []
