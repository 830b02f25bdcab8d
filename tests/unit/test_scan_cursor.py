"""The cross-group SCAN cursor codec and the move-log rules (proxy/fanout/scan.py)."""

from __future__ import annotations

import random

import pytest

from proxy.fanout.scan import (
    MAX_BACKEND,
    MAX_GID,
    Cursor,
    InvalidCursor,
    MoveLog,
    choose_descending,
    dangerous,
    decode_cursor,
    encode_cursor,
    next_gid,
)


def test_zero_starts():
    assert decode_cursor(b"0") is None


@pytest.mark.parametrize("c", [
    Cursor(0, 1, False, 0), Cursor(MAX_BACKEND, MAX_GID, True, 255), Cursor(12345, 3, False, 7),
    Cursor(1 << 20, 2, True, 300),
])
def test_round_trip(c):
    n = encode_cursor(c)
    assert 0 < n < 1 << 63  # fits a signed 64-bit integer, never 0
    got = decode_cursor(str(n).encode())
    assert got == Cursor(c.backend, c.gid, c.descending, c.epoch & 0xFF)


def test_does_not_fit():
    with pytest.raises(ValueError):
        encode_cursor(Cursor(MAX_BACKEND + 1, 1, False, 0))
    with pytest.raises(ValueError):
        encode_cursor(Cursor(0, MAX_GID + 1, False, 0))
    with pytest.raises(ValueError):
        encode_cursor(Cursor(0, 0, False, 0))


@pytest.mark.parametrize("raw", [b"-1", b"abc", b"1.5", b"", b"99999999999999999999999",
                                 b"18446744073709551616", b"1", b"12345"])
def test_garbage_is_invalid(raw):
    with pytest.raises(InvalidCursor):
        decode_cursor(raw)


def test_forged_cursors_mostly_rejected():
    rnd = random.Random(1)
    good = encode_cursor(Cursor(777, 2, False, 9))
    accepted = 0
    for _ in range(2000):
        forged = good ^ (1 << rnd.randrange(63))  # one bit flipped
        try:
            decode_cursor(str(forged).encode())
            accepted += 1
        except InvalidCursor:
            pass
    assert accepted < 2000 / 50  # the check byte catches ~255/256


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
    # Ascending pass at group 2, scanning: a move 3 -> 1 (backward, into a scanned group).
    assert dangerous(frozenset({(3, 1)}), 2, True, False)
    assert dangerous(frozenset({(3, 2)}), 2, True, False)  # into the group being scanned
    assert not dangerous(frozenset({(3, 2)}), 2, False, False)  # not started yet
    assert not dangerous(frozenset({(1, 3)}), 2, True, False)  # forward
    assert not dangerous(frozenset({(3, 4)}), 2, True, False)  # both ahead: backward, unstarted
    assert not dangerous(frozenset({(1, 2)}), 2, True, False)  # forward into current
    # Descending: 1 -> 3 is backward.
    assert dangerous(frozenset({(1, 3)}), 2, True, True)
    assert not dangerous(frozenset({(3, 1)}), 2, True, True)
    assert dangerous(frozenset({(2, 2)}), 2, True, False)  # master changed mid-scan
    assert not dangerous(frozenset({(3, 3)}), 2, True, False)


def test_direction_and_order():
    assert not choose_descending(frozenset())
    assert choose_descending(frozenset({(3, 1), (2, 1)}))
    assert not choose_descending(frozenset({(1, 3), (3, 1)}))
    assert next_gid([1, 2, 5], 2, False) == 5
    assert next_gid([1, 2, 5], 3, False) == 5  # gid 3 left the map
    assert next_gid([1, 2, 5], 5, False) is None
    assert next_gid([1, 2, 5], 5, True) == 2
    assert next_gid([1, 2, 5], 1, True) is None
