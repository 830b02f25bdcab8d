"""The cross-group SCAN cursor codec and the move-log rules (proxy/fanout/scan.py)."""

from __future__ import annotations

import random

import pytest

from proxy.fanout.scan import (
    ASCENDING,
    MAX_BACKEND,
    MAX_GID,
    Cursor,
    InvalidCursor,
    MoveLog,
    Order,
    choose_order,
    dangerous,
    decode_cursor,
    encode_cursor,
    next_gid,
)


def test_zero_starts():
    assert decode_cursor(b"0") is None


@pytest.mark.parametrize("c", [
    Cursor(0, 1, ASCENDING, 0), Cursor(MAX_BACKEND, MAX_GID, Order(MAX_GID, True), 255),
    Cursor(12345, 3, Order(2), 7), Cursor(1 << 20, 2, Order(1, True), 300),
])
def test_round_trip(c):
    n = encode_cursor(c)
    assert 0 < n < 1 << 63  # fits a signed 64-bit integer, never 0
    got = decode_cursor(str(n).encode())
    assert got == Cursor(c.backend, c.gid, c.order, c.epoch & 0xFF)


def test_does_not_fit():
    with pytest.raises(ValueError):
        encode_cursor(Cursor(MAX_BACKEND + 1, 1, ASCENDING, 0))
    with pytest.raises(ValueError):
        encode_cursor(Cursor(0, MAX_GID + 1, ASCENDING, 0))
    with pytest.raises(ValueError):
        encode_cursor(Cursor(0, 0, ASCENDING, 0))


@pytest.mark.parametrize("raw", [b"-1", b"abc", b"1.5", b"", b"99999999999999999999999",
                                 b"18446744073709551616", b"1", b"12345"])
def test_garbage_is_invalid(raw):
    with pytest.raises(InvalidCursor):
        decode_cursor(raw)


def test_forged_cursors_mostly_rejected():
    rnd = random.Random(1)
    good = encode_cursor(Cursor(777, 2, ASCENDING, 9))
    accepted = 0
    for _ in range(2000):
        forged = good ^ (1 << rnd.randrange(63))  # one bit flipped
        try:
            decode_cursor(str(forged).encode())
            accepted += 1
        except InvalidCursor:
            pass
    assert accepted < 2000 / 20  # the check bits catch ~62/63
    randoms = 0
    for _ in range(2000):
        try:
            decode_cursor(str(rnd.randrange(1, 1 << 63)).encode())
            randoms += 1
        except InvalidCursor:
            pass
    assert randoms < 2000 / 20


def test_move_log_since():
    log = MoveLog()
    owner = (1, 1, 2, 2)
    log.record(5, owner, {1: "a", 2: "b"}, ())
    log.record(6, owner, {1: "a", 2: "b"}, ((0, 0, 2, 1, "migrating"),))
    log.record(7, (1, 1, 1, 2), {1: "a", 2: "b"}, ())
    assert log.since(7, 7) == {(2, 1)}  # the owner change at the swap
    log.record(9, (1, 1, 1, 2), {1: "a", 2: "b"}, ())
    assert log.since(9, 9) == frozenset()
    assert log.since(6, 7) == {(2, 1)}
    assert log.since(5, 7) == {(2, 1)}
    assert log.since(4, 7) is None  # never seen: unknown
    log.record(10, (1, 1, 1, 2), {1: "a", 2: "c"}, ())
    assert (2, 2) in log.since(9, 10)  # group 2's master changed


def test_dangerous_rules():
    asc = ASCENDING
    # Ascending pass at group 2, scanning it: 3 -> 1 goes back into a scanned group from an
    # unscanned one.
    assert dangerous(frozenset({(3, 1)}), 2, True, asc)
    assert dangerous(frozenset({(3, 2)}), 2, True, asc)  # into the group being scanned
    assert not dangerous(frozenset({(3, 2)}), 2, False, asc)  # its scan has not begun
    assert dangerous(frozenset({(2, 1)}), 2, False, asc)  # from the group about to be scanned
    assert not dangerous(frozenset({(2, 1)}), 3, False, asc)  # from a fully scanned group
    assert not dangerous(frozenset({(1, 3)}), 2, True, asc)  # forward
    assert not dangerous(frozenset({(4, 3)}), 2, True, asc)  # both ahead
    assert not dangerous(frozenset({(1, 2)}), 2, True, asc)  # forward into current
    assert dangerous(frozenset({(2, 2)}), 2, True, asc)  # master changed mid-scan
    assert dangerous(frozenset({(1, 1)}), 2, False, asc)  # a new group behind the pass
    assert not dangerous(frozenset({(3, 3)}), 2, True, asc)  # a new group ahead
    # Group 3 first (3, 1, 2): 3 -> 1 is forward.
    assert not dangerous(frozenset({(3, 1)}), 2, True, Order(3))
    # Group 1 last (2, 3, 1): 2 -> 1 and 3 -> 1 are forward.
    assert not dangerous(frozenset({(2, 1), (3, 1)}), 3, True, Order(1, True))


def test_choose_order():
    gids = [1, 2, 3]
    assert choose_order(frozenset(), gids) == ASCENDING
    assert choose_order(frozenset({(1, 3)}), gids) == ASCENDING
    for moves in ({(2, 1), (2, 3)},  # group 2 drained
                  {(2, 1), (3, 1)},  # group 1 filled
                  {(3, 1)}, {(2, 1)}, {(3, 2), (3, 1)}):
        o = choose_order(frozenset(moves), gids)
        assert not any(o.before(b, a) for a, b in moves), (moves, o)  # all forward
    assert choose_order(frozenset({(2, 1), (2, 3)}), [1, 2, 3, 4]).groups([1, 2, 3, 4])[0] == 2


def test_next_gid():
    assert next_gid([1, 2, 5], 2, ASCENDING) == 5
    assert next_gid([1, 2, 5], 3, ASCENDING) == 5  # gid 3 left the map
    assert next_gid([1, 2, 5], 5, ASCENDING) is None
    assert next_gid([1, 2, 5], 5, Order(5)) == 1
    assert next_gid([1, 2, 5], 2, Order(1, True)) == 5
    assert next_gid([1, 2, 5], 5, Order(1, True)) == 1
    assert next_gid([1, 2, 5], 1, Order(1, True)) is None
