"""Slot hashing (Redis Cluster vectors) and slot maps, without sockets."""

from __future__ import annotations

import pytest

from slotcore.keyslot import crc16, hash_tag, key_slot
from slotcore.ranges import format_ranges, parse_ranges
from slotcore.slotmap import LOCKED, MIGRATING, GroupSpec, SlotMap


def test_crc16_xmodem_check_value() -> None:
    assert crc16(b"123456789") == 0x31C3
    assert key_slot(b"123456789") == 12739


@pytest.mark.parametrize(
    ("key", "slot16384", "slot1024"),
    [
        (b"somekey", 11058, 818),
        (b"foo{hash_tag}", 2515, 467),
        (b"bar{hash_tag}", 2515, 467),
        (b"{user1000}.following", 3443, 371),
        (b"{user1000}.followers", 3443, 371),
        (b"user1000", 3443, 371),
        (b"foo{}{bar}", 8363, 171),
        (b"foo{{bar}}zap", 4015, 943),
        (b"foo{bar}{zap}", 5061, 965),
        (b"", 0, 0),
    ],
)
def test_redis_cluster_vectors(key: bytes, slot16384: int, slot1024: int) -> None:
    assert key_slot(key) == slot16384
    assert key_slot(key, 1024) == slot1024
    # 1024 slots are an exact coarsening of the 16384-slot map
    assert key_slot(key, 1024) == key_slot(key) % 1024


@pytest.mark.parametrize(
    ("key", "hashed"),
    [
        (b"{}", b"{}"),
        (b"{}abc", b"{}abc"),
        (b"a{b", b"a{b"),
        (b"a}b{", b"a}b{"),
        (b"{a}", b"a"),
        (b"x{a}{b}", b"a"),
        (b"{{a}}", b"{a"),
        (b"\xff{\x00\x01}", b"\x00\x01"),
    ],
)
def test_hash_tag_rule(key: bytes, hashed: bytes) -> None:
    assert hash_tag(key) == hashed
    assert key_slot(key) == crc16(hashed) % 16384


def test_parse_and_format_ranges() -> None:
    assert parse_ranges("0-3,7, 5", 16) == [0, 1, 2, 3, 5, 7]
    assert format_ranges([0, 1, 2, 3, 5, 7, 8]) == "0-3,5,7-8"
    for bad in ("5-3", "x", "0-16", "-1", ""):
        with pytest.raises(ValueError):
            parse_ranges(bad, 16)


def _groups(n: int) -> dict[int, GroupSpec]:
    return {g: GroupSpec(g, f"127.0.0.1:{7000 + g}") for g in range(1, n + 1)}


def test_even_map_and_json_round_trip() -> None:
    m = SlotMap.even(16384, _groups(3), epoch=4)
    assert m.ranges() == [(0, 5460, 1), (5461, 10921, 2), (10922, 16383, 3)]
    assert SlotMap.from_json(m.to_json()) == m
    assert len(m.slots_of(2)) == 5461


def test_slot_map_refuses_bad_input() -> None:
    g = _groups(2)
    with pytest.raises(ValueError, match="assigned twice"):
        SlotMap.from_ranges(1024, g, [(0, 600, 1), (500, 1023, 2)])
    with pytest.raises(ValueError, match="unknown group"):
        SlotMap.from_ranges(1024, g, [(0, 1023, 9)])
    with pytest.raises(ValueError, match="slots must be one of"):
        SlotMap(nslots=1000, owner=(0,) * 1000)


def test_transit_and_fenced_round_trip_and_validation() -> None:
    g = _groups(2)
    base = SlotMap.from_ranges(1024, g, [(0, 99, 1), (100, 1023, 2)], epoch=7)
    data = base.to_json()
    data["transit"] = [[100, 109, 1, 2, MIGRATING], [110, 110, 1, 2, LOCKED]]
    data["fenced"] = [b"big\x00key".hex()]
    m = SlotMap.from_json(data)
    assert m.transit == ((100, 109, 1, 2, MIGRATING), (110, 110, 1, 2, LOCKED))
    assert m.fenced == frozenset({b"big\x00key"})
    assert SlotMap.from_json(m.to_json()) == m
    data["transit"] = [[0, 5, 1, 2, MIGRATING]]  # owner must be the target
    with pytest.raises(ValueError, match="owned by its target"):
        SlotMap.from_json(data)
    data["transit"] = [[100, 105, 2, 2, MIGRATING]]
    with pytest.raises(ValueError, match="source and target"):
        SlotMap.from_json(data)
    data["transit"] = [[100, 105, 1, 2, "sideways"]]
    with pytest.raises(ValueError, match="unknown state"):
        SlotMap.from_json(data)
